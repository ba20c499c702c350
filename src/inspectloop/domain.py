"""Typed, validated domain objects shared by the services. No I/O here."""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator

CLASS_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\- ]{0,63}$")
METADATA_FIELDS = ("camera", "line", "shift", "lighting", "part_id", "session", "captured_at")


class Severity(StrEnum):
    critical = "critical"
    major = "major"
    minor = "minor"
    none = "none"  # the good class


class Task(StrEnum):
    classification = "classification"
    anomaly = "anomaly"
    detection = "detection"


class Split(StrEnum):
    train = "train"
    val = "val"
    test = "test"


class ImageSource(StrEnum):
    collection = "collection"
    production = "production"
    review = "review"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CaptureMeta(_Frozen):
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


class QualityStats(_Frozen):
    """Per-image statistics on the 8-bit greyscale view (see ``inspectloop.quality``)."""

    brightness: float
    contrast: float
    sharpness: float
    noise: float
    clipped_fraction: float


class ClassDefinition(_Frozen):
    """A class as a quality engineer means it: the written criterion and how bad it is."""

    name: str
    criterion: str = ""
    severity: Severity = Severity.major
    task: Task = Task.classification
    is_good: bool = False

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not CLASS_NAME.match(value):
            raise ValueError("class names are 1-64 letters, digits, space, '_', '-' or '.', starting with a letter or digit")
        return value


class Annotation(_Frozen):
    sha256: str
    class_name: str
    annotator: str
    source: str = "import"
    created_at: datetime | None = None
    note: str | None = None


class ImageRecord(_Frozen):
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


GOOD_NAMES = frozenset({"good", "ok", "free", "pass", "normal", "no_defect", "nodefect", "defect-free"})


def looks_good(class_name: str) -> bool:
    """Whether a folder name conventionally means a defect-free part (used as a default only)."""
    return class_name.strip().lower() in GOOD_NAMES
