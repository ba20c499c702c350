"""The settle queue's stored part: images sent to a quality engineer (suspected label errors, browser
selections, box disagreements), each with its reason."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import insert, select, update

from inspectloop.domain.labelling import QueuedSuspect
from inspectloop.store import schema as s
from inspectloop.store.base import Repository, now_iso


class SettleRepository(Repository):
    """The ``settle_items`` table."""

    def enqueue_suspects(self, suspects: Sequence[QueuedSuspect]) -> int:
        """Queue images that have no open item yet (each with its own reason); return how many were added."""
        with self._connect() as conn:
            waiting = set(conn.execute(select(s.settle_items.c.sha256).where(s.settle_items.c.status == "open"))
                          .scalars())
            rows = [{"sha256": q.sha256, "reason": q.reason, "given": q.given, "suggestion": q.suggestion,
                     "score": q.score, "details": q.details, "status": "open", "created_at": now_iso()}
                    for q in suspects if q.sha256 not in waiting]
            if rows:
                conn.execute(insert(s.settle_items), rows)
        return len(rows)

    def open_suspects(self) -> list[QueuedSuspect]:
        """Open items, most likely wrong (lowest score) first, those without a score last."""
        query = (select(s.settle_items).where(s.settle_items.c.status == "open")
                 .order_by(s.settle_items.c.score.asc().nulls_last(), s.settle_items.c.id))
        with self._connect() as conn:
            rows = conn.execute(query).all()
        return [QueuedSuspect(id=r.id, sha256=r.sha256, given=r.given, suggestion=r.suggestion, score=r.score,
                              created_at=r.created_at, details=dict(r.details or {}), reason=r.reason) for r in rows]

    def close(self, sha256: str, *, by: str, annotation_id: int) -> int:
        """Mark the image's open items settled by ``annotation_id``; return how many were."""
        values = {"status": "settled", "settled_at": now_iso(), "settled_by": by, "annotation_id": annotation_id}
        with self._connect() as conn:
            result = conn.execute(update(s.settle_items).where(s.settle_items.c.sha256 == sha256)
                                  .where(s.settle_items.c.status == "open").values(**values))
        return int(result.rowcount or 0)
