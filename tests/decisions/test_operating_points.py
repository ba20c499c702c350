"""Per-class operating points: a hand-computed threshold, small-sample notes, per-severity targets."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from inspectloop.decisions import examples_needed, operating_point, operating_point_at, target_recalls
from inspectloop.errors import DatasetError, InspectloopError, LabelError
from inspectloop.evaluate.metrics import wilson_interval

# Two classes; the column of interest is P(scratch) = column 1.
SCRATCH = [0.9, 0.8, 0.6, 0.3]             # 4 scratches
OTHERS = [0.85, 0.7, 0.5, 0.2, 0.1, 0.05]  # 6 other images


def two_class(scores: list[float], labels: list[int]) -> tuple[np.ndarray, np.ndarray]:
    s = np.array(scores)
    return np.stack([1.0 - s, s], axis=1), np.array(labels)


def test_hand_computed_operating_point() -> None:
    probs, labels = two_class(SCRATCH + OTHERS, [1] * 4 + [0] * 6)
    # 75 % of 4 scratches = 3 must be flagged: the third-highest scratch score, 0.6, is the threshold.
    # Flagged at >= 0.6: scratches 0.9, 0.8, 0.6 and others 0.85, 0.7 -> recall 3/4, precision 3/5.
    point = operating_point(probs, labels, 1, 0.75)
    assert point.threshold == pytest.approx(0.6)
    assert (point.recall, point.precision) == (0.75, 0.6)
    assert (point.positives, point.flagged, point.false_alarms, point.negatives) == (4, 5, 2, 6)
    assert point.false_alarm_rate == pytest.approx(2 / 6)
    assert point.recall_ci == wilson_interval(3, 4) and point.precision_ci == wilson_interval(3, 5)
    assert point.small_sample and "only 4 examples" in point.note
    # a full recall takes the lowest scratch score, 0.3, and every other image above it
    full = operating_point(probs, labels, 1, 1.0)
    assert (full.threshold, full.recall, full.false_alarms) == (pytest.approx(0.3), 1.0, 3)


def test_ties_at_the_threshold_are_flagged_together() -> None:
    probs, labels = two_class([0.9, 0.6, 0.6, 0.6, 0.6], [1, 1, 1, 0, 0])
    point = operating_point(probs, labels, 1, 0.5)  # 2 of 3 needed; the second-highest is 0.6, shared
    assert point.threshold == 0.6 and point.recall == 1.0 and point.false_alarms == 2


def test_enough_examples_clears_the_small_sample_flag() -> None:
    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.uniform(0.5, 1.0, 500), rng.uniform(0.0, 0.6, 500)])
    probs, labels = two_class(scores.tolist(), [1] * 500 + [0] * 500)
    point = operating_point(probs, labels, 1, 0.95)
    assert not point.small_sample
    assert point.recall >= 0.95 and point.recall_ci[0] < point.recall < point.recall_ci[1]
    assert point.flagged == point.positives * point.recall + point.false_alarms
    assert json.loads(json.dumps(point.to_dict(), allow_nan=False))["small_sample"] is False


def test_small_sample_note_gives_the_honest_range() -> None:
    probs, labels = two_class([0.9] * 12 + [0.1] * 5, [1] * 12 + [0] * 5)
    point = operating_point(probs, labels, 1, 0.99)
    low = wilson_interval(12, 12)[0]
    assert point.recall == 1.0 and point.small_sample
    assert f"cannot be told from {low:.0%}" in point.note and "381 examples" in point.note


def test_examples_needed() -> None:
    assert examples_needed(0.99) == 381  # the all-hit Wilson bound n / (n + z^2) reaches 0.99 at n = 381
    assert wilson_interval(381, 381)[0] >= 0.99 > wilson_interval(380, 380)[0]
    assert examples_needed(1.0) is None


def test_class_without_calibration_images() -> None:
    probs, labels = two_class([0.2, 0.3], [0, 0])
    with pytest.raises(DatasetError, match="no images"):
        operating_point(probs, labels, 1, 0.9)


@pytest.mark.parametrize(("class_index", "target"), [(2, 0.9), (-1, 0.9), (1, 0.0), (1, 1.5), (1, math.nan)])
def test_bad_class_or_target(class_index: int, target: float) -> None:
    probs, labels = two_class([0.2, 0.8], [0, 1])
    with pytest.raises(InspectloopError):
        operating_point(probs, labels, class_index, target)


NAMES = ("good", "crack", "scratch", "stain")
SEVERITIES = {"crack": "critical", "scratch": "major", "stain": "minor"}


def test_targets_by_severity_and_per_class() -> None:
    assert target_recalls(NAMES, SEVERITIES, "good") == {"crack": 0.99, "scratch": 0.97, "stain": 0.95}
    custom = target_recalls(NAMES, SEVERITIES, "good", per_class={"stain": 0.9}, per_severity={
        "critical": 0.995, "major": 0.98, "minor": 0.96})
    assert custom == {"crack": 0.995, "scratch": 0.98, "stain": 0.9}
    # no good class: every class is a defect class
    assert target_recalls(("crack", "stain"), {"crack": "critical"}, None, per_class={"stain": 0.8}) == {
        "crack": 0.99, "stain": 0.8}


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"good_class": "fine"}, "good class 'fine'"),
    ({"per_class": {"dent": 0.9}}, "dent"),
    ({"per_class": {"good": 0.9}}, "good"),
    ({"severities": {"crack": "critical", "scratch": "major"}}, "'stain' has no severity"),
    ({"severities": {**SEVERITIES, "stain": "cosmetic"}}, "cosmetic"),
    ({"per_class": {"crack": 1.2}}, "(0, 1]"),
])
def test_bad_targets(kwargs: dict, words: str) -> None:
    arguments = {"class_names": NAMES, "severities": SEVERITIES, "good_class": "good", **kwargs}
    with pytest.raises(LabelError) as info:
        target_recalls(**arguments)
    assert words in info.value.message and info.value.hint


def test_a_threshold_is_measured_on_another_set_the_same_way() -> None:
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.7, 0.3], [0.3, 0.7]])
    labels = np.array([0, 1, 1, 1, 0])
    chosen = operating_point(probs, labels, 1, 0.6)
    again = operating_point_at(probs, labels, 1, chosen.threshold, 0.6)
    assert again == chosen
    on_test = operating_point_at(probs[:2], np.array([0, 0]), 1, chosen.threshold, 0.6)
    assert on_test.positives == 0 and np.isnan(on_test.recall) and on_test.note == "no images of this class"
