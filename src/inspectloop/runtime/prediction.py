"""One prediction type for every task kind: image-level scores per class, a decision, optional regions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from inspectloop.runtime.decision import Decision
from inspectloop.runtime.regions import Regions


@dataclass(frozen=True)
class Prediction:
    """One image's result, whatever the model's task.

    ``scores`` are image-level scores per class, by class name (a classifier's probabilities; a
    detector's highest box confidence per class; an anomaly model's image score): they, and only
    they, feed decisions, calibration, shadow agreement, drift and recalibration. ``label`` is the
    class decided, or the model's suggestion when ``decision`` is review, and ``confidence`` its score.
    ``decision`` is a :class:`Decision` (a plain string is converted). ``latency_ms`` has the phases
    ``decode``, ``preprocess``, ``infer`` and ``total``. ``regions`` locate what the model saw (boxes,
    masks, a heatmap); None for a classifier. ``warnings`` are the decoder's (``runtime.images``):
    where the image lost information on its way to the model (extra frames, bit depth, alpha).
    ``anomaly_score`` is an anomaly model's raw image score (higher: less like the good parts it learned;
    its ``scores`` are the calibrated map of it); None otherwise.
    """

    label: str
    confidence: float
    scores: dict[str, float]
    decision: Decision
    latency_ms: dict[str, float]
    regions: Regions | None = None
    warnings: tuple[str, ...] = ()
    anomaly_score: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "decision", Decision(self.decision))
        if self.label not in self.scores:
            raise ValueError(f"label {self.label!r} is not one of the scored classes ({', '.join(self.scores)})")
        if self.regions is not None:
            if not isinstance(self.regions, Regions):
                raise TypeError(f"regions must be Regions or None, got {type(self.regions).__name__}")
            ids = self.regions.class_ids
            if ids is not None and ids.size and int(ids.max()) >= len(self.scores):
                raise ValueError(f"region class id {int(ids.max())} is outside the {len(self.scores)} classes")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field (the decision as its string value; ``regions`` None or a dict;
        ``anomaly_score`` only for an anomaly model, so a classifier's records are as before)."""
        record = {"label": self.label, "confidence": self.confidence, "scores": dict(self.scores),
                  "decision": self.decision.value, "latency_ms": dict(self.latency_ms),
                  "regions": None if self.regions is None else self.regions.to_dict(),
                  "warnings": list(self.warnings)}
        if self.anomaly_score is not None:
            record["anomaly_score"] = self.anomaly_score
        return record
