"""Pure geometry for region annotations: IoU, clipping to the image, and masks to outlines."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from inspectloop.errors import require

Point = tuple[float, float]
BoxTuple = tuple[float, float, float, float]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (N, 4) with every box in ``b`` (M, 4), both x0, y0, x1, y1: an (N, M) array."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    left = np.maximum(a[:, None, 0], b[None, :, 0])
    top = np.maximum(a[:, None, 1], b[None, :, 1])
    right = np.minimum(a[:, None, 2], b[None, :, 2])
    bottom = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(right - left, 0, None) * np.clip(bottom - top, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def clip_box(box: BoxTuple, width: int, height: int) -> BoxTuple | None:
    """``box`` cut to the image; None when nothing of it (no area) lies inside."""
    x0, y0, x1, y1 = max(box[0], 0.0), max(box[1], 0.0), min(box[2], float(width)), min(box[3], float(height))
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def clip_polygon(points: Sequence[Point], width: int, height: int) -> list[Point]:
    """``points`` cut to the image rectangle (Sutherland-Hodgman); fewer than 3 points when nothing is inside."""
    edges = [(0, 0.0, True), (0, float(width), False), (1, 0.0, True), (1, float(height), False)]
    result = [(float(x), float(y)) for x, y in points]
    for axis, limit, keep_above in edges:
        if not result:
            break
        inside = (lambda p: p[axis] >= limit) if keep_above else (lambda p: p[axis] <= limit)
        clipped: list[Point] = []
        for index, current in enumerate(result):
            previous = result[index - 1]
            if inside(current) != inside(previous):
                clipped.append(_crossing(previous, current, axis, limit))
            if inside(current):
                clipped.append(current)
        result = clipped
    return result


def _crossing(p: Point, q: Point, axis: int, limit: float) -> Point:
    t = (limit - p[axis]) / (q[axis] - p[axis])
    x, y = p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])
    return (limit, y) if axis == 0 else (x, limit)


def inside_image(box: BoxTuple, width: int, height: int) -> bool:
    return box[0] >= 0 and box[1] >= 0 and box[2] <= width and box[3] <= height


def mask_to_polygons(mask: np.ndarray, *, min_area: float = 1.0) -> tuple[list[list[Point]], int]:
    """The outer outline of each connected part of a boolean mask (H, W), in pixel coordinates.

    Outlines run through pixel edges' midpoints (contourpy at level 0.5), so an outline's bounds are
    the part's pixel extent. Holes are ignored (the outline covers them). Returns the outlines and
    how many specks smaller than ``min_area`` square pixels were left out.
    """
    contourpy = require("contourpy", "regions")

    padded = np.pad(np.asarray(mask, dtype=bool), 1).astype(np.float64)  # parts touching the border close
    generator = contourpy.contour_generator(z=padded, fill_type=contourpy.FillType.OuterOffset)
    points, offsets = generator.filled(0.5, 1.5)
    outlines: list[list[Point]] = []
    specks = 0
    for ring_points, ring_offsets in zip(points, offsets, strict=True):
        outer = ring_points[ring_offsets[0]:ring_offsets[1]]
        if len(outer) > 1 and np.array_equal(outer[0], outer[-1]):
            outer = outer[:-1]
        outline = [(float(x) - 0.5, float(y) - 0.5) for x, y in outer]  # -1 padding, +0.5 pixel centre
        if len(outline) < 3 or shoelace(outline) < min_area:
            specks += 1
            continue
        outlines.append(outline)
    return outlines, specks


def shoelace(points: Sequence[Point]) -> float:
    """The area enclosed by ``points`` (absolute)."""
    n = len(points)
    return abs(sum(points[i][0] * points[(i + 1) % n][1] - points[(i + 1) % n][0] * points[i][1]
                   for i in range(n))) / 2.0
