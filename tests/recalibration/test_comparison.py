"""Per-class comparison with the accepted baseline: intervals, deltas, the trigger and the small-count note."""

from __future__ import annotations

import math

import pytest

from inspectloop.recalibration import (
    RecalibrationError,
    compare_to_baseline,
    labels_needed,
)

CLASSES = ("good", "scratch", "dent")
BASELINE = {"good": {"recall": 0.99, "precision": 0.98, "support": 900},
            "scratch": {"recall": 0.96, "precision": 0.95, "support": 300},
            "dent": {"recall": 0.95, "precision": 0.97, "support": 300}}


def _labels(per_class: dict[str, tuple[int, dict[str, int]]]) -> tuple[list[str], list[str]]:
    """{true class: (count, {predicted class: count of those})}; the rest predicted correctly."""
    y_true, y_pred = [], []
    for name, (count, wrong) in per_class.items():
        errors = [p for p, n in wrong.items() for _ in range(n)]
        y_true += [name] * count
        y_pred += errors + [name] * (count - len(errors))
    return y_true, y_pred


def test_a_clear_drop_triggers_retraining_with_a_reason() -> None:
    y_true, y_pred = _labels({"good": (500, {"scratch": 5}), "scratch": (400, {"good": 40}),
                              "dent": (400, {"good": 20})})
    result = compare_to_baseline(BASELINE, y_true, y_pred, CLASSES)
    scratch = result.by_name("scratch")
    assert scratch.recall == pytest.approx(0.90)
    assert scratch.recall_delta_points == pytest.approx(-6.0)
    assert scratch.dropped and scratch.confirmed
    assert scratch.recall_low < 0.90 < scratch.recall_high
    assert result.by_name("dent").dropped is False  # 95% recall: no change
    assert result.retrain
    assert result.reasons and result.reasons[0].startswith("scratch: recall 90.0% vs 96.0%")
    assert result.worst_recall_drop_points == pytest.approx(6.0)
    assert result.labels == 1300
    assert result.by_name("good").precision == pytest.approx(495 / (495 + 40 + 20))
    assert result.by_name("good").predicted == 555


def test_no_drop_no_retrain_and_indices_work() -> None:
    y_true = [0] * 300 + [1] * 300 + [2] * 300
    y_pred = list(y_true)
    result = compare_to_baseline(BASELINE, y_true, y_pred, CLASSES)
    assert not result.retrain and result.reasons == ()
    assert result.by_name("good").recall_delta_points == pytest.approx(1.0)
    assert result.by_name("scratch").precision == 1.0


def test_a_drop_exactly_at_the_trigger_does_not_fire() -> None:
    y_true, y_pred = _labels({"scratch": (100, {"good": 7})})  # 93% = 96% - 3 points
    result = compare_to_baseline({"scratch": {"recall": 0.96}}, y_true, y_pred, CLASSES)
    assert not result.by_name("scratch").dropped


def test_small_counts_get_a_plain_note_with_the_labels_needed() -> None:
    y_true, y_pred = _labels({"good": (80, {}), "scratch": (12, {"good": 1}), "dent": (8, {})})
    result = compare_to_baseline(BASELINE, y_true, y_pred, CLASSES)
    scratch = result.by_name("scratch")
    assert scratch.dropped and not scratch.confirmed  # 91.7% point estimate, but the interval spans 96%
    assert scratch.labels_needed == labels_needed(0.96) and scratch.labels_needed > 100
    assert "only 12 labelled scratch images" in scratch.note
    assert f"About {scratch.labels_needed} are needed" in scratch.note
    assert "labelled images at its current 12% share" in scratch.note
    assert result.retrain  # the default rule is the point estimate, as the trigger is written
    assert not compare_to_baseline(BASELINE, y_true, y_pred, CLASSES, require_confirmed=True).retrain


def test_a_class_without_labels_or_baseline_is_explained_not_dropped() -> None:
    y_true, y_pred = _labels({"good": (50, {})})
    result = compare_to_baseline({"good": {"recall": 0.99}}, y_true, y_pred, CLASSES)
    dent = result.by_name("dent")
    assert math.isnan(dent.recall) and not dent.dropped
    assert "no baseline recall" in dent.note
    assert dent.to_dict()["recall"] is None
    no_support = compare_to_baseline(BASELINE, y_true, y_pred, CLASSES).by_name("dent")
    assert "none of the 50 labelled images is a dent" in no_support.note


@pytest.mark.parametrize(("rate", "trigger", "low", "high"), [
    (0.96, 0.03, 150, 180),   # the normal approximation gives 164
    (1.0, 0.03, 55, 70),      # a perfect baseline still needs a few dozen
    (0.5, 0.03, 1000, 1100),
])
def test_labels_needed(rate: float, trigger: float, low: int, high: int) -> None:
    assert low <= labels_needed(rate, trigger) <= high


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"y_true": [], "y_pred": []}, "no labelled images"),
    ({"y_true": ["good"], "y_pred": []}, "1 true labels but 0 predictions"),
    ({"y_true": ["rust"], "y_pred": ["good"]}, "unknown class 'rust'"),
    ({"y_true": [7], "y_pred": [0]}, "index 7"),
    ({"trigger": 3.0}, "trigger"),
    ({"baseline": {"good": {"recall": 96}}}, "rates must lie in"),
    ({"baseline": {"rust": {"recall": 0.9}}}, "does not know"),
    ({"class_names": ()}, "non-empty"),
])
def test_errors(kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"baseline": BASELINE, "y_true": ["good"], "y_pred": ["good"],
                                    "class_names": CLASSES, **kwargs}
    with pytest.raises(RecalibrationError, match=message):
        compare_to_baseline(**arguments)  # type: ignore[arg-type]
