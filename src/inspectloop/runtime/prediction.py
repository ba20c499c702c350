"""One prediction type for every task kind: image-level scores per class, a decision, optional regions."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

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
    its ``scores`` are the calibrated map of it); None otherwise. ``novelty`` is a classifier's novelty-guard
    score (distance to the nearest training embeddings; above the file's threshold a pass becomes a review);
    None for a model without a guard.
    """

    label: str
    confidence: float
    scores: dict[str, float]
    decision: Decision
    latency_ms: dict[str, float]
    regions: Regions | None = None
    warnings: tuple[str, ...] = ()
    anomaly_score: float | None = None
    novelty: float | None = None

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
        ``anomaly_score`` and ``novelty`` only when the model gives them, so other records are as before).

        A heatmap is summarised, not copied: ``regions.heatmap`` is a coarse grid (``heatmap_grid``) and
        ``regions.heatmap_peak`` its hottest pixel, since the full map (65k numbers at 256 px) would swamp
        a log line or an API answer. ``Regions.from_dict`` reads the grid back as a coarse heatmap.
        """
        record = {"label": self.label, "confidence": self.confidence, "scores": dict(self.scores),
                  "decision": self.decision.value, "latency_ms": dict(self.latency_ms),
                  "regions": None if self.regions is None else _regions_summary(self.regions),
                  "warnings": list(self.warnings)}
        if self.anomaly_score is not None:
            record["anomaly_score"] = self.anomaly_score
        if self.novelty is not None:
            record["novelty"] = self.novelty
        return record


HEATMAP_GRID = 16  # cells per side of the heatmap summary in a prediction's JSON
HEATMAP_DECIMALS = 3


def heatmap_grid(heatmap: np.ndarray, cells: int = HEATMAP_GRID) -> np.ndarray:
    """``heatmap`` (H, W) reduced to at most ``cells`` x ``cells``: each cell the largest value it covers
    (a small hot spot stays visible, where an average would wash it out)."""
    heatmap = np.asarray(heatmap, dtype=np.float32)
    rows = np.linspace(0, heatmap.shape[0], min(cells, heatmap.shape[0]) + 1).astype(np.int64)[:-1]
    cols = np.linspace(0, heatmap.shape[1], min(cells, heatmap.shape[1]) + 1).astype(np.int64)[:-1]
    return np.maximum.reduceat(np.maximum.reduceat(heatmap, rows, axis=0), cols, axis=1)


def heatmap_peak(heatmap: np.ndarray, image_size: tuple[int, int]) -> dict[str, float]:
    """The hottest pixel of ``heatmap``, in the image's own pixels (``image_size`` = (width, height)), and its value."""
    heatmap = np.asarray(heatmap)
    row, col = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    width, height = image_size
    return {"x": round(float(col + 0.5) * width / heatmap.shape[1], 1),
            "y": round(float(row + 0.5) * height / heatmap.shape[0], 1), "value": round(float(heatmap[row, col]), HEATMAP_DECIMALS)}


def _regions_summary(regions: Regions) -> dict[str, Any]:
    """``regions.to_dict()`` with the heatmap as its coarse grid and peak."""
    if regions.heatmap is None:
        return regions.to_dict()
    coarse = dataclasses.replace(regions, heatmap=np.round(heatmap_grid(regions.heatmap), HEATMAP_DECIMALS))
    record = coarse.to_dict()
    record["heatmap_peak"] = heatmap_peak(regions.heatmap, regions.image_size)
    return record
