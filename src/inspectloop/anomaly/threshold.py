"""Decisions for an anomaly model: what good parts alone can certify, and what labelled defects add.

Good images alone certify one thing: how many good parts the threshold rejects. The threshold is the
(k+1)-th largest anomaly score of the held-out good images, with ``k`` from the same order-statistic
rule as the review band's reject side (:func:`inspectloop.decisions.conformal.allowed_count`), so that
with ``confidence`` (PAC) or on average (marginal) at most ``false_reject_target`` of good parts score
above it and are rejected. Nothing is claimed about escapes: defects never seen cannot be counted.
When the held-out images include labelled defects, :func:`fit_anomaly_band` fits the full review band
on them like a classifier's (:func:`inspectloop.decisions.conformal.fit_review_band`).

The model file carries the threshold as its normalisation: P(anomaly) = sigmoid((score - threshold) /
scale), 0.5 at the threshold, so the runtime's one decision rule applies unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from inspectloop.decisions.conformal import (
    ReviewBand, allowed_count, fit_review_band, min_calibration_size,
)
from inspectloop.errors import TrainingError

GOOD, ANOMALY = 0, 1  # columns of an anomaly model's (P(good), P(anomaly))
ANOMALY_CLASS = "anomaly"
NO_ESCAPE_CLAIM = ("No escape-rate claim: the model learned from good parts only, and escapes can only be "
                   "counted on labelled defects; label defects through review to certify one.")


@dataclass(frozen=True)
class AnomalyThreshold:
    """The score above which a part is rejected, and the false-reject guarantee behind it.

    ``certified`` is False when ``held_out_good`` images are too few for ``false_reject_target`` at
    ``confidence`` (then the threshold is the largest held-out good score and nothing is guaranteed).
    ``scale`` spreads P(anomaly) around the threshold (the held-out good scores' standard deviation).
    """

    threshold: float
    scale: float
    false_reject_target: float
    confidence: float
    guarantee_kind: str
    held_out_good: int
    allowed_false_rejects: int | None
    needed_good: int

    @property
    def certified(self) -> bool:
        return self.allowed_false_rejects is not None

    @property
    def statement(self) -> str:
        """The false-reject guarantee in one sentence, for the model file and the card."""
        share = f"{100 * self.false_reject_target:.3g}%"
        if not self.certified:
            return (f"False-reject rate not certified: {self.held_out_good} held-out good images cannot certify "
                    f"{share} (at least {self.needed_good} are needed); the threshold is the largest held-out "
                    f"good score.")
        how = (f"with {100 * self.confidence:.3g}% confidence over the draw of the held-out images"
               if self.guarantee_kind == "pac" else "on average over draws of the held-out images")
        return (f"At most {share} of good parts are rejected ({how}; {self.held_out_good} held-out good images, "
                f"at most {self.allowed_false_rejects} of them above the threshold).")

    def review(self, alpha: float) -> dict[str, Any]:
        """The model file's ``review`` field for good-only decisions: pass below the threshold, reject above."""
        return {"auto_above": 0.5, "reject_below": 0.5, "alpha": alpha, "confidence": self.confidence,
                "certifiable": False, "guarantee": f"{self.statement} {NO_ESCAPE_CLAIM}"}

    def to_dict(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "scale": self.scale, "false_reject_target": self.false_reject_target,
                "confidence": self.confidence, "guarantee_kind": self.guarantee_kind,
                "held_out_good": self.held_out_good, "allowed_false_rejects": self.allowed_false_rejects,
                "needed_good": self.needed_good, "certified": self.certified, "statement": self.statement}


def as_anomaly_labels(labels: Sequence[str], good_class: str) -> list[str]:
    """Labels of a dataset or a reviewer as an anomaly model's classes: ``good_class`` stays, every other
    class becomes "anomaly" (the model names no defect class; to it each one is a part unlike the good)."""
    return [label if label == good_class else ANOMALY_CLASS for label in labels]


def fit_threshold(good_scores: np.ndarray, *, false_reject_target: float, confidence: float,
                  guarantee: str = "pac") -> AnomalyThreshold:
    """The threshold with a false-reject guarantee from the anomaly scores of held-out good images."""
    scores = np.asarray(good_scores, dtype=np.float64).ravel()
    if scores.size == 0 or not np.isfinite(scores).all():
        raise TrainingError(f"an anomaly threshold needs held-out good images with finite scores, got {scores.size}",
                            "give the dataset version a calibration (or validation) split with good images")
    k = allowed_count(int(scores.size), false_reject_target, confidence=confidence, guarantee=guarantee)
    ordered = np.sort(scores)[::-1]
    threshold = float(ordered[k if k is not None else 0])
    spread = float(scores.std())
    scale = spread if spread > 1e-6 else max(abs(threshold), 1.0) * 1e-3
    return AnomalyThreshold(threshold, scale, false_reject_target, confidence, guarantee, int(scores.size), k,
                            min_calibration_size(false_reject_target, confidence, guarantee))


def anomaly_probs(scores: np.ndarray, threshold: AnomalyThreshold) -> np.ndarray:
    """(P(good), P(anomaly)) per score, (N, 2): what the exported model's softmax gives."""
    z = (np.asarray(scores, dtype=np.float64) - threshold.threshold) / threshold.scale
    anomaly = 1.0 / (1.0 + np.exp(-np.clip(z, -700, 700)))
    return np.stack([1.0 - anomaly, anomaly], axis=1)


def fit_anomaly_band(scores: np.ndarray, is_defect: np.ndarray, threshold: AnomalyThreshold, *, alpha: float,
                     guarantee: str = "pac") -> ReviewBand | None:
    """The review band fitted like a classifier's on held-out scores with labelled defects, or None when
    they cannot certify ``alpha`` (too few, or none): then the good-only threshold decides alone."""
    defects = np.asarray(is_defect, dtype=bool)
    if not defects.any():
        return None
    band = fit_review_band(anomaly_probs(scores, threshold), defects.astype(np.int64), good_index=GOOD, alpha=alpha,
                           confidence=threshold.confidence, false_reject_target=threshold.false_reject_target,
                           guarantee=guarantee)
    return band if band.certifiable else None
