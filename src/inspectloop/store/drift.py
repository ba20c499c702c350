"""Drift monitoring: baselines, monitor runs, the per-signal history, alerts and the limiter's state."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import insert, select, update

from inspectloop.domain import Alert, DriftBaselineRecord, DriftCheck, MonitorRun
from inspectloop.store import schema as s
from inspectloop.store.base import Repository, as_row, now_iso


class DriftRepository(Repository):
    """The ``drift_baselines``, ``monitor_runs``, ``drift_checks``, ``alerts`` and ``monitor_state`` tables."""

    def add_baseline(self, *, camera: str, model_version_id: int, source: str, images: int,
                     baseline: dict[str, Any]) -> int:
        """Store a camera's baseline for a model version; return its id."""
        return self._insert(s.drift_baselines, {"camera": camera, "model_version_id": model_version_id,
                                                 "source": source, "images": images, "baseline": baseline,
                                                 "recorded_at": now_iso()})

    def baselines(self, model_version_id: int) -> dict[str, DriftBaselineRecord]:
        """The latest baseline of each camera for a model version."""
        b = s.drift_baselines
        with self._connect() as conn:
            rows = [as_row(DriftBaselineRecord, r) for r in
                    conn.execute(select(b).where(b.c.model_version_id == model_version_id).order_by(b.c.id))]
        return {row.camera: row for row in rows}  # later rows replace earlier ones

    def add_run(self, values: Mapping[str, Any]) -> int:
        """Record a monitor run (``values``: its columns but id and started_at); return its id."""
        return self._insert(s.monitor_runs, {"started_at": now_iso(), **values})

    def runs(self, limit: int = 20) -> list[MonitorRun]:
        """The latest monitor runs, newest first."""
        with self._connect() as conn:
            return [as_row(MonitorRun, r) for r in
                    conn.execute(select(s.monitor_runs).order_by(s.monitor_runs.c.id.desc()).limit(limit))]

    def add_checks(self, rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            with self._connect() as conn:
                conn.execute(insert(s.drift_checks), [dict(row) for row in rows])

    def history(self, since: str | None = None) -> list[DriftCheck]:
        """Every stored signal (oldest first), optionally only those checked at or after ``since``."""
        d = s.drift_checks
        query = select(d).order_by(d.c.checked_at, d.c.id)
        with self._connect() as conn:
            return [as_row(DriftCheck, r) for r in conn.execute(query.where(d.c.checked_at >= since) if since
                                                                 else query)]

    def add_alert(self, values: Mapping[str, Any]) -> int:
        """Record an alert sent (``values``: its columns but id and created_at); return its id."""
        return self._insert(s.alerts, {"created_at": now_iso(), **values})

    def alerts(self, *, since: str | None = None, kind: str | None = None, limit: int = 200) -> list[Alert]:
        """Alerts sent, newest first, optionally since a time and of one kind."""
        a = s.alerts
        query = select(a).order_by(a.c.id.desc()).limit(limit)
        if since:
            query = query.where(a.c.created_at >= since)
        if kind:
            query = query.where(a.c.kind == kind)
        with self._connect() as conn:
            return [as_row(Alert, r) for r in conn.execute(query)]

    def get_state(self, key: str) -> Any:
        """A named piece of monitor state (None when never set)."""
        with self._connect() as conn:
            return conn.execute(select(s.monitor_state.c.value).where(s.monitor_state.c.key == key)).scalar()

    def set_state(self, key: str, value: Any) -> None:
        table = s.monitor_state
        with self._connect() as conn:
            if conn.execute(select(table.c.key).where(table.c.key == key)).first() is None:
                conn.execute(insert(table).values(key=key, value=value, updated_at=now_iso()))
            else:
                conn.execute(update(table).where(table.c.key == key).values(value=value, updated_at=now_iso()))

    def _insert(self, table: Any, values: Mapping[str, Any]) -> int:
        with self._connect() as conn:
            return int(conn.execute(insert(table).values(**values)).inserted_primary_key[0])
