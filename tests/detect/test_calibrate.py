"""Per-class box thresholds and review floors chosen on validation frames."""

from __future__ import annotations

import numpy as np
import pytest

from inspectloop.detect.calibrate import calibrate_boxes, ranked_matches
from inspectloop.detect.metrics import Boxes, summary

TRUE = np.array([[10, 10, 30, 30]], dtype=np.float32)
FAR = np.array([[60, 60, 80, 80]], dtype=np.float32)


def frames(hits: list[float], misses: list[float], label: int = 0) -> tuple[list[Boxes], list[Boxes]]:
    """One frame per score: a true box of ``label``, predicted on it (``hits``) or elsewhere (``misses``)."""
    truth, predicted = [], []
    for score, box in [(s, TRUE) for s in hits] + [(s, FAR) for s in misses]:
        truth.append(Boxes(TRUE, np.array([label])))
        predicted.append(Boxes(box, np.array([label]), np.array([score], dtype=np.float32)))
    return truth, predicted


def test_boxes_are_ranked_by_score_with_whether_they_matched() -> None:
    truth, predicted = frames([0.9, 0.5], [0.7])
    scores, hits, support = ranked_matches(truth, predicted, 0)
    assert scores.tolist() == pytest.approx([0.9, 0.7, 0.5]) and hits.tolist() == [True, False, True] and support == 3


def test_reject_at_the_target_precision_and_review_down_to_the_target_recall() -> None:
    # ranked: 0.95 0.9 0.85 0.8 hit, 0.7 miss, 0.6 hit, 0.5 miss, 0.4 hit, 0.3 miss; 11 true boxes (2 never found)
    hits, misses = [0.95, 0.9, 0.85, 0.8, 0.6, 0.4], [0.7, 0.5, 0.3]
    truth, predicted = frames(hits, misses)
    truth += [Boxes(TRUE, np.array([0]))] * 2
    predicted += [Boxes(np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros(0, np.float32))] * 2
    result = calibrate_boxes(truth, predicted, ["scratch"], precision=0.8, recall=0.5, fallback={"scratch": 0.25},
                             min_boxes=5)
    # precision of the top k: 1, 1, 1, 1, .8, .83, .71, .75, .67 -> lowest cut at >= .8 is 0.6 (5/6)
    assert result.thresholds["scratch"] == pytest.approx(0.6)
    # recall of the top k over 11: 4/11 at 0.8, 5/11 at 0.6, 6/11 at 0.4 -> first >= .5 is 0.4
    assert result.review_from["scratch"] == pytest.approx(0.4)
    details = result.details["scratch"]
    assert details["how"] == "calibrated" and details["precision_at_reject"] >= 0.8 and details["recall_at_review"] >= 0.5


@pytest.mark.parametrize(("hits", "misses", "precision", "recall", "expected"), [
    ([0.9] * 10, [], 0.9, 0.95, (0.9, 0.9)),                  # perfect: no band
    ([0.3] * 10, [0.9] * 10, 0.9, 0.5, (1.0, 0.3)),             # precision never reached: nothing rejects on its own
    ([0.9] * 5, [], 0.9, 0.95, (0.25, 0.25)),                   # 5 true boxes < min_boxes: the configured threshold
])
def test_edge_cases(hits: list[float], misses: list[float], precision: float, recall: float,
                    expected: tuple[float, float]) -> None:
    truth, predicted = frames(hits, misses)
    result = calibrate_boxes(truth, predicted, ["scratch"], precision=precision, recall=recall,
                             fallback={"scratch": 0.25}, min_boxes=10)
    assert (result.thresholds["scratch"], result.review_from["scratch"]) == pytest.approx(expected)


def test_recall_out_of_reach_reviews_every_box_found() -> None:
    truth, predicted = frames([0.9] * 8, [])
    truth += [Boxes(TRUE, np.array([0]))] * 4  # 12 true boxes, 8 found: recall 0.67 at best
    predicted += [Boxes(FAR, np.array([0]), np.array([0.2], np.float32))] * 4
    result = calibrate_boxes(truth, predicted, ["scratch"], precision=0.9, recall=0.95, fallback={"scratch": 0.5})
    assert result.thresholds["scratch"] == pytest.approx(0.9) and result.review_from["scratch"] == pytest.approx(0.2)


def test_classes_are_calibrated_apart_and_configured_ones_kept() -> None:
    t0, p0 = frames([0.9] * 10, [0.95] * 2, label=0)
    t1, p1 = frames([0.4] * 10, [], label=1)
    result = calibrate_boxes(t0 + t1, p0 + p1, ["scratch", "pit"], precision=0.8, recall=0.9,
                             fallback={"scratch": 0.3, "pit": 0.7}, fixed=("pit",))
    assert result.thresholds == pytest.approx({"scratch": 0.9, "pit": 0.7})
    assert result.review_from == pytest.approx({"scratch": 0.9, "pit": 0.7})
    assert result.details["pit"]["how"] == "configured"


@pytest.mark.parametrize("target", [0.0, 1.5])
def test_targets_must_be_rates(target: float) -> None:
    with pytest.raises(ValueError, match="must be in \\(0, 1\\]"):
        calibrate_boxes([], [], ["scratch"], precision=target, recall=0.9, fallback={"scratch": 0.3})


def test_the_test_summary_counts_frames_sent_to_review() -> None:
    truth, predicted = frames([0.9, 0.5], [])
    truth.append(Boxes(np.zeros((0, 4), np.float32), np.zeros(0, np.int64)))
    predicted.append(Boxes(FAR, np.array([0]), np.array([0.5], np.float32)))
    review = summary(truth, predicted, ["scratch"], {"scratch": 0.8}, {"scratch": 0.4})["review"]
    assert review == {"review_rate": pytest.approx(2 / 3, abs=1e-4), "defect_recall_with_review": 1.0,
                      "false_review_rate": 1.0}
