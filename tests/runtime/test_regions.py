"""Regions: boxes, masks and a heatmap as validated arrays, with a JSON form that reads back exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest

from inspectloop.runtime import Regions
from inspectloop.runtime.regions import mask_from_runs, mask_to_runs

SIZE = (64, 48)  # width, height


def detections(**changes: object) -> dict[str, object]:
    fields: dict[str, object] = {"image_size": SIZE, "class_ids": np.array([1, 2]), "scores": np.array([0.9, 0.4]),
                                 "boxes": np.array([[0.0, 0.0, 10.0, 12.0], [30.5, 20.0, 64.0, 48.0]])}
    return {**fields, **changes}


def masks(count: int = 2, height: int = 12, width: int = 16) -> np.ndarray:
    grid = np.zeros((count, height, width), dtype=bool)
    for k in range(count):
        grid[k, k:k + 3, 2 * k:2 * k + 5] = True
    return grid


def round_trip(regions: Regions) -> Regions:
    return Regions.from_dict(json.loads(json.dumps(regions.to_dict())))


@pytest.mark.parametrize("fields", [
    detections(),
    detections(masks=masks()),
    detections(boxes=None, masks=masks()),
    {"image_size": SIZE, "heatmap": np.linspace(0, 1, 12 * 16, dtype=np.float32).reshape(12, 16)},
    detections(heatmap=np.full((3, 4), 0.25)),
    detections(class_ids=np.zeros(0, dtype=int), scores=np.zeros(0), boxes=np.zeros((0, 4))),  # nothing found
], ids=["boxes", "boxes and masks", "masks", "heatmap", "boxes and heatmap", "no boxes"])
def test_regions_read_back_from_json_exactly(fields: dict[str, object]) -> None:
    regions = Regions(**fields)  # type: ignore[arg-type]
    again = round_trip(regions)
    assert again.image_size == regions.image_size and len(again) == len(regions)
    for name in ("class_ids", "scores", "boxes", "masks", "heatmap"):
        original, read = getattr(regions, name), getattr(again, name)
        assert (original is None) == (read is None), name
        if original is not None:
            np.testing.assert_array_equal(read.reshape(original.shape), original, err_msg=name)


def test_regions_are_read_only_copies() -> None:
    boxes = np.array([[0.0, 0.0, 10.0, 12.0]], dtype=np.float32)
    regions = Regions(image_size=SIZE, class_ids=np.array([0]), scores=np.array([0.5], dtype=np.float32), boxes=boxes)
    boxes[0, 0] = 5.0
    assert regions.boxes is not None and regions.boxes[0, 0] == 0.0
    with pytest.raises(ValueError, match="read-only"):
        regions.boxes[0, 0] = 1.0


@pytest.mark.parametrize(("fields", "message"), [
    ({"image_size": SIZE}, "regions need boxes, masks or a heatmap"),
    (detections(image_size=(64,)), r"image_size must be \(width, height\)"),
    (detections(image_size=(64.0, 48)), r"image_size must be \(width, height\)"),
    (detections(class_ids=None), "boxes and masks need class_ids and scores"),
    (detections(scores=None), "boxes and masks need class_ids and scores"),
    (detections(boxes=np.zeros((2, 3))), r"boxes must be \(2, 4\)"),
    (detections(boxes=np.array([[0, 0, 10, 12], [40, 20, 30, 48]])), "x0 <= x1"),
    (detections(boxes=np.array([[0, 0, 10, 12], [30, 20, 65, 48]])), "inside the 64 x 48 image"),
    (detections(boxes=np.array([[0, 0, 10, np.nan], [30, 20, 64, 48]])), "finite"),
    (detections(scores=np.array([0.9, 1.2])), r"scores must be \(2,\) numbers from 0 to 1"),
    (detections(class_ids=np.array([1, -1])), "non-negative class indices"),
    (detections(class_ids=np.array([1.0, 2.0])), "non-negative class indices"),
    (detections(masks=masks(3)), "boxes and masks must describe the same items"),
    (detections(masks=masks().astype(np.uint8)), r"masks must be \(2, H, W\) booleans"),
    (detections(heatmap=np.zeros(5)), r"heatmap must be a finite \(H, W\) array"),
    (detections(heatmap=np.array([[0.0, np.inf]])), "heatmap must be a finite"),
    ({"image_size": SIZE, "heatmap": np.zeros((2, 2)), "class_ids": np.array([0])}, "there are none"),
])
def test_regions_refuse_malformed_arrays(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Regions(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("mask", [
    np.zeros((3, 4), dtype=bool), np.ones((3, 4), dtype=bool), masks(1)[0], ~masks(1)[0],
], ids=["empty", "full", "blob", "first pixel set"])
def test_mask_runs_round_trip(mask: np.ndarray) -> None:
    runs = mask_to_runs(mask)
    assert sum(runs["counts"]) == mask.size and runs["size"] == list(mask.shape)
    np.testing.assert_array_equal(mask_from_runs(runs), mask)


def test_mask_runs_that_do_not_fill_the_mask_are_refused() -> None:
    with pytest.raises(ValueError, match=r"add up to 5 pixels, expected 3 x 4"):
        mask_from_runs({"size": [3, 4], "counts": [2, 3]})
