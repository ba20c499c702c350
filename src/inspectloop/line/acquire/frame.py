"""One acquired frame and what is recorded with it: where it came from, when, with which settings."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from PIL import Image

# A frame goes to the service (and, if kept, the image store) as PGM/PPM: lossless and a plain copy of the
# pixels. Measured here on a 1280x1024 frame: PNG at zlib level 1 took 160 ms to encode, more than the model.
FRAME_FORMAT = "PPM"


@dataclass(frozen=True, eq=False)
class Frame:
    """A frame as the model will see it, with its capture record.

    ``pixels`` is uint8, (H, W) greyscale or (H, W, 3) RGB. ``frame_counter`` counts this source's
    frames since it was opened and keeps counting across reconnects (the camera's own counter,
    ``camera_frame_id``, restarts when the camera does); ``reconnects`` says how many reconnects came
    before this frame. ``settings`` are the locked settings it was taken with; ``temperature_c`` the
    device temperature when the camera has that node (None otherwise).
    """

    pixels: np.ndarray
    source: str
    frame_counter: int
    captured_at: datetime
    settings: dict[str, Any] = field(default_factory=dict)
    serial: str | None = None
    camera_frame_id: int | None = None
    reconnects: int = 0
    temperature_c: float | None = None

    def __post_init__(self) -> None:
        pixels = self.pixels
        if pixels.dtype != np.uint8 or not (pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] == 3)):
            raise ValueError(f"frame pixels must be uint8 (H, W) or (H, W, 3), got {pixels.dtype} {pixels.shape}")

    def image(self) -> Image.Image:
        """The frame as a Pillow image (mode L or RGB), ready for the edge runtime."""
        return Image.fromarray(self.pixels, "L" if self.pixels.ndim == 2 else "RGB")

    def record(self) -> dict[str, Any]:
        """JSON-ready capture metadata (everything but the pixels)."""
        return {"source": self.source, "serial": self.serial, "frame_counter": self.frame_counter,
                "camera_frame_id": self.camera_frame_id, "reconnects": self.reconnects,
                "captured_at": self.captured_at.isoformat(), "temperature_c": self.temperature_c,
                "settings": dict(self.settings), "height": int(self.pixels.shape[0]),
                "width": int(self.pixels.shape[1])}

    def encoded(self) -> bytes:
        """The frame as PGM/PPM bytes (lossless: the stored image is exactly what the model saw)."""
        buffer = io.BytesIO()
        self.image().save(buffer, format=FRAME_FORMAT)
        return buffer.getvalue()

    def fields(self, *, part_id: str, light: int, station: str) -> dict[str, str | None]:
        """The metadata stored with the frame (prediction log, collected images): camera, station (as line),
        part, light, and its capture record (serial, counters, temperature, locked settings)."""
        record = self.record()
        settings = {f"camera_{k}": str(v) for k, v in record.pop("settings").items() if v is not None}
        extra = {k: str(v) for k, v in record.items() if v is not None and k not in ("source", "captured_at")}
        return {"camera": self.source, "line": station, "part_id": part_id, "lighting": f"light{light}",
                "captured_at": self.captured_at.isoformat(), **extra, **settings}
