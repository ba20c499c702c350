"""Training runs and the model files they export."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy import insert, select, update

from inspectloop.domain import ModelFile, TrainingRun
from inspectloop.store import schema as s
from inspectloop.store.base import Repository, as_row, now_iso


class RunRepository(Repository):
    """The ``runs`` and ``models`` tables."""

    def add(self, run_id: str, dataset_version: str, config: dict[str, Any], code_version: str,
            artifacts: str, kind: str = "train", criteria_id: int | None = None, pid: int | None = None,
            host: str | None = None) -> None:
        """Record a run that starts now (status "running"), trained by process ``pid`` on ``host``."""
        started = now_iso()
        with self._connect() as conn:
            conn.execute(insert(s.runs).values(
                id=run_id, kind=kind, status="running", dataset_version=dataset_version, config=config,
                code_version=code_version, artifacts=self._store_path(artifacts), started_at=started,
                criteria_id=criteria_id, pid=pid, host=host, heartbeat_at=started))

    def reopen(self, run_id: str, pid: int, host: str) -> None:
        """Mark a failed or interrupted run running again, now trained by process ``pid`` on ``host``."""
        with self._connect() as conn:
            conn.execute(update(s.runs).where(s.runs.c.id == run_id).values(
                status="running", error=None, finished_at=None, pid=pid, host=host, heartbeat_at=now_iso()))

    def beat(self, run_id: str) -> None:
        """Record that the run's process is alive and training (after each epoch)."""
        with self._connect() as conn:
            conn.execute(update(s.runs).where(s.runs.c.id == run_id).values(heartbeat_at=now_iso()))

    def finish(self, run_id: str, status: str, metrics: dict[str, Any] | None = None,
               error: str | None = None) -> None:
        with self._connect() as conn:
            conn.execute(update(s.runs).where(s.runs.c.id == run_id)
                         .values(status=status, metrics=metrics, error=error, finished_at=now_iso()))

    def get(self, run_id: str) -> TrainingRun | None:
        with self._connect() as conn:
            row = conn.execute(select(s.runs).where(s.runs.c.id == run_id)).first()
        return self._run(row) if row else None

    def list(self) -> list[TrainingRun]:
        """Every run, oldest first."""
        with self._connect() as conn:
            rows = conn.execute(select(s.runs).order_by(s.runs.c.started_at)).all()
        return [self._run(r) for r in rows]

    def add_model(self, run_id: str, variant: str, path: str, file_sha256: str, weights_sha256: str,
                  metadata: dict[str, Any]) -> int:
        """Record an exported model file of a run; return its id."""
        with self._connect() as conn:
            result = conn.execute(insert(s.models).values(
                run_id=run_id, variant=variant, path=self._store_path(path), file_sha256=file_sha256,
                weights_sha256=weights_sha256, created_at=now_iso(), metadata=metadata))
            return int(result.inserted_primary_key[0])

    def models(self, run_id: str | None = None) -> list[ModelFile]:
        """Exported model files (of one run when given), oldest first."""
        query = select(s.models).order_by(s.models.c.id)
        if run_id is not None:
            query = query.where(s.models.c.run_id == run_id)
        with self._connect() as conn:
            rows = conn.execute(query).all()
        return [replace(model, path=self._load_path(model.path)) for model in (as_row(ModelFile, r) for r in rows)]

    def _run(self, row: Any) -> TrainingRun:
        run = as_row(TrainingRun, row)
        return replace(run, artifacts=self._load_path(run.artifacts))
