"""Workspaces with finished runs and real (tiny) model files, for the criteria and registry tests.

No training: runs and models are recorded through the store, as ``inspectloop.train.run`` records
them, with the tiny CNN of ``tests/test_export.py`` exported once and copied into each run folder.
"""

from __future__ import annotations

import functools
import hashlib
import json
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import update

from inspectloop.domain import ClassDefinition
from inspectloop.keys import load_signing_key
from inspectloop.labels import define_class
from inspectloop.runtime import EdgeModel
from inspectloop.runtime.signing import sign_model
from inspectloop.store import schema
from inspectloop.workspace import Workspace, init_workspace
from tests.test_export import CLASSES, export_tiny

CRITERIA_YAML = """\
# scratches must be caught
name: line3
classes:
  scratch: {min_recall: 0.9, min_precision: 0.8}
  good: {min_recall: 0.95}
max_escape_rate: 0.05
max_false_alerts_per_hour: 10
max_p95_latency_ms: 50
max_calibration_error: 0.1
line: {parts_per_hour: 600, defect_rate: 0.02}
"""
TEST_METRICS = {"macro_recall": 0.93, "macro_precision": 0.91,
                "per_class": {name: {"precision": 0.9, "recall": 0.93, "f1": 0.91, "support": 10} for name in CLASSES}}


@functools.cache
def tiny_model_bytes() -> bytes:
    """An exported inspectloop model file (the tiny CNN), made once per test session."""
    with tempfile.TemporaryDirectory() as folder:
        return export_tiny(Path(folder) / "tiny.onnx", thresholds={"scratch": 0.4}).path.read_bytes()


def seeded_workspace(root: Path, database: str | None = None) -> Workspace:
    """A workspace with the tiny CNN's classes (good is the pass class) and an empty dataset version v1."""
    workspace = init_workspace(root, name="line3", database=database)
    for name in CLASSES:
        define_class(workspace, ClassDefinition(name=name, severity="none" if name == "good" else "major",
                                                is_good=name == "good"))
    workspace.db.datasets.add("v1", None, {}, {"count": 0, "classes": list(CLASSES)}, [])
    return workspace


def add_run_with_model(workspace: Workspace, run_id: str, *, criteria_id: int | None = None,
                       started_hours_ago: float = 0.0, status: str = "finished", signed: bool = False) -> Path:
    """Record a run (started ``started_hours_ago``) with its fp32 model file; return the file's path.

    With ``signed`` the file is signed with the workspace's key, as training exports it; else it is
    unsigned, as exported before models were signed.
    """
    run_dir = workspace.runs_dir / run_id
    run_dir.mkdir(parents=True)
    path = run_dir / "model.onnx"
    data = tiny_model_bytes()
    if signed:
        data = sign_model(data, load_signing_key(workspace.root))
    path.write_bytes(data)
    workspace.db.runs.add(run_id, "v1", {"mode": "probe"}, "0.1.0+gtest", str(run_dir), criteria_id=criteria_id)
    if started_hours_ago:
        started = (datetime.now(UTC) - timedelta(hours=started_hours_ago)).isoformat(timespec="seconds")
        with workspace.db.engine.begin() as conn:
            conn.execute(update(schema.runs).where(schema.runs.c.id == run_id).values(started_at=started))
    metadata = EdgeModel(path).metadata
    workspace.db.runs.add_model(run_id, "fp32", str(path), hashlib.sha256(data).hexdigest(), metadata.weights_sha256,
                           json.loads(metadata.to_json()))
    if status != "running":
        workspace.db.runs.finish(run_id, status, metrics={"test": TEST_METRICS} if status == "finished" else None)
    return path


def write_criteria(folder: Path, text: str = CRITERIA_YAML, name: str = "criteria.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path
