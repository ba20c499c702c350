"""Training on a small real subset (NEU steel defects): runs, records, exports, resumes, repeats."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inspectloop.datasets import SplitPlan, create_version, load_version
from inspectloop.errors import TrainingError
from inspectloop.ingest import ingest, scan_folder
from inspectloop.keys import site_key
from inspectloop.runtime import EdgeModel
from inspectloop.runtime.model import INPUT_NAME, OUTPUT_NAME
from inspectloop.train.config import TrainConfig
from inspectloop.train.loop import bf16_native, training_precision
from inspectloop.train.run import train
from inspectloop.workspace import Workspace, init_workspace
from tests.conftest import NEU, link_neu_subset

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not NEU.is_dir(), reason=f"real datasets not found at {NEU}")]
CLASSES = ("crazing", "patches", "scratches")
SMALL = dict(input_size=96, batch_size=16, seed=0)


@pytest.fixture(scope="module")
def neu_subset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 images of each of three NEU classes, linked into a folder-per-class tree."""
    return link_neu_subset(tmp_path_factory.mktemp("neu"), CLASSES, 24)


@pytest.fixture
def ws(tmp_path: Path, neu_subset: Path) -> Workspace:
    workspace = init_workspace(tmp_path / "ws")
    ingest(workspace, scan_folder(neu_subset), source="neu-subset")
    create_version(workspace, SplitPlan(group_by="none", val_fraction=0.25, test_fraction=0.25))
    yield workspace
    workspace.close()


def test_probe_run_is_recorded_exported_and_accurate(ws: Workspace) -> None:
    result = train(ws, TrainConfig(mode="probe", epochs=150, augment="none", **SMALL))
    run = ws.db.runs.get(result.run_id)
    assert run.status == "finished" and run.dataset_version == "v1"
    assert run.config["input_size"] == 96 and run.code_version.startswith("0.1.0")
    assert result.metrics["test"]["macro_recall"] >= 0.8  # three very distinct classes, 6 test images each
    assert set(result.metrics["test"]["per_class"]) == set(CLASSES)
    assert json.loads((result.run_dir / "report" / "metrics.json").read_text())
    model = EdgeModel(result.model_path)
    assert model.metadata.class_names == CLASSES and model.metadata.dataset_version == "v1"
    assert [m.variant for m in ws.db.runs.models(result.run_id)] == ["fp32"]


def test_same_seed_gives_the_same_model(ws: Workspace) -> None:
    config = TrainConfig(mode="probe", epochs=40, augment="none", **SMALL)
    first, second = train(ws, config), train(ws, config)
    digest = [EdgeModel(r.model_path).metadata.weights_sha256 for r in (first, second)]
    assert digest[0] == digest[1]


def test_finetune_resumes_after_interruption(ws: Workspace) -> None:
    config = TrainConfig(mode="finetune", epochs=2, freeze_blocks=12, **SMALL)

    def crash_after_first_epoch(stage: str, info: dict) -> None:
        if stage == "epoch" and info["epoch"] == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(ws, config, progress=crash_after_first_epoch)
    failed = ws.db.runs.list()[-1]
    assert failed.status == "failed" and (Path(failed.artifacts) / "checkpoint.pt").exists()
    result = train(ws, config, resume=failed.id)
    assert result.metrics["resumed_from_epoch"] == 0
    assert [h["epoch"] for h in result.metrics["history"]] == [0, 1]
    assert ws.db.runs.get(failed.id).status == "finished"
    # The default arithmetic is bf16 where this CPU computes it natively, float32 elsewhere; the run says which.
    assert result.metrics["precision"] == training_precision(config) == ("bf16" if bf16_native() else "float32")


def test_int8_variant_is_exported_and_registered(ws: Workspace) -> None:
    result = train(ws, TrainConfig(mode="probe", epochs=60, augment="none", **SMALL), export_int8=True)
    assert sorted(m.variant for m in ws.db.runs.models(result.run_id)) == ["fp32", "int8"]
    assert EdgeModel(result.run_dir / "model-int8.onnx").metadata.class_names == CLASSES
    trusted = [site_key(ws.root).public]  # both variants signed with the workspace's key (issue 10)
    for name in ("model.onnx", "model-int8.onnx"):
        assert EdgeModel(result.run_dir / name, trusted_keys=trusted).signature.state == "verified"


def test_refuses_what_cannot_be_trained(ws: Workspace) -> None:
    with pytest.raises(TrainingError, match="no run 'run-x' to resume"):
        train(ws, TrainConfig(mode="probe", **SMALL), resume="run-x")


def test_temperature_is_fitted_on_the_calibration_split_and_travels_in_the_model(tmp_path: Path,
                                                                                  neu_subset: Path) -> None:
    ws = init_workspace(tmp_path / "calib-ws")
    ingest(ws, scan_folder(neu_subset), source="neu-subset")
    create_version(ws, SplitPlan(group_by="none", val_fraction=0.2, test_fraction=0.2, calib_fraction=0.25))
    result = train(ws, TrainConfig(mode="probe", epochs=100, augment="none", **SMALL))
    calibration = result.metrics["calibration"]
    assert calibration["calibration_images"] == len(load_version(ws).split("calib"))
    assert calibration["temperature"] != 1.0
    assert 0 <= calibration["test_ece_after"] <= 1 and 0 <= calibration["test_ece_before"] <= 1
    model = EdgeModel(result.model_path)
    assert model.metadata.temperature == pytest.approx(calibration["temperature"])
    assert "Calibration (test set)" in result.report.read_text()
    # The review band is fitted on the same split and travels in the file; 54 calibration images
    # cannot certify a 1% escape rate, so nothing is automated and the band says so.
    band = result.metrics["decisions"]["band"]
    assert model.metadata.review["auto_above"] == band["auto_above"] and not band["certifiable"]
    assert "needed" in band["note"] or "at least" in band["note"]
    assert result.metrics["decisions"]["test"]["automation_rate"] <= 1.0
    ws.close()


def test_without_a_calibration_split_confidence_is_left_alone_and_the_report_says_so(ws: Workspace) -> None:
    result = train(ws, TrainConfig(mode="probe", epochs=20, augment="none", **SMALL))
    assert result.metrics["calibration"]["temperature"] == 1.0
    assert "No calibration split" in result.report.read_text()
    assert result.metrics["decisions"] is None and EdgeModel(result.model_path).metadata.review is None


def test_crossfit_fits_the_band_on_out_of_fold_scores_of_every_labelled_image(ws: Workspace) -> None:
    version = load_version(ws)
    folds_seen: set[int] = set()

    def record(stage: str, info: dict) -> None:
        if stage == "epoch" and "fold" in info:
            folds_seen.add(info["fold"])

    config = TrainConfig(mode="probe", epochs=60, augment="none", band_fit="crossfit", folds=3, **SMALL)
    result = train(ws, config, progress=record)
    crossfit = result.metrics["crossfit"]
    pool = len(version.split("train")) + len(version.split("calib"))
    assert folds_seen == {0, 1, 2}
    assert crossfit["folds"] == 3 and crossfit["pool_images"] == pool and sum(crossfit["fold_images"]) == pool
    band = result.metrics["decisions"]["band"]
    assert band["guarantee_kind"] == "crossfit" and band["folds"] == 3 and band["calibration_defects"] == pool
    assert result.metrics["calibration"]["source"] == "out-of-fold scores"
    assert result.metrics["calibration"]["calibration_images"] == pool
    assert 0 <= crossfit["stability_on_val"]["disagreement_rate"] <= 1
    assert EdgeModel(result.model_path).metadata.review["guarantee"] == band["guarantee"]
    assert all((result.run_dir / f"fold-{k}.pt").exists() for k in range(3))


def _interrupted(ws: Workspace, config: TrainConfig, part: str) -> str:
    """The id of a run of ``config`` interrupted after the first epoch of its second ``part`` (fold or ensemble
    member), whose checkpoint is saved by then."""
    def crash_in_second_part(stage: str, info: dict) -> None:
        if stage == "epoch" and info.get(part) == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(ws, config, progress=crash_in_second_part)
    return ws.db.runs.list()[-1].id


def test_an_interrupted_crossfit_run_resumes_after_its_last_finished_fold(ws: Workspace) -> None:
    config = TrainConfig(mode="finetune", epochs=2, freeze_blocks=12, band_fit="crossfit", folds=2, **SMALL)
    failed = _interrupted(ws, config, "fold")
    trained: list[int | None] = []
    result = train(ws, config, resume=failed,
                   progress=lambda stage, info: trained.append(info.get("fold")) if stage == "epoch" else None)
    assert trained == [1, None, None]  # fold 0 kept; fold 1 resumed at its second epoch; the refit trained
    assert result.metrics["crossfit"]["folds"] == 2 and ws.db.runs.get(failed).status == "finished"



def test_a_classifier_with_a_good_class_ships_a_novelty_guard_with_its_rate(tmp_path: Path, neu_subset: Path) -> None:
    from inspectloop.domain import ClassDefinition
    from inspectloop.labels import define_class

    ws = init_workspace(tmp_path / "guard-ws")
    ingest(ws, scan_folder(neu_subset), source="neu-subset")
    define_class(ws, ClassDefinition(name="crazing", severity="none", is_good=True, criterion="stands in for good"))
    create_version(ws, SplitPlan(group_by="none", val_fraction=0.2, test_fraction=0.2, calib_fraction=0.25))
    result = train(ws, TrainConfig(mode="probe", epochs=40, augment="none", novelty_rate=0.05, **SMALL))
    novelty = result.metrics["novelty"]
    version = load_version(ws)
    assert novelty["held_out_images"] == len(version.split("val")) + len(version.split("calib"))
    assert novelty["bank_size"] == novelty["training_images"] == len(version.split("train"))
    assert novelty["rate"] == 0.05 and novelty["source"] == "validation and calibration splits"
    assert 0 <= novelty["test"]["sent_to_review"] <= novelty["test"]["over_threshold"] <= 1
    model = EdgeModel(result.model_path)
    assert model.has_novelty and model.metadata.novelty["threshold"] == novelty["threshold"]
    assert model.predict(ws.blobs.get(version.split("test")[0].sha256)).novelty is not None
    ws.close()


def test_a_standardising_model_exports_and_ignores_exposure_on_the_edge(ws: Workspace, neu_subset: Path) -> None:
    result = train(ws, TrainConfig(mode="probe", epochs=40, augment="none", standardise=True, **SMALL))
    assert ws.db.runs.get(result.run_id).config["standardise"] is True  # exported: the parity check passed
    model = EdgeModel(result.model_path)
    image = next(neu_subset.glob("scratches/*"))
    with Image.open(image) as opened:
        pixels = np.asarray(opened.convert("L"), dtype=np.float32)
    darker = Image.fromarray((pixels * 0.6 + 20).astype(np.uint8))  # another exposure, nothing clipped
    first, second = model.predict(image), model.predict(darker)
    assert first.label == second.label
    assert max(abs(first.scores[c] - second.scores[c]) for c in CLASSES) < 0.03  # 8-bit rounding only


def test_an_ensemble_averages_its_members_resumes_in_the_member_it_stopped_in_and_ships_a_guard(
        tmp_path: Path, neu_subset: Path) -> None:
    import torch

    from inspectloop.domain import ClassDefinition
    from inspectloop.labels import define_class
    from inspectloop.models.ensemble import Ensemble
    from inspectloop.train.fit import new_classifier

    ws = init_workspace(tmp_path / "ensemble-ws")
    ingest(ws, scan_folder(neu_subset), source="neu-subset")
    define_class(ws, ClassDefinition(name="crazing", severity="none", is_good=True, criterion="stands in for good"))
    create_version(ws, SplitPlan(group_by="none", val_fraction=0.2, test_fraction=0.2, calib_fraction=0.25))
    config = TrainConfig(mode="finetune", epochs=2, freeze_blocks=12, ensemble=2, novelty_rate=0.05, **SMALL)
    failed = _interrupted(ws, config, "member")
    trained: list[tuple[int, int]] = []
    result = train(ws, config, resume=failed, progress=lambda stage, info: trained.append(
        (info["member"], info["epoch"])) if stage == "epoch" else None)
    assert trained == [(1, 1)]  # member 0 finished before the crash; member 1 resumed at its second epoch
    assert [(h["member"], h["epoch"]) for h in result.metrics["history"]] == [(0, 0), (0, 1), (1, 0), (1, 1)]

    # The file's probabilities are the mean of the two members', each member its own seed's model.
    members = [new_classifier(config, len(CLASSES), seed) for seed in (0, 1)]
    ensemble = Ensemble(members)
    ensemble.load_state_dict(torch.load(result.run_dir / "weights.pt", weights_only=True))
    ensemble.eval()
    assert not torch.equal(members[0].head[1].weight, members[1].head[1].weight)
    model = EdgeModel(result.model_path)
    assert model.has_novelty  # the guard reads both members' mid-level features
    data = ws.blobs.get(load_version(ws).split("test")[0].sha256)
    batch = model._prepare(model._decode(data, None)[0])
    logits = model.session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0]
    with torch.no_grad():
        mean = torch.stack([torch.softmax(m(torch.from_numpy(batch)), 1) for m in members]).mean(0)
    assert np.allclose(torch.softmax(torch.from_numpy(logits), 1).numpy(), mean.numpy(), atol=1e-4)
    assert model.predict(data).novelty is not None
    ws.close()


def test_an_ensemble_is_refused_where_it_means_nothing() -> None:
    with pytest.raises(ValueError, match="ensemble averages several fine-tuned classifiers"):
        TrainConfig(mode="probe", ensemble=2)
    with pytest.raises(ValueError, match="an ensemble trains one model per member"):
        TrainConfig(ensemble=2, max_minutes=5)
