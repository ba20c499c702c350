"""Geometry: IoU, clipping to the image, masks traced to outlines whose bounds are the pixel extent."""

from __future__ import annotations

import numpy as np
import pytest

from inspectloop.regions.geometry import box_iou, clip_box, clip_polygon, mask_to_polygons, shoelace


@pytest.mark.parametrize("a, b, iou", [
    ((0, 0, 10, 10), (0, 0, 10, 10), 1.0),
    ((0, 0, 10, 10), (5, 0, 15, 10), 1 / 3),
    ((0, 0, 10, 10), (10, 10, 20, 20), 0.0),
    ((0, 0, 10, 10), (2, 2, 4, 4), 0.04),
])
def test_box_iou(a: tuple[float, ...], b: tuple[float, ...], iou: float) -> None:
    assert box_iou(np.array([a]), np.array([b]))[0, 0] == pytest.approx(iou)


@pytest.mark.parametrize("box, clipped", [
    ((-5, 2, 10, 8), (0, 2, 10, 8)),
    ((5, 5, 30, 30), (5, 5, 20, 10)),
    ((25, 0, 30, 5), None),
    ((-3, -3, 0, 5), None),  # touches the image's edge: no area inside
])
def test_clip_box(box: tuple[float, ...], clipped: tuple[float, ...] | None) -> None:
    assert clip_box(box, 20, 10) == clipped


def test_clip_polygon_cuts_along_the_image_border() -> None:
    triangle = [(0.0, 0.0), (20.0, 0.0), (0.0, 20.0)]  # area 200; y <= 10 keeps a 10x10 square and a 50 triangle
    clipped = clip_polygon(triangle, 20, 10)
    assert shoelace(clipped) == pytest.approx(150)
    assert all(0 <= x <= 20 and 0 <= y <= 10 for x, y in clipped)
    assert clip_polygon([(30, 30), (40, 30), (35, 40)], 20, 10) == []


def test_a_mask_is_traced_to_one_outline_per_part_with_the_parts_pixel_extent() -> None:
    mask = np.zeros((20, 30), dtype=bool)
    mask[2:6, 3:9] = True  # rows 2..5, columns 3..8
    mask[10:20, 25:30] = True  # touches the bottom-right corner
    mask[0, 0] = True  # a single pixel
    outlines, specks = mask_to_polygons(mask, min_area=1.0)
    bounds = sorted((min(x for x, _ in o), min(y for _, y in o), max(x for x, _ in o), max(y for _, y in o))
                    for o in outlines)
    assert bounds == [(3, 2, 9, 6), (25, 10, 30, 20)]
    assert specks == 1  # the lone pixel's outline encloses half a pixel
