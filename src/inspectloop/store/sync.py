"""Sync between sites and a centre: trusted peers, the sync log, what was received, cursors, and the rows
a bundle carries (read on a site, written on the centre)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import func, insert, select, update

from inspectloop.domain.sites import SyncLogEntry, SyncPeer
from inspectloop.store import schema as s
from inspectloop.store.base import Repository, as_row, chunks, insert_new, now_iso

_p, _a, _r = s.predictions, s.annotations, s.review_items
# Columns of a prediction sent up as they are (the id and model version id are the site's own: mapped).
PREDICTION_FIELDS = tuple(c.name for c in _p.columns if c.name not in ("id", "model_version_id"))
ANNOTATION_FIELDS = ("sha256", "class_name", "annotator", "source", "created_at", "note", "probability")
REVIEW_FIELDS = ("image_sha256", "reason", "suggestion", "scores", "details", "priority", "status",
                 "decided_label", "decided_by", "decided_at", "created_at")


class SyncRepository(Repository):
    """The ``sync_peers``, ``sync_log``, ``sync_records``, ``site_summaries`` and ``sync_cursors`` tables, and
    the reads and writes of other tables that a sync bundle carries."""

    # -- peers ---------------------------------------------------------------------------------------
    def add_peer(self, name: str, role: str, key_id: str, public_key: str, added_by: str) -> None:
        with self._connect() as conn:
            conn.execute(insert(s.sync_peers).values(name=name, role=role, key_id=key_id, public_key=public_key,
                                                     added_at=now_iso(), added_by=added_by))

    def peer(self, *, name: str | None = None, key_id: str | None = None) -> SyncPeer | None:
        query = select(s.sync_peers)
        if name is not None:
            query = query.where(s.sync_peers.c.name == name)
        if key_id is not None:
            query = query.where(s.sync_peers.c.key_id == key_id)
        with self._connect() as conn:
            row = conn.execute(query.limit(1)).first()
        return as_row(SyncPeer, row) if row else None

    def peers(self, role: str | None = None) -> list[SyncPeer]:
        query = select(s.sync_peers).order_by(s.sync_peers.c.name)
        if role is not None:
            query = query.where(s.sync_peers.c.role == role)
        with self._connect() as conn:
            return [as_row(SyncPeer, r) for r in conn.execute(query)]

    def lock_peer(self, name: str) -> None:
        """Hold ``name``'s row until the transaction ends: two processes applying the same site's records (a
        ``site receive`` beside the service) take turns, so neither adds what the other is adding."""
        with self._connect() as conn:
            conn.execute(update(s.sync_peers).where(s.sync_peers.c.name == name).values(name=s.sync_peers.c.name))

    def revoke_peer(self, name: str) -> bool:
        with self._connect() as conn:
            return bool(conn.execute(update(s.sync_peers).where(s.sync_peers.c.name == name,
                                                                s.sync_peers.c.revoked_at.is_(None))
                                     .values(revoked_at=now_iso())).rowcount)

    # -- the log -------------------------------------------------------------------------------------
    def log_start(self, *, direction: str, action: str, peer: str, key_id: str | None, bundle: str,
                  bundle_sha256: str, sequence: int | None, status: str = "started",
                  counts: Mapping[str, Any] | None = None, message: str | None = None) -> int:
        """Record a bundle being written, applied or refused; return the entry's id."""
        finished = None if status == "started" else now_iso()
        with self._connect() as conn:
            return int(conn.execute(insert(s.sync_log).values(
                direction=direction, action=action, peer=peer, key_id=key_id, bundle=bundle,
                bundle_sha256=bundle_sha256, sequence=sequence, status=status, counts=dict(counts or {}),
                message=message, started_at=now_iso(), finished_at=finished)).inserted_primary_key[0])

    def log_finish(self, entry_id: int, status: str, counts: Mapping[str, Any], message: str | None = None) -> None:
        with self._connect() as conn:
            conn.execute(update(s.sync_log).where(s.sync_log.c.id == entry_id).values(
                status=status, counts=dict(counts), message=message, finished_at=now_iso()))

    def log(self, *, peer: str | None = None, bundle_sha256: str | None = None, action: str | None = None,
            status: str | None = None, limit: int | None = None) -> list[SyncLogEntry]:
        """Log entries matching every given field, newest first."""
        table = s.sync_log
        query = select(table).order_by(table.c.id.desc())
        for column, value in (("peer", peer), ("bundle_sha256", bundle_sha256), ("action", action),
                              ("status", status)):
            if value is not None:
                query = query.where(table.c[column] == value)
        with self._connect() as conn:
            return [as_row(SyncLogEntry, r) for r in conn.execute(query.limit(limit))]

    # -- on the centre: what each site sent ----------------------------------------------------------
    def known(self, site: str, kind: str, remote_ids: Sequence[str]) -> dict[str, tuple[str | None, str]]:
        """``remote_id -> (local_id, digest)`` of the records of ``site`` and ``kind`` received before."""
        table = s.sync_records
        found: dict[str, tuple[str | None, str]] = {}
        with self._connect() as conn:
            for chunk in chunks(list(remote_ids)):
                rows = conn.execute(select(table.c.remote_id, table.c.local_id, table.c.digest).where(
                    table.c.site == site, table.c.kind == kind, table.c.remote_id.in_(chunk)))
                found.update({r.remote_id: (r.local_id, r.digest) for r in rows})
        return found

    def remember(self, site: str, kind: str, records: Sequence[tuple[str, str | None, str]], log_id: int) -> None:
        """Record ``(remote_id, local_id, digest)`` triples as received from ``site`` (known ones are left)."""
        with self._connect() as conn:
            insert_new(conn, s.sync_records, [{"site": site, "kind": kind, "remote_id": remote, "local_id": local,
                                               "digest": digest, "sync_log_id": log_id}
                                              for remote, local, digest in records])

    def update_digest(self, site: str, kind: str, remote_id: str, digest: str, log_id: int) -> None:
        table = s.sync_records
        with self._connect() as conn:
            conn.execute(update(table).where(table.c.site == site, table.c.kind == kind,
                                             table.c.remote_id == remote_id)
                         .values(digest=digest, sync_log_id=log_id))

    def counts_by_kind(self, site: str) -> dict[str, int]:
        table = s.sync_records
        with self._connect() as conn:
            return {k: int(n) for k, n in conn.execute(select(table.c.kind, func.count()).where(table.c.site == site)
                                                       .group_by(table.c.kind))}

    def insert_predictions(self, rows: Sequence[dict[str, Any]]) -> dict[str, int]:
        """Add predictions (those whose request id is taken are left as they are); ``request_id -> id``."""
        with self._connect() as conn:
            insert_new(conn, _p, list(rows))
            ids: dict[str, int] = {}
            for chunk in chunks([r["request_id"] for r in rows]):
                ids.update({r.request_id: int(r.id) for r in
                            conn.execute(select(_p.c.request_id, _p.c.id).where(_p.c.request_id.in_(chunk)))})
        return ids

    def insert_annotation(self, row: Mapping[str, Any]) -> int:
        with self._connect() as conn:
            return int(conn.execute(insert(_a).values(**row)).inserted_primary_key[0])

    def insert_review_item(self, row: Mapping[str, Any]) -> int:
        """Add a decided review item as it was decided elsewhere."""
        with self._connect() as conn:
            return int(conn.execute(insert(_r).values(**row)).inserted_primary_key[0])

    def versions_by_file(self) -> dict[str, int]:
        """``file_sha256 -> model version id``: a site's model came from here, so its file names the version."""
        with self._connect() as conn:
            return {r.file_sha256: int(r.id) for r in
                    conn.execute(select(s.model_versions.c.file_sha256, s.model_versions.c.id))}

    def put_summary(self, site: str, kind: str, key: str, payload: Mapping[str, Any], digest: str) -> None:
        """Store or replace one summary a site sent."""
        table = s.site_summaries
        with self._connect() as conn:
            done = conn.execute(update(table).where(table.c.site == site, table.c.kind == kind, table.c.key == key)
                                .values(payload=dict(payload), digest=digest, updated_at=now_iso())).rowcount
            if not done:
                conn.execute(insert(table).values(site=site, kind=kind, key=key, payload=dict(payload),
                                                  digest=digest, updated_at=now_iso()))

    def summaries(self, site: str | None = None, kind: str | None = None) -> list[dict[str, Any]]:
        table = s.site_summaries
        query = select(table).order_by(table.c.site, table.c.kind, table.c.key)
        if site is not None:
            query = query.where(table.c.site == site)
        if kind is not None:
            query = query.where(table.c.kind == kind)
        with self._connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def table_digests(self, tables: Mapping[str, Sequence[str]], *, with_ids: bool = True) -> dict[str, str]:
        """SHA-256 per table of its rows in key order, leaving out the named columns (times of writing) and, without
        ``with_ids``, every id column (a database may number rows differently after a rolled-back insert)."""
        import hashlib
        import json

        found = {}
        with self._connect() as conn:
            for name, excluded in tables.items():
                table = s.metadata.tables[name]
                columns = [c for c in table.columns if c.name not in excluded
                           and (with_ids or not (c.name == "id" or c.name.endswith("_id")))]
                order = list(table.primary_key.columns) or columns
                hasher = hashlib.sha256()
                for row in conn.execute(select(*columns).order_by(*order)):
                    hasher.update(json.dumps(list(row), sort_keys=True, default=str).encode() + b"\n")
                found[name] = hasher.hexdigest()
        return found

    # -- on a site: what to send ---------------------------------------------------------------------
    def predictions_after(self, after_id: int, batch: int) -> Iterator[list[dict[str, Any]]]:
        """Predictions with an id above ``after_id``, oldest first, in lists of ``batch``, each row with the
        file digest of the model version that made it (``model_file_sha256``)."""
        mv = s.model_versions
        query = (select(_p, mv.c.file_sha256.label("model_file_sha256"))
                 .outerjoin(mv, mv.c.id == _p.c.model_version_id).order_by(_p.c.id))
        last = after_id
        while True:
            with self._connect() as conn:
                rows = conn.execute(query.where(_p.c.id > last).limit(batch)).all()
            if not rows:
                return
            last = rows[-1].id
            yield [{"id": r.id, "model_file_sha256": r.model_file_sha256,
                    **{f: getattr(r, f) for f in PREDICTION_FIELDS}} for r in rows]

    def annotations_after(self, after_id: int) -> list[dict[str, Any]]:
        with self._connect() as conn:
            rows = conn.execute(select(_a).where(_a.c.id > after_id).order_by(_a.c.id)).all()
        return [{"id": r.id, **{f: getattr(r, f) for f in ANNOTATION_FIELDS}} for r in rows]

    def decided_review_items(self, since: str) -> list[dict[str, Any]]:
        """Done or skipped items decided at or after ``since`` (the same second again: the centre dedupes)."""
        mv = s.model_versions
        query = (select(_r, mv.c.file_sha256.label("model_file_sha256"))
                 .outerjoin(mv, mv.c.id == _r.c.model_version_id)
                 .where(_r.c.status.in_(("done", "skipped")), _r.c.decided_at >= since)
                 .order_by(_r.c.decided_at, _r.c.id))
        with self._connect() as conn:
            rows = conn.execute(query).all()
        return [{"id": r.id, "prediction_id": r.prediction_id, "annotation_id": r.annotation_id,
                 "model_file_sha256": r.model_file_sha256, **{f: getattr(r, f) for f in REVIEW_FIELDS}}
                for r in rows]

    def monitor_runs_after(self, after_id: int) -> list[dict[str, Any]]:
        """Monitor runs with an id above ``after_id``, each with its drift checks (the drift summary)."""
        runs, checks = s.monitor_runs, s.drift_checks
        with self._connect() as conn:
            found = conn.execute(select(runs).where(runs.c.id > after_id).order_by(runs.c.id)).all()
            by_run: dict[int, list[dict[str, Any]]] = {}
            for chunk in chunks([r.id for r in found]):
                for c in conn.execute(select(checks).where(checks.c.monitor_run_id.in_(chunk)).order_by(checks.c.id)):
                    by_run.setdefault(c.monitor_run_id, []).append(
                        {k: v for k, v in c._mapping.items() if k not in ("id", "monitor_run_id")})
        return [{**{k: v for k, v in r._mapping.items() if k != "model_version_id"}, "checks": by_run.get(r.id, [])}
                for r in found]

    def daily_metrics(self, since_day: str) -> list[dict[str, Any]]:
        """Per day (UTC) and camera from ``since_day`` on: predictions, decisions, suspect ones, mean confidence."""
        day = func.substr(_p.c.received_at, 1, 10)
        query = (select(day.label("day"), _p.c.camera, _p.c.decision, func.count().label("n"),
                        func.sum(_p.c.confidence).label("confidence"),
                        func.sum(func.cast(_p.c.suspect, s.Integer)).label("suspect"))
                 .where(_p.c.received_at >= since_day).group_by(day, _p.c.camera, _p.c.decision))
        with self._connect() as conn:
            rows = conn.execute(query).all()
        merged: dict[tuple[str, str], dict[str, Any]] = {}
        for r in rows:
            entry = merged.setdefault((r.day, r.camera or ""), {"day": r.day, "camera": r.camera or "",
                                                                "predictions": 0, "decisions": {},
                                                                "suspect": 0, "confidence_sum": 0.0})
            entry["predictions"] += int(r.n)
            entry["decisions"][r.decision] = int(r.n)
            entry["suspect"] += int(r.suspect or 0)
            entry["confidence_sum"] += float(r.confidence or 0.0)
        out = []
        for key in sorted(merged):
            entry = merged[key]
            total = entry.pop("confidence_sum")
            out.append({**entry, "mean_confidence": round(total / entry["predictions"], 6)})
        return out

    def class_rows(self) -> list[dict[str, Any]]:
        with self._connect() as conn:
            return [{k: v for k, v in r._mapping.items() if k not in ("created_at", "updated_at")}
                    for r in conn.execute(select(s.classes).order_by(s.classes.c.name))]

    def image_rows(self, digests: Sequence[str]) -> list[dict[str, Any]]:
        """The ``images`` rows of ``digests`` without where they were ingested (the receiver records its own)."""
        found = []
        with self._connect() as conn:
            for chunk in chunks(sorted(set(digests))):
                found += [{k: v for k, v in r._mapping.items() if k not in ("ingest_id", "ingested_at")}
                          for r in conn.execute(select(s.images).where(s.images.c.sha256.in_(chunk)))]
        return sorted(found, key=lambda row: row["sha256"])

    def insert_classes(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Add class definitions not defined here (a definition here is left as it is)."""
        stamp = now_iso()
        with self._connect() as conn:
            insert_new(conn, s.classes, [{**row, "created_at": stamp, "updated_at": stamp} for row in rows])

    def insert_images(self, rows: Sequence[Mapping[str, Any]], ingest_id: int) -> None:
        """Record images not recorded yet (their blobs must be stored first)."""
        stamp = now_iso()
        with self._connect() as conn:
            insert_new(conn, s.images, [{**row, "ingest_id": ingest_id, "ingested_at": stamp} for row in rows])

    def ingest_for(self, source: str) -> int:
        """The ingest that records images received in one bundle (made at the first batch, found on a resume)."""
        with self._connect() as conn:
            found = conn.execute(select(s.ingests.c.id).where(s.ingests.c.source == source,
                                                             s.ingests.c.kind == "sync")).scalar()
            if found is not None:
                return int(found)
            return int(conn.execute(insert(s.ingests).values(source=source, kind="sync", started_at=now_iso()))
                       .inserted_primary_key[0])

    def update_prediction_flags(self, prediction_id: int, values: Mapping[str, Any]) -> None:
        """Update what a site may still change on a logged prediction (statistics, suspect, image kept)."""
        with self._connect() as conn:
            conn.execute(update(_p).where(_p.c.id == prediction_id).values(
                **{k: values[k] for k in ("stats", "suspect", "image_stored") if k in values}))

    def cursors(self, peer: str) -> dict[str, str]:
        table = s.sync_cursors
        with self._connect() as conn:
            return {r.kind: r.value for r in conn.execute(select(table).where(table.c.peer == peer))}

    def set_cursors(self, peer: str, values: Mapping[str, str]) -> None:
        table = s.sync_cursors
        with self._connect() as conn:
            for kind, value in values.items():
                done = conn.execute(update(table).where(table.c.peer == peer, table.c.kind == kind)
                                    .values(value=str(value), updated_at=now_iso())).rowcount
                if not done:
                    conn.execute(insert(table).values(peer=peer, kind=kind, value=str(value), updated_at=now_iso()))

    # -- on a site: a model version received from the centre -----------------------------------------
    def add_received_model(self, *, run_id: str, dataset_version: str, path: str, file_sha256: str,
                           weights_sha256: str, metadata: Mapping[str, Any], name: str, variant: str,
                           lineage: Mapping[str, Any], code_version: str) -> int:
        """Record a model file made elsewhere (its run and dataset version as placeholders that name where they
        live) as a candidate version; return the version's id."""
        stamp = now_iso()
        with self._connect() as conn:
            insert_new(conn, s.dataset_versions, [{"name": dataset_version, "parent": None, "created_at": stamp,
                                                   "params": {"received": True}, "summary": {}}])
            insert_new(conn, s.runs, [{"id": run_id, "kind": "received", "status": "finished",
                                       "dataset_version": dataset_version, "config": {},
                                       "code_version": code_version, "artifacts": self._store_path(path),
                                       "started_at": stamp, "finished_at": stamp}])
            model_id = conn.execute(insert(s.models).values(
                run_id=run_id, variant=variant, path=self._store_path(path), file_sha256=file_sha256,
                weights_sha256=weights_sha256, created_at=stamp, metadata=dict(metadata))).inserted_primary_key[0]
            return int(conn.execute(insert(s.model_versions).values(
                name=name, run_id=run_id, model_id=model_id, variant=variant, path=self._store_path(path),
                file_sha256=file_sha256, stage="candidate", created_at=stamp, lineage=dict(lineage)))
                       .inserted_primary_key[0])
