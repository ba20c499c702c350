"""What a line meets on one group of images (a held-out session, a camera): the pure figures.

Top-class decisions (no review band): a good image decided as any defect class is a false reject; a
defective image decided good is an escape. Used by leave-one-group-out evaluation
(:mod:`inspectloop.evaluate.crossval`) and by the adaptation benchmark.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class GroupFigures:
    """One group's figures. ``per_class_recall`` holds None for a class with no image in the group (and
    ``macro_recall`` averages the classes present); ``good_reject_rate`` is None without good images,
    ``escape_rate`` None without defective ones (or without a good class)."""

    count: int
    macro_recall: float | None
    per_class_recall: dict[str, float | None]
    good: int
    good_rejects: int
    defective: int
    escapes: int

    @property
    def good_reject_rate(self) -> float | None:
        return self.good_rejects / self.good if self.good else None

    @property
    def escape_rate(self) -> float | None:
        return self.escapes / self.defective if self.defective else None

    @property
    def missing_classes(self) -> list[str]:
        """Classes with no image in the group (their recall cannot be measured on it)."""
        return [name for name, recall in self.per_class_recall.items() if recall is None]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form, rates included."""
        return {"count": self.count, "macro_recall": self.macro_recall, "per_class_recall": self.per_class_recall,
                "good": self.good, "good_rejects": self.good_rejects, "good_reject_rate": self.good_reject_rate,
                "defective": self.defective, "escapes": self.escapes, "escape_rate": self.escape_rate}


def group_figures(labels: np.ndarray, predicted: np.ndarray, class_names: Sequence[str],
                  good_index: int | None) -> GroupFigures:
    """The figures of top-class decisions ``predicted`` (class indices) against ``labels`` on one group."""
    labels, predicted = np.asarray(labels), np.asarray(predicted)
    if labels.shape != predicted.shape:
        raise ValueError(f"labels and predictions differ in shape: {labels.shape} vs {predicted.shape}")
    recalls: dict[str, float | None] = {}
    for c, name in enumerate(class_names):
        mask = labels == c
        recalls[name] = float(np.mean(predicted[mask] == c)) if mask.any() else None
    present = [r for r in recalls.values() if r is not None]
    if good_index is None:
        good_mask = np.zeros(labels.shape, dtype=bool)
        defect_mask = good_mask
    else:
        good_mask, defect_mask = labels == good_index, labels != good_index
    return GroupFigures(
        count=int(labels.size), macro_recall=float(np.mean(present)) if present else None, per_class_recall=recalls,
        good=int(good_mask.sum()), good_rejects=int(np.sum(predicted[good_mask] != good_index)),
        defective=int(defect_mask.sum()), escapes=int(np.sum(predicted[defect_mask] == good_index)))
