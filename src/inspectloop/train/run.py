"""A training run: dataset version in, evaluated and exported model out, everything recorded.

The run records its config, dataset version, code version and metrics in the workspace; its folder
holds the checkpoint (for resume), the weights, the evaluation report and the exported model file.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from inspectloop.criteria import get_criteria
from inspectloop.datasets import DatasetVersion, load_version
from inspectloop.errors import InspectloopError, TrainingError
from inspectloop.provenance import code_version
from inspectloop.store import atomic_write_text, now_iso, sha256_bytes
from inspectloop.train.config import TrainConfig
from inspectloop.workspace import Workspace

Progress = Callable[[str, dict[str, Any]], None]
MIN_TRAIN_IMAGES = 8
INT8_CALIBRATION_IMAGES = 200
INT8_CHECK_IMAGES = 128


@dataclass(frozen=True)
class RunResult:
    run_id: str
    run_dir: Path
    model_path: Path
    metrics: dict[str, Any]
    report: Path


def train(workspace: Workspace, config: TrainConfig | None = None, *, dataset: str = "latest",
          resume: str | None = None, export_int8: bool = False, progress: Progress | None = None,
          criteria: str | None = None) -> RunResult:
    """Train, evaluate on the frozen test set, export to ONNX with a parity check, and register the model.

    ``criteria`` (id or name of locked acceptance criteria) is recorded as what the run will be judged by.
    """
    config = config or TrainConfig()
    criteria_id = None if criteria is None else get_criteria(workspace, criteria).id
    version = load_version(workspace, dataset)
    _check_trainable(version)
    run_id, config = _start_run(workspace, version, config, resume, criteria_id)
    run_dir = workspace.runs_dir / run_id
    try:
        result = _execute(workspace, version, config, run_id, run_dir, export_int8, progress or _quiet)
    except BaseException as exc:
        message = str(exc) if isinstance(exc, InspectloopError) else f"{type(exc).__name__}: {exc}"
        workspace.db.finish_run(run_id, "failed", error=message)
        raise
    return result


def _quiet(_stage: str, _info: dict[str, Any]) -> None:
    return None


def _check_trainable(version: DatasetVersion) -> None:
    train_items = version.split("train")
    if len(version.class_names) < 2:
        raise TrainingError(f"dataset version {version.name} has {len(version.class_names)} class(es)",
                            "a classifier needs at least two classes (for example good and one defect)")
    if len(train_items) < MIN_TRAIN_IMAGES:
        raise TrainingError(f"dataset version {version.name} has only {len(train_items)} training images",
                            f"ingest more images: at least {MIN_TRAIN_IMAGES}, realistically dozens per class")
    missing = sorted(set(version.class_names) - {item.label for item in train_items})
    if missing:
        raise TrainingError(f"classes {missing} have no training images in {version.name}",
                            "add images of those classes and make a new dataset version")


def _start_run(workspace: Workspace, version: DatasetVersion, config: TrainConfig,
               resume: str | None, criteria_id: int | None = None) -> tuple[str, TrainConfig]:
    if resume is not None:
        row = workspace.db.run(resume)
        if row is None:
            raise TrainingError(f"no run {resume!r} to resume", "list runs with: inspectloop runs")
        if row["status"] == "finished":
            raise TrainingError(f"run {resume} already finished", "start a new run instead")
        if row["dataset_version"] != version.name:
            raise TrainingError(f"run {resume} trained on {row['dataset_version']}, not {version.name}",
                                f"resume with --dataset {row['dataset_version']}")
        if criteria_id is not None and row["criteria_id"] != criteria_id:
            raise TrainingError(f"run {resume} is judged by criteria #{row['criteria_id']}, not #{criteria_id}",
                                "resume without --criteria (a run keeps the criteria it started with)")
        return resume, TrainConfig(**row["config"])
    run_id = f"run-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
    run_dir = workspace.runs_dir / run_id
    run_dir.mkdir(parents=True)
    atomic_write_text(run_dir / "config.json", json.dumps(config.model_dump(), indent=2))
    workspace.db.add_run(run_id, version.name, config.model_dump(), code_version(), str(run_dir),
                         criteria_id=criteria_id)
    return run_id, config


def _execute(workspace: Workspace, version: DatasetVersion, config: TrainConfig, run_id: str, run_dir: Path,
             export_int8: bool, progress: Progress) -> RunResult:
    import torch

    from inspectloop.decisions.calibration import softmax
    from inspectloop.evaluation import evaluate_predictions
    from inspectloop.train.calibrate import calibrate, fit_decisions
    from inspectloop.models.backbones import backbone_spec, load_backbone
    from inspectloop.models.classifier import Classifier
    from inspectloop.runtime.preprocess import Preprocess
    from inspectloop.train.data import load_image_set
    from inspectloop.train.loop import finetune, predict_logits, probe, seed_everything

    if config.threads:
        torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    spec = backbone_spec(config.backbone)
    preprocess = Preprocess(config.input_size, spec.mean, spec.std)
    names = list(version.class_names)
    colour = _colour_mode(workspace, version, config)

    def load(split: str):  # noqa: ANN202
        items = version.split(split)
        return items, load_image_set(items, names, workspace.blobs.get, preprocess, draft=config.jpeg_draft,
                                     mode=colour,
                                     progress=lambda n, total: progress("load", {"split": split, "done": n, "total": total}))

    (_, train_set), (_, val_set), (test_items, test_set) = load("train"), load("val"), load("test")
    model = Classifier(load_backbone(config.backbone, input_size=config.input_size), spec.feature_dim, len(names))
    on_epoch = lambda record: progress("epoch", {**record, "epochs": config.epochs})  # noqa: E731
    if config.mode == "probe":
        result = probe(model, train_set, val_set, preprocess, config, on_epoch)
    else:
        result = finetune(model, train_set, val_set, preprocess, config, run_dir / "checkpoint.pt", on_epoch)
    torch.save(result.model.state_dict(), run_dir / "weights.pt")
    progress("evaluate", {})
    test_logits = predict_logits(result.model, test_set, preprocess)
    calib_logits, calib_labels = _calibration_logits(result.model, version, load, preprocess)
    confidence = calibrate(calib_logits, calib_labels, test_logits, test_set.labels)
    good_index = _good_index(workspace, names)
    band = None if calib_logits is None else fit_decisions(
        softmax(calib_logits, confidence.temperature), calib_labels, softmax(test_logits, confidence.temperature),
        test_set.labels, good_index=good_index, alpha=config.alpha, confidence=config.confidence,
        guarantee=config.guarantee, targets=_recall_targets(workspace, names, good_index, config), class_names=names)
    context = {"run": run_id, "dataset_version": version.name, "split": "test", "backbone": config.backbone,
               "input_size": config.input_size, "mode": config.mode, "best_epoch": result.best_epoch,
               "train_seconds": round(result.seconds, 1), "temperature": round(confidence.temperature, 4),
               "code_version": code_version()}
    evaluation = evaluate_predictions(workspace, test_items, names, test_logits.argmax(1), run_dir / "report",
                                      title=f"{run_id} on {version.name}/test", context=context,
                                      figures=[confidence.figure])
    progress("export", {})
    # Export checks use validation images: the frozen test set only ever scores the finished model.
    int8_images = _spread(train_set.images, INT8_CALIBRATION_IMAGES) if export_int8 else []
    model_path = _export(workspace, result.model, version, config, run_id, run_dir,
                         _spread(val_set.images, INT8_CHECK_IMAGES), int8_images, names, colour,
                         confidence.temperature, band.review if band else None, band.thresholds if band else {})
    metrics = {"test": evaluation.summary(), "calibration": confidence.to_dict(),
               "decisions": band.summary if band else None, "history": result.history,
               "best_epoch": result.best_epoch, "train_seconds": round(result.seconds, 1),
               "resumed_from_epoch": result.resumed_from}
    atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2))
    workspace.db.finish_run(run_id, "finished", metrics=metrics)
    return RunResult(run_id, run_dir, model_path, metrics, evaluation.files.html)


def _calibration_logits(model: Any, version: DatasetVersion, load: Any, preprocess: Any) -> tuple[Any, Any]:
    """Logits and labels of the calibration split, or (None, None) when the version has none."""
    from inspectloop.train.loop import predict_logits

    if not version.split("calib"):
        return None, None
    _, calib_set = load("calib")
    return predict_logits(model, calib_set, preprocess), calib_set.labels


def _recall_targets(workspace: Workspace, names: list[str], good_index: int | None,
                    config: TrainConfig) -> dict[str, float]:
    """Each defect class's target recall: the run's own setting, else its severity's default."""
    from inspectloop.decisions.operating_points import target_recalls

    severities = {c.name: c.severity.value for c in workspace.db.classes().values()}
    return target_recalls(names, severities, names[good_index] if good_index is not None else None,
                          per_class=config.recall_targets)


def _good_index(workspace: Workspace, names: list[str]) -> int | None:
    good = [c.name for c in workspace.db.classes().values() if c.is_good and c.name in names]
    return names.index(good[0]) if good else None


def _spread(images: list[Any], count: int) -> list[Any]:
    """Up to ``count`` images taken evenly across the list (so every class is represented)."""
    return images[:: max(1, len(images) // count)][:count]


def _colour_mode(workspace: Workspace, version: DatasetVersion, config: TrainConfig) -> str:
    """Greyscale models for greyscale lines: one decode path, and colour JPEGs decode straight to luma."""
    if config.colour != "auto":
        return config.colour
    records = workspace.db.images([item.sha256 for item in version.items])
    return "L" if all(record.working_mode == "L" for record in records.values()) else "RGB"


def _export(workspace: Workspace, model: Any, version: DatasetVersion, config: TrainConfig, run_id: str,
            run_dir: Path, checks: list[Any], calibration: list[Any], names: list[str], colour: str,
            temperature: float, review: dict[str, Any] | None, thresholds: dict[str, float]) -> Path:
    """Export fp32 (parity-checked against PyTorch) and, given calibration images, an INT8 variant.

    INT8 must agree with the float model's top-1 on at least 97% of up to 128 validation images:
    a strict per-image gate on a handful of images would fail on one near-tie.
    """
    from inspectloop.export import export_classifier, quantize_int8
    from inspectloop.models.backbones import backbone_spec
    from inspectloop.runtime.metadata import ModelMetadata

    spec = backbone_spec(config.backbone)
    good_index = _good_index(workspace, names)
    metadata = ModelMetadata(
        model_name=workspace.config.name, model_version=run_id, class_names=tuple(names),
        good_class=names[good_index] if good_index is not None else None, input_size=config.input_size, mean=spec.mean, std=spec.std,
        temperature=temperature, review=review, thresholds=thresholds, jpeg_draft=config.jpeg_draft, colour_mode=colour, dataset_version=version.name,
        run_id=run_id, code_version=code_version(), created_at=now_iso(), weights_sha256="")
    model.eval()
    report = export_classifier(model, metadata, run_dir / "model.onnx", checks[:16])
    _register(workspace, run_id, "fp32", report.path, report.weights_sha256)
    if calibration:  # calibrated on training images: the frozen test set stays unseen
        q = quantize_int8(report.path, calibration, run_dir / "model-int8.onnx", parity_images=checks,
                          min_top1_agreement=0.97)
        _register(workspace, run_id, "int8", q.path, q.weights_sha256)
    return report.path


def _register(workspace: Workspace, run_id: str, variant: str, path: Path, weights_sha256: str) -> None:
    from inspectloop.runtime import EdgeModel

    metadata = EdgeModel(path).metadata
    workspace.db.add_model(run_id, variant, str(path), sha256_bytes(path.read_bytes()), weights_sha256,
                           json.loads(metadata.to_json()))
