"""Registered model versions and the log of their stage changes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from inspectloop.domain import ModelFile, ModelVersion, Stage, StageChange, StageEvent
from inspectloop.errors import RegistryError
from inspectloop.store import schema as s
from inspectloop.store.base import Repository, now_iso


class RegistryRepository(Repository):
    """The ``model_versions`` and ``stage_events`` tables."""

    def add(self, name: str, model: ModelFile, stage: Stage, lineage: dict[str, Any]) -> int:
        """Register a model file under ``name``; return the version's id."""
        try:
            with self._connect() as conn:
                result = conn.execute(insert(s.model_versions).values(
                    name=name, run_id=model.run_id, model_id=model.id, variant=model.variant,
                    path=self._store_path(model.path), file_sha256=model.file_sha256, stage=stage.value,
                    created_at=now_iso(), lineage=lineage))
                return int(result.inserted_primary_key[0])
        except IntegrityError as exc:  # registered by another process between the checks and now
            raise RegistryError(f"model version {name!r} or this model file is already registered",
                                "see: inspectloop models list") from exc

    def find(self, *, version_id: int | None = None, name: str | None = None, model_id: int | None = None,
             stage: Stage | None = None) -> ModelVersion | None:
        """The latest version matching every given field, if any."""
        query = select(s.model_versions).order_by(s.model_versions.c.id.desc())
        wanted = {"id": version_id, "name": name, "model_id": model_id, "stage": None if stage is None else str(stage)}
        for column, value in wanted.items():
            if value is not None:
                query = query.where(s.model_versions.c[column] == value)
        with self._connect() as conn:
            row = conn.execute(query.limit(1)).first()
        return self._version(row) if row else None

    def list(self) -> list[ModelVersion]:
        """Every version, oldest first."""
        with self._connect() as conn:
            rows = conn.execute(select(s.model_versions).order_by(s.model_versions.c.id)).all()
        return [self._version(r) for r in rows]

    def change_stages(self, changes: Sequence[StageChange]) -> None:
        """Apply stage changes and log them, all or none. A version no longer in ``from_stage`` is refused."""
        stamp = now_iso()
        table = s.model_versions
        try:
            with self._connect() as conn:
                for change in changes:
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

    def events(self, model_version_id: int | None = None) -> list[StageEvent]:
        """Logged stage changes (of one version when given), oldest first."""
        query = select(s.stage_events).order_by(s.stage_events.c.id)
        if model_version_id is not None:
            query = query.where(s.stage_events.c.model_version_id == model_version_id)
        with self._connect() as conn:
            rows = conn.execute(query).all()
        return [StageEvent(id=r.id, model_version_id=r.model_version_id, action=r.action,
                           from_stage=Stage(r.from_stage), to_stage=Stage(r.to_stage), actor=r.actor,
                           reason=r.reason, acceptance_report_id=r.acceptance_report_id,
                           override=bool(r.override), at=r.at) for r in rows]

    def _version(self, row: Any) -> ModelVersion:
        return ModelVersion(id=row.id, name=row.name, run_id=row.run_id, variant=row.variant,
                            model_id=row.model_id, path=Path(self._load_path(row.path)),
                            file_sha256=row.file_sha256, stage=Stage(row.stage), created_at=row.created_at,
                            lineage=dict(row.lineage))
