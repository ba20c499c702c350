"""Images: identified by the SHA-256 of their bytes, with capture metadata and quality statistics."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from inspectloop.domain.base import FrozenModel

METADATA_FIELDS = ("camera", "line", "shift", "lighting", "part_id", "session", "captured_at")
MAX_FIELD_CHARS = 256  # longest metadata value (and field name) accepted: a camera id, not a document


class ImageSource(StrEnum):
    collection = "collection"
    production = "production"
    review = "review"


class CaptureMeta(FrozenModel):
    """Where and when an image was taken. Every field is optional: plants record what they can."""

    camera: str | None = None
    line: str | None = None
    shift: str | None = None
    lighting: str | None = None
    part_id: str | None = None
    session: str | None = None
    captured_at: datetime | None = None
    extra: dict[str, str] = Field(default_factory=dict)

    def fields(self) -> dict[str, str | None]:
        """Flat view for slicing: the named fields plus the free-form extras."""
        flat = {name: getattr(self, name) for name in METADATA_FIELDS if name != "captured_at"}
        return {**flat, **self.extra}


class QualityStats(FrozenModel):
    """Per-image statistics on the 8-bit greyscale view (see ``inspectloop.quality``)."""

    brightness: float
    contrast: float
    sharpness: float
    noise: float
    clipped_fraction: float


class ImageRecord(FrozenModel):
    sha256: str
    format: str
    original_mode: str
    working_mode: str
    width: int
    height: int
    size_bytes: int
    meta: CaptureMeta
    quality: QualityStats
    source: ImageSource = ImageSource.collection
