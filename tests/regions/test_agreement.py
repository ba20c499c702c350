"""Annotator agreement: one-to-one IoU matching per class (Hungarian, not greedy)."""

from __future__ import annotations

import numpy as np
import pytest

from inspectloop.domain import Box, Region
from inspectloop.regions.agreement import agreement, match_boxes


def region(who: str, cls: str, box: tuple[float, float, float, float], image: str = "a" * 64) -> Region:
    return Region(sha256=image, class_name=cls, annotator=who, box=Box(x0=box[0], y0=box[1], x1=box[2], y1=box[3]))


def test_matching_maximises_total_iou_rather_than_taking_the_best_pair_first() -> None:
    # Greedy would pair a0 with b0 (IoU 0.82) and leave a1 unmatched (a1-b1 is 0); Hungarian pairs both.
    a = np.array([[0, 0, 10, 10], [0, 0, 7, 10]], dtype=float)
    b = np.array([[0, 0, 8.5, 10], [0, 0, 11, 10]], dtype=float)
    pairs = sorted(match_boxes(a, b))
    assert [(i, j) for i, j, _ in pairs] == [(0, 1), (1, 0)]
    assert all(iou >= 0.5 for _, _, iou in pairs)


def test_pairs_below_the_threshold_are_not_matches() -> None:
    assert match_boxes(np.array([[0, 0, 10, 10.0]]), np.array([[6, 0, 16, 10.0]])) == []


def test_per_class_counts_on_images_both_annotated() -> None:
    regions = [
        region("ana", "pit", (0, 0, 10, 10)), region("bo", "pit", (1, 0, 10, 10)),
        region("ana", "pit", (50, 50, 60, 60)),
        region("ana", "scratch", (20, 20, 30, 30)), region("bo", "pit", (20, 20, 30, 30)),  # class differs
        region("ana", "pit", (0, 0, 5, 5), image="b" * 64),  # bo never annotated image b: not compared
    ]
    [pair] = agreement(regions)
    assert (pair.a, pair.b, pair.images) == ("ana", "bo", 1)
    pit, scratch = pair.per_class["pit"], pair.per_class["scratch"]
    assert (pit.matched, pit.only_a, pit.only_b) == (1, 1, 1)
    assert pit.mean_iou == pytest.approx(0.9)
    assert (scratch.matched, scratch.only_a, scratch.only_b) == (0, 1, 0)
    assert pair.overall.f1 == pytest.approx(2 / 5)
    assert pair.to_dict()["per_class"]["pit"]["mean_iou"] == 0.9
