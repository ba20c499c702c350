"""One acquired frame and what is recorded with it: where it came from, when, with which settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from PIL import Image


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
