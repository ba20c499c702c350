"""Recalibration cycles: sample, re-annotation, comparison, and what followed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from sqlalchemy import insert, select, update

from inspectloop.domain import CycleRecord
from inspectloop.store import schema as s
from inspectloop.store.base import Repository, as_row, now_iso

_cycles = s.recalibration_cycles


class RecalibrationRepository(Repository):
    """The ``recalibration_cycles`` table."""

    def add(self, values: Mapping[str, Any]) -> int:
        """Store a new cycle (``values``: its columns but id and times); return its id."""
        stamp = now_iso()
        with self._connect() as conn:
            return int(conn.execute(insert(_cycles).values(created_at=stamp, updated_at=stamp, **values))
                       .inserted_primary_key[0])

    def update(self, cycle_id: int, values: Mapping[str, Any]) -> None:
        with self._connect() as conn:
            conn.execute(update(_cycles).where(_cycles.c.id == cycle_id).values(**values, updated_at=now_iso()))

    def get(self, cycle_id: int) -> CycleRecord | None:
        with self._connect() as conn:
            row = conn.execute(select(_cycles).where(_cycles.c.id == cycle_id)).first()
        return _cycle(row) if row else None

    def list(self, limit: int = 50) -> list[CycleRecord]:
        """The latest cycles, newest first."""
        with self._connect() as conn:
            return [_cycle(r) for r in conn.execute(select(_cycles).order_by(_cycles.c.id.desc()).limit(limit))]


def _cycle(row: Any) -> CycleRecord:
    cycle = as_row(CycleRecord, row)
    return replace(cycle, sample=dict(cycle.sample or {}), result=dict(cycle.result or {}))
