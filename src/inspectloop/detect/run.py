"""The detection training run (workspace-bound): a dataset version's region annotations in, a signed
detector file out, with COCO mAP, box precision/recall at the operating point and image-level rates.

Steps: plan (the box classes, one annotator per image, the splits) -> load frames -> fit (best epoch
by validation mAP50; checkpoints for resume) -> evaluate the frozen test set once -> export (parity
checked) and register. A detector's classes are the version's good class (or ``good``) then its box
classes; its image-level scores are 1 - the worst box's confidence and each class's highest box
confidence, so a frame is decided by its worst region.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from inspectloop.domain import DatasetItem, DatasetVersion, Region
from inspectloop.domain.labelling import LabellingPolicy
from inspectloop.errors import TrainingError
from inspectloop.provenance import code_version
from inspectloop.runtime.metadata import DETECTION, ModelMetadata
from inspectloop.store import atomic_write_text, now_iso
from inspectloop.train.config import TrainConfig
from inspectloop.train.record import RunResult, colour_mode, failing_run, register_model, spread, start_run
from inspectloop.workspace import Workspace

if TYPE_CHECKING:
    from inspectloop.detect.calibrate import BoxCalibration
    from inspectloop.detect.data import Frame

Progress = Callable[[str, dict[str, Any]], None]
MIN_TRAIN_FRAMES = 4
_PARITY_FRAMES = 8
INT8_CALIBRATION_FRAMES = 48  # activation ranges: NEU-DET test mAP50 76.6 -> 76.2 with 48 (benchmarks.detection_int8)
INT8_CHECK_FRAMES = 64
INT8_MAX_SCORE_DIFF = 0.5  # one location's class score
INT8_MIN_AGREEMENT = 0.97  # images whose most confident class stays the float model's, as for classifiers


@dataclass(frozen=True)
class DetectionPlan:
    """What a detection run reads: its classes (good first), each image's boxes, and the split items."""

    class_names: tuple[str, ...]
    boxes: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    splits: dict[str, tuple[DatasetItem, ...]]
    annotated_images: int

    @property
    def box_classes(self) -> tuple[str, ...]:
        return self.class_names[1:]


def plan_detection(workspace: Workspace, version: DatasetVersion) -> DetectionPlan:
    """The run's classes and true boxes from the regions ``version`` holds; TrainingError when it holds none."""
    regions = workspace.db.regions.in_version(version.name)
    if not regions:
        raise TrainingError(f"dataset version {version.name} holds no region annotations; a detector learns boxes",
                            "import boxes (inspectloop regions import ...) and make a new dataset version")
    drawn = {r.class_name for r in regions}
    ordered = [n for n in version.class_names if n in drawn] + sorted(drawn - set(version.class_names))
    good = _good_name(workspace, version, drawn)
    index = {name: i for i, name in enumerate(ordered)}
    boxes, labels = primary_boxes(regions, index, workspace.config.labelling)
    splits = {name: tuple(version.split(name)) for name in ("train", "val", "calib", "test")}
    if len(splits["train"]) < MIN_TRAIN_FRAMES:
        raise TrainingError(f"dataset version {version.name} has {len(splits['train'])} training images",
                            f"a detector needs at least {MIN_TRAIN_FRAMES}, realistically hundreds of boxes per class")
    return DetectionPlan((good, *ordered), boxes, labels, splits, len(boxes))


def _good_name(workspace: Workspace, version: DatasetVersion, drawn: set[str]) -> str:
    """The class a frame without a confident box gets: the workspace's good class, else ``good``."""
    goods = [c.name for c in workspace.db.labels.classes().values() if c.is_good and c.name in version.class_names]
    name = goods[0] if goods else "good"
    if name in drawn:
        raise TrainingError(f"class {name!r} names both the pass decision and boxes", "rename the box class")
    return name


def primary_boxes(regions: Sequence[Region], index: dict[str, int], policy: LabellingPolicy
                  ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per image, the boxes of one annotator: several annotators' boxes of one defect would teach the model
    duplicates. The labelling policy chooses whose (a reviewer's corrections outrank the imported boxes,
    a quality engineer's outrank both); between equals, whoever drew last."""
    by_image: dict[str, list[Region]] = defaultdict(list)
    for region in sorted(regions, key=lambda r: r.id or 0):
        by_image[region.sha256].append(region)
    boxes, labels = {}, {}
    for digest, drawn in by_image.items():
        chosen = min(reversed(drawn), key=lambda r: policy.rank(policy.role(r.annotator, r.source))).annotator
        mine = [r for r in drawn if r.annotator == chosen]
        boxes[digest] = np.array([r.box.as_tuple() for r in mine], dtype=np.float32).reshape(-1, 4)
        labels[digest] = np.array([index[r.class_name] for r in mine], dtype=np.int64)
    return boxes, labels


def train_detector(workspace: Workspace, version: DatasetVersion, config: TrainConfig, *, resume: str | None = None,
                   export_int8: bool = False, progress: Progress) -> RunResult:
    """Train, evaluate on the frozen test set, export and register a detector (and, with ``export_int8``, its
    INT8 copy as the run's ``int8`` variant); see the module docstring."""
    plan = plan_detection(workspace, version)
    run_id, config = start_run(workspace, version, config, resume)
    run_dir = workspace.runs_dir / run_id
    with failing_run(workspace, run_id):
        return _execute(workspace, version, config, plan, run_id, run_dir, progress, export_int8)


def thresholds_of(config: TrainConfig, box_classes: Sequence[str]) -> dict[str, float]:
    """Each box class's confidence threshold: its own setting, else ``box_threshold``."""
    unknown = sorted(set(config.box_thresholds) - set(box_classes))
    if unknown:
        raise TrainingError(f"box_thresholds names classes with no boxes: {', '.join(unknown)}",
                            f"box classes: {', '.join(box_classes)}")
    return {name: float(config.box_thresholds.get(name, config.box_threshold)) for name in box_classes}


def _execute(workspace: Workspace, version: DatasetVersion, config: TrainConfig, plan: DetectionPlan, run_id: str,
             run_dir: Path, progress: Progress, export_int8: bool) -> RunResult:
    import torch

    from inspectloop.detect.fit import FitSettings, fit_detector, predict_frames, truth_of
    from inspectloop.detect.metrics import summary
    from inspectloop.detect.model import build_detector
    from inspectloop.train.loop import seed_everything, training_precision
    if config.threads:
        torch.set_num_threads(config.threads)
    preprocess = _preprocess(config)
    thresholds = thresholds_of(config, plan.box_classes)
    zoom = _tile_scale(workspace, config, plan)
    load = _loader(workspace, version, config, plan, progress, zoom)
    train, val, test = load("train"), load("val"), load("test")
    seed_everything(config.seed)
    model = build_detector(len(plan.box_classes), backbone=config.backbone, input_size=config.input_size)
    settings = FitSettings(config.input_size, config.epochs, config.batch_size, config.lr, config.weight_decay,
                           config.freeze_blocks, config.augment, config.flips, config.seed, config.tile_overlap,
                           config.nms_iou, config.patience, training_precision(config), config.channels_last,
                           config.max_minutes, config.ema, config.mosaic)
    training = fit_detector(model, train, val, preprocess, settings, plan.box_classes, run_dir / "checkpoint.pt",
                            lambda record: progress("epoch", {**record, "epochs": config.epochs}))
    torch.save(model.state_dict(), run_dir / "weights.pt")
    progress("calibrate", {})
    calibration = _calibrate(config, plan, thresholds, val,
                             lambda frames: predict_frames(model, frames, preprocess, tile_overlap=config.tile_overlap,
                                                           nms_iou=config.nms_iou))
    thresholds = calibration.thresholds
    progress("evaluate", {})
    predicted = predict_frames(model, test, preprocess, tile_overlap=config.tile_overlap, nms_iou=config.nms_iou)
    test_metrics = summary(truth_of(test), predicted, plan.box_classes, thresholds, calibration.review_from)
    progress("export", {})
    model_path = _export(workspace, version, config, plan, run_id, run_dir, model, calibration, val or train, zoom)
    int8 = _export_int8(workspace, run_id, model_path, train, val or train) if export_int8 else None
    report = run_dir / "report" / "detection.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    metrics = {"task": "detect", "test": {**test_metrics, "report": str(report)},
               "classes": list(plan.box_classes), "annotated_images": plan.annotated_images,
               "history": training.history, "best_epoch": training.best_epoch,
               "train_seconds": round(training.seconds, 1), "resumed_from_epoch": training.resumed_from,
               "stopped_at_budget": training.stopped_at_budget, "tile_scale": zoom,
               "thresholds": thresholds, "review_from": calibration.review_from,
               "box_calibration": calibration.details, "int8": int8}
    atomic_write_text(report, json.dumps(metrics, indent=2))
    atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2))
    workspace.db.runs.finish(run_id, "finished", metrics=metrics)
    return RunResult(run_id, run_dir, model_path, metrics, report)


def _calibrate(config: TrainConfig, plan: DetectionPlan, configured: dict[str, float], val: list[Frame],
               predict: Callable[[list[Frame]], list[Any]]) -> BoxCalibration:
    """Per-class reject thresholds and review floors on the validation frames (configured ones without them)."""
    from inspectloop.detect.calibrate import calibrate_boxes
    from inspectloop.detect.fit import truth_of
    return calibrate_boxes(truth_of(val), predict(val) if val else [], plan.box_classes,
                           precision=config.box_precision, recall=config.box_recall, fallback=configured,
                           fixed=tuple(config.box_thresholds))


def _preprocess(config: TrainConfig) -> Any:
    from inspectloop.models.backbones import backbone_spec
    from inspectloop.runtime.preprocess import Preprocess

    spec = backbone_spec(config.backbone)
    return Preprocess(config.input_size, spec.mean, spec.std)


def _tile_scale(workspace: Workspace, config: TrainConfig, plan: DetectionPlan) -> float:
    """The run's ``tile_scale``: the configured one, else the zoom its training images are held at."""
    return float(config.tile_scale) if config.tile_scale is not None else held_zoom(workspace, plan, config.input_size)


def held_zoom(workspace: Workspace, plan: DetectionPlan, input_size: int) -> float:
    """The zoom ``plan``'s training images are held at for a model of ``input_size`` (the default ``tile_scale``)."""
    from inspectloop.detect.data import training_zoom
    records = workspace.db.images.get_many([item.sha256 for item in plan.splits["train"]])
    return training_zoom([(r.width, r.height) for r in records.values()], input_size)


def _loader(workspace: Workspace, version: DatasetVersion, config: TrainConfig, plan: DetectionPlan,
            progress: Progress, tile_scale: float) -> Callable[[str], list[Frame]]:
    from inspectloop.detect.data import load_frames
    from inspectloop.runtime.images import load_image
    mode = colour_mode(workspace, version, config)

    def load(split: str) -> list[Frame]:
        digests = [item.sha256 for item in plan.splits[split]]
        return load_frames(digests, plan.boxes, plan.labels,
                           lambda digest: load_image(workspace.blobs.get(digest), name=digest[:12], mode=mode),
                           config.input_size,
                           lambda n, total: progress("load", {"split": split, "done": n, "total": total}), tile_scale)
    return load


def _export(workspace: Workspace, version: DatasetVersion, config: TrainConfig, plan: DetectionPlan, run_id: str,
            run_dir: Path, model: Any, calibration: BoxCalibration, frames: list[Frame], tile_scale: float) -> Path:
    from inspectloop.export import export_detector
    from inspectloop.keys import site_signing_key
    from inspectloop.models.backbones import backbone_spec
    spec = backbone_spec(config.backbone)
    metadata = ModelMetadata(
        task=DETECTION, model_name=workspace.config.name, model_version=run_id, class_names=plan.class_names,
        good_class=plan.class_names[0], input_size=config.input_size, mean=spec.mean, std=spec.std,
        thresholds=calibration.thresholds, colour_mode=colour_mode(workspace, version, config),
        detection={"tile_overlap": config.tile_overlap, "nms_iou": config.nms_iou, "tile_scale": tile_scale,
                   "min_score": min(calibration.review_from.values()), "review_from": calibration.review_from},
        dataset_version=version.name, run_id=run_id, code_version=code_version(), created_at=now_iso())
    step = max(1, len(frames) // _PARITY_FRAMES)
    report = export_detector(model, metadata, run_dir / "model.onnx", [f.image for f in frames[::step]][:_PARITY_FRAMES],
                             signing_key=site_signing_key(workspace.root))
    register_model(workspace, run_id, "fp32", report.path, report.weights_sha256)
    return report.path


def _export_int8(workspace: Workspace, run_id: str, model_path: Path, train: list[Frame],
                 checks: list[Frame]) -> dict[str, Any]:
    """The exported detector's static INT8 copy, registered as the run's ``int8`` variant, and its checks.

    The gate is the image's most confident class, as for classifiers: one location's score moves more under
    INT8 (up to 0.31 on NEU-DET's detector, whose test mAP50 moved 76.6 -> 76.2) than a whole image's verdict."""
    from inspectloop.export import quantize_detector
    from inspectloop.keys import site_signing_key
    q = quantize_detector(model_path, [f.image for f in spread(train, INT8_CALIBRATION_FRAMES)],
                          model_path.with_name("model-int8.onnx"),
                          parity_images=[f.image for f in spread(checks, INT8_CHECK_FRAMES)],
                          max_score_diff=INT8_MAX_SCORE_DIFF, min_agreement=INT8_MIN_AGREEMENT,
                          signing_key=site_signing_key(workspace.root))
    register_model(workspace, run_id, "int8", q.path, q.weights_sha256)
    return {"path": str(q.path), "max_score_diff": round(q.max_abs_diff, 4), "agreement": q.top1_agreement,
            "images_checked": q.images_checked, "bytes": q.size_bytes}

