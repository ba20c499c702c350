"""The review queue: images waiting for a human, and what the human decided."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# In the order reviewers are served: a production part held for a verdict first; then items a running
# process waits on (a recalibration cycle for its labels, a candidate-vs-QC disagreement for its arbiter);
# then drift samples; then images a person picked on the dataset browser for a second look; shadow
# discrepancies last, as a candidate's results are never acted on.
REASONS = ("uncertain", "recalibration", "qc", "drift", "selected", "shadow")


@dataclass(frozen=True)
class ReviewItem:
    """An image waiting for (or given) a human decision, as the queue holds it."""

    id: int
    image_sha256: str
    reason: str
    suggestion: str | None
    scores: dict[str, float]
    details: dict[str, Any]
    priority: float
    status: str  # open | done | skipped
    claimed_by: str | None
    claimed_until: str | None
    created_at: str
    prediction_id: int | None = None
    model_version_id: int | None = None
    decided_label: str | None = None
    decided_by: str | None = None
    decided_at: str | None = None


@dataclass(frozen=True)
class Discrepancy:
    """A shadow model that disagreed with production on one image."""

    prediction_id: int
    at: str
    camera: str | None
    image_sha256: str
    production_label: str
    production_decision: str
    shadow_model: str
    shadow_label: str
    shadow_decision: str
