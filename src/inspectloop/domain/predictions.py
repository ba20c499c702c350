"""The prediction log: production predictions, shadow results beside them, and human QC verdicts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class LoggedPrediction:
    """A production prediction as the log holds it; ``replayed`` when the request id was already logged."""

    id: int
    request_id: str
    source: str  # http | watch
    model_name: str
    model_version_id: int | None
    label: str
    decision: str
    confidence: float
    scores: dict[str, float]
    latency_ms: dict[str, float]
    image_sha256: str
    image_stored: bool
    received_at: str
    replayed: bool = False
    camera: str | None = None
    line: str | None = None
    shift: str | None = None
    lighting: str | None = None
    part_id: str | None = None
    session: str | None = None
    captured_at: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
    stats: dict[str, float] | None = None  # image statistics for drift (None until measured)
    suspect: bool = False  # its camera failed a health check
    content_sha256: str | None = None  # the request's image and metadata digest (None: logged before schema v5)
    warnings: tuple[str, ...] = ()  # the decoder's, for this answer only (not stored: a replay has none)
    # What the model gave beside its scores (anomaly_score, a heatmap summary, novelty), for this answer only
    # (not stored: a replay has none). See ``Prediction.to_dict``: a heatmap is its coarse grid and peak.
    outputs: dict[str, Any] = field(default_factory=dict)

    def to_response(self) -> dict[str, Any]:
        """The JSON answer of the inspection API."""
        return {"request_id": self.request_id, "prediction_id": self.id, "decision": self.decision,
                "label": self.label, "confidence": self.confidence, "scores": self.scores,
                "model": {"name": self.model_name, "version_id": self.model_version_id},
                "latency_ms": self.latency_ms, "image_sha256": self.image_sha256, "replayed": self.replayed,
                "warnings": list(self.warnings), "suspect": self.suspect, **self.outputs}


@dataclass(frozen=True)
class ShadowResult:
    """A candidate model's output on a production input: logged, compared, never acted on."""

    id: int
    prediction_id: int
    model_version_id: int
    label: str
    decision: str
    confidence: float
    scores: dict[str, float]
    latency_ms: dict[str, float]
    agrees: bool  # same fate as production (shadow.same_fate)
    created_at: str
    model_name: str  # the shadow model version's name
    boxes: dict[str, Any] | None = None  # matched against production's boxes (shadow.compare_boxes); None: no boxes


@dataclass(frozen=True)
class ShadowComparison:
    """One shadow result beside its production prediction and the latest QC verdict on the part, if any."""

    prediction_id: int
    shadow_label: str
    shadow_decision: str
    shadow_confidence: float
    agrees: bool
    production_label: str
    production_decision: str
    production_confidence: float
    image_sha256: str
    camera: str | None
    request_id: str
    qc_label: str | None
    boxes: dict[str, Any] | None = None  # two detectors' boxes matched by IoU (shadow.compare_boxes); None otherwise
