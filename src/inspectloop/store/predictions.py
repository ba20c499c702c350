"""Store access for the prediction log: predictions, shadow results, QC verdicts, production images.

Every function takes the caller's connection, so the service decides what commits together.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, and_, func, insert, select, update

from inspectloop.domain import ImageRecord
from inspectloop.store import now_iso
from inspectloop.store import schema as s
from inspectloop.store.database import _image_row


def prediction_by_request(conn: Connection, request_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(s.predictions).where(s.predictions.c.request_id == request_id)).first()
    return dict(row._mapping) if row else None


def prediction_by_id(conn: Connection, prediction_id: int) -> dict[str, Any] | None:
    row = conn.execute(select(s.predictions).where(s.predictions.c.id == prediction_id)).first()
    return dict(row._mapping) if row else None


def add_prediction(conn: Connection, values: dict[str, Any]) -> int:
    result = conn.execute(insert(s.predictions).values(**values))
    return int(result.inserted_primary_key[0])


def set_stats(conn: Connection, rows: Iterable[tuple[int, dict[str, Any]]]) -> None:
    """Fill in the image statistics of logged predictions (measured after they were answered)."""
    for prediction_id, stats in rows:
        conn.execute(update(s.predictions).where(s.predictions.c.id == prediction_id).values(stats=stats))


def mark_image_stored(conn: Connection, prediction_id: int) -> None:
    conn.execute(update(s.predictions).where(s.predictions.c.id == prediction_id).values(image_stored=True))


def image_exists(conn: Connection, digest: str) -> bool:
    return conn.execute(select(s.images.c.sha256).where(s.images.c.sha256 == digest)).first() is not None


def add_image(conn: Connection, record: ImageRecord, ingest_id: int) -> None:
    """Record a production image once (its blob must already be stored and synced)."""
    if not image_exists(conn, record.sha256):
        conn.execute(insert(s.images).values(**_image_row(record, ingest_id, now_iso())))


def add_shadow(conn: Connection, values: dict[str, Any]) -> int | None:
    """Log a shadow result once per (prediction, model version); None when it was logged before."""
    table = s.shadow_predictions
    exists = conn.execute(select(table.c.id).where(table.c.prediction_id == values["prediction_id"],
                                                   table.c.model_version_id == values["model_version_id"])).first()
    if exists is not None:
        return None
    return int(conn.execute(insert(table).values(**values, created_at=now_iso())).inserted_primary_key[0])


def shadows_of(conn: Connection, prediction_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(select(s.shadow_predictions).where(s.shadow_predictions.c.prediction_id == prediction_id))
    return [dict(r._mapping) for r in rows]


def add_qc(conn: Connection, prediction_id: int, label: str, inspector: str) -> int:
    result = conn.execute(insert(s.qc_decisions).values(prediction_id=prediction_id, label=label, inspector=inspector,
                                                        created_at=now_iso()))
    return int(result.inserted_primary_key[0])


def qc_labels(conn: Connection, prediction_id: int) -> list[str]:
    return list(conn.execute(select(s.qc_decisions.c.label).where(s.qc_decisions.c.prediction_id == prediction_id)
                             .order_by(s.qc_decisions.c.id)).scalars())


def class_names(conn: Connection) -> set[str]:
    return set(conn.execute(select(s.classes.c.name)).scalars())


def good_classes(conn: Connection) -> set[str]:
    return set(conn.execute(select(s.classes.c.name).where(s.classes.c.is_good == 1)).scalars())


def known_cameras(conn: Connection) -> set[str]:
    """Cameras seen in the workspace's images."""
    return {c for c in conn.execute(select(s.images.c.camera).distinct()).scalars() if c}


def shadow_comparisons(conn: Connection, model_version_id: int) -> list[dict[str, Any]]:
    """Each shadow result of a version beside its production prediction and the latest QC verdict, if any."""
    p, sh, qc = s.predictions, s.shadow_predictions, s.qc_decisions
    latest_qc = (select(qc.c.prediction_id, func.max(qc.c.id).label("qc_id")).group_by(qc.c.prediction_id)
                 .subquery())
    query = (select(sh.c.prediction_id, sh.c.label.label("shadow_label"), sh.c.decision.label("shadow_decision"),
                    sh.c.confidence.label("shadow_confidence"), sh.c.agrees, p.c.label.label("production_label"),
                    p.c.decision.label("production_decision"), p.c.confidence.label("production_confidence"),
                    p.c.image_sha256, p.c.camera, p.c.request_id, qc.c.label.label("qc_label"))
             .join(p, p.c.id == sh.c.prediction_id)
             .outerjoin(latest_qc, latest_qc.c.prediction_id == sh.c.prediction_id)
             .outerjoin(qc, and_(qc.c.id == latest_qc.c.qc_id))
             .where(sh.c.model_version_id == model_version_id).order_by(sh.c.id))
    return [dict(r._mapping) for r in conn.execute(query)]


def shadow_version_ids(conn: Connection) -> list[int]:
    """Model versions with logged shadow results, most recent result last."""
    sh = s.shadow_predictions
    rows = conn.execute(select(sh.c.model_version_id, func.max(sh.c.id)).group_by(sh.c.model_version_id)
                        .order_by(func.max(sh.c.id)))
    return [int(r[0]) for r in rows]


def count_predictions(conn: Connection, request_ids: Iterable[str] | None = None) -> int:
    query = select(func.count()).select_from(s.predictions)
    if request_ids is not None:
        query = query.where(s.predictions.c.request_id.in_(list(request_ids)))
    return int(conn.execute(query).scalar_one())


def shadow_results(conn: Connection, prediction_id: int) -> list[dict[str, Any]]:
    """Every shadow result logged on a prediction, with the shadow model version's name (``model_name``)."""
    sh, mv = s.shadow_predictions, s.model_versions
    rows = conn.execute(select(sh, mv.c.name.label("model_name")).join(mv, mv.c.id == sh.c.model_version_id)
                        .where(sh.c.prediction_id == prediction_id).order_by(sh.c.id))
    return [dict(r._mapping) for r in rows]


def model_version_name(conn: Connection, model_version_id: int) -> str | None:
    return conn.execute(select(s.model_versions.c.name).where(s.model_versions.c.id == model_version_id)).scalar()
