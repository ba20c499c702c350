"""A real, quick run to accept: 2 NEU classes x 20 images, criteria locked first, one probe run trained.

``patches`` stands in for the good class (NEU has none), so decisions include "pass" and escapes and
false alerts are counted the way a line with good parts counts them. Further runs that reuse the
trained model file are recorded through the store (as ``inspectloop.train.run`` records them), so each
test judges its own run without training again.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import update

from inspectloop.accept.criteria import lock_criteria
from inspectloop.datasets import SplitPlan, create_version
from inspectloop.domain import ClassDefinition
from inspectloop.ingest import ingest, scan_folder
from inspectloop.labels import define_class
from inspectloop.runtime import EdgeModel
from inspectloop.store import schema
from inspectloop.train.config import TrainConfig
from inspectloop.train.run import train
from inspectloop.workspace import Workspace, init_workspace
from tests.conftest import link_neu_subset

CLASSES = ("patches", "scratches")
GOOD = "patches"
# Loose enough for a 12-image test split and a busy machine, tight enough to mean something.
PASSING_YAML = """\
name: neu-pass
classes:
  patches: {min_recall: 0.8}
  scratches: {min_recall: 0.8, min_precision: 0.8}
max_escape_rate: 0.2
max_false_alerts_per_hour: 120
max_p95_latency_ms: 2000
max_calibration_error: 0.25
line: {parts_per_hour: 600, defect_rate: 0.05}
"""
# The same, but no CPU decides in a microsecond and no 12-image ECE is 0.1 %.
FAILING_YAML = PASSING_YAML.replace("name: neu-pass", "name: neu-fail") \
    .replace("max_p95_latency_ms: 2000", "max_p95_latency_ms: 0.001") \
    .replace("max_calibration_error: 0.25", "max_calibration_error: 0.001")


@dataclass(frozen=True)
class TrainedNeu:
    """The workspace, its trained run (judged by ``neu-pass``) and the ids of the two locked criteria."""

    workspace: Workspace
    root: Path
    run_id: str
    pass_id: int
    fail_id: int


def train_neu_probe(folder: Path) -> TrainedNeu:
    """Ingest, define the good class, split, lock both criteria files, then train one probe run."""
    subset = link_neu_subset(folder / "neu", CLASSES, 20)
    workspace = init_workspace(folder / "ws", name="neu")
    ingest(workspace, scan_folder(subset), source="neu-subset")
    define_class(workspace, ClassDefinition(name=GOOD, severity="none", is_good=True,
                                            criterion="stands in for good parts in these tests"))
    create_version(workspace, SplitPlan(group_by="none", val_fraction=0.25, test_fraction=0.3))
    pass_id = lock_criteria(workspace, write(folder, "pass.yaml", PASSING_YAML), by="ana").id
    fail_id = lock_criteria(workspace, write(folder, "fail.yaml", FAILING_YAML), by="ana").id
    result = train(workspace, TrainConfig(mode="probe", epochs=60, augment="none", input_size=96, batch_size=16),
                   criteria="neu-pass")
    return TrainedNeu(workspace, folder / "ws", result.run_id, pass_id, fail_id)


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def copy_run(trained: TrainedNeu, *, criteria_id: int | None, status: str = "finished",
             started_hours_ago: float = 0.0) -> str:
    """Record a new run of the trained model file (its own copy), judged by ``criteria_id``; return its id."""
    workspace = trained.workspace
    source = workspace.db.runs.get(trained.run_id)
    run_id = f"run-copy-{secrets.token_hex(3)}"
    run_dir = workspace.runs_dir / run_id
    run_dir.mkdir(parents=True)
    path = run_dir / "model.onnx"
    shutil.copyfile(Path(source.artifacts) / "model.onnx", path)
    workspace.db.runs.add(run_id, source.dataset_version, source.config, source.code_version, str(run_dir),
                         criteria_id=criteria_id)
    if started_hours_ago:
        started = (datetime.now(UTC) - timedelta(hours=started_hours_ago)).isoformat(timespec="seconds")
        with workspace.db.engine.begin() as conn:
            conn.execute(update(schema.runs).where(schema.runs.c.id == run_id).values(started_at=started))
    metadata = EdgeModel(path).metadata
    workspace.db.runs.add_model(run_id, "fp32", str(path), hashlib.sha256(path.read_bytes()).hexdigest(),
                           metadata.weights_sha256, json.loads(metadata.to_json()))
    if status != "running":
        workspace.db.runs.finish(run_id, status, metrics=source.metrics)
    return run_id
