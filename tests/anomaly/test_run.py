"""The anomaly training run in a workspace: good images fit, held-out goods certify, one model file ships."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inspectloop.datasets import SplitPlan, create_version
from inspectloop.domain.labels import ClassDefinition
from inspectloop.errors import TrainingError
from inspectloop.ingest import ingest, scan_folder
from inspectloop.labels import define_class
from inspectloop.registry import register
from inspectloop.reports.model_card import write_model_card
from inspectloop.runtime import EdgeModel
from inspectloop.train.config import TrainConfig
from inspectloop.train.run import train
from inspectloop.workspace import Workspace, init_workspace
from tests.anomaly.conftest import surface

SMALL = dict(task="anomaly", input_size=64, coreset_ratio=0.1, threads=1, false_reject_target=0.1,
             guarantee="marginal")


def tree(root: Path, good: range, defects: range, good_name: str = "good") -> Path:
    for label, seeds, defect in ((good_name, good, False), ("dent", defects, True)):
        (root / label).mkdir(parents=True, exist_ok=True)
        for seed in seeds:
            surface(seed, defect=defect).save(root / label / f"{label}_{seed}.png")
    return root


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    workspace = init_workspace(tmp_path / "ws")
    ingest(workspace, scan_folder(tree(tmp_path / "tree", range(60), range(1000, 1012))), source="synthetic")
    define_class(workspace, ClassDefinition(name="good", severity="none", is_good=True))
    create_version(workspace, SplitPlan(group_by="none", val_fraction=0.1, test_fraction=0.25, calib_fraction=0.3))
    yield workspace
    workspace.close()


def test_an_anomaly_run_learns_good_images_and_ships_one_certified_model_file(ws: Workspace) -> None:
    result = train(ws, TrainConfig(**SMALL))
    metrics = result.metrics
    assert metrics["task"] == "anomaly" and metrics["ranking"]["auroc"] == 1.0
    assert metrics["held_out"]["split"] == "calib" and metrics["threshold"]["certified"]
    assert metrics["band"] is None and not metrics["review"]["certifiable"]  # 3 defects certify no escape rate
    assert "No escape-rate claim" in metrics["review"]["guarantee"] and metrics["decisions"]["escape_claim"] is False
    model = EdgeModel(result.model_path)
    assert model.metadata.task == "anomaly" and model.metadata.class_names == ("good", "anomaly")
    assert all(model.predict(surface(5000 + i, defect=True)).decision == "reject" for i in range(5))
    passed = [model.predict(surface(6000 + i)).decision == "pass" for i in range(10)]
    assert sum(passed) >= 7  # a 10% false-reject target: a few good parts may be rejected
    assert ws.db.runs.get(result.run_id).status == "finished"
    trained_on = json.loads((result.run_dir / "trained_on.json").read_text())
    assert len(trained_on) == metrics["fit"]["good_images"]  # good training images only: defects never reach the bank
    report = result.report.read_text()  # the hard cases show where the model saw each part differ
    assert "Heatmaps: yellow marks" in report and report.count("data:image/jpeg") >= 3
    # The registry takes it like any model, and its card says plainly what is and is not certified.
    card = write_model_card(ws, register(ws, result.run_id)).read_text()
    assert "Anomaly model" in card and "No escape-rate claim is made" in card and "of good parts are rejected" in card


def test_update_adds_new_good_images_to_the_bank_and_re_exports(ws: Workspace, tmp_path: Path) -> None:
    first = train(ws, TrainConfig(**SMALL))
    ingest(ws, scan_folder(tree(tmp_path / "more", range(2000, 2020), range(0))), source="new batch")
    create_version(ws, SplitPlan(group_by="none", val_fraction=0.1, test_fraction=0.25, calib_fraction=0.3))
    updated = train(ws, TrainConfig(**SMALL), update=first.run_id)
    fit = updated.metrics["fit"]
    assert fit["updated_from"] == first.run_id and 0 < fit["new_good_images"] <= 20
    assert fit["good_images"] == first.metrics["fit"]["good_images"] + fit["new_good_images"]
    assert updated.model_path != first.model_path and EdgeModel(updated.model_path).metadata.run_id == updated.run_id
    with pytest.raises(TrainingError, match="no good training images that run"):
        train(ws, TrainConfig(**SMALL), update=updated.run_id)


def test_acceptance_judges_an_anomaly_model_as_good_vs_anomaly(ws: Workspace, tmp_path: Path) -> None:
    """The frozen test set's defect classes are "anomaly" to the model: its escapes and false rejects are judged,
    and a defect class's recall is the share of its images the model calls anomaly; precision it cannot have."""
    from inspectloop.accept.criteria import lock_criteria
    from inspectloop.accept.run import accept

    criteria = tmp_path / "anomaly.yaml"
    criteria.write_text("name: anomaly\nclasses:\n  good: {min_recall: 0.5}\n  dent: {min_recall: 0.5, "
                        "min_precision: 0.5}\nmax_escape_rate: 0.5\nguarantee: marginal\n")
    locked = lock_criteria(ws, criteria, by="ana")
    report = accept(ws, train(ws, TrainConfig(**SMALL), criteria=str(locked.id)).run_id)
    results = {r.name: r for r in report.results}
    assert results["good: recall"].passed and results["escape rate"].passed
    assert results["dent: recall"].passed and results["dent: recall"].measured == 1.0
    assert results["dent: recall"].detail.startswith("3 of 3 dent test images called anomaly")
    assert not results["dent: precision"].passed
    assert "'dent' is not one of the model's classes (good, anomaly)" in results["dent: precision"].detail
    assert report.document["measurements"]["defect_detections"] == {"dent": {"called_anomaly": 3, "count": 3}}


@pytest.mark.parametrize("config, update, message", [
    (dict(good_class="dent"), None, "has 4 good training image\\(s\\) of class .dent.; an anomaly model needs at least 10"),
    (dict(good_class="scratch"), None, "good class 'scratch' is not a class"),
    (dict(band_fit="crossfit"), None, "not cross-fitted"),
    ({}, "run-x", "'run-x' is not a finished anomaly run"),
])
def test_refuses_what_an_anomaly_model_cannot_learn(ws: Workspace, config: dict, update: str | None,
                                                    message: str) -> None:
    with pytest.raises(TrainingError, match=message):
        train(ws, TrainConfig(**{**SMALL, **config}), update=update)
    assert ws.db.runs.list() == []  # refused before anything is recorded


def test_a_version_without_a_good_class_is_refused_naming_its_classes(tmp_path: Path) -> None:
    workspace = init_workspace(tmp_path / "ws")
    ingest(workspace, scan_folder(tree(tmp_path / "tree", range(12), range(1000, 1012), "plain")), source="synthetic")
    create_version(workspace, SplitPlan(group_by="none"))
    with pytest.raises(TrainingError, match="has no good class \\(classes: dent, plain\\)"):
        train(workspace, TrainConfig(**SMALL))
    workspace.close()


def test_int8_is_refused_for_an_anomaly_model_before_anything_is_recorded(ws: Workspace) -> None:
    with pytest.raises(TrainingError, match="INT8 export is for classifiers and detectors"):
        train(ws, TrainConfig(**SMALL), export_int8=True)
    assert ws.db.runs.list() == []


def test_update_is_for_anomaly_runs(ws: Workspace) -> None:
    with pytest.raises(TrainingError, match="--update adds good images"):
        train(ws, TrainConfig(mode="probe"), update="run-x")
