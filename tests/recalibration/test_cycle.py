"""The recalibration cycle: sample -> review -> comparison with the accepted baseline -> retrain, accept, shadow."""

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
from inspectloop.recalibration import RecalibrationError
from inspectloop.recalibration.cycle import (
    run_scheduled,
    continue_cycle,
    due,
    list_cycles,
    recalibrate,
)
from inspectloop.runtime import EdgeModel
from inspectloop.store import schema as s
from inspectloop.workspace import Workspace
from tests.monitoring_helpers import NOW, log_predictions, monitored_line
from tests.registry_helpers import tiny_model_bytes, write_criteria
from tests.service_helpers import Line

LENIENT = """\
name: lenient
classes:
  scratch: {min_recall: 0.5}
max_escape_rate: 0.5
max_p95_latency_ms: 10000
"""
IMPOSSIBLE = LENIENT.replace("name: lenient", "name: impossible").replace("10000", "0.000001")


class FakeTrainer:
    """Stands in for ``training.train``: records a finished run holding the tiny CNN, on the new dataset."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, workspace: Workspace, config: Any, *, dataset: str, criteria: str) -> Any:
        self.calls.append({"config": config.model_dump(), "dataset": dataset, "criteria": criteria})
        run_id = f"run-recal-{len(self.calls)}"
        run_dir = workspace.runs_dir / run_id
        run_dir.mkdir(parents=True)
        path = run_dir / "model.onnx"
        path.write_bytes(tiny_model_bytes())
        workspace.db.runs.add(run_id, dataset, config.model_dump(), "0.1.0+gtest", str(run_dir),
                             criteria_id=int(criteria))
        metadata = EdgeModel(path).metadata
        workspace.db.runs.add_model(run_id, "fp32", str(path), hashlib.sha256(path.read_bytes()).hexdigest(),
                               metadata.weights_sha256, json.loads(metadata.to_json()))
        workspace.db.runs.finish(run_id, "finished", metrics={"test": {}})
        return type("Run", (), {"run_id": run_id})()


def with_criteria(line: Line, tmp_path: Path, text: str) -> None:
    locked = lock_criteria(line.workspace, write_criteria(tmp_path, text, name=f"{text[6:12]}.yaml"), by="ana")
    with line.workspace.db.engine.begin() as conn:
        conn.execute(update(s.runs).where(s.runs.c.id == line.production.run_id).values(criteria_id=locked.id))


def review_all(line: Line, *, miss_scratches: bool) -> int:
    """Decide every open item: the model's label, except scratches the reviewer says it passed as good."""
    decided = 0
    while (item := review.claim_next(line.workspace, "rita")) is not None:
        label = item.suggestion or "good"
        if miss_scratches and label == "good" and decided % 2 == 0:
            label = "scratch"
        review.record_verdict(line.workspace, item.id, "rita", label)
        decided += 1
    return decided


@pytest.fixture()
def line(tmp_path: Path):
    line = monitored_line(tmp_path / "ws")
    log_predictions(line, "cam-a", 30, start=NOW - timedelta(days=5), stored_every=1, seed=1)
    log_predictions(line, "cam-b", 30, start=NOW - timedelta(days=4), stored_every=1, seed=2)
    yield line
    line.workspace.close()


def suggestions(line: Line) -> None:  # the model's label on each item, as the service would have set it
    with line.workspace.db.engine.begin() as conn:
        for item in conn.execute(s.review_items.select()).all():
            label = conn.execute(s.predictions.select().where(s.predictions.c.id == item.prediction_id)).first().label
            conn.execute(update(s.review_items).where(s.review_items.c.id == item.id).values(suggestion=label))


def test_a_cycle_without_a_drop_ends_with_no_retraining(line: Line) -> None:
    cycle = recalibrate(line.workspace, now=NOW, sample_size=12)
    assert cycle.status == "awaiting_labels" and len(cycle.sample["review_items"]) == 12
    assert review.backlog(line.workspace).open_by_reason["recalibration"] == 12
    with pytest.raises(RecalibrationError, match="12 of 12 sampled images still wait"):
        continue_cycle(line.workspace, cycle.id)
    suggestions(line)
    review_all(line, miss_scratches=False)
    done = recalibrate(line.workspace, now=NOW)  # all decided: the waiting cycle is continued
    assert (done.id, done.status, done.outcome) == (cycle.id, "done", "no_drop")
    assert Path(done.report_path).exists() and Path(done.report_path).with_suffix(".html").exists()  # type: ignore[arg-type]


@pytest.mark.parametrize(("criteria", "outcome", "stage"), [(LENIENT, "shadow", "shadow"),
                                                            (IMPOSSIBLE, "failed_acceptance", "candidate")])
def test_a_recall_drop_retrains_and_only_a_passing_model_reaches_shadow(line: Line, tmp_path: Path, criteria: str,
                                                                         outcome: str, stage: str) -> None:
    with_criteria(line, tmp_path, criteria)
    cycle = recalibrate(line.workspace, now=NOW, sample_size=40)
    suggestions(line)
    review_all(line, miss_scratches=True)
    trainer = FakeTrainer()
    done = continue_cycle(line.workspace, cycle.id, trainer=trainer)
    assert done.outcome == outcome, done.message
    assert done.result["comparison"]["retrain"] and trainer.calls[0]["config"]["mode"] == "probe"
    dataset = done.result["dataset_version"]
    assert dataset["parent"] == "v2" and dataset["added"] > 0 and trainer.calls[0]["dataset"] == dataset["name"]
    new = registry.get_version(line.workspace, done.result["acceptance"]["model_version"])
    assert new.stage == stage and registry.production_model(line.workspace).id == line.production.id  # type: ignore[union-attr]
    assert ("stays in production" in (done.message or "")) == (outcome == "failed_acceptance")


@pytest.mark.parametrize(("retrain_on", "sample_size", "retrains"),
                         [("drift", 40, True), (None, 40, True), ("drop", 40, False), ("drift", 12, False)])
def test_a_drift_opened_cycle_without_a_drop_retrains_only_under_the_drift_policy(
        line: Line, tmp_path: Path, retrain_on: str | None, sample_size: int, retrains: bool) -> None:
    with_criteria(line, tmp_path, LENIENT)
    cycle = recalibrate(line.workspace, now=NOW, sample_size=sample_size, trigger_source="drift", retrain_on=retrain_on)
    assert cycle.params["retrain_on"] == (retrain_on or "drift")  # a drift-opened cycle defaults to "drift"
    suggestions(line)
    review_all(line, miss_scratches=False)  # the reviewers agree with the model: no class dropped
    trainer = FakeTrainer()
    done = continue_cycle(line.workspace, cycle.id, trainer=trainer)
    assert done.result["comparison"]["retrain"] is False and done.result["retrain"] is retrains
    assert len(trainer.calls) == int(retrains)
    if retrains:  # through acceptance to shadow, never to production
        assert done.outcome == "shadow" and done.result["dataset_version"]["added"] > 0
        assert done.result["retrain_reason"] == "drift: learning the new appearance before recall drops"
        assert "drift: learning the new appearance" in (done.message or "")
        new = registry.get_version(line.workspace, done.result["acceptance"]["model_version"])
        assert new.stage == "shadow" and registry.production_model(line.workspace).id == line.production.id  # type: ignore[union-attr]
        report = json.loads(Path(done.report_path).read_text())  # type: ignore[arg-type]
        assert report["result"]["retrain_reason"].startswith("drift:")
    else:
        assert done.outcome == "no_drop" and done.result["retrain_reason"] is None
        assert ("at least 20 labelled images" in (done.message or "")) == (retrain_on == "drift")


def test_the_recall_drop_reason_and_a_bad_policy(line: Line, tmp_path: Path) -> None:
    with pytest.raises(RecalibrationError, match="unknown retraining policy 'always'"):
        recalibrate(line.workspace, now=NOW, retrain_on="always")
    with_criteria(line, tmp_path, LENIENT)
    cycle = recalibrate(line.workspace, now=NOW, sample_size=40)
    assert cycle.params["retrain_on"] == "drop"  # manual cycles keep today's rule by default
    suggestions(line)
    review_all(line, miss_scratches=True)
    done = continue_cycle(line.workspace, cycle.id, trainer=FakeTrainer())
    assert done.result["retrain_reason"] == "recall drop" and "retrained (recall drop)" in (done.message or "")


def test_a_window_without_predictions_is_recorded_and_explained(line: Line) -> None:
    with pytest.raises(RecalibrationError, match="no predictions of .* with stored images"):
        recalibrate(line.workspace, now=NOW + timedelta(days=400), window_days=30)
    assert [(c.status, c.outcome) for c in list_cycles(line.workspace)] == [("done", "no_predictions")]


def test_due_by_calendar_or_drift(line: Line) -> None:
    assert due(line.workspace).due is False
    assert due(line.workspace, now=NOW + timedelta(days=400)).source == "calendar"
    line.workspace.db.drift.add_alert({"kind": "drift", "camera": "cam-a", "signal": "brightness", "effect": 1.2,
                                              "message": "cam-a: brightness down 40%"})
    verdict = due(line.workspace)
    assert verdict.due and verdict.source == "drift" and verdict.alerts == ["cam-a: brightness down 40%"]


def test_a_scheduler_call_starts_waits_and_continues(line: Line) -> None:
    assert run_scheduled(line.workspace, now=NOW).action == "nothing"
    line.workspace.db.drift.add_alert({"kind": "drift", "camera": "cam-a", "signal": "brightness", "effect": 1.2,
                                          "message": "cam-a: brightness down 40%"})
    started = run_scheduled(line.workspace, now=NOW, sample_size=10)
    assert started.action == "started" and started.cycle.trigger_source == "drift"  # type: ignore[union-attr]
    waiting = run_scheduled(line.workspace, now=NOW)
    assert waiting.action == "waiting" and "10 review decisions" in waiting.reason
    suggestions(line)
    review_all(line, miss_scratches=False)
    finished = run_scheduled(line.workspace, now=NOW)
    assert finished.action == "continued" and finished.cycle.outcome == "no_drop"  # type: ignore[union-attr]


ANOMALY_CRITERIA = """\
name: anomaly-lenient
classes:
  good: {min_recall: 0.5}
max_p95_latency_ms: 10000
"""
SMALL_ANOMALY = dict(task="anomaly", input_size=64, coreset_ratio=0.1, threads=1, false_reject_target=0.1,
                     guarantee="marginal")


def test_an_anomaly_models_cycle_compares_good_vs_anomaly_and_refits_the_bank_with_the_new_good_images(
        tmp_path: Path) -> None:
    """Reviewers name defect classes ("scratch"), the model says good or anomaly: a missed scratch is a lost
    anomaly recall; the retraining refits the bank on the original and the newly labelled good images, passes
    the anomaly criteria and reaches shadow."""
    from inspectloop.accept.run import accept
    from inspectloop.datasets import SplitPlan, create_version
    from inspectloop.domain.labels import ClassDefinition
    from inspectloop.ingest import ingest, scan_folder
    from inspectloop.labels import define_class
    from inspectloop.people import add_user
    from inspectloop.train.config import TrainConfig
    from inspectloop.train.run import train
    from inspectloop.workspace import init_workspace
    from tests.monitoring_helpers import png
    from tests.runtime.helpers import synthetic_image

    workspace = init_workspace(tmp_path / "ws", name="line3")
    for label, count in (("good", 60), ("scratch", 12)):
        (tmp_path / "tree" / label).mkdir(parents=True)
        for i in range(count):
            (tmp_path / "tree" / label / f"{label}_{i}.png").write_bytes(png(synthetic_image(label, 600_000 + i)))
    ingest(workspace, scan_folder(tmp_path / "tree"), source="synthetic")
    define_class(workspace, ClassDefinition(name="good", severity="none", is_good=True))
    create_version(workspace, SplitPlan(group_by="none", val_fraction=0.1, test_fraction=0.25, calib_fraction=0.3))
    locked = lock_criteria(workspace, write_criteria(tmp_path, ANOMALY_CRITERIA), by="ana")
    first = train(workspace, TrainConfig(**SMALL_ANOMALY), criteria=str(locked.id))
    accepted = accept(workspace, first.run_id)  # judged as good vs anomaly on the frozen test set
    assert accepted.passed, accepted.failed
    production = registry.promote(workspace, accepted.model_version, "production", actor="ana", reason="test")
    line = Line(workspace, production, add_user(workspace, "rita", "reviewer"), "")
    log_predictions(line, "cam-a", 30, start=NOW - timedelta(days=5), stored_every=1, seed=1,
                    labels=("good", "good", "scratch"))
    cycle = recalibrate(workspace, now=NOW, sample_size=30)
    decided = 0
    while (item := review.claim_next(workspace, "rita")) is not None:  # every other pass is a scratch it missed
        passed = item.scores.get("good", 1.0) >= 0.5 if item.scores else True
        label = "scratch" if not passed or decided % 2 == 0 else "good"
        review.record_verdict(workspace, item.id, "rita", label)
        decided += 1
    done = continue_cycle(workspace, cycle.id)
    assert done.outcome == "shadow", done.message
    classes = {c["name"]: c for c in done.result["comparison"]["classes"]}
    assert set(classes) == {"good", "anomaly"} and classes["anomaly"]["dropped"]
    retrained = workspace.db.runs.get(done.result["run"])
    assert retrained.config["task"] == "anomaly" and retrained.metrics["fit"]["updated_from"] is None  # a refit
    assert retrained.metrics["fit"]["good_images"] > first.metrics["fit"]["good_images"]  # original + new goods
    assert registry.get_version(workspace, done.result["acceptance"]["model_version"]).stage == "shadow"
    workspace.close()
