"""Classes and annotations: what a quality engineer means by a class, and who said what about an image."""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum

from pydantic import Field, field_validator, model_validator

from inspectloop.domain.base import FrozenModel

CLASS_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\- ]{0,63}$")


class Severity(StrEnum):
    critical = "critical"
    major = "major"
    minor = "minor"
    none = "none"  # the good class


class Task(StrEnum):
    classification = "classification"
    anomaly = "anomaly"
    detection = "detection"


class ClassDefinition(FrozenModel):
    """A class as a quality engineer means it: the written criterion and how bad it is."""

    name: str
    criterion: str = ""
    severity: Severity = Severity.major
    task: Task = Task.classification
    is_good: bool = False
    # Graded defects: the class is grade ``grade`` (1 = lowest defect grade) of the ordered ``scale``
    # (e.g. scratch: minor < major < critical). The good class sits below every scale (grade 0).
    scale: str | None = None
    grade: int | None = Field(None, ge=1, le=32)

    @model_validator(mode="after")
    def _graded_consistently(self) -> ClassDefinition:
        if (self.scale is None) != (self.grade is None):
            raise ValueError("a graded class needs both its scale and its grade (or neither)")
        if self.is_good and self.scale is not None:
            raise ValueError("the good class sits below every scale (grade 0): it cannot be graded itself")
        if self.scale is not None and not CLASS_NAME.match(self.scale):
            raise ValueError("scale names follow the rules of class names")
        return self

    @property
    def graded(self) -> bool:
        return self.scale is not None

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not CLASS_NAME.match(value):
            raise ValueError("class names are 1-64 letters, digits, space, '_', '-' or '.', starting with a letter or digit")
        return value


class Annotation(FrozenModel):
    sha256: str
    class_name: str
    annotator: str
    source: str = "import"
    created_at: datetime | None = None
    note: str | None = None
    # A soft label: the annotator's probability that the part is defective (a manifest's defect_probability).
    probability: float | None = Field(None, ge=0.0, le=1.0)


GOOD_NAMES = frozenset({"good", "ok", "free", "pass", "normal", "no_defect", "nodefect", "defect-free"})


def looks_good(class_name: str) -> bool:
    """Whether a folder name conventionally means a defect-free part (used as a default only)."""
    return class_name.strip().lower() in GOOD_NAMES
