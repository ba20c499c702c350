"""Store access for monitoring: drift baselines and checks, alerts, camera health, recalibration cycles.

Every function takes the caller's connection, so the service module decides what commits together.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, and_, func, insert, select, update

from inspectloop.store import now_iso
from inspectloop.store import schema as s

FAIL = "fail"


def _rows(conn: Connection, query: Any) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in conn.execute(query)]


def _first(conn: Connection, query: Any) -> dict[str, Any] | None:
    row = conn.execute(query).first()
    return dict(row._mapping) if row else None


def _insert(conn: Connection, table: Any, values: dict[str, Any]) -> int:
    return int(conn.execute(insert(table).values(**values)).inserted_primary_key[0])


# --- drift ---------------------------------------------------------------------------------------------

def add_drift_baseline(conn: Connection, *, camera: str, model_version_id: int, source: str, images: int,
                       baseline: dict[str, Any]) -> int:
    return _insert(conn, s.drift_baselines, {"camera": camera, "model_version_id": model_version_id, "source": source,
                                                 "images": images, "baseline": baseline, "recorded_at": now_iso()})


def drift_baselines(conn: Connection, model_version_id: int) -> dict[str, dict[str, Any]]:
    """The latest baseline row of each camera for a model version."""
    b = s.drift_baselines
    rows = _rows(conn, select(b).where(b.c.model_version_id == model_version_id).order_by(b.c.id))
    return {row["camera"]: row for row in rows}  # later rows replace earlier ones


def add_monitor_run(conn: Connection, values: dict[str, Any]) -> int:
    return _insert(conn, s.monitor_runs, {"started_at": now_iso(), **values})


def monitor_runs(conn: Connection, limit: int = 20) -> list[dict[str, Any]]:
    return _rows(conn, select(s.monitor_runs).order_by(s.monitor_runs.c.id.desc()).limit(limit))


def add_drift_checks(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        conn.execute(insert(s.drift_checks), list(rows))


def drift_history(conn: Connection, since: str | None = None) -> list[dict[str, Any]]:
    """Every stored signal (oldest first), optionally only those checked at or after ``since``."""
    d = s.drift_checks
    query = select(d).order_by(d.c.checked_at, d.c.id)
    return _rows(conn, query.where(d.c.checked_at >= since) if since else query)


def add_alert(conn: Connection, values: dict[str, Any]) -> int:
    return _insert(conn, s.alerts, {"created_at": now_iso(), **values})


def alerts(conn: Connection, *, since: str | None = None, kind: str | None = None,
           limit: int = 200) -> list[dict[str, Any]]:
    a = s.alerts
    query = select(a).order_by(a.c.id.desc()).limit(limit)
    if since:
        query = query.where(a.c.created_at >= since)
    if kind:
        query = query.where(a.c.kind == kind)
    return _rows(conn, query)


def get_state(conn: Connection, key: str) -> Any:
    row = _first(conn, select(s.monitor_state.c.value).where(s.monitor_state.c.key == key))
    return row["value"] if row else None


def set_state(conn: Connection, key: str, value: Any) -> None:
    table = s.monitor_state
    if conn.execute(select(table.c.key).where(table.c.key == key)).first() is None:
        conn.execute(insert(table).values(key=key, value=value, updated_at=now_iso()))
    else:
        conn.execute(update(table).where(table.c.key == key).values(value=value, updated_at=now_iso()))


# --- camera health -------------------------------------------------------------------------------------

def add_camera_baseline(conn: Connection, values: dict[str, Any]) -> int:
    return _insert(conn, s.camera_baselines, {"recorded_at": now_iso(), **values})


def camera_baseline(conn: Connection, camera: str) -> dict[str, Any] | None:
    b = s.camera_baselines
    return _first(conn, select(b).where(b.c.camera == camera).order_by(b.c.id.desc()).limit(1))


def add_camera_check(conn: Connection, values: dict[str, Any]) -> int:
    return _insert(conn, s.camera_checks, {"checked_at": now_iso(), **values})


def camera_checks(conn: Connection, camera: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    c = s.camera_checks
    query = select(c).order_by(c.c.id.desc()).limit(limit)
    return _rows(conn, query.where(c.c.camera == camera) if camera else query)


def last_good_check(conn: Connection, camera: str, before_id: int | None = None) -> dict[str, Any] | None:
    """The camera's latest check that did not fail (pass or warn), optionally before check ``before_id``."""
    c = s.camera_checks
    query = select(c).where(c.c.camera == camera, c.c.status != FAIL)
    if before_id is not None:
        query = query.where(c.c.id < before_id)
    return _first(conn, query.order_by(c.c.id.desc()).limit(1))


def failing_cameras(conn: Connection) -> dict[str, str]:
    """Cameras whose latest health check failed, with that check's time."""
    c = s.camera_checks
    latest = select(c.c.camera, func.max(c.c.id).label("id")).group_by(c.c.camera).subquery()
    rows = conn.execute(select(c.c.camera, c.c.checked_at).join(latest, and_(latest.c.id == c.c.id))
                        .where(c.c.status == FAIL))
    return {r.camera: r.checked_at for r in rows}


def mark_suspect(conn: Connection, camera: str, since: str | None) -> int:
    """Mark ``camera``'s predictions received after ``since`` (all of them when None) suspect; return how many."""
    p = s.predictions
    query = update(p).where(p.c.camera == camera, p.c.suspect.is_(False))
    if since:
        query = query.where(p.c.received_at > since)
    return int(conn.execute(query.values(suspect=True)).rowcount or 0)


# --- production predictions ----------------------------------------------------------------------------

def window_predictions(conn: Connection, start: str, end: str, *, model_version_id: int | None = None,
                       stored_only: bool = False, cameras: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """Logged predictions received in [start, end), oldest first."""
    p = s.predictions
    query = select(p).where(p.c.received_at >= start, p.c.received_at < end).order_by(p.c.id)
    if model_version_id is not None:
        query = query.where(p.c.model_version_id == model_version_id)
    if stored_only:
        query = query.where(p.c.image_stored.is_(True))
    if cameras is not None:
        query = query.where(p.c.camera.in_(list(cameras)))
    return _rows(conn, query)


def first_predictions(conn: Connection, model_version_id: int, camera: str, limit: int) -> list[dict[str, Any]]:
    """The first ``limit`` predictions a model version made on ``camera``."""
    p = s.predictions
    return _rows(conn, select(p).where(p.c.model_version_id == model_version_id, p.c.camera == camera)
                 .order_by(p.c.id).limit(limit))


def prediction_cameras(conn: Connection, model_version_id: int) -> list[str]:
    p = s.predictions
    return sorted(c for c in conn.execute(select(p.c.camera).where(p.c.model_version_id == model_version_id)
                                          .distinct()).scalars() if c)


# --- recalibration cycles ------------------------------------------------------------------------------

def add_cycle(conn: Connection, values: dict[str, Any]) -> int:
    stamp = now_iso()
    return _insert(conn, s.recalibration_cycles, {"created_at": stamp, "updated_at": stamp, **values})


def update_cycle(conn: Connection, cycle_id: int, values: dict[str, Any]) -> None:
    table = s.recalibration_cycles
    conn.execute(update(table).where(table.c.id == cycle_id).values(**values, updated_at=now_iso()))


def cycle(conn: Connection, cycle_id: int) -> dict[str, Any] | None:
    table = s.recalibration_cycles
    return _first(conn, select(table).where(table.c.id == cycle_id))


def cycles(conn: Connection, limit: int = 50) -> list[dict[str, Any]]:
    table = s.recalibration_cycles
    return _rows(conn, select(table).order_by(table.c.id.desc()).limit(limit))


def review_items(conn: Connection, item_ids: Sequence[int]) -> list[dict[str, Any]]:
    r = s.review_items
    return _rows(conn, select(r).where(r.c.id.in_(list(item_ids))).order_by(r.c.id)) if item_ids else []
