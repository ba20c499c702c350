"""A training run's record in the workspace, shared by every task (classifier, anomaly, detector).

A run is started (its folder, config and row; or a failed one reopened), marked failed if anything
escapes it, and ends with its exported files registered. The task modules import this, not each other.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from inspectloop.domain import DatasetVersion, TrainingRun
from inspectloop.errors import InspectloopError, TrainingError
from inspectloop.provenance import code_version
from inspectloop.store import atomic_write_text, sha256_bytes
from inspectloop.train.config import TrainConfig
from inspectloop.workspace import Workspace

INTERRUPTED = "interrupted"
# A run trained on another host cannot be checked by its process id: it is taken as interrupted when its
# heartbeat (written after each epoch) is older than this. One epoch took 14 minutes on a busy machine.
STALE_HEARTBEAT = timedelta(hours=1)


@dataclass(frozen=True)
class RunResult:
    run_id: str
    run_dir: Path
    model_path: Path
    metrics: dict[str, Any]
    report: Path


def start_run(workspace: Workspace, version: DatasetVersion, config: TrainConfig,
              resume: str | None, criteria_id: int | None = None) -> tuple[str, TrainConfig]:
    """Record a new run (its folder and config) and return its id, or check and reopen ``resume``."""
    if resume is not None:
        row = workspace.db.runs.get(resume)
        if row is None:
            raise TrainingError(f"no run {resume!r} to resume", "list runs with: inspectloop runs")
        if row.status == "finished":
            raise TrainingError(f"run {resume} already finished", "start a new run instead")
        if run_status(row) == "running":
            raise TrainingError(f"run {resume} is still training (process {row.pid} on {row.host})",
                                "wait for it, or stop that process first")
        if row.dataset_version != version.name:
            raise TrainingError(f"run {resume} trained on {row.dataset_version}, not {version.name}",
                                f"resume with --dataset {row.dataset_version}")
        if criteria_id is not None and row.criteria_id != criteria_id:
            raise TrainingError(f"run {resume} is judged by criteria #{row.criteria_id}, not #{criteria_id}",
                                "resume without --criteria (a run keeps the criteria it started with)")
        workspace.db.runs.reopen(resume, os.getpid(), socket.gethostname())
        return resume, TrainConfig(**row.config)
    run_id = f"run-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
    run_dir = workspace.runs_dir / run_id
    run_dir.mkdir(parents=True)
    atomic_write_text(run_dir / "config.json", json.dumps(config.model_dump(), indent=2))
    workspace.db.runs.add(run_id, version.name, config.model_dump(), code_version(), str(run_dir),
                          criteria_id=criteria_id, pid=os.getpid(), host=socket.gethostname())
    return run_id, config


def run_status(run: TrainingRun, now: datetime | None = None) -> str:
    """The run's status as people need it: a run recorded as running whose training process is gone (killed,
    machine rebooted) is ``interrupted``, and can be resumed with ``--resume``."""
    if run.status != "running":
        return run.status
    if run.pid is not None and run.host == socket.gethostname():
        return "running" if process_alive(run.pid) else INTERRUPTED
    last = run.heartbeat_at or run.started_at  # another host, or a run recorded before processes were
    beat = datetime.fromisoformat(last)
    return INTERRUPTED if (now or datetime.now(UTC)) - beat > STALE_HEARTBEAT else "running"


def process_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine."""
    try:
        os.kill(pid, 0)  # signal 0: checks existence and permission, delivers nothing
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    except OSError:  # Windows: os.kill(pid, 0) fails for a gone process
        return False
    return True


@contextmanager
def failing_run(workspace: Workspace, run_id: str) -> Iterator[None]:
    """Mark ``run_id`` failed, with the reason, if anything escapes the block (then re-raise it)."""
    try:
        yield
    except BaseException as exc:
        message = str(exc) if isinstance(exc, InspectloopError) else f"{type(exc).__name__}: {exc}"
        workspace.db.runs.finish(run_id, "failed", error=message)
        raise


def good_index(workspace: Workspace, names: list[str]) -> int | None:
    """The column of the class the workspace defines as good (pass), or None when ``names`` has none."""
    good = [c.name for c in workspace.db.labels.classes().values() if c.is_good and c.name in names]
    return names.index(good[0]) if good else None


def colour_mode(workspace: Workspace, version: DatasetVersion, config: TrainConfig) -> str:
    """How a run decodes its images: ``config.colour``, or (auto) L when every image is greyscale.

    Greyscale models for greyscale lines: one decode path, and colour JPEGs decode straight to luma."""
    if config.colour != "auto":
        return config.colour
    records = workspace.db.images.get_many([item.sha256 for item in version.items])
    return "L" if all(record.working_mode == "L" for record in records.values()) else "RGB"


def register_model(workspace: Workspace, run_id: str, variant: str, path: Path, weights_sha256: str) -> None:
    """Record an exported model file of a run, with the metadata the file carries."""
    from inspectloop.runtime import EdgeModel

    metadata = EdgeModel(path, backend="onnxruntime").metadata  # metadata only: no backend to compile
    workspace.db.runs.add_model(run_id, variant, str(path), sha256_bytes(path.read_bytes()), weights_sha256,
                           json.loads(metadata.to_json()))


def spread(items: list[Any], count: int) -> list[Any]:
    """Up to ``count`` items taken evenly across the list (so every class of a sorted list is represented)."""
    return items[:: max(1, len(items) // count)][:count]
