"""Region domain objects: boxes and outlines are validated, snapped to a thousandth of a pixel."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from inspectloop.domain import Box, Polygon, Region

DIGEST = "a" * 64


@pytest.mark.parametrize("corners, message", [
    ((5, 5, 5, 10), "no area"),
    ((5, 5, 4, 10), "no area"),
    ((0, 0, float("nan"), 3), "finite"),
])
def test_a_box_without_area_or_with_bad_numbers_is_refused(corners: tuple[float, ...], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Box(x0=corners[0], y0=corners[1], x1=corners[2], y1=corners[3])


@pytest.mark.parametrize("points, message", [
    ([(0, 0), (1, 1)], "2 distinct point"),
    ([(0, 0), (1, 1), (0, 0)], "2 distinct point"),
    ([(0, 0), (1, 1), (2, 2)], "no area"),
    ([(0, 0), (1,), (2, 2)], "not an"),
])
def test_a_degenerate_polygon_is_refused(points: list[tuple[float, ...]], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Polygon(points=points)


def test_coordinates_snap_to_a_thousandth_of_a_pixel() -> None:
    box = Box(x0=0.1 + 0.2, y0=-0.0, x1=3.00049, y1=4.0006)
    assert box.as_tuple() == (0.3, 0.0, 3.0, 4.001)


def test_a_region_drawn_as_an_outline_gets_its_bounds_as_box() -> None:
    region = Region(sha256=DIGEST, class_name="pit", annotator="ana", box=None,
                    polygon=Polygon(points=[(2, 3), (10, 4), (6, 9.5)]))
    assert region.box == Box(x0=2, y0=3, x1=10, y1=9.5)
    assert region.polygon is not None and region.polygon.area == pytest.approx(24.0)


@pytest.mark.parametrize("field, value", [("annotator", " "), ("source", "guess")])
def test_a_region_needs_an_annotator_and_a_known_source(field: str, value: str) -> None:
    values = {"sha256": DIGEST, "class_name": "pit", "annotator": "ana", "box": Box(x0=0, y0=0, x1=1, y1=1)}
    with pytest.raises(ValidationError, match=field if field == "source" else "annotator is empty"):
        Region(**(values | {field: value}))
