"""Classification metrics: a hand-computed case, undefined values, bad input, Wilson intervals."""

from __future__ import annotations

import json
import math
from statistics import NormalDist

import numpy as np
import pytest

from inspectloop.errors import DatasetError
from inspectloop.evaluate.metrics import classification_metrics, wilson_interval

NAMES = ("good", "scratch", "dent")

# 10 images: 4 good, 2 scratch, 4 dent.
Y_TRUE = [0, 0, 0, 0, 1, 1, 2, 2, 2, 2]
Y_PRED = [0, 0, 0, 1, 1, 0, 2, 2, 1, 2]
# Confusion [true, predicted]:
#            good scratch dent
#   good       3     1     0    support 4
#   scratch    1     1     0    support 2
#   dent       0     1     3    support 4
#   predicted  4     3     3
# good:    P = 3/4, R = 3/4, F1 = 2*3 / (4 + 4) = 3/4
# scratch: P = 1/3, R = 1/2, F1 = 2*1 / (2 + 3) = 2/5
# dent:    P = 3/3, R = 3/4, F1 = 2*3 / (4 + 3) = 6/7
# macro P = (3/4 + 1/3 + 1) / 3 = 25/36; macro R = (3/4 + 1/2 + 3/4) / 3 = 2/3
# macro F1 = (3/4 + 2/5 + 6/7) / 3 = 281/420; accuracy = 7/10


def test_hand_computed_case() -> None:
    m = classification_metrics(Y_TRUE, Y_PRED, NAMES)
    assert m.confusion.tolist() == [[3, 1, 0], [1, 1, 0], [0, 1, 3]]
    assert m.confusion.dtype == np.int64
    expected = {  # name: (precision, recall, f1, support, predicted)
        "good": (3 / 4, 3 / 4, 3 / 4, 4, 4),
        "scratch": (1 / 3, 1 / 2, 2 / 5, 2, 3),
        "dent": (1.0, 3 / 4, 6 / 7, 4, 3),
    }
    for c in m.per_class:
        assert (c.precision, c.recall, c.f1, c.support, c.predicted) == expected[c.name]
    assert m.macro_precision == pytest.approx(25 / 36, abs=1e-12)
    assert m.macro_recall == pytest.approx(2 / 3, abs=1e-12)
    assert m.macro_f1 == pytest.approx(281 / 420, abs=1e-12)
    assert m.accuracy == 7 / 10
    assert m.count == 10
    assert m.class_names == NAMES


def test_recall_interval_per_class() -> None:
    m = classification_metrics(Y_TRUE, Y_PRED, NAMES)
    for c in m.per_class:
        tp = round(c.recall * c.support)
        assert (c.recall_low, c.recall_high) == wilson_interval(tp, c.support)
        assert c.recall_low <= c.recall <= c.recall_high


def test_numpy_input_and_read_only_confusion() -> None:
    m = classification_metrics(np.array(Y_TRUE, dtype=np.uint8), np.array(Y_PRED), NAMES)
    assert m.accuracy == 7 / 10
    with pytest.raises(ValueError):
        m.confusion[0, 0] = 99


def test_never_predicted_class_has_undefined_precision() -> None:
    # scratch has 2 images but is never predicted: precision undefined, recall and F1 are 0.
    m = classification_metrics([0, 0, 1, 1, 2], [0, 0, 0, 0, 2], NAMES)
    scratch = m.per_class[1]
    assert math.isnan(scratch.precision)
    assert (scratch.recall, scratch.f1, scratch.predicted) == (0.0, 0.0, 0)
    # Macro precision over the defined values (good 2/4, dent 1/1); macro recall still counts scratch's 0.
    assert m.macro_precision == pytest.approx((0.5 + 1.0) / 2)
    assert m.macro_recall == pytest.approx((1.0 + 0.0 + 1.0) / 3)
    as_dict = m.to_dict()
    assert as_dict["per_class"][1]["precision"] is None
    assert as_dict["per_class"][1]["recall"] == 0.0


def test_class_without_test_images_is_left_out_of_macro() -> None:
    # dent has no test images: recall undefined; predicted once (a false alarm), so F1 = 0.
    m = classification_metrics([0, 0, 1, 1], [0, 2, 1, 1], NAMES)
    dent = m.per_class[2]
    assert math.isnan(dent.recall) and math.isnan(dent.recall_low) and math.isnan(dent.recall_high)
    assert dent.f1 == 0.0 and dent.precision == 0.0
    assert m.macro_classes == ("good", "scratch")
    assert m.macro_recall == pytest.approx((0.5 + 1.0) / 2)
    as_dict = m.to_dict()
    assert as_dict["per_class"][2]["recall"] is None
    assert as_dict["macro_averaged_over"] == ["good", "scratch"]
    json.dumps(as_dict, allow_nan=False)  # JSON-safe


def test_class_neither_present_nor_predicted_is_all_undefined() -> None:
    m = classification_metrics([0, 1], [0, 1], NAMES)
    dent = m.per_class[2]
    assert all(math.isnan(v) for v in (dent.precision, dent.recall, dent.f1))
    assert m.macro_recall == 1.0 and m.macro_f1 == 1.0
    json.dumps(m.to_dict(), allow_nan=False)


@pytest.mark.parametrize(
    ("y_true", "y_pred", "names", "message"),
    [
        ([], [], NAMES, "empty"),
        ([0, 1], [0], NAMES, "y_true has 2 labels but y_pred has 1"),
        ([0, 3], [0, 1], NAMES, "label 3"),
        ([0, 1], [0, -1], NAMES, "label -1"),
        ([0.0, 1.0], [0, 1], NAMES, "integer class indices"),
        ([[0, 1]], [[0, 1]], NAMES, "flat list"),
        ([0], [0], (), "no class names"),
        ([0], [0], ("good", "good"), "repeat"),
        ([0], [0], ("good", ""), "non-empty strings"),
    ],
)
def test_bad_input_raises_dataset_error(
    y_true: list[object], y_pred: list[object], names: tuple[str, ...], message: str
) -> None:
    with pytest.raises(DatasetError, match=message) as caught:
        classification_metrics(y_true, y_pred, names)
    assert caught.value.hint


def test_wilson_known_value() -> None:
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4)
    assert high == pytest.approx(0.9433, abs=1e-4)


def _wilson_by_formula(k: int, n: int, confidence: float) -> tuple[float, float]:
    """The score interval without continuity correction, as written by hand before SciPy computed it."""
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    centre = (k / n + z * z / (2 * n)) / (1.0 + z * z / n)
    margin = z * math.sqrt(k / n * (1.0 - k / n) / n + z * z / (4 * n * n)) / (1.0 + z * z / n)
    return (max(0.0, centre - margin), min(1.0, centre + margin))


@pytest.mark.parametrize(("k", "n", "confidence"), [(0, 5, 0.95), (3, 7, 0.90), (8, 10, 0.95), (380, 380, 0.95),
                                                    (1, 1000, 0.99), (57, 60, 0.95)])
def test_wilson_is_the_uncorrected_score_interval(k: int, n: int, confidence: float) -> None:
    assert wilson_interval(k, n, confidence) == pytest.approx(_wilson_by_formula(k, n, confidence), abs=1e-12)


def test_wilson_edges() -> None:
    assert wilson_interval(0, 5)[0] == 0.0
    assert wilson_interval(5, 5)[1] == 1.0
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    narrow, wide = wilson_interval(8, 10, 0.90), wilson_interval(8, 10, 0.99)
    assert wide[0] < narrow[0] and wide[1] > narrow[1]


@pytest.mark.parametrize(
    ("successes", "n", "confidence"), [(11, 10, 0.95), (-1, 10, 0.95), (1, 10, 1.0), (1, 10, 0.0)]
)
def test_wilson_bad_arguments(successes: int, n: int, confidence: float) -> None:
    with pytest.raises(DatasetError):
        wilson_interval(successes, n, confidence)
