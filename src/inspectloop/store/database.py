"""The only code that talks to the database. Services call these methods; they never see SQL."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, create_engine, event, func, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from inspectloop.domain import Annotation, CaptureMeta, ClassDefinition, ImageRecord, QualityStats, StageChange
from inspectloop.errors import RegistryError
from inspectloop.store import schema as s
from inspectloop.store.migrations import migrate


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer (service + CLI at once)
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints, safe against corruption in WAL
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def make_engine(url: str) -> Engine:
    engine = create_engine(url, future=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


class Database:
    """Typed access to the workspace database."""

    def __init__(self, url: str, root: Path | None = None) -> None:
        self.engine = make_engine(url)
        self.root = Path(root).resolve() if root is not None else None

    def _store_path(self, path: str) -> str:
        """Paths inside the workspace are stored relative to it, so a workspace can be moved or copied."""
        if self.root is None:
            return path
        try:
            return Path(path).resolve().relative_to(self.root).as_posix()
        except ValueError:
            return path

    def _load_path(self, path: str) -> str:
        return path if self.root is None or Path(path).is_absolute() else str(self.root / path)

    def _with_path(self, row: Any, column: str) -> dict[str, Any]:
        data = dict(row._mapping)
        data[column] = self._load_path(data[column])
        return data

    def migrate(self) -> list[int]:
        with self.engine.begin() as conn:
            return migrate(conn)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """All writes inside commit together or not at all."""
        with self.engine.begin() as conn:
            yield conn

    def close(self) -> None:
        self.engine.dispose()

    # -- ingests -------------------------------------------------------------------------------
    def begin_ingest(self, source: str, kind: str) -> int:
        with self.transaction() as conn:
            result = conn.execute(insert(s.ingests).values(source=source, kind=kind, started_at=now_iso()))
            return int(result.inserted_primary_key[0])

    def finish_ingest(self, ingest_id: int, summary: dict[str, Any]) -> None:
        with self.transaction() as conn:
            conn.execute(update(s.ingests).where(s.ingests.c.id == ingest_id)
                         .values(finished_at=now_iso(), summary=summary))

    # -- images --------------------------------------------------------------------------------
    def existing_images(self, digests: Iterable[str]) -> set[str]:
        wanted = list(set(digests))
        found: set[str] = set()
        with self.engine.connect() as conn:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start:start + 500]
                found.update(conn.execute(select(s.images.c.sha256).where(s.images.c.sha256.in_(chunk))).scalars())
        return found

    @staticmethod
    def add_images(conn: Connection, records: Sequence[ImageRecord], ingest_id: int) -> None:
        if records:
            stamp = now_iso()
            conn.execute(insert(s.images), [_image_row(r, ingest_id, stamp) for r in records])

    @staticmethod
    def add_image_sources(conn: Connection, sources: Sequence[tuple[str, str]], ingest_id: int) -> None:
        """Record ``(sha256, original_path)`` pairs: every path an image arrived from."""
        if sources:
            conn.execute(insert(s.image_sources),
                         [{"sha256": d, "original_path": p, "ingest_id": ingest_id} for d, p in sources])

    def images(self, digests: Sequence[str] | None = None) -> dict[str, ImageRecord]:
        query = select(s.images)
        rows: list[Any] = []
        with self.engine.connect() as conn:
            if digests is None:
                rows = list(conn.execute(query))
            else:
                wanted = list(digests)
                for start in range(0, len(wanted), 500):
                    rows += conn.execute(query.where(s.images.c.sha256.in_(wanted[start:start + 500]))).all()
        return {row.sha256: _image_record(row) for row in rows}

    def image_sources(self, digest: str) -> list[str]:
        with self.engine.connect() as conn:
            return list(conn.execute(select(s.image_sources.c.original_path)
                                     .where(s.image_sources.c.sha256 == digest)).scalars())

    def count_images(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(s.images)).scalar_one())

    # -- classes -------------------------------------------------------------------------------
    def upsert_class(self, definition: ClassDefinition, conn: Connection | None = None) -> None:
        values = dict(task=definition.task.value, criterion=definition.criterion,
                      severity=definition.severity.value, is_good=int(definition.is_good), updated_at=now_iso())
        with self._maybe(conn) as c:
            exists = c.execute(select(s.classes.c.name).where(s.classes.c.name == definition.name)).first()
            if exists:
                c.execute(update(s.classes).where(s.classes.c.name == definition.name).values(**values))
            else:
                c.execute(insert(s.classes).values(name=definition.name, created_at=now_iso(), **values))

    def classes(self) -> dict[str, ClassDefinition]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(s.classes).order_by(s.classes.c.name)).all()
        return {row.name: ClassDefinition(name=row.name, criterion=row.criterion, severity=row.severity,
                                          task=row.task, is_good=bool(row.is_good)) for row in rows}

    def add_reference(self, class_name: str, digest: str, note: str | None = None) -> None:
        with self.transaction() as conn:
            conn.execute(s.class_references.insert().prefix_with("OR IGNORE")
                         .values(class_name=class_name, sha256=digest, note=note))

    def references(self, class_name: str) -> list[str]:
        with self.engine.connect() as conn:
            return list(conn.execute(select(s.class_references.c.sha256)
                                     .where(s.class_references.c.class_name == class_name)).scalars())

    # -- annotations ---------------------------------------------------------------------------
    @staticmethod
    def add_annotations(conn: Connection, annotations: Sequence[Annotation]) -> None:
        if annotations:
            conn.execute(insert(s.annotations), [{
                "sha256": a.sha256, "class_name": a.class_name, "annotator": a.annotator, "source": a.source,
                "created_at": a.created_at.isoformat() if a.created_at else now_iso(), "note": a.note,
            } for a in annotations])

    @staticmethod
    def existing_annotations(conn: Connection, digests: Sequence[str]) -> set[tuple[str, str, str]]:
        """``(sha256, class, annotator)`` triples already recorded for these images."""
        query = select(s.annotations.c.sha256, s.annotations.c.class_name, s.annotations.c.annotator)
        return {tuple(row) for row in conn.execute(query.where(s.annotations.c.sha256.in_(list(set(digests)))))}

    def annotations(self) -> list[Annotation]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(s.annotations).order_by(s.annotations.c.id)).all()
        return [Annotation(sha256=r.sha256, class_name=r.class_name, annotator=r.annotator, source=r.source,
                           created_at=datetime.fromisoformat(r.created_at), note=r.note) for r in rows]

    # -- dataset versions ----------------------------------------------------------------------
    def add_dataset_version(self, name: str, parent: str | None, params: dict[str, Any],
                            summary: dict[str, Any], items: Sequence[dict[str, str]]) -> None:
        with self.transaction() as conn:
            conn.execute(insert(s.dataset_versions).values(
                name=name, parent=parent, created_at=now_iso(), params=params, summary=summary))
            rows = [{"version": name, **item} for item in items]
            for start in range(0, len(rows), 1000):
                conn.execute(insert(s.dataset_items), rows[start:start + 1000])

    def dataset_version(self, name: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(s.dataset_versions).where(s.dataset_versions.c.name == name)).first()
        return dict(row._mapping) if row else None

    def dataset_versions(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(s.dataset_versions).order_by(s.dataset_versions.c.created_at)).all()
        return [dict(r._mapping) for r in rows]

    def dataset_items(self, name: str) -> list[dict[str, str]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(s.dataset_items.c.sha256, s.dataset_items.c.label, s.dataset_items.c.split,
                                       s.dataset_items.c.group_key)
                                .where(s.dataset_items.c.version == name)
                                .order_by(s.dataset_items.c.sha256)).all()
        return [dict(r._mapping) for r in rows]

    # -- runs and models -----------------------------------------------------------------------
    def add_run(self, run_id: str, dataset_version: str, config: dict[str, Any], code_version: str,
                artifacts: str, kind: str = "train", criteria_id: int | None = None) -> None:
        with self.transaction() as conn:
            conn.execute(insert(s.runs).values(
                id=run_id, kind=kind, status="running", dataset_version=dataset_version, config=config,
                code_version=code_version, artifacts=self._store_path(artifacts), started_at=now_iso(),
                criteria_id=criteria_id))

    def finish_run(self, run_id: str, status: str, metrics: dict[str, Any] | None = None,
                   error: str | None = None) -> None:
        with self.transaction() as conn:
            conn.execute(update(s.runs).where(s.runs.c.id == run_id)
                         .values(status=status, metrics=metrics, error=error, finished_at=now_iso()))

    def run(self, run_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(s.runs).where(s.runs.c.id == run_id)).first()
        return self._with_path(row, "artifacts") if row else None

    def runs(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(s.runs).order_by(s.runs.c.started_at)).all()
        return [self._with_path(r, "artifacts") for r in rows]

    def add_model(self, run_id: str, variant: str, path: str, file_sha256: str, weights_sha256: str,
                  metadata: dict[str, Any]) -> int:
        with self.transaction() as conn:
            result = conn.execute(insert(s.models).values(
                run_id=run_id, variant=variant, path=self._store_path(path), file_sha256=file_sha256,
                weights_sha256=weights_sha256, created_at=now_iso(), metadata=metadata))
            return int(result.inserted_primary_key[0])

    def models(self, run_id: str | None = None) -> list[dict[str, Any]]:
        query = select(s.models).order_by(s.models.c.id)
        if run_id is not None:
            query = query.where(s.models.c.run_id == run_id)
        with self.engine.connect() as conn:
            return [self._with_path(r, "path") for r in conn.execute(query)]

    # -- acceptance criteria -------------------------------------------------------------------
    def lock_criteria(self, name: str, sha256: str, yaml_text: str, spec: dict[str, Any],
                      locked_by: str) -> dict[str, Any]:
        """Store criteria once: the same ``sha256`` again returns the row already locked."""
        values = dict(name=name, sha256=sha256, yaml=yaml_text, spec=spec, locked_at=now_iso(), locked_by=locked_by)
        try:
            with self.transaction() as conn:
                if conn.execute(select(s.criteria.c.id).where(s.criteria.c.sha256 == sha256)).first() is None:
                    conn.execute(insert(s.criteria).values(**values))
        except IntegrityError:  # locked by another process between our check and insert
            pass
        row = self.criteria_row(sha256=sha256)
        if row is None:  # cannot happen: written just now, by us or by the process we raced
            raise RuntimeError(f"criteria {sha256} vanished after being locked")
        return row

    def criteria_row(self, *, criteria_id: int | None = None, name: str | None = None,
                     sha256: str | None = None) -> dict[str, Any] | None:
        """One lock by id, by sha256, or the latest lock of a name."""
        query = select(s.criteria).order_by(s.criteria.c.id.desc())
        if criteria_id is not None:
            query = query.where(s.criteria.c.id == criteria_id)
        if name is not None:
            query = query.where(s.criteria.c.name == name)
        if sha256 is not None:
            query = query.where(s.criteria.c.sha256 == sha256)
        with self.engine.connect() as conn:
            row = conn.execute(query.limit(1)).first()
        return dict(row._mapping) if row else None

    def criteria_rows(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(s.criteria).order_by(s.criteria.c.id))]

    # -- model registry ------------------------------------------------------------------------
    def add_model_version(self, name: str, run_id: str, model_id: int, variant: str, path: str, file_sha256: str,
                          stage: str, lineage: dict[str, Any]) -> int:
        try:
            with self.transaction() as conn:
                result = conn.execute(insert(s.model_versions).values(
                    name=name, run_id=run_id, model_id=model_id, variant=variant, path=self._store_path(path),
                    file_sha256=file_sha256, stage=stage, created_at=now_iso(), lineage=lineage))
                return int(result.inserted_primary_key[0])
        except IntegrityError as exc:  # registered by another process between the checks and now
            raise RegistryError(f"model version {name!r} or this model file is already registered",
                                "see: inspectloop models list") from exc

    def model_version_row(self, *, version_id: int | None = None, name: str | None = None,
                          model_id: int | None = None, stage: str | None = None) -> dict[str, Any] | None:
        query = select(s.model_versions).order_by(s.model_versions.c.id.desc())
        for column, value in (("id", version_id), ("name", name), ("model_id", model_id), ("stage", stage)):
            if value is not None:
                query = query.where(s.model_versions.c[column] == value)
        with self.engine.connect() as conn:
            row = conn.execute(query.limit(1)).first()
        return self._with_path(row, "path") if row else None

    def model_version_rows(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(s.model_versions).order_by(s.model_versions.c.id)).all()
        return [self._with_path(r, "path") for r in rows]

    def change_stages(self, changes: Sequence[StageChange]) -> None:
        """Apply stage changes and log them, all or none. A version no longer in ``from_stage`` is refused."""
        stamp = now_iso()
        try:
            with self.transaction() as conn:
                for change in changes:
                    table = s.model_versions
                    moved = conn.execute(update(table).where(table.c.id == change.model_version_id)
                                         .where(table.c.stage == change.from_stage).values(stage=change.to_stage))
                    if moved.rowcount != 1:
                        raise RegistryError(f"model version {change.model_version_id} is no longer {change.from_stage}",
                                            "someone changed it meanwhile: check inspectloop models list and retry")
                    conn.execute(insert(s.stage_events).values(**asdict(change), at=stamp))
        except IntegrityError as exc:
            if "stage" not in str(exc.orig):
                raise
            # the one-production index: a concurrent promotion won
            raise RegistryError("another version was put in production at the same time",
                                "check inspectloop models list and retry") from exc

    def stage_events(self, model_version_id: int | None = None) -> list[dict[str, Any]]:
        query = select(s.stage_events).order_by(s.stage_events.c.id)
        if model_version_id is not None:
            query = query.where(s.stage_events.c.model_version_id == model_version_id)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def add_acceptance_report(self, model_version_id: int, criteria_id: int, passed: bool,
                              report: dict[str, Any]) -> int:
        with self.transaction() as conn:
            result = conn.execute(insert(s.acceptance_reports).values(
                model_version_id=model_version_id, criteria_id=criteria_id, passed=passed, report=report,
                created_at=now_iso()))
            return int(result.inserted_primary_key[0])

    def acceptance_reports(self, model_version_id: int) -> list[dict[str, Any]]:
        """A version's acceptance reports, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(s.acceptance_reports)
                                .where(s.acceptance_reports.c.model_version_id == model_version_id)
                                .order_by(s.acceptance_reports.c.id)).all()
        return [dict(r._mapping) for r in rows]

    @contextmanager
    def _maybe(self, conn: Connection | None) -> Iterator[Connection]:
        if conn is not None:
            yield conn
        else:
            with self.transaction() as new:
                yield new


def _image_row(record: ImageRecord, ingest_id: int, stamp: str) -> dict[str, Any]:
    meta = record.meta
    return dict(
        sha256=record.sha256, format=record.format, original_mode=record.original_mode,
        working_mode=record.working_mode, width=record.width, height=record.height, size_bytes=record.size_bytes,
        camera=meta.camera, line=meta.line, shift=meta.shift, lighting=meta.lighting, part_id=meta.part_id,
        session=meta.session, captured_at=meta.captured_at.isoformat() if meta.captured_at else None,
        source=record.source.value, extra=meta.extra, ingest_id=ingest_id, ingested_at=stamp,
        **record.quality.model_dump())


def _image_record(row: Any) -> ImageRecord:
    captured = datetime.fromisoformat(row.captured_at) if row.captured_at else None
    meta = CaptureMeta(camera=row.camera, line=row.line, shift=row.shift, lighting=row.lighting,
                       part_id=row.part_id, session=row.session, captured_at=captured, extra=row.extra or {})
    quality = QualityStats(brightness=row.brightness, contrast=row.contrast, sharpness=row.sharpness,
                           noise=row.noise, clipped_fraction=row.clipped_fraction)
    return ImageRecord(sha256=row.sha256, format=row.format, original_mode=row.original_mode,
                       working_mode=row.working_mode, width=row.width, height=row.height,
                       size_bytes=row.size_bytes, meta=meta, quality=quality, source=row.source)
