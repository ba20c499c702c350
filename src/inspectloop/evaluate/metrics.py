"""Classification metrics on a labelled test set, in pure numpy.

Conventions, chosen so that nothing is hidden behind a convenient zero:

- A class that is never predicted has an *undefined* precision: ``nan`` here, ``None`` in JSON.
- A class with no test samples (support 0) has an undefined recall (and recall interval).
- F1 is ``2·TP / (2·TP + FP + FN)``: 0.0 for a class that has samples but is never predicted
  (every sample is missed), ``nan`` only when the class is neither present nor predicted.
- Macro averages are taken over the classes with support > 0 only, ignoring undefined values.
  A present class that is never predicted therefore drops out of macro precision but still pulls
  macro recall and macro F1 down (its recall and F1 are 0), so the failure stays visible.
- Per-class recall carries a Wilson score interval, because defect classes often have only a
  handful of test images and a bare "100 % recall" on 4 images means little.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from inspectloop.errors import DatasetError

RECALL_CONFIDENCE = 0.95


@dataclass(frozen=True)
class ClassMetrics:
    """One class's figures. Undefined values are ``nan`` (see the module docstring)."""

    name: str
    precision: float
    recall: float
    f1: float
    support: int
    predicted: int
    recall_low: float
    recall_high: float

    def to_dict(self) -> dict[str, object]:
        """JSON-safe form; ``nan`` becomes ``None``."""
        return {
            "name": self.name,
            "precision": json_float(self.precision),
            "recall": json_float(self.recall),
            "recall_low": json_float(self.recall_low),
            "recall_high": json_float(self.recall_high),
            "f1": json_float(self.f1),
            "support": self.support,
            "predicted": self.predicted,
        }


@dataclass(frozen=True, eq=False)
class ClassificationMetrics:
    """Confusion matrix and derived figures for one set of predictions.

    ``confusion[i, j]`` counts samples of true class ``i`` predicted as class ``j``; it is read-only.
    Macro figures average over classes with support > 0 (undefined values ignored).
    """

    class_names: tuple[str, ...]
    confusion: np.ndarray
    per_class: tuple[ClassMetrics, ...]
    macro_precision: float
    macro_recall: float
    macro_f1: float
    accuracy: float
    count: int

    def __post_init__(self) -> None:
        k = len(self.class_names)
        if self.confusion.shape != (k, k) or len(self.per_class) != k:
            raise DatasetError(
                f"metrics for {k} classes need a {k}x{k} confusion matrix and {k} per-class entries, "
                f"got {self.confusion.shape} and {len(self.per_class)}",
                hint="build metrics with classification_metrics()",
            )

    @property
    def macro_classes(self) -> tuple[str, ...]:
        """The classes the macro averages are taken over (those with support > 0)."""
        return tuple(c.name for c in self.per_class if c.support > 0)

    def to_dict(self) -> dict[str, object]:
        """JSON-safe form: plain ints, floats and lists; ``nan`` becomes ``None``."""
        return {
            "class_names": list(self.class_names),
            "count": self.count,
            "macro_recall": json_float(self.macro_recall),
            "macro_precision": json_float(self.macro_precision),
            "macro_f1": json_float(self.macro_f1),
            "accuracy": json_float(self.accuracy),
            "macro_averaged_over": list(self.macro_classes),
            "recall_confidence": RECALL_CONFIDENCE,
            "confusion": [[int(v) for v in row] for row in self.confusion],
            "per_class": [c.to_dict() for c in self.per_class],
        }


def classification_metrics(
    y_true: Sequence[int], y_pred: Sequence[int], class_names: Sequence[str]
) -> ClassificationMetrics:
    """Confusion matrix, per-class precision/recall/F1 (with recall interval) and macro figures.

    ``y_true`` and ``y_pred`` are class indices into ``class_names``, one pair per test image.
    Raises :class:`~inspectloop.errors.DatasetError` on empty, mismatched or out-of-range input.
    """
    names = _check_class_names(class_names)
    true = _check_labels(y_true, "y_true", len(names))
    pred = _check_labels(y_pred, "y_pred", len(names))
    if true.size != pred.size:
        raise DatasetError(
            f"y_true has {true.size} labels but y_pred has {pred.size}",
            hint="pass exactly one prediction per test image, in the same order as the true labels",
        )
    confusion = confusion_matrix(true, pred, len(names))
    per_class = tuple(_class_metrics(name, confusion, i) for i, name in enumerate(names))
    present = [c for c in per_class if c.support > 0]
    return ClassificationMetrics(
        class_names=names,
        confusion=confusion,
        per_class=per_class,
        macro_precision=_mean_defined(c.precision for c in present),
        macro_recall=_mean_defined(c.recall for c in present),
        macro_f1=_mean_defined(c.f1 for c in present),
        accuracy=float(np.trace(confusion)) / int(true.size),
        count=int(true.size),
    )


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Read-only int64 counts ``[true, predicted]`` for already validated index arrays."""
    flat = np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
    confusion = flat.astype(np.int64).reshape(num_classes, num_classes)
    confusion.setflags(write=False)
    return confusion


def wilson_interval(successes: int, n: int, confidence: float = RECALL_CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval (no continuity correction) for ``successes / n``; ``(nan, nan)`` when ``n`` is 0.

    Computed by SciPy's ``binomtest(...).proportion_ci(method="wilson")``, imported here because
    ``scipy.stats`` takes about 0.7 s to load and most importers of this module never need it.
    """
    if not 0.0 < confidence < 1.0:
        raise DatasetError(
            f"confidence must lie strictly between 0 and 1, got {confidence}",
            hint="use e.g. 0.95 for a 95 % interval",
        )
    if n < 0 or not 0 <= successes <= n:
        raise DatasetError(
            f"cannot compute an interval for {successes} successes out of {n}",
            hint="successes must be between 0 and n, and n must not be negative",
        )
    if n == 0:
        return (math.nan, math.nan)
    from scipy.stats import binomtest

    interval = binomtest(int(successes), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return (float(interval.low), float(interval.high))


def _class_metrics(name: str, confusion: np.ndarray, i: int) -> ClassMetrics:
    tp = int(confusion[i, i])
    support = int(confusion[i, :].sum())
    predicted = int(confusion[:, i].sum())
    low, high = wilson_interval(tp, support)
    return ClassMetrics(
        name=name,
        precision=_ratio(tp, predicted),
        recall=_ratio(tp, support),
        f1=_ratio(2 * tp, support + predicted),  # 2TP / (2TP + FP + FN)
        support=support,
        predicted=predicted,
        recall_low=low,
        recall_high=high,
    )


def _check_class_names(class_names: Sequence[str]) -> tuple[str, ...]:
    names = tuple(class_names)
    if not names:
        raise DatasetError("no class names given", hint="pass the model's class names in index order")
    if any(not isinstance(n, str) or not n for n in names):
        raise DatasetError("class names must be non-empty strings", hint=f"got {list(names)!r}")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DatasetError(
            f"class names repeat: {', '.join(duplicates)}",
            hint="each class index must have its own, unique name",
        )
    return names


def _check_labels(labels: Sequence[int], what: str, num_classes: int) -> np.ndarray:
    values = np.asarray(labels)
    if values.size == 0:
        raise DatasetError(f"{what} is empty", hint="evaluate on at least one labelled image")
    if values.ndim != 1:
        raise DatasetError(
            f"{what} must be a flat list of class indices, got an array of shape {values.shape}",
            hint="pass one class index per image (use argmax over scores first)",
        )
    if values.dtype.kind not in "iu":
        raise DatasetError(
            f"{what} must hold integer class indices, got values of type {values.dtype}",
            hint="map class names to their index in class_names first",
        )
    bad = values[(values < 0) | (values >= num_classes)]
    if bad.size:
        raise DatasetError(
            f"{what} holds label {int(bad[0])}, outside the {num_classes} classes (0..{num_classes - 1})",
            hint="class_names must list every class the labels and the model can use, in index order",
        )
    return values.astype(np.int64)


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else math.nan


def _mean_defined(values: Iterable[float]) -> float:
    defined = [v for v in values if not math.isnan(v)]
    return float(sum(defined) / len(defined)) if defined else math.nan


def json_float(value: float) -> float | None:
    """A metric for JSON: NaN (undefined, e.g. precision of a never-predicted class) becomes null."""
    return None if math.isnan(value) else float(value)
