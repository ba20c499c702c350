"""Graded defects in an evaluation: ROC and precision-recall curves, AUROC, the decision's operating point,
for each defect class against the good class and for each "defective at grade >= g" roll-up, and how far
off the wrong grades are.

Pure: class indices, score rows and the grade scales in, curves out (the report draws them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from inspectloop.errors import require
from inspectloop.evaluate.metrics import json_float

CURVE_POINTS = 60  # points kept per stored curve: enough to redraw it, small enough for metrics.json


@dataclass(frozen=True)
class OperatingPoint:
    """Where the evaluated decision sits on a curve: the share of positives it catches, the share of
    negatives it flags (false alarms; false rejects when the negatives are good parts), its precision."""

    recall: float
    false_positive_rate: float
    precision: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"recall": _figure(self.recall), "false_positive_rate": _figure(self.false_positive_rate),
                "precision": _figure(self.precision)}


@dataclass(frozen=True)
class Curve:
    """One detection problem of the evaluation: ``positives`` vs ``negatives`` ranked by a score."""

    name: str  # "major vs good", "scratch >= major"
    kind: str  # class (a defect class against the good class) | rollup (grade >= g against everything else)
    positives: int
    negatives: int
    auroc: float | None  # None when one side has no images
    average_precision: float | None
    roc: tuple[np.ndarray, np.ndarray]  # false positive rate, true positive rate
    pr: tuple[np.ndarray, np.ndarray]  # recall, precision
    operating_point: OperatingPoint | None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "positives": self.positives, "negatives": self.negatives,
                "auroc": _figure(self.auroc), "average_precision": _figure(self.average_precision),
                "operating_point": None if self.operating_point is None else self.operating_point.to_dict(),
                "roc": {"false_positive_rate": _thin(self.roc[0]), "true_positive_rate": _thin(self.roc[1])},
                "pr": {"recall": _thin(self.pr[0]), "precision": _thin(self.pr[1])}}

    def brief(self) -> dict[str, Any]:
        """The figures without the curve points (run metrics, the model card)."""
        return {key: value for key, value in self.to_dict().items() if key not in ("roc", "pr")}


@dataclass(frozen=True)
class GradedEvaluation:
    """Every curve, and the wrong grades by how many steps they are off (images of one scale or good)."""

    curves: tuple[Curve, ...]
    off_by_one: int
    off_by_more: int  # a minor called critical, a critical called good: the confusions that matter

    def to_dict(self) -> dict[str, Any]:
        return {"curves": [c.to_dict() for c in self.curves], "grade_confusions": self._confusions()}

    def brief(self) -> dict[str, Any]:
        return {"curves": [c.brief() for c in self.curves], "grade_confusions": self._confusions()}

    def _confusions(self) -> dict[str, int]:
        return {"one_step": self.off_by_one, "more_than_one_step": self.off_by_more}


def graded_evaluation(truth: Sequence[int], scores: np.ndarray, predicted: Sequence[int], class_names: Sequence[str],
                      grades: Mapping[str, tuple[str, int]], good: int | None) -> GradedEvaluation | None:
    """The curves of a graded evaluation, or None when no class is graded or there is no good class.

    ``scores``: one row of class probabilities per image; ``predicted``: the evaluated decision (class
    index) per image; ``grades``: ``class -> (scale, grade)`` of the graded classes.
    """
    if good is None or not any(name in grades for name in class_names):
        return None
    y, chosen = np.asarray(truth), np.asarray(predicted)
    curves = []
    for c, name in enumerate(class_names):
        if c != good:
            keep = (y == c) | (y == good)
            curves.append(_curve(f"{name} vs {class_names[good]}", "class", y[keep] == c, scores[keep, c],
                                 chosen[keep] != good))
    for scale in sorted({s for s, _ in grades.values()}):
        ranked = sorted((g, n) for n, (s, g) in grades.items() if s == scale and n in class_names)
        for grade, name in ranked:
            members = [class_names.index(n) for g, n in ranked if g >= grade]
            curves.append(_curve(f"{scale} >= {name}", "rollup", np.isin(y, members), scores[:, members].sum(1),
                                 np.isin(chosen, members)))
    one, more = _grade_steps(y, chosen, class_names, grades, good)
    return GradedEvaluation(tuple(curves), one, more)


def _curve(name: str, kind: str, positive: np.ndarray, score: np.ndarray, flagged: np.ndarray) -> Curve:
    metrics = require("sklearn.metrics", "train", package="scikit-learn")
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if not n_pos or not n_neg:
        empty = (np.zeros(0), np.zeros(0))
        return Curve(name, kind, n_pos, n_neg, None, None, empty, empty, None)
    fpr, tpr, _ = metrics.roc_curve(positive, score)
    precision, recall, _ = metrics.precision_recall_curve(positive, score)
    caught = int((flagged & positive).sum())
    point = OperatingPoint(caught / n_pos, float((flagged & ~positive).sum() / n_neg),
                           caught / int(flagged.sum()) if flagged.any() else None)
    return Curve(name, kind, n_pos, n_neg, float(metrics.roc_auc_score(positive, score)),
                 float(metrics.average_precision_score(positive, score)), (fpr, tpr), (recall, precision), point)


def _grade_steps(y: np.ndarray, chosen: np.ndarray, class_names: Sequence[str], grades: Mapping[str, tuple[str, int]],
                 good: int) -> tuple[int, int]:
    """Wrong grades one step off and more than one step off (the good class is grade 0 of every scale)."""
    def level(index: int) -> tuple[str | None, int] | None:
        if index == good:
            return None, 0
        return grades.get(class_names[index])  # type: ignore[return-value]

    one = more = 0
    for t, p in zip(y, chosen):
        a, b = level(int(t)), level(int(p))
        if a is None or b is None or t == p or (a[0] and b[0] and a[0] != b[0]):
            continue
        steps = abs(a[1] - b[1])
        one, more = one + (steps == 1), more + (steps > 1)
    return one, more


def _figure(value: float | None) -> float | None:
    """A figure for JSON: undefined (None, NaN) is null."""
    return None if value is None else json_float(value)


def _thin(values: np.ndarray) -> list[float]:
    """At most CURVE_POINTS evenly spaced values, the ends kept."""
    if len(values) > CURVE_POINTS:
        values = values[np.unique(np.linspace(0, len(values) - 1, CURVE_POINTS).round().astype(int))]
    return [round(float(v), 4) for v in values]
