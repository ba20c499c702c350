"""Locked acceptance criteria and the acceptance reports written against them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from inspectloop.domain import AcceptanceRecord, CriteriaRecord
from inspectloop.store import schema as s
from inspectloop.store.base import Repository, as_row, now_iso


class CriteriaRepository(Repository):
    """The ``criteria`` and ``acceptance_reports`` tables."""

    def lock(self, name: str, sha256: str, yaml_text: str, spec: dict[str, Any], locked_by: str) -> CriteriaRecord:
        """Store criteria once: the same ``sha256`` again returns the criteria already locked."""
        values = dict(name=name, sha256=sha256, yaml=yaml_text, spec=spec, locked_at=now_iso(), locked_by=locked_by)
        try:
            with self._connect() as conn:
                if conn.execute(select(s.criteria.c.id).where(s.criteria.c.sha256 == sha256)).first() is None:
                    conn.execute(insert(s.criteria).values(**values))
        except IntegrityError:  # locked by another process between our check and insert
            pass
        record = self.get(sha256=sha256)
        if record is None:  # cannot happen: written just now, by us or by the process we raced
            raise RuntimeError(f"criteria {sha256} vanished after being locked")
        return record

    def get(self, *, criteria_id: int | None = None, name: str | None = None,
            sha256: str | None = None) -> CriteriaRecord | None:
        """One lock by id, by sha256, or the latest lock of a name."""
        query = select(s.criteria).order_by(s.criteria.c.id.desc())
        if criteria_id is not None:
            query = query.where(s.criteria.c.id == criteria_id)
        if name is not None:
            query = query.where(s.criteria.c.name == name)
        if sha256 is not None:
            query = query.where(s.criteria.c.sha256 == sha256)
        with self._connect() as conn:
            row = conn.execute(query.limit(1)).first()
        return as_row(CriteriaRecord, row) if row else None

    def list(self) -> list[CriteriaRecord]:
        """Every lock, oldest first."""
        with self._connect() as conn:
            return [as_row(CriteriaRecord, r) for r in conn.execute(select(s.criteria).order_by(s.criteria.c.id))]

    def add_report(self, model_version_id: int, criteria_id: int, passed: bool, report: dict[str, Any]) -> int:
        """Store an acceptance report; return its id."""
        with self._connect() as conn:
            result = conn.execute(insert(s.acceptance_reports).values(
                model_version_id=model_version_id, criteria_id=criteria_id, passed=passed, report=report,
                created_at=now_iso()))
            return int(result.inserted_primary_key[0])

    def reports(self, model_version_id: int) -> list[AcceptanceRecord]:
        """A version's acceptance reports, oldest first."""
        with self._connect() as conn:
            rows = conn.execute(select(s.acceptance_reports)
                                .where(s.acceptance_reports.c.model_version_id == model_version_id)
                                .order_by(s.acceptance_reports.c.id)).all()
        return [as_row(AcceptanceRecord, r) for r in rows]
