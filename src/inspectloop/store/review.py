"""The review queue: one open item per (image, reason); a claim is a lease that expires."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import case, func, select, update

from inspectloop.domain import REASONS, ReviewItem
from inspectloop.store import schema as s
from inspectloop.store.base import Repository, insert_new_id, now_iso

_items = s.review_items


class ReviewRepository(Repository):
    """The ``review_items`` table."""

    def enqueue(self, *, image_sha256: str, reason: str, prediction_id: int | None = None,
                model_version_id: int | None = None, suggestion: str | None = None,
                scores: Mapping[str, float] | None = None, details: Mapping[str, Any] | None = None,
                priority: float = 0.0) -> int | None:
        """Add an open item; None when the image already waits for the same reason."""
        with self._connect() as conn:  # the unique open (image, reason) index decides, also between services
            return insert_new_id(conn, _items, dict(
                image_sha256=image_sha256, reason=reason, prediction_id=prediction_id,
                model_version_id=model_version_id, suggestion=suggestion,
                scores=dict(scores) if scores is not None else None, details=dict(details or {}),
                priority=priority, status="open", created_at=now_iso()))

    def get(self, item_id: int) -> ReviewItem | None:
        with self._connect() as conn:
            row = conn.execute(select(_items).where(_items.c.id == item_id)).first()
        return _item(row) if row is not None else None

    def get_many(self, item_ids: Sequence[int]) -> list[ReviewItem]:
        """The items of ``item_ids`` that exist, by id."""
        if not item_ids:
            return []
        with self._connect() as conn:
            return [_item(r) for r in conn.execute(select(_items).where(_items.c.id.in_(list(item_ids)))
                                                   .order_by(_items.c.id))]

    def of_image(self, sha256: str) -> list[ReviewItem]:
        """Every review item of an image (open and decided), oldest first."""
        with self._connect() as conn:
            return [_item(r) for r in conn.execute(select(_items).where(_items.c.image_sha256 == sha256)
                                                   .order_by(_items.c.id))]

    def next_claimable(self, now: str) -> int | None:
        """The first open item whose lease is free or expired at ``now``: by reason (``REASONS`` order), then
        highest priority."""
        with self._connect() as conn:
            return conn.execute(select(_items.c.id).where(_claimable(now))
                                .order_by(_reason_rank(), _items.c.priority.desc(), _items.c.id).limit(1)).scalar()

    def claim(self, item_id: int, reviewer: str, now: str, until: str) -> bool:
        """Lease the item to ``reviewer`` until ``until``; False when someone else won it first."""
        with self._connect() as conn:
            return bool(conn.execute(update(_items).where(_items.c.id == item_id, _claimable(now))
                                     .values(claimed_by=reviewer, claimed_until=until)).rowcount)

    def held_by(self, reviewer: str, now: str) -> ReviewItem | None:
        """The open item whose live claim ``reviewer`` holds at ``now``, if any."""
        with self._connect() as conn:
            row = conn.execute(select(_items).where(_items.c.status == "open", _items.c.claimed_by == reviewer,
                                                    _items.c.claimed_until >= now)
                               .order_by(_items.c.id).limit(1)).first()
        return _item(row) if row is not None else None

    def close(self, item_id: int, *, label: str, reviewer: str, at: str, annotation_id: int,
              details: Mapping[str, Any] | None = None) -> bool:
        """Mark an open item done with the reviewer's label (and new ``details``, when given); False when it was
        no longer open."""
        values: dict[str, Any] = dict(status="done", decided_label=label, decided_by=reviewer, decided_at=at,
                                      annotation_id=annotation_id, claimed_by=None, claimed_until=None)
        if details is not None:
            values["details"] = dict(details)
        with self._connect() as conn:
            return bool(conn.execute(update(_items).where(_items.c.id == item_id, _items.c.status == "open")
                                     .values(**values)).rowcount)

    def set_skipped(self, item_id: int, *, reviewer: str, at: str, details: Mapping[str, Any]) -> None:
        with self._connect() as conn:
            conn.execute(update(_items).where(_items.c.id == item_id).values(
                status="skipped", decided_by=reviewer, decided_at=at, details=dict(details), claimed_by=None,
                claimed_until=None))

    def release(self, item_id: int, reviewer: str) -> bool:
        """Drop the claim ``reviewer`` holds on an open item; False when they held none."""
        with self._connect() as conn:
            return bool(conn.execute(update(_items).where(
                _items.c.id == item_id, _items.c.claimed_by == reviewer, _items.c.status == "open")
                .values(claimed_by=None, claimed_until=None)).rowcount)

    def count_by_status(self) -> dict[str, int]:
        with self._connect() as conn:
            return {k: int(v) for k, v in conn.execute(select(_items.c.status, func.count())
                                                       .group_by(_items.c.status)).all()}

    def open_by_reason(self) -> dict[str, int]:
        with self._connect() as conn:
            return {k: int(v) for k, v in conn.execute(select(_items.c.reason, func.count())
                                                       .where(_items.c.status == "open")
                                                       .group_by(_items.c.reason)).all()}

    def count_claimed(self, now: str) -> int:
        """Open items under a live claim at ``now``."""
        with self._connect() as conn:
            return int(conn.execute(select(func.count()).select_from(_items).where(
                _items.c.status == "open", _items.c.claimed_until >= now)).scalar_one())

    def recent_decisions(self, limit: int = 20) -> list[ReviewItem]:
        """The latest decided or skipped items, newest first."""
        with self._connect() as conn:
            rows = conn.execute(select(_items).where(_items.c.status.in_(("done", "skipped")))
                                .order_by(_items.c.decided_at.desc(), _items.c.id.desc()).limit(limit)).all()
        return [_item(row) for row in rows]


def _reason_rank() -> Any:
    """An item's place in ``REASONS`` (unknown reasons last), for the claim order."""
    return case({reason: rank for rank, reason in enumerate(REASONS)}, value=_items.c.reason, else_=len(REASONS))


def _claimable(now: str) -> Any:
    return (_items.c.status == "open") & (_items.c.claimed_until.is_(None) | (_items.c.claimed_until < now))


def _item(row: Any) -> ReviewItem:
    return ReviewItem(id=row.id, image_sha256=row.image_sha256, reason=row.reason, suggestion=row.suggestion,
                      scores=dict(row.scores or {}), details=dict(row.details or {}), priority=row.priority,
                      status=row.status, claimed_by=row.claimed_by, claimed_until=row.claimed_until,
                      created_at=row.created_at, prediction_id=row.prediction_id,
                      model_version_id=row.model_version_id, decided_label=row.decided_label,
                      decided_by=row.decided_by, decided_at=row.decided_at)
