"""Adapt-then-label: a cycle adapts at once to each drifted camera (candidate judged, shadowed if it passes,
never promoted), and the cycle's labels then score each adapted candidate beside production."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from inspectloop import registry, review
from inspectloop.accept.criteria import lock_criteria
from inspectloop.recalibration.adapt_first import drifted_cameras
from inspectloop.recalibration.cycle import continue_cycle, recalibrate
from inspectloop.runtime import EdgeModel
from inspectloop.store import schema as s
from inspectloop.workspace import Workspace
from tests.monitoring_helpers import NOW, log_predictions, monitored_line
from tests.recalibration.test_cycle import LENIENT
from tests.registry_helpers import tiny_model_bytes, write_criteria
from tests.service_helpers import Line


class FakeAdapter:
    """Stands in for ``adapt.run.adapt``: records a finished adapt run holding the tiny CNN, registered."""

    def __init__(self) -> None:
        self.cameras: list[str] = []

    def __call__(self, workspace: Workspace, camera: str, **options: Any) -> Any:
        self.cameras.append(camera)
        source = registry.get_version(workspace, options["model_version"])
        run = workspace.db.runs.get(source.run_id)
        run_id = f"adapt-{camera}"
        run_dir = workspace.runs_dir / run_id
        run_dir.mkdir(parents=True)
        path = run_dir / "model.onnx"
        path.write_bytes(tiny_model_bytes())
        workspace.db.runs.add(run_id, run.dataset_version, run.config, "test", str(run_dir), kind="adapt",
                              criteria_id=run.criteria_id)
        metadata = EdgeModel(path).metadata
        workspace.db.runs.add_model(run_id, "fp32", str(path), hashlib.sha256(path.read_bytes()).hexdigest(),
                                    metadata.weights_sha256, json.loads(metadata.to_json()))
        workspace.db.runs.finish(run_id, "finished", metrics={"test": {}})
        return type("Adapted", (), {"run_id": run_id, "version": registry.register(workspace, run_id)})()


@pytest.fixture()
def line(tmp_path: Path):  # noqa: ANN201
    line = monitored_line(tmp_path / "ws")
    log_predictions(line, "cam-a", 30, start=NOW - timedelta(days=5), stored_every=1, seed=1)
    log_predictions(line, "cam-b", 30, start=NOW - timedelta(days=4), stored_every=1, seed=2)
    locked = lock_criteria(line.workspace, write_criteria(tmp_path, LENIENT), by="ana")
    with line.workspace.db.engine.begin() as conn:
        conn.execute(update(s.runs).where(s.runs.c.id == line.production.run_id).values(criteria_id=locked.id))
    line.workspace.db.drift.add_alert({"kind": "drift", "camera": "cam-a", "signal": "brightness", "effect": 1.2,
                                       "message": "cam-a: brightness down 40%"})
    yield line
    line.workspace.close()


def test_drifted_cameras_are_those_with_a_drift_alert(line: Line) -> None:
    line.workspace.db.drift.add_alert({"kind": "camera", "camera": "cam-b", "signal": "uniformity", "effect": 0.3,
                                       "message": "cam-b: flat field"})
    assert drifted_cameras(line.workspace, (NOW - timedelta(days=90)).isoformat()) == ["cam-a"]


def test_adapt_at_once_then_labels_confirm(line: Line, monkeypatch: pytest.MonkeyPatch) -> None:
    import inspectloop.adapt.run as adapt_run

    fake = FakeAdapter()
    monkeypatch.setattr(adapt_run, "adapt", fake)
    cycle = recalibrate(line.workspace, now=NOW, sample_size=20, trigger_source="drift", adapt_first=True)
    assert fake.cameras == ["cam-a"] and cycle.params["adapt_first"] is True
    adapted = cycle.sample["adaptations"]["cam-a"]
    assert adapted["acceptance"] == "passed" and adapted["stage"] == "shadow"
    assert registry.get_version(line.workspace, adapted["model_version"]).stage == registry.Stage.shadow
    assert registry.production_model(line.workspace).id == line.production.id  # never promoted silently
    while (item := review.claim_next(line.workspace, "rita")) is not None:
        review.record_verdict(line.workspace, item.id, "rita", "good")
    done = continue_cycle(line.workspace, cycle.id)
    confirmed = done.result["adaptations"]["cam-a"]
    assert confirmed["labelled"] > 0 and 0 <= confirmed["accuracy_adapted"] <= 1
    assert confirmed["confirmed"] == (confirmed["accuracy_adapted"] >= confirmed["accuracy_production"])


def test_a_camera_that_cannot_be_adapted_is_recorded_and_the_cycle_goes_on(line: Line) -> None:
    cycle = recalibrate(line.workspace, now=NOW, sample_size=10, trigger_source="drift", adapt_first=True)
    outcome = cycle.sample["adaptations"]["cam-a"]
    assert outcome["adapted"] is False and "weights.pt" in outcome["reason"]  # the tiny CNN was not trained here
    assert cycle.status == "awaiting_labels" and len(cycle.sample["review_items"]) == 10
