"""Region annotations: who drew which box or polygon of which class on an image, and when.

Coordinates are pixels of the stored image (x right, y down, origin at the top-left corner of the
top-left pixel), rounded to a thousandth of a pixel so that a file written and read back compares
equal. A region always has a box; a polygon, when drawn, is the outline and the box is its bounds.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Self

from pydantic import field_validator, model_validator

from inspectloop.domain.base import FrozenModel

DECIMALS = 3  # a thousandth of a pixel: finer is noise, coarser loses YOLO's normalised precision on 12 MP frames
REGION_SOURCES = ("import", "reviewer", "model")


def snap(value: float) -> float:
    """A coordinate on the stored grid (see DECIMALS); -0.0 becomes 0.0."""
    return round(float(value), DECIMALS) + 0.0


class Box(FrozenModel):
    """An axis-aligned box: x0, y0 (top-left) to x1, y1 (bottom-right), in pixels of the stored image."""

    x0: float
    y0: float
    x1: float
    y1: float

    @model_validator(mode="before")
    @classmethod
    def _snap(cls, data: object) -> object:
        if isinstance(data, dict):
            for key in ("x0", "y0", "x1", "y1"):
                value = data.get(key)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    if not math.isfinite(value):
                        raise ValueError(f"box coordinate {key}={value} is not a finite number")
                    data = {**data, key: snap(value)}
        return data

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if not (self.x1 > self.x0 and self.y1 > self.y0):
            raise ValueError(f"box ({self.x0}, {self.y0}, {self.x1}, {self.y1}) has no area: "
                             "x1 must exceed x0 and y1 exceed y0")
        return self

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    @property
    def area(self) -> float:
        return self.width * self.height

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.x0, self.y0, self.x1, self.y1)


class Polygon(FrozenModel):
    """A closed outline as a list of (x, y) points (the last point joins the first; not repeated)."""

    points: tuple[tuple[float, float], ...]

    @field_validator("points", mode="before")
    @classmethod
    def _snap(cls, value: object) -> object:
        if not isinstance(value, (list, tuple)):
            raise ValueError("polygon points must be a list of (x, y) pairs")
        snapped = []
        for point in value:
            if not isinstance(point, (list, tuple)) or len(point) != 2:
                raise ValueError(f"polygon point {point!r} is not an (x, y) pair")
            x, y = float(point[0]), float(point[1])
            if not (math.isfinite(x) and math.isfinite(y)):
                raise ValueError(f"polygon point ({x}, {y}) is not finite")
            snapped.append((snap(x), snap(y)))
        return tuple(snapped)

    @model_validator(mode="after")
    def _not_degenerate(self) -> Self:
        if len(set(self.points)) < 3:
            raise ValueError(f"polygon has {len(set(self.points))} distinct point(s); an outline needs 3")
        if self.area <= 0:
            raise ValueError("polygon has no area (its points lie on one line)")
        return self

    @property
    def area(self) -> float:
        """Enclosed area by the shoelace formula (absolute: either winding)."""
        xs = [p[0] for p in self.points]
        ys = [p[1] for p in self.points]
        n = len(xs)
        return abs(sum(xs[i] * ys[(i + 1) % n] - xs[(i + 1) % n] * ys[i] for i in range(n))) / 2.0

    def bounds(self) -> Box:
        """The smallest box holding every point."""
        xs = [p[0] for p in self.points]
        ys = [p[1] for p in self.points]
        return Box(x0=min(xs), y0=min(ys), x1=max(xs), y1=max(ys))

    def flat(self) -> list[float]:
        """x0, y0, x1, y1, ... as COCO and YOLO write them."""
        return [c for point in self.points for c in point]


class Region(FrozenModel):
    """One annotator's box (and optional outline) of one class on one image.

    ``id`` is the store's (None before it is stored); ``supersedes`` names the region this one
    replaces (an edit: the old one stays in the dataset versions that hold it).
    """

    sha256: str
    class_name: str
    box: Box
    polygon: Polygon | None = None
    annotator: str
    source: str = "import"
    created_at: datetime | None = None
    id: int | None = None
    supersedes: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _box_from_polygon(cls, data: object) -> object:
        if isinstance(data, dict) and data.get("box") is None and data.get("polygon") is not None:
            polygon = data["polygon"]
            polygon = polygon if isinstance(polygon, Polygon) else Polygon.model_validate(polygon)
            data = {**data, "polygon": polygon, "box": polygon.bounds()}
        return data

    @field_validator("annotator")
    @classmethod
    def _named(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("annotator is empty: name the person or tool that drew the region")
        return value

    @field_validator("source")
    @classmethod
    def _known_source(cls, value: str) -> str:
        if value not in REGION_SOURCES:
            raise ValueError(f"region source {value!r} is not one of {', '.join(REGION_SOURCES)}")
        return value

    def key(self) -> tuple[object, ...]:
        """What makes two regions the same drawing (for de-duplicating imports and round-trip checks)."""
        return (self.sha256, self.class_name, self.annotator, self.box.as_tuple(),
                self.polygon.points if self.polygon else None)
