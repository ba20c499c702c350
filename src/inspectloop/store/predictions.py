"""The prediction log: production predictions, shadow results beside them, and human QC verdicts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, insert, select, update

from inspectloop.domain import CaptureMeta, Discrepancy, LoggedPrediction, ShadowComparison, ShadowResult
from inspectloop.store import schema as s
from inspectloop.store.base import Repository, as_row, insert_new_id, now_iso

_p = s.predictions
_IN_BATCH = 500  # ids per IN (...) clause: well under SQLite's and PostgreSQL's parameter limits


class PredictionRepository(Repository):
    """The ``predictions``, ``shadow_predictions`` and ``qc_decisions`` tables."""

    # -- production predictions ---------------------------------------------------------------------
    def add(self, values: Mapping[str, Any], meta: CaptureMeta) -> LoggedPrediction | None:
        """Log a prediction (``values``: every column but the id and the capture fields); return it.

        None when its ``request_id`` is logged already: another service sharing the database logged it
        between this one's ``by_request`` and now (the caller reads that row with ``by_request``)."""
        row = {**values, **_meta_columns(meta), "extra": dict(meta.extra)}
        with self._connect() as conn:
            prediction_id = insert_new_id(conn, _p, row)
        if prediction_id is None:
            return None
        return logged_prediction({**row, "id": prediction_id, "suspect": bool(row.get("suspect", False))},
                                 replayed=False)

    def by_request(self, request_id: str) -> LoggedPrediction | None:
        """The prediction logged for ``request_id`` (the idempotency key), marked replayed."""
        with self._connect() as conn:
            row = conn.execute(select(_p).where(_p.c.request_id == request_id)).first()
        return logged_prediction(row._mapping, replayed=True) if row else None

    def get(self, prediction_id: int) -> LoggedPrediction | None:
        with self._connect() as conn:
            row = conn.execute(select(_p).where(_p.c.id == prediction_id)).first()
        return logged_prediction(row._mapping, replayed=True) if row else None

    def set_stats(self, rows: Iterable[tuple[int, dict[str, Any]]]) -> None:
        """Fill in the image statistics of logged predictions (measured after they were answered)."""
        with self._connect() as conn:
            for prediction_id, stats in rows:
                conn.execute(update(_p).where(_p.c.id == prediction_id).values(stats=stats))

    def mark_image_stored(self, prediction_id: int) -> None:
        with self._connect() as conn:
            conn.execute(update(_p).where(_p.c.id == prediction_id).values(image_stored=True))

    def mark_suspect(self, camera: str, since: str | None) -> int:
        """Mark ``camera``'s predictions received after ``since`` (all of them when None) suspect; return how many."""
        query = update(_p).where(_p.c.camera == camera, _p.c.suspect.is_(False))
        if since:
            query = query.where(_p.c.received_at > since)
        with self._connect() as conn:
            return int(conn.execute(query.values(suspect=True)).rowcount or 0)

    def count(self, request_ids: Iterable[str] | None = None) -> int:
        query = select(func.count()).select_from(_p)
        if request_ids is not None:
            query = query.where(_p.c.request_id.in_(list(request_ids)))
        with self._connect() as conn:
            return int(conn.execute(query).scalar_one())

    def window(self, start: str, end: str, *, model_version_id: int | None = None, stored_only: bool = False,
               cameras: Iterable[str] | None = None) -> list[LoggedPrediction]:
        """Logged predictions received in [start, end), oldest first."""
        query = select(_p).where(_p.c.received_at >= start, _p.c.received_at < end).order_by(_p.c.id)
        if model_version_id is not None:
            query = query.where(_p.c.model_version_id == model_version_id)
        if stored_only:
            query = query.where(_p.c.image_stored.is_(True))
        if cameras is not None:
            query = query.where(_p.c.camera.in_(list(cameras)))
        return self._many(query)

    def first_of(self, model_version_id: int, camera: str, limit: int) -> list[LoggedPrediction]:
        """The first ``limit`` predictions a model version made on ``camera``."""
        return self._many(select(_p).where(_p.c.model_version_id == model_version_id, _p.c.camera == camera)
                          .order_by(_p.c.id).limit(limit))

    def cameras(self, model_version_id: int) -> list[str]:
        """The cameras a model version made predictions on, sorted."""
        with self._connect() as conn:
            found = conn.execute(select(_p.c.camera).where(_p.c.model_version_id == model_version_id)
                                 .distinct()).scalars()
            return sorted(c for c in found if c)

    def conditions(self, model_version_id: int, fields: Sequence[str]) -> dict[str, dict[str, int]]:
        """Predictions a model version made per value of each capture field (``camera``, ``session``...)."""
        found: dict[str, dict[str, int]] = {}
        with self._connect() as conn:
            for name in fields:
                column = _p.c[name]
                rows = conn.execute(select(column, func.count()).where(_p.c.model_version_id == model_version_id,
                                                                       column.is_not(None)).group_by(column))
                found[name] = {str(value): int(count) for value, count in rows}
        return found

    def decision_counts(self, since: str | None = None) -> list[tuple[str | None, str, int]]:
        """``(camera, decision, count)`` over predictions received at or after ``since`` (all when None)."""
        query = select(_p.c.camera, _p.c.decision, func.count()).group_by(_p.c.camera, _p.c.decision)
        if since is not None:
            query = query.where(_p.c.received_at >= since)
        with self._connect() as conn:
            return [(camera, decision, int(count)) for camera, decision, count in conn.execute(query)]

    # -- shadow results ------------------------------------------------------------------------------
    def add_shadow(self, values: Mapping[str, Any]) -> int | None:
        """Log a shadow result once per (prediction, model version); None when it was logged before."""
        table = s.shadow_predictions
        with self._connect() as conn:
            exists = conn.execute(select(table.c.id).where(table.c.prediction_id == values["prediction_id"],
                                                           table.c.model_version_id == values["model_version_id"])
                                  ).first()
            if exists is not None:
                return None
            return int(conn.execute(insert(table).values(**values, created_at=now_iso())).inserted_primary_key[0])

    def shadows_of(self, prediction_id: int) -> list[ShadowResult]:
        """Every shadow result logged on a prediction, with the shadow model version's name."""
        sh, mv = s.shadow_predictions, s.model_versions
        with self._connect() as conn:
            rows = conn.execute(select(sh, mv.c.name.label("model_name")).join(mv, mv.c.id == sh.c.model_version_id)
                                .where(sh.c.prediction_id == prediction_id).order_by(sh.c.id))
            return [as_row(ShadowResult, r) for r in rows]

    def shadow_comparisons(self, model_version_id: int) -> list[ShadowComparison]:
        """Each shadow result of a version beside its production prediction and the latest QC verdict, if any."""
        sh, qc = s.shadow_predictions, s.qc_decisions
        latest_qc = (select(qc.c.prediction_id, func.max(qc.c.id).label("qc_id")).group_by(qc.c.prediction_id)
                     .subquery())
        query = (select(sh.c.prediction_id, sh.c.label.label("shadow_label"),
                        sh.c.decision.label("shadow_decision"), sh.c.confidence.label("shadow_confidence"),
                        sh.c.agrees, _p.c.label.label("production_label"),
                        _p.c.decision.label("production_decision"), _p.c.confidence.label("production_confidence"),
                        _p.c.image_sha256, _p.c.camera, _p.c.request_id, qc.c.label.label("qc_label"), sh.c.boxes)
                 .join(_p, _p.c.id == sh.c.prediction_id)
                 .outerjoin(latest_qc, latest_qc.c.prediction_id == sh.c.prediction_id)
                 .outerjoin(qc, and_(qc.c.id == latest_qc.c.qc_id))
                 .where(sh.c.model_version_id == model_version_id).order_by(sh.c.id))
        with self._connect() as conn:
            return [as_row(ShadowComparison, r) for r in conn.execute(query)]

    def shadow_version_ids(self) -> list[int]:
        """Model versions with logged shadow results, most recent result last."""
        sh = s.shadow_predictions
        with self._connect() as conn:
            rows = conn.execute(select(sh.c.model_version_id, func.max(sh.c.id)).group_by(sh.c.model_version_id)
                                .order_by(func.max(sh.c.id)))
            return [int(r[0]) for r in rows]

    def discrepancies(self, limit: int = 20) -> list[Discrepancy]:
        """The latest shadow results that disagreed with production, newest first."""
        sp, mv = s.shadow_predictions, s.model_versions
        query = (select(_p.c.id, sp.c.created_at, _p.c.camera, _p.c.image_sha256, _p.c.label, _p.c.decision,
                        mv.c.name, sp.c.label.label("shadow_label"), sp.c.decision.label("shadow_decision"))
                 .join(_p, _p.c.id == sp.c.prediction_id).join(mv, mv.c.id == sp.c.model_version_id)
                 .where(sp.c.agrees.is_(False)).order_by(sp.c.created_at.desc(), sp.c.id.desc()).limit(limit))
        with self._connect() as conn:
            return [Discrepancy(*row) for row in conn.execute(query)]

    # -- human QC ------------------------------------------------------------------------------------
    def add_qc(self, prediction_id: int, label: str, inspector: str) -> int:
        """Record a QC inspector's verdict on a logged prediction; return its id."""
        with self._connect() as conn:
            result = conn.execute(insert(s.qc_decisions).values(prediction_id=prediction_id, label=label,
                                                                inspector=inspector, created_at=now_iso()))
            return int(result.inserted_primary_key[0])

    def of_image(self, sha256: str, limit: int = 20) -> list[LoggedPrediction]:
        """The latest ``limit`` production predictions made on an image, newest first."""
        return self._many(select(_p).where(_p.c.image_sha256 == sha256).order_by(_p.c.id.desc()).limit(limit))

    def qc_labels(self, prediction_id: int) -> list[str]:
        """QC verdicts on a prediction, oldest first."""
        qc = s.qc_decisions
        with self._connect() as conn:
            return list(conn.execute(select(qc.c.label).where(qc.c.prediction_id == prediction_id)
                                     .order_by(qc.c.id)).scalars())

    def latest_qc_labels(self, prediction_ids: Iterable[int]) -> dict[int, str]:
        """The latest QC verdict on each of ``prediction_ids`` that has one."""
        qc, wanted = s.qc_decisions, list(prediction_ids)
        found: dict[int, str] = {}
        with self._connect() as conn:
            for start in range(0, len(wanted), _IN_BATCH):
                batch = wanted[start:start + _IN_BATCH]
                rows = conn.execute(select(qc.c.prediction_id, qc.c.label).where(qc.c.prediction_id.in_(batch))
                                    .order_by(qc.c.id))
                found.update({int(pid): label for pid, label in rows})  # later verdicts overwrite earlier ones
        return found

    def _many(self, query: Any) -> list[LoggedPrediction]:
        with self._connect() as conn:
            return [logged_prediction(r._mapping, replayed=False) for r in conn.execute(query)]


def logged_prediction(row: Mapping[str, Any], replayed: bool) -> LoggedPrediction:
    """A ``predictions`` row as a LoggedPrediction."""
    return LoggedPrediction(
        id=int(row["id"]), request_id=row["request_id"], source=row["source"], model_name=row["model_name"],
        model_version_id=row["model_version_id"], label=row["label"], decision=row["decision"],
        confidence=float(row["confidence"]), scores=dict(row["scores"]), latency_ms=dict(row["latency_ms"]),
        image_sha256=row["image_sha256"], image_stored=bool(row["image_stored"]), received_at=row["received_at"],
        replayed=replayed, camera=row["camera"], line=row["line"], shift=row["shift"], lighting=row["lighting"],
        part_id=row["part_id"], session=row["session"], captured_at=row["captured_at"],
        extra=dict(row["extra"] or {}), stats=row["stats"], suspect=bool(row["suspect"]),
        content_sha256=row.get("content_sha256"))


def _meta_columns(meta: CaptureMeta) -> dict[str, str | None]:
    captured: datetime | None = meta.captured_at
    return {"camera": meta.camera, "line": meta.line, "shift": meta.shift, "lighting": meta.lighting,
            "part_id": meta.part_id, "session": meta.session,
            "captured_at": captured.isoformat() if captured else None}
