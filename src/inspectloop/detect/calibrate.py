"""Per-class box confidence thresholds and review bands, chosen on validation frames.

For each box class, its predicted boxes on the validation frames are matched (highest score first) to
true boxes of that class at IoU 0.5, and ranked by score. The **reject threshold** is the lowest score
whose boxes at or above it reach the target *precision* (a box that strong is a defect often enough to
reject without a person); the **review floor** is the highest score whose boxes at or above it reach the
target *recall* (missing fewer defects than that needs a person to look at the weaker boxes). Boxes in
between send the frame to review (:class:`inspectloop.runtime.detection.BoxRule`).

Where the precision target is never reached nothing rejects automatically (threshold 1: every box goes
to review); where the recall target is never reached the floor is the weakest box found. A class with
fewer than ``min_boxes`` true validation boxes, or named in ``box_thresholds``, keeps its configured
threshold and no band: a handful of boxes cannot set an operating point.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inspectloop.detect.metrics import Boxes
from inspectloop.runtime.detection import overlap

MIN_BOXES = 10


@dataclass(frozen=True)
class BoxCalibration:
    """Per box class: ``thresholds`` (reject at), ``review_from`` (review from; equal: no band) and
    ``details`` (how each was chosen, with the validation precision and recall at both)."""

    thresholds: dict[str, float]
    review_from: dict[str, float]
    details: dict[str, dict[str, Any]] = field(default_factory=dict)


def ranked_matches(truth: Sequence[Boxes], predicted: Sequence[Boxes], label: int,
                   iou: float = 0.5) -> tuple[np.ndarray, np.ndarray, int]:
    """One class's predicted box scores (M,) from high to low, whether each matched a true box (M,), and
    the number of true boxes of that class. Matching is greedy per image, highest score first."""
    scores, hits, support = [], [], 0
    for gt, dt in zip(truth, predicted):
        true = gt.boxes[gt.labels == label]
        support += len(true)
        mine = np.flatnonzero(dt.labels == label)
        used = np.zeros(len(true), dtype=bool)
        for j in mine[np.argsort(-dt.scores[mine], kind="stable")]:
            free = np.flatnonzero(~used)
            hit = False
            if free.size:
                ious = overlap(dt.boxes[j], true[free], "iou")
                if ious.max() >= iou:
                    used[free[ious.argmax()]] = hit = True
            scores.append(float(dt.scores[j]))
            hits.append(hit)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    return np.asarray(scores, dtype=np.float64)[order], np.asarray(hits, dtype=bool)[order], support


def calibrate_boxes(truth: Sequence[Boxes], predicted: Sequence[Boxes], class_names: Sequence[str], *,
                    precision: float, recall: float, fallback: Mapping[str, float],
                    fixed: Sequence[str] = (), min_boxes: int = MIN_BOXES) -> BoxCalibration:
    """Each class's reject threshold and review floor from validation ``truth`` and ``predicted`` boxes
    (predictions kept down to a low floor); see the module docstring. ``fallback`` holds each class's
    configured threshold, used as is for classes in ``fixed`` and those with too few true boxes."""
    for name, value in (("precision", precision), ("recall", recall)):
        if not 0.0 < value <= 1.0:
            raise ValueError(f"target {name} must be in (0, 1], got {value!r}")
    thresholds, review, details = {}, {}, {}
    for label, name in enumerate(class_names):
        scores, hits, support = ranked_matches(truth, predicted, label)
        if name in fixed or support < min_boxes:
            thresholds[name] = review[name] = float(fallback[name])
            details[name] = {"how": "configured" if name in fixed else f"configured: {support} true boxes on "
                             f"validation frames, fewer than {min_boxes}", "true_boxes": support}
            continue
        thresholds[name], review[name] = _operating_points(scores, hits, support, precision, recall)
        details[name] = {"how": "calibrated", "true_boxes": support, "target_precision": precision,
                         "target_recall": recall,
                         **_rates_at(scores, hits, support, thresholds[name], "at_reject"),
                         **_rates_at(scores, hits, support, review[name], "at_review")}
    return BoxCalibration(thresholds, review, details)


def _operating_points(scores: np.ndarray, hits: np.ndarray, support: int, precision: float,
                      recall: float) -> tuple[float, float]:
    """(reject at, review from) for one class's ranked boxes."""
    if not scores.size:
        return 1.0, 1.0  # the model never boxes this class: nothing to reject or review on its word
    tp = np.cumsum(hits)
    ranks = np.arange(1, scores.size + 1)
    # a cut can only fall between distinct scores: the last of each run of ties
    last = np.r_[scores[1:] < scores[:-1], True]
    precise = np.flatnonzero(last & (tp / ranks >= precision))
    reject = float(scores[precise[-1]]) if precise.size else 1.0
    found = np.flatnonzero(last & (tp / support >= recall))
    floor = float(scores[found[0]]) if found.size else float(scores[-1])
    return reject, min(floor, reject)


def _rates_at(scores: np.ndarray, hits: np.ndarray, support: int, threshold: float, suffix: str) -> dict[str, Any]:
    above = scores >= threshold
    return {f"precision_{suffix}": round(float(hits[above].mean()), 4) if above.any() else None,
            f"recall_{suffix}": round(float(hits[above].sum() / support), 4) if support else None,
            f"threshold_{suffix}": threshold}
