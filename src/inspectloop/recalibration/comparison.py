"""Per-class recall and precision of re-annotated production against the accepted baseline.

A recalibration cycle labels a sample of recent production and asks: has any class lost more than
the trigger (default 3 points) of recall since the model was accepted? Each class gets its recall and
precision now with 95% Wilson intervals, the change in points, and ``dropped`` when its recall fell by
more than the trigger. When a class has too few labelled images for its interval to resolve a drop
of the trigger's size, the class carries a plain-language note saying how many would be needed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from inspectloop.evaluate.metrics import RECALL_CONFIDENCE, confusion_matrix, wilson_interval
from inspectloop.errors import RecalibrationError

DEFAULT_TRIGGER = 0.03
_MAX_LABELS = 10_000_000

RETRAIN_POLICIES = ("drop", "drift")
MIN_DRIFT_LABELS = 20  # a drift-opened cycle's labelled sample is worth training on from this many images
REASON_DROP = "recall drop"
REASON_DRIFT = "drift: learning the new appearance before recall drops"


@dataclass(frozen=True)
class ClassComparison:
    """One class now versus its baseline. Rates in [0, 1] (``nan`` when undefined); deltas in points.

    ``dropped``: recall fell by more than the trigger (point estimate; see ``confirmed``).
    ``confirmed``: the whole recall interval lies below the baseline (the drop is not just noise).
    ``labels_needed``: this class's labelled images needed for the interval's half-width to reach
    the trigger; ``note`` explains, in plain words, when the current count is short of it.
    """

    name: str
    support: int
    predicted: int
    recall: float
    recall_low: float
    recall_high: float
    precision: float
    precision_low: float
    precision_high: float
    baseline_recall: float
    baseline_precision: float
    recall_delta_points: float
    precision_delta_points: float
    dropped: bool
    confirmed: bool
    labels_needed: int | None
    note: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict; ``nan`` becomes ``None``."""
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Comparison:
    """The verdict of one cycle's comparison: per-class figures and whether to retrain."""

    classes: tuple[ClassComparison, ...]
    trigger: float
    labels: int
    retrain: bool
    reasons: tuple[str, ...]
    notes: tuple[str, ...]

    @property
    def worst_recall_drop_points(self) -> float:
        """The largest recall drop in points over the classes with a defined recall (0 if none dropped)."""
        drops = [-c.recall_delta_points for c in self.classes if not math.isnan(c.recall_delta_points)]
        return max([0.0, *drops])

    def by_name(self, name: str) -> ClassComparison:
        """The comparison of class ``name``."""
        for entry in self.classes:
            if entry.name == name:
                return entry
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return {"trigger_points": round(100 * self.trigger, 6), "labels": self.labels, "retrain": self.retrain,
                "reasons": list(self.reasons), "notes": list(self.notes),
                "worst_recall_drop_points": self.worst_recall_drop_points,
                "classes": [c.to_dict() for c in self.classes]}


def compare_to_baseline(baseline: Mapping[str, Mapping[str, Any]], y_true: Sequence[Any], y_pred: Sequence[Any],
                        class_names: Sequence[str], trigger: float = DEFAULT_TRIGGER, *,
                        confidence: float = RECALL_CONFIDENCE, require_confirmed: bool = False) -> Comparison:
    """Compare labelled production (``y_true`` from reviewers, ``y_pred`` from the model) with ``baseline``.

    ``baseline`` maps class name to ``{"recall": r, "precision": p, "support": n}`` (precision and
    support optional; rates in [0, 1]). Labels are class names or indices into ``class_names``.
    ``retrain`` is True when any class ``dropped`` (or, with ``require_confirmed``, dropped and
    ``confirmed``). RecalibrationError on empty or mismatched input, unknown labels or a bad trigger.
    """
    names = _names(class_names)
    if not 0.0 < trigger < 1.0:
        raise RecalibrationError(f"the trigger must be a recall drop between 0 and 1, got {trigger}",
                                 "use e.g. 0.03 for 3 points")
    true, pred = _indices(y_true, names, "true labels"), _indices(y_pred, names, "predictions")
    if len(true) != len(pred):
        raise RecalibrationError(f"{len(true)} true labels but {len(pred)} predictions",
                                 "pass one model prediction per labelled image, in the same order")
    if len(true) == 0:
        raise RecalibrationError("no labelled images to compare", "annotate the recalibration sample first")
    unknown = sorted(set(baseline) - set(names))
    if unknown:
        raise RecalibrationError(f"the baseline names classes the model does not know: {unknown}",
                                 "compare against the baseline of the same model's class list")
    confusion = confusion_matrix(true, pred, len(names))
    classes = tuple(_compare_class(i, name, confusion, baseline.get(name), trigger, confidence)
                    for i, name in enumerate(names))
    triggering = [c for c in classes if c.dropped and (c.confirmed or not require_confirmed)]
    reasons = tuple(f"{c.name}: recall {100 * c.recall:.1f}% vs {100 * c.baseline_recall:.1f}% at acceptance "
                    f"({c.recall_delta_points:+.1f} points, 95% interval {100 * c.recall_low:.1f}-"
                    f"{100 * c.recall_high:.1f}%, {c.support} labelled)" for c in triggering)
    notes = tuple(c.note for c in classes if c.note)
    return Comparison(classes, trigger, len(true), bool(triggering), reasons, notes)


def labels_needed(baseline_rate: float, trigger: float = DEFAULT_TRIGGER,
                  confidence: float = RECALL_CONFIDENCE) -> int:
    """Smallest count n whose Wilson interval around ``baseline_rate`` has half-width <= ``trigger``."""
    if not 0.0 <= baseline_rate <= 1.0 or not 0.0 < trigger < 1.0:
        raise RecalibrationError(f"need a rate in [0, 1] and a trigger in (0, 1), got {baseline_rate}, {trigger}",
                                 "pass rates as fractions, e.g. 0.96 and 0.03")
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)

    def half_width(n: int) -> float:
        p = baseline_rate
        return z * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n)) / (1.0 + z * z / n)

    low, high = 1, 1
    while half_width(high) > trigger:
        high *= 2
        if high > _MAX_LABELS:
            return _MAX_LABELS
    while low < high:  # half_width falls monotonically with n
        mid = (low + high) // 2
        low, high = (mid + 1, high) if half_width(mid) > trigger else (low, mid)
    return low


def _compare_class(i: int, name: str, confusion: np.ndarray, base: Mapping[str, Any] | None, trigger: float,
                   confidence: float) -> ClassComparison:
    tp, support, predicted = int(confusion[i, i]), int(confusion[i].sum()), int(confusion[:, i].sum())
    recall = tp / support if support else math.nan
    precision = tp / predicted if predicted else math.nan
    r_low, r_high = wilson_interval(tp, support, confidence)
    p_low, p_high = wilson_interval(tp, predicted, confidence)
    base_recall = _rate(base, "recall", name)
    base_precision = _rate(base, "precision", name)
    recall_delta = 100.0 * (recall - base_recall)
    precision_delta = 100.0 * (precision - base_precision)
    dropped = bool(recall_delta < -100.0 * trigger - 1e-9)
    confirmed = bool(dropped and r_high < base_recall)
    needed = None if math.isnan(base_recall) else labels_needed(base_recall, trigger, confidence)
    share = support / int(confusion.sum())
    return ClassComparison(name, support, predicted, recall, r_low, r_high, precision, p_low, p_high, base_recall,
                           base_precision, recall_delta, precision_delta, dropped, confirmed, needed,
                           _note(name, support, share, r_low, r_high, base_recall, needed, trigger, int(confusion.sum())))


def _note(name: str, support: int, share: float, low: float, high: float, base_recall: float,
          needed: int | None, trigger: float, total: int) -> str | None:
    points = f"{100 * trigger:.0f}-point"
    if math.isnan(base_recall):
        return f"{name}: no baseline recall to compare with; record one at acceptance"
    if support == 0:
        return (f"{name}: none of the {total} labelled images is a {name}, so its recall cannot be judged; "
                f"about {needed} labelled {name} images are needed to tell a {points} drop")
    if needed is not None and support < needed:
        width = 100 * (high - low) / 2
        at_share = f" (about {math.ceil(needed / share)} labelled images at its current {share:.0%} share)"
        return (f"{name}: only {support} labelled {name} images, so recall is known to about +/-{width:.0f} points; "
                f"too few to tell a {points} drop. About {needed} are needed{at_share}")
    return None


def _rate(base: Mapping[str, Any] | None, key: str, name: str) -> float:
    if base is None or base.get(key) is None:
        return math.nan
    value = float(base[key])
    if not 0.0 <= value <= 1.0:
        raise RecalibrationError(f"baseline {key} of {name!r} is {value}; rates must lie in [0, 1]",
                                 "pass fractions (0.96), not percentages (96)")
    return value


def _names(class_names: Sequence[str]) -> tuple[str, ...]:
    names = tuple(str(n) for n in class_names)
    if not names or len(set(names)) != len(names):
        raise RecalibrationError(f"class names must be a non-empty list without repeats, got {list(class_names)!r}",
                                 "pass the model's class_names")
    return names


def _indices(labels: Sequence[Any], names: tuple[str, ...], what: str) -> np.ndarray:
    lookup = {name: i for i, name in enumerate(names)}
    out = np.empty(len(labels), dtype=np.int64)
    for j, label in enumerate(labels):
        if isinstance(label, (int, np.integer)) and not isinstance(label, bool):
            if not 0 <= int(label) < len(names):
                raise RecalibrationError(f"{what}: index {label} at position {j} is outside the {len(names)} classes",
                                         "use indices into class_names or the class names themselves")
            out[j] = int(label)
        elif str(label) in lookup:
            out[j] = lookup[str(label)]
        else:
            raise RecalibrationError(f"{what}: unknown class {label!r} at position {j}",
                                     f"known classes: {', '.join(names)}")
    return out


def default_retrain_on(trigger_source: str) -> str:
    """The retraining policy a cycle gets unless told: "drift" for cycles a drift alert opened, else "drop"."""
    return "drift" if trigger_source == "drift" else "drop"


def retrain_reason(comparison: Comparison, *, trigger_source: str, retrain_on: str | None = None,
                   min_labels: int = MIN_DRIFT_LABELS) -> str | None:
    """Why a cycle retrains, or None when it should not.

    "drop" (the default for manual and calendar cycles): only when the comparison shows a class lost
    more than the trigger. "drift" (the default for drift-opened cycles): also when a drift alert opened
    the cycle and at least ``min_labels`` images were labelled; the labels are already paid for, and the
    model learns the drifted appearance before recall falls. Acceptance and the promotion gate judge the
    retrained model either way.
    """
    policy = retrain_on or default_retrain_on(trigger_source)
    if policy not in RETRAIN_POLICIES:
        raise RecalibrationError(f"unknown retraining policy {policy!r}", f"use {' or '.join(RETRAIN_POLICIES)}")
    if comparison.retrain:
        return REASON_DROP
    if policy == "drift" and trigger_source == "drift" and comparison.labels >= min_labels:
        return REASON_DRIFT
    return None
