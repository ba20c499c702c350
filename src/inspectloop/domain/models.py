"""Training runs, the model files they export, and registered model versions with their stages."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any


class Stage(StrEnum):
    candidate = "candidate"
    shadow = "shadow"
    production = "production"
    retired = "retired"


@dataclass(frozen=True)
class TrainingRun:
    """A training run: its config, dataset version, code version, status and metrics."""

    id: str
    kind: str  # train
    status: str  # running | finished | failed (interrupted: running, its process gone)
    dataset_version: str
    config: dict[str, Any]
    code_version: str
    metrics: dict[str, Any] | None
    artifacts: str  # the run folder
    started_at: str
    finished_at: str | None = None
    error: str | None = None
    criteria_id: int | None = None  # the acceptance criteria it will be judged by, locked before it started
    pid: int | None = None  # the training process while it runs, on ``host``
    host: str | None = None
    heartbeat_at: str | None = None  # written at start and after each epoch


@dataclass(frozen=True)
class ModelFile:
    """A model file a run exported (fp32 or int8), with the hashes that make tampering visible."""

    id: int
    run_id: str
    variant: str  # fp32 | int8
    path: str
    file_sha256: str
    weights_sha256: str
    created_at: str
    metadata: dict[str, Any]


@dataclass(frozen=True)
class ModelVersion:
    """A registered model file: what it is, where it came from, and where it stands."""

    id: int
    name: str
    run_id: str
    variant: str
    model_id: int
    path: Path
    file_sha256: str
    stage: Stage
    created_at: str
    lineage: Mapping[str, Any]

    @property
    def criteria_id(self) -> int | None:
        """The acceptance criteria its run named (None for a run that named none)."""
        return self.lineage.get("criteria_id")


@dataclass(frozen=True)
class StageChange:
    """One model version moving from one stage to another, and the stage event that records it."""

    model_version_id: int
    action: str  # promote | demote | replaced | rollback
    from_stage: str
    to_stage: str
    actor: str
    reason: str | None = None
    acceptance_report_id: int | None = None
    override: bool = False


@dataclass(frozen=True)
class StageEvent:
    """One logged stage change: ``action`` is promote, demote, replaced (by a new production) or rollback."""

    id: int
    model_version_id: int
    action: str
    from_stage: Stage
    to_stage: Stage
    actor: str
    reason: str | None
    acceptance_report_id: int | None
    override: bool
    at: str
