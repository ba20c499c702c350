"""Per-class operating points: the threshold on P(class) that reaches a target recall with the fewest false alarms.

An image is flagged as class ``c`` when ``P(c) >= threshold``. The threshold is the highest one whose
recall on the calibration split meets the target, so it raises as few false alarms as that split allows.

The counts behind these figures are small (a defect class often has a few dozen calibration images),
so every recall and precision carries a 95 % Wilson interval, and an operating point says so in words
when its support is under ``SMALL_SAMPLE`` or its interval still reaches below the target: with 12
examples, a measured 100 % recall is consistent with a true recall of 76 %.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from types import MappingProxyType

import numpy as np

from inspectloop.decisions.inputs import check_labels, check_probs
from inspectloop.errors import DatasetError, LabelError
from inspectloop.evaluate.metrics import RECALL_CONFIDENCE, json_float, wilson_interval

SMALL_SAMPLE = 30
DEFAULT_RECALL_BY_SEVERITY: Mapping[str, float] = MappingProxyType({"critical": 0.99, "major": 0.97, "minor": 0.95})


@dataclass(frozen=True)
class OperatingPoint:
    """One class's threshold and what it achieved on the calibration split.

    ``recall_ci`` and ``precision_ci`` are 95 % Wilson intervals; ``precision`` is ``nan`` when
    nothing is flagged. ``note`` explains, in words, when the evidence is too thin for the target.
    """

    class_index: int
    threshold: float
    target_recall: float
    recall: float
    recall_ci: tuple[float, float]
    precision: float
    precision_ci: tuple[float, float]
    positives: int
    flagged: int
    false_alarms: int
    negatives: int
    small_sample: bool
    note: str

    @property
    def false_alarm_rate(self) -> float:
        """Share of the other classes' images flagged as this class (``nan`` when there are none)."""
        return self.false_alarms / self.negatives if self.negatives else math.nan

    def to_dict(self) -> dict[str, object]:
        """JSON-safe form; undefined values become ``None``."""
        return {
            "class_index": self.class_index,
            "threshold": self.threshold,
            "target_recall": self.target_recall,
            "recall": self.recall,
            "recall_ci": [json_float(v) for v in self.recall_ci],
            "precision": json_float(self.precision),
            "precision_ci": [json_float(v) for v in self.precision_ci],
            "interval_confidence": RECALL_CONFIDENCE,
            "positives": self.positives,
            "flagged": self.flagged,
            "false_alarms": self.false_alarms,
            "negatives": self.negatives,
            "false_alarm_rate": json_float(self.false_alarm_rate),
            "small_sample": self.small_sample,
            "note": self.note,
        }


def operating_point(probs: np.ndarray, labels: np.ndarray, class_index: int, target_recall: float) -> OperatingPoint:
    """The highest threshold on ``P(class_index)`` whose calibration recall is at least ``target_recall``.

    ``probs`` are calibrated probabilities of the calibration split (one row per image) and ``labels``
    their true class indices. Raises :class:`~inspectloop.errors.DatasetError` when the class has no
    calibration images, and :class:`~inspectloop.errors.InspectloopError` on bad input.
    """
    p = check_probs(probs)
    y = check_labels(labels, p.shape[0], p.shape[1])
    c = _check_class_index(class_index, p.shape[1])
    target = _check_recall(target_recall, f"target recall of class {c}")
    scores, positive = p[:, c], y == c
    positives = int(positive.sum())
    if positives == 0:
        raise DatasetError(f"class {c} has no images in the calibration split, so no threshold can be chosen",
                           hint="add labelled images of this class to the calibration split")
    needed = min(positives, max(1, math.ceil(target * positives - 1e-9)))
    threshold = float(np.sort(scores[positive])[::-1][needed - 1])
    return _at(p, y, c, threshold, target)


def operating_point_at(probs: np.ndarray, labels: np.ndarray, class_index: int, threshold: float,
                       target_recall: float) -> OperatingPoint:
    """What a given threshold on ``P(class_index)`` achieves on a labelled set (e.g. the frozen test
    set), judged against ``target_recall``; a set without images of the class gives ``nan`` recall."""
    p = check_probs(probs)
    y = check_labels(labels, p.shape[0], p.shape[1])
    return _at(p, y, _check_class_index(class_index, p.shape[1]), float(threshold),
               _check_recall(target_recall, "target recall"))


def _at(p: np.ndarray, y: np.ndarray, c: int, threshold: float, target: float) -> OperatingPoint:
    positive, flagged = y == c, p[:, c] >= threshold
    positives, flagged_count = int(positive.sum()), int(flagged.sum())
    hits = int((flagged & positive).sum())
    recall_ci = wilson_interval(hits, positives)
    return OperatingPoint(
        class_index=c,
        threshold=threshold,
        target_recall=target,
        recall=hits / positives if positives else math.nan,
        recall_ci=recall_ci,
        precision=hits / flagged_count if flagged_count else math.nan,
        precision_ci=wilson_interval(hits, flagged_count),
        positives=positives,
        flagged=flagged_count,
        false_alarms=flagged_count - hits,
        negatives=int(p.shape[0] - positives),
        small_sample=positives < SMALL_SAMPLE,
        note=_evidence_note(hits, positives, target, recall_ci[0]) if positives else "no images of this class",
    )


def target_recalls(
    class_names: Sequence[str],
    severities: Mapping[str, str],
    good_class: str | None,
    per_class: Mapping[str, float] | None = None,
    per_severity: Mapping[str, float] = DEFAULT_RECALL_BY_SEVERITY,
) -> dict[str, float]:
    """The target recall of every defect class: its own setting in ``per_class``, else its severity's.

    ``good_class`` (``None`` when the dataset has no good class) gets no target. Raises
    :class:`~inspectloop.errors.LabelError` for unknown classes or severities and for a defect class
    that has neither its own target nor a severity.
    """
    names = list(class_names)
    overrides = dict(per_class or {})
    if good_class is not None and good_class not in names:
        raise LabelError(f"the good class '{good_class}' is not one of the classes {names}",
                         hint="pass good_class=None for a dataset without a good class")
    unknown = sorted(set(overrides) - set(names) | ({good_class} & set(overrides)))
    if unknown:
        raise LabelError(f"per-class recall targets name classes that are not defect classes: {unknown}",
                         hint=f"use defect classes from {names}; the good class takes no recall target")
    targets: dict[str, float] = {}
    for name in names:
        if name == good_class:
            continue
        if name in overrides:
            targets[name] = _check_recall(overrides[name], f"target recall of class '{name}'")
        else:
            targets[name] = _check_recall(_severity_target(name, severities, per_severity),
                                          f"target recall of severity '{severities[name]}'")
    return targets


def examples_needed(target_recall: float, confidence: float = RECALL_CONFIDENCE) -> int | None:
    """How many examples, none missed, put the Wilson lower bound at ``target_recall`` (``None`` for 100 %)."""
    target = _check_recall(target_recall, "target recall")
    if target >= 1.0:
        return None
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    needed = max(1, math.ceil(target * z * z / (1.0 - target) - 1e-9))  # all-hit Wilson bound is n/(n+z²)
    return needed


def _evidence_note(hits: int, positives: int, target: float, low: float) -> str:
    needed = examples_needed(target)
    showing = (f"showing {target:.0%} needs at least {needed} examples with none missed"
               if needed is not None else "no finite sample can show a 100% recall")
    if positives < SMALL_SAMPLE:
        return (f"only {positives} examples: the measured recall of {hits / positives:.0%} is consistent with "
                f"a true recall as low as {low:.0%} (95% Wilson interval), so a {target:.0%} target cannot be "
                f"told from {low:.0%}; {showing}")
    if low < target:
        return (f"the 95% interval of the recall reaches down to {low:.1%}, below the {target:.1%} target; "
                f"{showing}")
    return ""


def _severity_target(name: str, severities: Mapping[str, str], per_severity: Mapping[str, float]) -> float:
    severity = severities.get(name)
    if severity is None:
        raise LabelError(f"class '{name}' has no severity and no recall target of its own",
                         hint="give it a severity (critical, major or minor) or a per-class target")
    if severity not in per_severity:
        raise LabelError(f"class '{name}' has severity '{severity}', which has no recall target",
                         hint=f"use one of {sorted(per_severity)} or add a target for '{severity}'")
    return per_severity[severity]


def _check_class_index(class_index: int, num_classes: int) -> int:
    if isinstance(class_index, bool) or not isinstance(class_index, (int, np.integer)) \
            or not 0 <= class_index < num_classes:
        raise DatasetError(f"class index {class_index!r} is outside the {num_classes} classes (0..{num_classes - 1})",
                           hint="pass the column of the class in the probability array")
    return int(class_index)


def _check_recall(value: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not 0.0 < value <= 1.0:
        raise LabelError(f"{what} must be a share in (0, 1], got {value!r}", hint="e.g. 0.99 for 99 %")
    return float(value)
