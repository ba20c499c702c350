"""Adapt before labels on a real (NEU probe) classifier: a signed candidate version, judged like any model;
and each refusal in one message: no production, anomaly model, failed camera, too few images."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from sqlalchemy import insert

from inspectloop import registry
from inspectloop.adapt.run import adapt, logged_images
from inspectloop.domain import Stage
from inspectloop.errors import TrainingError
from inspectloop.runtime import EdgeModel
from inspectloop.runtime.preprocess import Preprocess
from inspectloop.store import schema
from tests.acceptance_helpers import CLASSES, TrainedNeu, train_neu_probe
from tests.conftest import NEU
from tests.monitoring_helpers import darker, png

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    if not NEU.is_dir():
        pytest.skip(f"real datasets not found at {NEU}")
    neu = train_neu_probe(tmp_path_factory.mktemp("adapt"))
    yield neu
    neu.workspace.close()


@pytest.fixture(scope="module")
def camera_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 NEU images the model never saw, darker, as a camera whose lighting decayed would take them."""
    folder = tmp_path_factory.mktemp("cam")
    for name in CLASSES:
        for path in sorted((NEU / name).glob("*.jpg"))[40:60]:
            darker(Image.open(path).convert("L")).save(folder / f"{path.stem}.png")
    return folder


def source_version(trained: TrainedNeu) -> registry.ModelVersion:
    found = [v for v in registry.list_versions(trained.workspace) if v.run_id == trained.run_id]
    return found[0] if found else registry.register(trained.workspace, trained.run_id)


def signed_candidate(trained: TrainedNeu, camera: str, folder: Path, method: str) -> tuple[Any, Any, Any]:
    """Adapt the source to ``camera`` by ``method``: a signed candidate, never promoted, judged by the source's
    criteria. Returns the result, its run and the source run."""
    ws = trained.workspace
    result = adapt(ws, camera, folder=folder, model_version=source_version(trained).name, method=method)
    assert result.version.stage == Stage.candidate and registry.production_model(ws) is None
    registry.verify_file(result.version, ws)
    run, source_run = ws.db.runs.get(result.run_id), ws.db.runs.get(trained.run_id)
    assert run.kind == "adapt" and run.criteria_id == source_run.criteria_id
    return result, run, source_run


def test_adapted_model_is_a_signed_candidate_judged_like_any_model(trained: TrainedNeu, camera_folder: Path) -> None:
    from inspectloop.accept.run import accept

    ws = trained.workspace
    source = source_version(trained)
    result = adapt(ws, "cam-2", folder=camera_folder, model_version=source.name, method="batchnorm")
    assert result.version.stage == Stage.candidate and registry.production_model(ws) is None  # never promoted
    registry.verify_file(result.version, ws)  # signed with the site's key, hash as registered
    run = ws.db.runs.get(result.run_id)
    assert run.kind == "adapt" and run.criteria_id == ws.db.runs.get(trained.run_id).criteria_id
    adapted, original = EdgeModel(result.model_path).metadata, EdgeModel(source.path).metadata
    assert adapted.model_version == result.run_id and adapted.class_names == original.class_names
    assert adapted.thresholds == original.thresholds and adapted.temperature == original.temperature
    a = result.metrics["adaptation"]
    assert a["camera"] == "cam-2" and a["images"] == 40 and a["source_version"] == source.name
    assert a["batchnorm"]["layers"] > 40 and a["batchnorm"]["mean_shift"] > 0 and a["batchnorm"]["relative"]
    assert a["method"].startswith("relative to ") and "training images" in a["method"]
    assert 0 <= a["on_camera_images"]["changed"] <= 1 and result.metrics["test"]["count"] > 0
    report = accept(ws, result.run_id)  # the same gate as a retrained model, by the source run's criteria
    assert report.run_criteria_id == report.criteria.id


def test_model_card_says_adapted_without_labels(trained: TrainedNeu, camera_folder: Path) -> None:
    from inspectloop.reports.model_card import write_model_card

    ws = trained.workspace
    result = adapt(ws, "cam-3", folder=camera_folder, model_version=source_version(trained).name, weight=0.5,
                   method="batchnorm", reference=0)
    html = write_model_card(ws, result.version).read_text()
    assert "Adapted without labels" in html and "cam-3" in html and "absolute" in html and "share of the move applied: 0.5" in html


def test_feature_alignment_is_a_candidate_recorded_like_batchnorm(trained: TrainedNeu, camera_folder: Path) -> None:
    from inspectloop.accept.run import accept
    from inspectloop.adapt.features import align_features, pooled_features
    from inspectloop.adapt.run import folder_images, load_classifier, reference_images
    from inspectloop.reports.model_card import write_model_card
    from inspectloop.train.data import to_batch

    ws = trained.workspace
    source = source_version(trained)
    result, run, source_run = signed_candidate(trained, "cam-4", camera_folder, "features")
    a = result.metrics["adaptation"]
    assert a["kind"] == "features" and a["weight"] == 1.0 and a["features"]["images"] == 40 and "batchnorm" not in a
    assert result.metrics["test"]["count"] > 0
    # The candidate is the source with standardise-then-head folded into the head: same parameters' shapes, and
    # on the camera's images the same logits as the source head on the aligned source features.
    metadata = EdgeModel(source.path).metadata
    pre = metadata.preprocess()
    original = load_classifier(source_run, len(CLASSES))
    adapted = load_classifier(run, len(CLASSES))
    camera = list(folder_images(camera_folder, pre, metadata).images)
    alignment = align_features(pooled_features(original, camera, pre),
                               pooled_features(original, reference_images(ws, source_run, 200, pre, metadata), pre))
    with torch.no_grad():
        expected = original.head(torch.from_numpy(alignment.apply(pooled_features(original, camera, pre))))
        got = adapted(to_batch(camera, pre))
    assert torch.allclose(got, expected, atol=1e-3)
    assert {k: v.shape for k, v in adapted.state_dict().items()} == {k: v.shape for k, v in original.state_dict().items()}
    assert all(torch.equal(v, original.state_dict()[k]) for k, v in adapted.state_dict().items() if k.startswith("trunk"))
    html = write_model_card(ws, result.version).read_text()
    assert "Adapted without labels" in html and "pooled features aligned" in html
    report = accept(ws, result.run_id)
    assert report.run_criteria_id == report.criteria.id


def test_rendered_condition_is_a_candidate_with_its_condition_recorded(trained: TrainedNeu,
                                                                      camera_folder: Path) -> None:
    from inspectloop.adapt.run import load_classifier
    from inspectloop.datasets import load_version
    from inspectloop.reports.model_card import write_model_card

    ws = trained.workspace
    result, run, source_run = signed_candidate(trained, "cam-5", camera_folder, "render")
    a = result.metrics["adaptation"]
    training = load_version(ws, source_run.dataset_version).split("train")
    assert a["kind"] == "render" and a["images"] == 40 and a["rendered_images"] == len(training)
    # The camera's images are the same kind of parts at 45% of the light: the gain is read, nothing else much.
    assert 0.35 < a["condition"]["gain"] < 0.55 and a["condition"]["jpeg_quality"] is None
    assert a["on_camera_images"]["changed"] >= 0 and result.metrics["test"]["count"] > 0
    adapted, original = load_classifier(run, len(CLASSES)), load_classifier(source_run, len(CLASSES))
    assert all(torch.equal(v, original.state_dict()[k]) for k, v in adapted.state_dict().items() if k.startswith("trunk"))
    assert not torch.equal(adapted.head[1].weight, original.head[1].weight)  # the head learned the dimmer look
    html = write_model_card(ws, result.version).read_text()
    assert "Adapted without labels" in html and "rendered under the camera&#x27;s condition" in html
    assert "light gain 0.4" in html and "no new JPEG setting" in html


def test_cli_prints_the_condition_it_found(trained: TrainedNeu, camera_folder: Path) -> None:
    from typer.testing import CliRunner

    from inspectloop.cli.app import app

    result = CliRunner().invoke(app, ["adapt", "cam-6", "-w", str(trained.root), "--images", str(camera_folder),
                                      "--model", source_version(trained).name, "--method", "render"])
    assert result.exit_code == 0, result.output
    said = " ".join(result.stdout.split())
    assert "adapted to camera cam-6 on 40 images" in said and "condition gain 0.4" in said
    assert "head refitted on" in said and "next: inspectloop accept adapt-" in said


@pytest.mark.parametrize("method", ["batchnorm", "features", "render"])
def test_refusals(trained: TrainedNeu, camera_folder: Path, method: str) -> None:
    ws = trained.workspace
    name = source_version(trained).name
    with pytest.raises(TrainingError, match="no model version is in production"):
        adapt(ws, "cam-2", folder=camera_folder, method=method)
    with pytest.raises(TrainingError, match=r"camera 'cam-2' has 40 usable image\(s\).*fewer than the 100"):
        adapt(ws, "cam-2", folder=camera_folder, model_version=name, min_images=100, method=method)
    with pytest.raises(TrainingError, match="is not a folder"):
        adapt(ws, "cam-2", folder=camera_folder / "nope", model_version=name, method=method)
    with pytest.raises(TrainingError, match=r"must be in \(0, 1\], got 1.5" if method != "render"
                       else "--weight 1.5 does not apply to rendering"):
        adapt(ws, "cam-2", folder=camera_folder, model_version=name, method=method, weight=1.5)
    ws.db.cameras.add_check({"camera": "cam-dirty", "baseline_id": None, "status": "fail", "marked_suspect": 0,
                             "report": {"checks": [{"check": "uniformity", "status": "fail"},
                                                   {"check": "focus", "status": "pass"}]}})
    with pytest.raises(TrainingError, match=r"camera 'cam-dirty' failed its health check .* \(uniformity\)"):
        adapt(ws, "cam-dirty", folder=camera_folder, model_version=name, method=method)


def test_feature_alignment_refusals(trained: TrainedNeu, camera_folder: Path) -> None:
    name = source_version(trained).name
    for method in ("features", "render"):
        with pytest.raises(TrainingError, match="needs training images .* --reference is 0"):
            adapt(trained.workspace, "cam-2", folder=camera_folder, model_version=name, method=method, reference=0)
    with pytest.raises(TrainingError, match="unknown adaptation method 'median'"):
        adapt(trained.workspace, "cam-2", folder=camera_folder, model_version=name, method="median")


def _registered_like(trained: TrainedNeu, run_id: str, **config: object) -> str:
    """A model version of the trained run's file under a run whose config says ``config``."""
    ws = trained.workspace
    source = ws.db.runs.get(trained.run_id)
    ws.db.runs.add(run_id, source.dataset_version, {**source.config, **config}, "test", source.artifacts)
    ws.db.runs.finish(run_id, "finished", metrics={})
    model = ws.db.runs.models(trained.run_id)[0]
    ws.db.runs.add_model(run_id, "fp32", model.path, model.file_sha256, model.weights_sha256, model.metadata)
    return registry.register(ws, run_id).name


def test_anomaly_model_is_refused(trained: TrainedNeu) -> None:
    version = _registered_like(trained, "run-anomaly", task="anomaly")
    for method, kind in (("features", "feature alignment"), ("batchnorm", "BatchNorm adaptation"),
                         ("render", "rendered adaptation")):
        with pytest.raises(TrainingError, match=f"is an anomaly model .* {kind} does not apply"):
            adapt(trained.workspace, "cam-2", model_version=version, method=method)


def test_an_ensemble_is_refused(trained: TrainedNeu) -> None:
    version = _registered_like(trained, "run-ensemble", ensemble=3)
    with pytest.raises(TrainingError, match="is an ensemble of 3 classifiers; adaptation covers single classifiers"):
        adapt(trained.workspace, "cam-2", model_version=version, method="render")


def test_logged_images_are_recent_stored_and_not_suspect(trained: TrainedNeu) -> None:
    ws = trained.workspace
    shots = [Image.fromarray(np.full((32, 32), 40 * i, dtype=np.uint8)) for i in range(1, 5)]
    digests = [ws.blobs.put(png(s))[0] for s in shots]
    rows = [(digests[0], NOW - timedelta(hours=1), True, False), (digests[1], NOW - timedelta(hours=2), True, True),
            (digests[2], NOW - timedelta(days=30), True, False), (digests[3], NOW - timedelta(hours=3), False, False),
            (digests[0], NOW - timedelta(hours=4), True, False)]
    with ws.db.engine.begin() as conn:
        for n, (digest, at, stored, suspect) in enumerate(rows):
            conn.execute(insert(schema.predictions).values(
                request_id=f"r{n}", received_at=at.isoformat(), source="http", camera="cam-log", extra={},
                image_sha256=digest, image_stored=stored, model_name="m", label="patches", decision="pass",
                confidence=0.9, scores={}, latency_ms={}, suspect=suspect))
    metadata = EdgeModel(source_version(trained).path).metadata
    found = logged_images(ws, "cam-log", timedelta(days=7), Preprocess(metadata.input_size), metadata, now=NOW)
    assert found.names == (digests[0],) and found.suspect_skipped == 1 and found.images[0].size == (96, 96)
