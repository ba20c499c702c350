"""The review queue: images waiting for a human, and what the human decided.

Items come from uncertain predictions (the review band), shadow discrepancies, QC disagreements,
recalibration samples and drift samples. A reviewer's decision becomes an annotation (annotator =
reviewer, source = "reviewer") that the next dataset version picks up.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, insert, select

from inspectloop.store import now_iso
from inspectloop.store import schema as s

REASONS = ("uncertain", "shadow", "qc", "recalibration", "drift")


def enqueue(conn: Connection, *, image_sha256: str, reason: str, prediction_id: int | None = None,
            model_version_id: int | None = None, suggestion: str | None = None,
            scores: Mapping[str, float] | None = None, details: Mapping[str, Any] | None = None,
            priority: float = 0.0) -> int | None:
    """Add an open item inside the caller's transaction; return its id, or None when the image already
    waits for the same reason (one open item per image and reason). The image must be in ``images``.
    """
    if reason not in REASONS:
        raise ValueError(f"unknown review reason {reason!r}; expected one of {REASONS}")
    open_item = conn.execute(select(s.review_items.c.id).where(
        s.review_items.c.image_sha256 == image_sha256, s.review_items.c.reason == reason,
        s.review_items.c.status == "open")).first()
    if open_item is not None:
        return None
    result = conn.execute(insert(s.review_items).values(
        image_sha256=image_sha256, reason=reason, prediction_id=prediction_id, model_version_id=model_version_id,
        suggestion=suggestion, scores=dict(scores) if scores is not None else None, details=dict(details or {}),
        priority=priority, status="open", created_at=now_iso()))
    return int(result.inserted_primary_key[0])
