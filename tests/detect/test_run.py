"""A detector trained end to end on a tiny synthetic workspace: regions in, signed file out, boxes at the edge."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from inspectloop.datasets import SplitPlan, create_version
from inspectloop.detect.run import primary_boxes
from inspectloop.domain import Box, CaptureMeta, ClassDefinition, Region, Task
from inspectloop.domain.labelling import LabellingPolicy
from inspectloop.errors import ModelTaskError, TrainingError
from inspectloop.ingest import SourceItem, ingest
from inspectloop.runtime import EdgeModel
from inspectloop.store import sha256_bytes
from inspectloop.train.config import TrainConfig
from inspectloop.train.run import RunResult, train
from inspectloop.workspace import Workspace, init_workspace

CONFIG = TrainConfig(task="detect", input_size=64, epochs=1, batch_size=4, threads=1, tile_overlap=16,
                     box_threshold=0.01)


def _frames(root: Path) -> list[tuple[Path, list[float]]]:
    """Grey frames with one bright square each; a few 96 px wide (tiled by a 64 px model)."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(16):
        width = 96 if i % 4 == 0 else 64
        image = Image.new("L", (width, 64), 110)
        x, y, side = int(rng.integers(4, width - 24)), int(rng.integers(4, 40)), int(rng.integers(10, 20))
        ImageDraw.Draw(image).rectangle((x, y, x + side - 1, y + side - 1), fill=240)
        path = root / "scratch" / f"f{i:02d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path)
        out.append((path, [x, y, x + side, y + side]))
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, RunResult, Path]:
    root = tmp_path_factory.mktemp("detect")
    frames = _frames(root / "images")
    workspace = init_workspace(root / "ws")
    ingest(workspace, [SourceItem(path=p, label="scratch", meta=CaptureMeta()) for p, _ in frames], source="test")
    workspace.db.labels.upsert_class(ClassDefinition(name="scratch", task=Task.detection))
    workspace.db.regions.add([Region(sha256=sha256_bytes(p.read_bytes()), class_name="scratch",
                                     box=Box(x0=b[0], y0=b[1], x1=b[2], y1=b[3]), annotator="ana") for p, b in frames])
    create_version(workspace, SplitPlan(val_fraction=0.25, test_fraction=0.25, group_by="none"), min_per_split=0)
    return workspace, train(workspace, CONFIG, export_int8=True), frames[0][0]


def test_a_detection_run_records_coco_map_and_image_rates(trained: tuple[Workspace, RunResult, Path]) -> None:
    workspace, result, _ = trained
    test = result.metrics["test"]
    assert result.metrics["task"] == "detect" and test["map50"] is not None and 0 <= test["map50"] <= 100
    assert set(test["per_class"]) == {"scratch"} and {"ap50", "ap50_95", "recall", "precision"} <= set(
        test["per_class"]["scratch"])
    assert test["image"]["defective_images"] == test["images"] and result.report.exists()
    assert workspace.db.runs.get(result.run_id).status == "finished"


def test_the_exported_detector_returns_boxes_and_image_scores(trained: tuple[Workspace, RunResult, Path]) -> None:
    _, result, frame = trained
    model = EdgeModel(result.model_path)
    assert model.metadata.task == "detection" and model.metadata.class_names == ("good", "scratch")
    # 64-px images fit the 64-px input and 96-px frames are tiled: both are learnt at native scale
    assert model.metadata.detection["tile_scale"] == result.metrics["tile_scale"] == 1.0
    assert model.signature.state == "unverified"  # signed with the site key
    prediction = model.predict(frame)  # 96 px wide: two tiles
    regions = prediction.regions
    assert regions is not None and regions.image_size == (96, 64) and regions.boxes is not None
    assert set(prediction.scores) == {"good", "scratch"}
    assert prediction.scores["good"] == pytest.approx(1 - prediction.scores["scratch"])
    if len(regions):
        assert regions.class_ids.tolist() == [1] * len(regions) and regions.scores.max() == pytest.approx(
            prediction.scores["scratch"], abs=1e-6)
    assert prediction.to_dict()["regions"]["image_size"] == [96, 64]


def test_int8_on_request_is_the_runs_second_variant_checked_against_the_float_file(
        trained: tuple[Workspace, RunResult, Path]) -> None:
    workspace, result, frame = trained
    int8 = result.metrics["int8"]
    assert {m.variant for m in workspace.db.runs.models(result.run_id)} == {"fp32", "int8"}
    assert int8["agreement"] >= 0.97 and int8["max_score_diff"] <= 0.5 and int8["images_checked"] >= 1
    model = EdgeModel(int8["path"])
    assert model.metadata.model_version == f"{result.run_id}+int8" and model.metadata.task == "detection"
    assert model.signature.state == "unverified"  # signed with the site key, like the float file
    assert model.predict(frame).regions is not None


def test_an_int8_copy_that_fails_its_check_fails_the_run_with_the_fix_and_writes_no_int8_file(
        trained: tuple[Workspace, RunResult, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from inspectloop.errors import ExportError
    workspace, _, _ = trained
    monkeypatch.setattr("inspectloop.detect.run.INT8_MAX_SCORE_DIFF", 0.0)  # no INT8 copy can pass this
    with pytest.raises(ExportError, match="class scores differ from the float model's") as error:
        train(workspace, CONFIG, export_int8=True)
    assert "deploy the float model" in error.value.hint
    run = max(workspace.db.runs.list(), key=lambda r: r.started_at)
    assert run.status == "failed" and not (workspace.runs_dir / run.id / "model-int8.onnx").exists()
    assert "int8" not in {m.variant for m in workspace.db.runs.models(run.id)}


def test_a_detector_asked_for_class_probabilities_refuses(trained: tuple[Workspace, RunResult, Path]) -> None:
    _, result, _ = trained
    with pytest.raises(ModelTaskError, match="boxes"):
        EdgeModel(result.model_path).predict_array(np.zeros((1, 3, 64, 64), dtype=np.float32))


def test_the_box_check_reads_a_detector_files_boxes(trained: tuple[Workspace, RunResult, Path]) -> None:
    from inspectloop.labelquality.boxcheck import KINDS
    from inspectloop.labelquality.boxes import find_box_issues, model_predictor

    workspace, result, frame = trained
    version = workspace.db.datasets.list()[-1].name
    digest = sha256_bytes(frame.read_bytes())
    predicted = model_predictor(workspace, result.model_path)(digest)
    shown = EdgeModel(result.model_path).predict(frame).regions
    assert len(predicted) == len(shown) and set(predicted.classes) <= {"scratch"}
    assert np.allclose(predicted.scores, shown.scores) and np.allclose(predicted.boxes, shown.boxes)
    report = find_box_issues(workspace, version, model=result.model_path, min_score=0.01)
    assert report.images == 16 and report.annotated_boxes == 16 and report.predicted_by == str(result.model_path)
    assert all(f.kind in KINDS for image in report.flagged for f in image.findings)


def test_the_box_check_refuses_a_classifier(tmp_path: Path, trained: tuple[Workspace, RunResult, Path]) -> None:
    from inspectloop.errors import LabelError
    from inspectloop.labelquality.boxes import model_predictor
    from tests.registry_helpers import tiny_model_bytes

    path = tmp_path / "classifier.onnx"
    path.write_bytes(tiny_model_bytes())
    with pytest.raises(LabelError, match="boxes come from a detector"):
        model_predictor(trained[0], path)


def test_a_version_without_regions_is_refused_with_the_fix(tmp_path: Path) -> None:
    workspace = init_workspace(tmp_path / "ws")
    paths = [tmp_path / "a" / f"{i}.png" for i in range(4)]
    paths[0].parent.mkdir()
    for i, path in enumerate(paths):
        Image.new("L", (32, 32), i * 40).save(path)
    ingest(workspace, [SourceItem(path=p, label="a", meta=CaptureMeta()) for p in paths], source="t")
    create_version(workspace, SplitPlan(val_fraction=0.25, test_fraction=0.0, group_by="none"), min_per_split=0)
    with pytest.raises(TrainingError, match="no region annotations") as error:
        train(workspace, CONFIG)
    assert "regions import" in error.value.hint


def test_inspectloop_predict_prints_the_boxes(trained: tuple[Workspace, RunResult, Path]) -> None:
    import json

    from typer.testing import CliRunner

    from inspectloop.cli.app import app

    workspace, result, frame = trained
    out = CliRunner().invoke(app, ["predict", str(result.model_path), str(frame), "--workspace", str(workspace.root)])
    assert out.exit_code == 0, out.output
    record = json.loads(next(line for line in out.stdout.splitlines() if line.startswith("{")))
    assert record["regions"]["image_size"] == [96, 64] and "boxes" in record["regions"]


def test_a_finished_detection_run_cannot_be_resumed(trained: tuple[Workspace, RunResult, Path]) -> None:
    workspace, result, _ = trained
    with pytest.raises(TrainingError, match="already finished"):
        train(workspace, CONFIG, resume=result.run_id)


def test_export_refuses_a_detector_whose_first_class_is_not_the_good_one(tmp_path: Path) -> None:
    from inspectloop.detect.model import build_detector
    from inspectloop.errors import ExportError
    from inspectloop.export import export_detector
    from inspectloop.runtime.metadata import ModelMetadata

    meta = ModelMetadata(task="detection", model_name="m", model_version="1", class_names=("scratch", "good"),
                         good_class="good", input_size=64)
    with pytest.raises(ExportError, match="good class then one per box class"):
        export_detector(build_detector(1, input_size=64, pretrained=False), meta, tmp_path / "m.onnx",
                        [Image.new("L", (64, 64))])
    assert not (tmp_path / "m.onnx").exists()


def test_a_reviewers_corrected_boxes_outrank_the_imported_ones_and_a_quality_engineers_outrank_both() -> None:
    digest = "a" * 64

    def region(i: int, annotator: str, source: str, x: float) -> Region:
        return Region(id=i, sha256=digest, class_name="scratch", box=Box(x0=x, y0=0, x1=x + 5, y1=5),
                      annotator=annotator, source=source)

    imported = [region(1, "voc", "import", 0), region(2, "voc", "import", 10)]
    corrected = [region(3, "ben", "reviewer", 1)]
    boxes, labels = primary_boxes(imported + corrected, {"scratch": 0}, LabellingPolicy())
    assert boxes[digest].tolist() == [[1, 0, 6, 5]] and labels[digest].tolist() == [0]  # the reviewer's word
    policy = LabellingPolicy(annotators={"voc": "quality_engineer"})  # the import is a quality engineer's
    assert primary_boxes(imported + corrected, {"scratch": 0}, policy)[0][digest].shape == (2, 4)
    later = [region(4, "cy", "reviewer", 2)]  # two reviewers: whoever drew last
    assert primary_boxes(imported + corrected + later, {"scratch": 0}, LabellingPolicy())[0][digest][0, 0] == 2


def test_inspectloop_train_task_detect_with_int8_prints_the_test_boxes_and_both_files(
        trained: tuple[Workspace, RunResult, Path]) -> None:
    from typer.testing import CliRunner

    from inspectloop.cli.app import app

    workspace, _, _ = trained
    settings = [part for name in ("input_size=64", "batch_size=4", "threads=1", "tile_overlap=16", "box_threshold=0.01")
                for part in ("--set", name)]
    out = CliRunner().invoke(app, ["train", "--workspace", str(workspace.root), "--task", "detect", "--epochs", "1",
                                   *settings, "--int8"])
    assert out.exit_code == 0, out.output
    run = max(workspace.db.runs.list(), key=lambda r: r.started_at)
    assert "scratch" in out.output and run.id in out.output and run.status == "finished"
    assert f"boxes: test mAP50 {run.metrics['test']['map50']:.1f}, mAP50:95" in out.output
    assert "images: defect recall" in out.output and "model-int8.onnx" in out.output
    assert {m.variant for m in workspace.db.runs.models(run.id)} == {"fp32", "int8"}
