"""Detector pieces on tiny synthetic inputs: assignment, loss, augmentation, tiling, merging, metrics."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image

from inspectloop.detect.assign import assign, box_iou
from inspectloop.detect.augment import BoxAugment, clip_boxes, mosaic, zoom
from inspectloop.detect.data import make_frame, training_view, training_zoom
from inspectloop.detect.loss import giou_loss
from inspectloop.detect.metrics import Boxes, coco_map, image_rates
from inspectloop.runtime.detection import merge_across_tiles, nms, select, tile_starts, tiles_of


@pytest.mark.parametrize(("length", "tile", "overlap", "expected"), [
    (200, 256, 64, [0]), (256, 256, 64, [0]), (300, 256, 64, [0, 44]), (4096, 512, 64, list(range(0, 3585, 512)))])
def test_tiles_cover_the_frame_with_the_overlap(length: int, tile: int, overlap: int, expected: list[int]) -> None:
    starts = tile_starts(length, tile, overlap)
    assert starts[0] == 0 and starts[-1] + tile >= length
    assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))
    if expected[-1] == 3584:
        assert len(starts) == 9
    else:
        assert starts == expected


def test_small_frames_are_resized_whole_and_large_ones_tiled_at_native_scale() -> None:
    small = tiles_of(Image.new("L", (50, 40)), 64, 16)
    assert len(small) == 1 and small[0][1].size == (64, 64) and small[0][0].scale_x == 50 / 64
    large = tiles_of(Image.new("L", (150, 40)), 64, 16)
    assert [t.x for t, _ in large] == [0, 43, 86] and all(c.size == (64, 64) for _, c in large)


def test_nms_keeps_the_best_of_overlapping_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], dtype=np.float32)
    assert nms(boxes, np.array([0.5, 0.9, 0.3]), 0.5).tolist() == [1, 2]


def test_select_is_class_wise() -> None:
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], dtype=np.float32)
    scores = np.array([[0.9, 0.0], [0.0, 0.8]], dtype=np.float32)
    kept_boxes, kept_scores, classes = select(boxes, scores, 0.1, 0.5, 10)
    assert classes.tolist() == [0, 1] and kept_scores.tolist() == pytest.approx([0.9, 0.8])


def test_a_box_cut_by_a_tile_border_comes_back_as_one() -> None:
    halves = np.array([[10, 10, 64, 20], [40, 10, 90, 20], [40, 10, 90, 20]], dtype=np.float32)
    boxes, scores, classes = merge_across_tiles(halves, np.array([0.9, 0.7, 0.6], np.float32),
                                                np.array([0, 0, 1]), np.array([0, 1, 1]), 0.5,
                                                np.array([True, False, False]))
    assert boxes.tolist()[0] == [10, 10, 90, 20] and classes.tolist() == [0, 1] and len(boxes) == 2


def test_assignment_reaches_a_box_thinner_than_a_stride() -> None:
    points = torch.tensor([[4.0, 4.0], [12.0, 4.0], [4.0, 12.0], [12.0, 12.0], [28.0, 28.0]])
    strides = torch.full((5,), 8.0)
    scores = torch.full((5, 2), 0.1)
    boxes = torch.tensor([[0.0, 0.0, 16.0, 16.0]] * 5)
    result = assign(scores, boxes, points, strides, torch.tensor([[9.0, 0.0, 11.0, 16.0]]), torch.tensor([1]),
                    top_k=2)
    assert result.positive.sum() == 2 and not result.positive[4]
    assert (result.target_scores[:, 0] == 0).all() and (result.target_scores[result.positive, 1] > 0).all()


def test_assignment_of_an_image_without_boxes_is_all_background() -> None:
    result = assign(torch.rand(4, 3), torch.rand(4, 4), torch.rand(4, 2), torch.ones(4), torch.zeros((0, 4)),
                    torch.zeros(0, dtype=torch.int64))
    assert not result.positive.any() and result.target_scores.sum() == 0


def test_giou_is_zero_for_equal_boxes_and_grows_with_distance() -> None:
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0]] * 3)
    b = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0], [30.0, 0.0, 40.0, 10.0]])
    loss = giou_loss(a, b)
    assert loss[0] == pytest.approx(0, abs=1e-6) and loss[0] < loss[1] < loss[2] and loss[2] > 1
    assert box_iou(a[:1], b).squeeze(0).tolist() == pytest.approx([1.0, 1 / 3, 0.0], abs=1e-6)


def test_flips_and_zoom_move_the_boxes_with_the_pixels() -> None:
    image = Image.new("L", (64, 64), 0)
    image.paste(255, (10, 20, 30, 24))
    box = np.array([[10, 20, 30, 24]], dtype=np.float32)
    for seed in range(6):
        out, boxes, labels = BoxAugment(strength=0.0, flips=True)(image, box, np.array([0]), random.Random(seed))
        x0, y0, x1, y1 = boxes[0].round().astype(int)
        pixels = np.asarray(out)
        assert pixels[y0:y1, x0:x1].min() == 255 and pixels.sum() == 255 * 80
    zoomed, boxes, labels = zoom(image, box, np.array([0]), 2.0, random.Random(0))
    x0, y0, x1, y1 = boxes[0].round().astype(int)
    assert np.asarray(zoomed)[y0 + 1:y1 - 1, x0 + 1:x1 - 1].min() > 200


def test_boxes_mostly_cut_away_are_dropped() -> None:
    boxes, labels = clip_boxes(np.array([[-8, 0, 2, 10], [-2, 0, 8, 10]], np.float32), np.array([0, 1]), 64, 64)
    assert labels.tolist() == [1] and boxes.tolist() == [[0, 0, 8, 10]]


def test_a_mosaic_keeps_each_views_boxes_on_its_pixels_and_drops_the_mostly_cut() -> None:
    size = 64
    views = [(Image.new("L", (size, size), 50 * (n + 1)), np.array([[0, 0, size, size]], np.float32),
              np.array([n])) for n in range(4)]  # each view one grey, one box over all of it
    for seed in range(12):
        image, boxes, labels = mosaic(views, random.Random(seed))
        pixels = np.asarray(image)
        assert image.size == (size, size) and set(np.unique(pixels)) <= {50, 100, 150, 200}
        for box, label in zip(boxes.round().astype(int), labels, strict=True):
            x0, y0, x1, y1 = box
            assert (pixels[y0:y1, x0:x1] == 50 * (label + 1)).all()  # the box lies on its own view's pixels
            assert (x1 - x0) * (y1 - y0) == (pixels == 50 * (label + 1)).sum()  # and holds all of them
        shown = {int(v) // 50 - 1 for v in np.unique(pixels)}
        big = {n for n in shown if (pixels == 50 * (n + 1)).sum() >= 0.3 * size * size}
        assert big <= set(labels.tolist()) <= shown  # a view mostly cut away loses its box
    with pytest.raises(ValueError, match="4 views"):
        mosaic(views[:3], random.Random(0))


def test_training_views_of_a_large_frame_are_tiles_with_their_boxes() -> None:
    image = Image.new("L", (300, 120), 0)
    image.paste(255, (200, 50, 220, 60))
    frame = make_frame(image, np.array([[200, 50, 220, 60]]), np.array([0]), "x", 64)
    assert frame.image.size == (300, 120)
    for seed in range(5):
        tile, boxes, _ = training_view(frame, 64, random.Random(seed))
        assert tile.size == (64, 64)
        for x0, y0, x1, y1 in boxes.round().astype(int):
            assert np.asarray(tile)[y0:y1, x0:x1].min() == 255


def test_a_large_frame_is_held_at_the_runs_tile_scale_with_its_boxes() -> None:
    image = Image.new("L", (300, 120), 0)
    image.paste(255, (200, 50, 220, 60))
    frame = make_frame(image, np.array([[200, 50, 220, 60]]), np.array([0]), "x", 64, tile_scale=1.5)
    assert frame.image.size == (450, 180) and frame.size == (300, 120)
    x0, y0, x1, y1 = frame.boxes[0].round().astype(int)
    assert (x0, y0, x1, y1) == (300, 75, 330, 90) and np.asarray(frame.image)[y0 + 1:y1 - 1, x0 + 1:x1 - 1].min() == 255


@pytest.mark.parametrize(("sizes", "expected"), [
    ([(200, 200)] * 3 + [(4096, 3072)], 1.28),  # crops held at 256: learnt 1.28x larger than native
    ([(4096, 3072)] * 3 + [(200, 200)], 1.0),  # mostly tiled frames: native scale
    ([(256, 128)], 1.0), ([(32, 32)], 8.0), ([], 1.0)])  # the zoom is capped at 8
def test_the_default_tile_scale_is_the_zoom_the_training_images_are_held_at(sizes: list[tuple[int, int]],
                                                                            expected: float) -> None:
    assert training_zoom(sizes, 256) == expected


def test_coco_map_is_100_for_perfect_boxes_and_lower_for_shifted_ones() -> None:
    truth = [Boxes(np.array([[10, 10, 50, 50]], np.float32), np.array([0])),
             Boxes(np.array([[5, 5, 25, 45]], np.float32), np.array([1]))]
    perfect = [Boxes(t.boxes, t.labels, np.array([0.9])) for t in truth]
    assert coco_map(truth, perfect, ["a", "b"])["map50"] == 100.0
    shifted = [Boxes(t.boxes + 12, t.labels, np.array([0.9])) for t in truth]
    result = coco_map(truth, shifted, ["a", "b", "c"])
    assert result["map50"] < 100 and result["per_class"]["c"]["ap50"] is None


def test_image_rates_count_frames_with_and_without_defects() -> None:
    truth = [Boxes(np.array([[0, 0, 5, 5]], np.float32), np.array([0])), Boxes(np.zeros((0, 4), np.float32),
                                                                                np.zeros(0, np.int64))]
    predicted = [Boxes(np.array([[0, 0, 5, 5]], np.float32), np.array([0]), np.array([0.2])),
                 Boxes(np.array([[0, 0, 5, 5]], np.float32), np.array([0]), np.array([0.6]))]
    rates = image_rates(truth, predicted, np.array([0.5]))
    assert rates["defect_recall"] == 0.0 and rates["false_reject_rate"] == 1.0


def test_overlapping_boxes_of_different_tiles_stay_apart_unless_cut_or_mostly_shared() -> None:
    boxes = np.array([[10, 10, 64, 20], [40, 10, 90, 20]], dtype=np.float32)
    merged, _, _ = merge_across_tiles(boxes, np.array([0.9, 0.7], np.float32), np.array([0, 0]), np.array([0, 1]), 0.5)
    assert len(merged) == 2
