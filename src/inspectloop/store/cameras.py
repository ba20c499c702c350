"""Camera health: baselines recorded at deployment and the checks against them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import and_, func, insert, select

from inspectloop.domain import CameraBaselineRecord, CameraCheckRecord
from inspectloop.store import schema as s
from inspectloop.store.base import Repository, as_row, now_iso

FAIL = "fail"
ERROR = "error"  # a check that could not run: it says nothing about the camera, so it never ends a failure


class CameraRepository(Repository):
    """The ``camera_baselines`` and ``camera_checks`` tables."""

    def add_baseline(self, values: Mapping[str, Any]) -> int:
        """Store a camera's health baseline (``values``: its columns but id and recorded_at); return its id."""
        return self._insert(s.camera_baselines, {"recorded_at": now_iso(), **values})

    def baseline(self, camera: str) -> CameraBaselineRecord | None:
        """The camera's latest baseline."""
        b = s.camera_baselines
        with self._connect() as conn:
            row = conn.execute(select(b).where(b.c.camera == camera).order_by(b.c.id.desc()).limit(1)).first()
        return as_row(CameraBaselineRecord, row) if row else None

    def add_check(self, values: Mapping[str, Any]) -> int:
        """Store a check (``values``: its columns but id and checked_at); return its id."""
        return self._insert(s.camera_checks, {"checked_at": now_iso(), **values})

    def checks(self, camera: str | None = None, limit: int = 50) -> list[CameraCheckRecord]:
        """The latest checks (of one camera when given), newest first."""
        c = s.camera_checks
        query = select(c).order_by(c.c.id.desc()).limit(limit)
        with self._connect() as conn:
            return [as_row(CameraCheckRecord, r) for r in conn.execute(query.where(c.c.camera == camera) if camera
                                                                        else query)]

    def last_good_check(self, camera: str, before_id: int | None = None) -> CameraCheckRecord | None:
        """The camera's latest check that did not fail (pass or warn), optionally before check ``before_id``."""
        c = s.camera_checks
        query = select(c).where(c.c.camera == camera, c.c.status != FAIL)
        if before_id is not None:
            query = query.where(c.c.id < before_id)
        with self._connect() as conn:
            row = conn.execute(query.order_by(c.c.id.desc()).limit(1)).first()
        return as_row(CameraCheckRecord, row) if row else None

    def latest(self) -> list[CameraCheckRecord]:
        """Each camera's latest check that ran (not an error), by camera name."""
        c = s.camera_checks
        latest = self._latest_ran()
        with self._connect() as conn:
            rows = conn.execute(select(c).join(latest, latest.c.id == c.c.id).order_by(c.c.camera))
            return [as_row(CameraCheckRecord, r) for r in rows]

    def failing(self) -> dict[str, str]:
        """Cameras whose latest health check that ran failed, with that check's time (a later check that
        could not run, status error, does not clear a failure)."""
        c = s.camera_checks
        latest = self._latest_ran()
        with self._connect() as conn:
            rows = conn.execute(select(c.c.camera, c.c.checked_at).join(latest, and_(latest.c.id == c.c.id))
                                .where(c.c.status == FAIL))
            return {r.camera: r.checked_at for r in rows}

    @staticmethod
    def _latest_ran() -> Any:
        c = s.camera_checks
        return select(c.c.camera, func.max(c.c.id).label("id")).where(c.c.status != ERROR).group_by(
            c.c.camera).subquery()

    def _insert(self, table: Any, values: Mapping[str, Any]) -> int:
        with self._connect() as conn:
            return int(conn.execute(insert(table).values(**values)).inserted_primary_key[0])
