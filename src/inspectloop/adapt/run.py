"""Adapt before labels: a candidate model version for one camera, from its recent unlabelled images.

Workspace-bound. :func:`adapt` takes a classifier version (default: production) and adapts it to the
camera's recent images (the stored images of its logged predictions, or a folder) by one of three methods:
``batchnorm`` re-estimates the trunk's BatchNorm statistics (:mod:`inspectloop.adapt.batchnorm`);
``features`` re-standardises the trunk's pooled features to those of training images and folds that into
the linear head (:mod:`inspectloop.adapt.features`); ``render`` estimates the camera's imaging condition
(gain, blur, noise, a new JPEG setting) from its images against training images, renders the training
images under it and refits the linear head on both, with their labels (:mod:`inspectloop.adapt.condition`).
Either way it records the result as a run of kind
``adapt`` beside the run it came from: the exported,
signed model file (same classes, thresholds, review band and novelty guard as the source), its
evaluation on the frozen test set, and what the adaptation changed on the camera's own images. The
new version is registered as a **candidate**: it reaches the line only through acceptance
(``inspectloop accept RUN``, judged by the source run's locked criteria), shadow and a person's
promotion, like any retrained model. Labels confirm it later (the recalibration cycle).

Refused, each with one message: a model that is not a BatchNorm classifier (anomaly, detector), a
camera whose latest health check failed (adapting to a dirty lens teaches the model the dirt), and too
few images.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from inspectloop import registry
from inspectloop.datasets import load_version
from inspectloop.domain import ModelVersion, TrainingRun
from inspectloop.errors import TrainingError
from inspectloop.provenance import code_version
from inspectloop.runtime.images import load_image
from inspectloop.runtime.metadata import ModelMetadata
from inspectloop.runtime.preprocess import Preprocess
from inspectloop.store import atomic_write_text, now_iso
from inspectloop.workspace import Workspace

if TYPE_CHECKING:
    from PIL import Image

    from inspectloop.models.classifier import Classifier

Progress = Callable[[str, dict[str, Any]], None]
MIN_ADAPT_IMAGES = 32  # BatchNorm means over fewer images move with the parts in front of the camera, not the camera
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
ADAPT_KIND = "adapt"
REFERENCE_IMAGES = 200  # training images the camera's statistics are compared with
METHODS = ("batchnorm", "features", "render")
# "render" is the default: in the simulated year (benchmarks/results/year_simulation.json) it held the worst class
# within 0.5 point at month 6 with no label on both lines, against 6.3 and 5.9 for the feature alignment.
RENDER_MAX_SIDE = 1024  # larger frames are reduced by a whole factor before the condition is read and rendered
# Share of the move applied by default, per method: half the BatchNorm move did best on magnetic tile's held-out
# sessions (benchmarks/results/adaptation.json); the full feature alignment did best in the year simulation
# (benchmarks/results/year_simulation.json, feature_alignment_variants). Rendering moves no statistic by a
# share: the condition is estimated whole.
DEFAULT_WEIGHTS = {"batchnorm": 0.5, "features": 1.0, "render": 1.0}


@dataclass(frozen=True)
class CameraImages:
    """The unlabelled images an adaptation reads: their digests (or file names), where they came from, and
    how many were left out because a camera health check marked them suspect."""

    names: tuple[str, ...]
    images: tuple[Image.Image, ...]
    source: str
    suspect_skipped: int = 0


@dataclass(frozen=True)
class AdaptResult:
    """An adaptation's candidate: its run, its registered version (stage candidate), and its metrics."""

    run_id: str
    run_dir: Path
    model_path: Path
    version: ModelVersion
    source_version: str
    metrics: dict[str, Any]


def adapt(workspace: Workspace, camera: str, *, since: timedelta = timedelta(days=7), folder: Path | None = None,
          model_version: str | None = None, method: str = "render", weight: float | None = None,
          min_images: int = MIN_ADAPT_IMAGES, reference: int = REFERENCE_IMAGES, now: datetime | None = None,
          progress: Progress | None = None) -> AdaptResult:
    """Adapt ``model_version`` (default: the production version) to ``camera`` without labels; register the
    result as a candidate version (never promoted here).

    Images: ``folder`` when given, else the stored images of the camera's predictions logged in the last
    ``since``. ``method`` "batchnorm": each BatchNorm layer moves by the difference between the camera images'
    statistics and those of ``reference`` training images of the source run (0: the camera's statistics replace
    the stored ones, plain AdaBN; see :func:`~inspectloop.adapt.batchnorm.adapt_batchnorm` for why that shifts
    every feature of a fine-tuned model). "features": the trunk's pooled features of the camera images are
    re-standardised (mean and standard deviation per dimension) to those of ``reference`` training images, folded
    into the linear head. "render": the camera's condition is estimated against ``reference`` training images
    (both in the camera's own pixels, frames above :data:`RENDER_MAX_SIDE` reduced alike), every training image
    is rendered under it, and the linear head is refitted as the probe fits it on the originals plus the renders
    (same labels; the trunk is the source's). ``weight`` is the share of the move applied (1: all of it; default
    per method, :data:`DEFAULT_WEIGHTS`; "render" takes no share).
    """
    if method not in METHODS:
        raise TrainingError(f"unknown adaptation method {method!r}", f"use one of: {', '.join(METHODS)}")
    if method in ("features", "render") and reference <= 0:
        what = "feature alignment needs training images to align the camera's features to" if method == "features" \
            else "rendering needs training images to read the camera's condition against"
        raise TrainingError(f"{what}, and --reference is 0",
                            f"give --reference {REFERENCE_IMAGES} (or any number above 0)")
    if method == "render" and weight not in (None, 1.0):
        raise TrainingError(f"--weight {weight} does not apply to rendering: the camera's condition is estimated "
                            "whole, not moved by a share", "leave --weight out with --method render")
    weight = DEFAULT_WEIGHTS[method] if weight is None else weight
    if not 0.0 < weight <= 1.0:
        raise TrainingError(f"the share of the move applied must be in (0, 1], got {weight}",
                            "give --weight between 0 and 1 (1: all of it)")
    say = progress or (lambda _stage, _info: None)
    source = _source_version(workspace, model_version)
    run = _classifier_run(workspace, source, method)
    _check_camera_health(workspace, camera)
    metadata = _read_metadata(workspace, source)
    preprocess = metadata.preprocess()
    native = method == "render"  # the condition is read in the camera's own pixels
    found = (folder_images(folder, preprocess, metadata, native=native) if folder is not None
             else logged_images(workspace, camera, since, preprocess, metadata, now=now, native=native))
    if len(found.images) < min_images:
        raise TrainingError(f"camera {camera!r} has {len(found.images)} usable image(s) ({found.source}"
                            + (f"; {found.suspect_skipped} marked suspect left out" if found.suspect_skipped else "")
                            + f"), fewer than the {min_images} adaptation needs",
                            "widen --since, serve with a sample rate above 0 so images are kept, or give --images "
                            "FOLDER with recent captures of that camera")
    what = {"batchnorm": "BatchNorm statistics", "features": "feature statistics",
            "render": "imaging condition"}[method]
    say("adapt", {"message": f"re-estimating the {what} of {source.name} on {len(found.images)} images "
                             f"of camera {camera} ({found.source})"})
    references = reference_images(workspace, run, reference, preprocess, metadata, native=native)
    return _record(workspace, source, run, metadata, preprocess, camera, found, references, method, weight, say)


def _source_version(workspace: Workspace, name: str | None) -> ModelVersion:
    version = registry.named_or_production(workspace, name)
    if version is None:
        raise TrainingError("no model version is in production, so there is nothing to adapt",
                            "name one with --model VERSION (inspectloop models list)")
    return version


def _classifier_run(workspace: Workspace, version: ModelVersion, method: str = "render") -> TrainingRun:
    """The version's run, refused unless it trained a classifier whose weights are kept."""
    run = workspace.db.runs.get(version.run_id)
    if run is None:
        raise TrainingError(f"run {version.run_id} of {version.name} is missing from the workspace",
                            "list runs with: inspectloop runs")
    task = run.config.get("task", "classification")
    if task != "classification":
        what = {"anomaly": "an anomaly model (a memory bank of good patches, not a classifier: add the camera's "
                           "good images with inspectloop train --task anomaly --update RUN)",
                "detect": "a detector (adaptation covers classifiers so far: label a few frames and retrain)"}
        kind = {"batchnorm": "BatchNorm adaptation", "features": "feature alignment",
                "render": "rendered adaptation"}.get(method, "adaptation")
        raise TrainingError(f"{version.name} is {what.get(task, f'a {task} model')}, so {kind} does not apply",
                            "adapt a classification model version")
    if run.config.get("ensemble", 1) > 1:
        raise TrainingError(f"{version.name} is an ensemble of {run.config['ensemble']} classifiers; adaptation "
                            "covers single classifiers so far",
                            "label a few of the camera's images and retrain, or adapt a version trained with "
                            "ensemble=1")
    if not (Path(run.artifacts) / "weights.pt").is_file():
        raise TrainingError(f"run {run.id} of {version.name} has no weights.pt to adapt",
                            "adapt a version trained in this workspace, or train again")
    return run


def _check_camera_health(workspace: Workspace, camera: str) -> None:
    """Refuse a camera whose latest health check failed, naming the failed checks."""
    latest = workspace.db.cameras.checks(camera, limit=1)
    if not latest or latest[0].status != "fail":
        return
    failed = [c.get("check", "?") for c in (latest[0].report or {}).get("checks", []) if c.get("status") == "fail"]
    raise TrainingError(f"camera {camera!r} failed its health check of {latest[0].checked_at[:16]} "
                        f"({', '.join(failed) or 'see inspectloop camera checks'}): its images are suspect, and "
                        "adapting to them would teach the model the fault",
                        f"fix the camera, then pass a check: inspectloop camera check {camera} --flat FILE --edge FILE")


def _read_metadata(workspace: Workspace, version: ModelVersion) -> ModelMetadata:
    """The source file's metadata, after checking the file against its registry record and the site's key."""
    from inspectloop.runtime import EdgeModel

    registry.verify_file(version, workspace)
    return EdgeModel(version.path, backend="onnxruntime").metadata  # metadata only: no backend to compile


def logged_images(workspace: Workspace, camera: str, since: timedelta, preprocess: Preprocess,
                  metadata: ModelMetadata, *, now: datetime | None = None, native: bool = False) -> CameraImages:
    """The distinct stored images of ``camera``'s predictions logged in the last ``since`` (suspect ones left
    out), decoded at the model's input size (``native``: in the camera's own pixels, see :func:`native_image`)."""
    end = (now or datetime.now(UTC)).astimezone(UTC)
    rows = workspace.db.predictions.window((end - since).isoformat(), (end + timedelta(seconds=1)).isoformat(),
                                           stored_only=True, cameras=[camera])
    digests = list(dict.fromkeys(r.image_sha256 for r in rows if not r.suspect))
    skipped = len({r.image_sha256 for r in rows if r.suspect} - set(digests))
    decode = native_image if native else _decode
    images = tuple(decode(workspace.blobs.get(d), d[:12], preprocess, metadata) for d in digests)
    return CameraImages(tuple(digests), images, f"predictions logged since {(end - since):%Y-%m-%d %H:%M} UTC",
                        skipped)


def folder_images(folder: Path, preprocess: Preprocess, metadata: ModelMetadata, *,
                  native: bool = False) -> CameraImages:
    """Every image file under ``folder``, decoded at the model's input size (``native``: in its own pixels)."""
    if not Path(folder).is_dir():
        raise TrainingError(f"{folder} is not a folder", "give --images a folder of recent captures of the camera")
    paths = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    decode = native_image if native else _decode
    images = tuple(decode(p.read_bytes(), p.name, preprocess, metadata) for p in paths)
    return CameraImages(tuple(str(p) for p in paths), images, f"folder {folder}")


def _decode(data: bytes, name: str, preprocess: Preprocess, metadata: ModelMetadata) -> Image.Image:
    draft = metadata.preprocess().draft_size if metadata.jpeg_draft else None
    return preprocess.resize(load_image(data, name=name, draft=draft, mode=metadata.colour_mode))


def native_image(data: bytes, name: str, _preprocess: Preprocess, metadata: ModelMetadata) -> Image.Image:
    """An image in its own pixels (the model's colour mode), reduced by a whole factor when a side passes
    :data:`RENDER_MAX_SIDE`: one camera's frames share a size, so its images and its training images shrink alike."""
    image = load_image(data, name=name, mode=metadata.colour_mode)
    factor = -(-max(image.size) // RENDER_MAX_SIDE)
    return image.reduce(factor) if factor > 1 else image


def reference_images(workspace: Workspace, run: TrainingRun, count: int, preprocess: Preprocess,
                     metadata: ModelMetadata, *, native: bool = False) -> tuple[Image.Image, ...]:
    """Up to ``count`` images of the run's training split, taken evenly (its class mix, as the line sees it
    before balancing), decoded at the model's input size (``native``: in their own pixels)."""
    if count <= 0:
        return ()
    items = load_version(workspace, run.dataset_version).split("train")
    chosen = items[:: max(1, len(items) // count)][:count]
    decode = native_image if native else _decode
    return tuple(decode(workspace.blobs.get(item.sha256), item.sha256[:12], preprocess, metadata) for item in chosen)


def load_classifier(run: TrainingRun, num_classes: int) -> Classifier:
    """The classifier a run trained, with its saved weights, in eval mode."""
    import torch

    from inspectloop.models.backbones import backbone_spec, load_backbone
    from inspectloop.models.classifier import Classifier
    from inspectloop.train.config import TrainConfig

    config = TrainConfig.model_validate(run.config)
    model = Classifier(load_backbone(config.backbone, input_size=config.input_size, pretrained=False,
                                    standardise=config.standardise),
                       backbone_spec(config.backbone).feature_dim, num_classes)
    model.load_state_dict(torch.load(Path(run.artifacts) / "weights.pt", map_location="cpu", weights_only=True))
    return model.eval()


def _record(workspace: Workspace, source: ModelVersion, run: TrainingRun, metadata: ModelMetadata,
            preprocess: Preprocess, camera: str, found: CameraImages, references: tuple[Image.Image, ...],
            method: str, weight: float, say: Progress) -> AdaptResult:
    """Adapt, export, evaluate on the frozen test set, and register: one run of kind ``adapt``."""
    import torch

    from inspectloop.train.loop import predict_logits
    from inspectloop.train.record import failing_run

    run_id = f"adapt-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
    run_dir = workspace.runs_dir / run_id
    run_dir.mkdir(parents=True)
    atomic_write_text(run_dir / "config.json", json.dumps(run.config, indent=2))
    workspace.db.runs.add(run_id, run.dataset_version, run.config, code_version(), str(run_dir), kind=ADAPT_KIND,
                          criteria_id=run.criteria_id)
    with failing_run(workspace, run_id):
        model = load_classifier(run, len(metadata.class_names))
        native = found
        if method == "render":  # read in the camera's pixels; decided, exported and checked at the input size
            found = replace(found, images=tuple(preprocess.resize(image) for image in found.images))
        camera_set = _image_set(found)
        before = predict_logits(model, camera_set, preprocess).argmax(1)
        if method == "render":
            change = render_and_refit(workspace, run, model, native.images, references, preprocess, metadata, say)
        else:
            change = (_adapt_batchnorm if method == "batchnorm" else _align_features)(model, found, references,
                                                                                     preprocess, weight)
        after = predict_logits(model, camera_set, preprocess).argmax(1)
        torch.save(model.state_dict(), run_dir / "weights.pt")
        model_path = _export(workspace, source, model, metadata, found, run_id, run_dir, say)
        adaptation = {"source_version": source.name, "source_run": run.id, "camera": camera, "images": len(found.images),
                      "image_source": found.source, "suspect_skipped": found.suspect_skipped, "weight": weight,
                      "kind": method, **change, "on_camera_images": _decision_shift(before, after, metadata)}
        atomic_write_text(run_dir / "adapted-on.json", json.dumps(list(found.names), indent=1))
        metrics = {"adaptation": adaptation, **_evaluate(workspace, run, model, preprocess, metadata, run_id, run_dir, say)}
        atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2))
        workspace.db.runs.finish(run_id, "finished", metrics=metrics)
    version = registry.register(workspace, run_id)
    return AdaptResult(run_id, run_dir, model_path, version, source.name, metrics)


def _adapt_batchnorm(model: Any, found: CameraImages, references: tuple[Image.Image, ...], preprocess: Preprocess,
                     weight: float) -> dict[str, Any]:
    """BatchNorm statistics moved to the camera's (relative to the references when given); what changed."""
    from inspectloop.adapt.batchnorm import adapt_batchnorm

    shift = adapt_batchnorm(model, list(found.images), preprocess, weight=weight, reference=list(references) or None)
    return {"method": (f"relative to {len(references)} training images" if references
                       else "absolute (the camera's statistics replace the stored ones)"), "batchnorm": shift.to_dict()}


def _align_features(model: Any, found: CameraImages, references: tuple[Image.Image, ...], preprocess: Preprocess,
                    weight: float) -> dict[str, Any]:
    """The camera's pooled features re-standardised to the references', folded into the head; what changed."""
    from inspectloop.adapt.features import align_features, fold_into_classifier, pooled_features

    alignment = align_features(pooled_features(model, found.images, preprocess),
                               pooled_features(model, references, preprocess), weight=weight)
    try:
        fold_into_classifier(model, alignment)
    except ValueError as exc:
        raise TrainingError(f"this model cannot take a feature alignment: {exc}",
                            "adapt it with --method batchnorm") from exc
    return {"method": f"pooled features aligned to {len(references)} training images (mean and standard deviation "
                      "per dimension), folded into the head", "features": alignment.to_dict()}


def render_and_refit(workspace: Workspace, run: TrainingRun, model: Any, camera: Sequence[Image.Image],
                      references: Sequence[Image.Image], preprocess: Preprocess, metadata: ModelMetadata,
                      say: Progress) -> dict[str, Any]:
    """The camera's condition estimated against the references, every training image rendered under it, and the
    head refitted as the probe fits it on the originals plus the renders (same labels); what was found."""
    from inspectloop.adapt.condition import estimate_condition
    from inspectloop.grades import class_grades
    from inspectloop.train.config import TrainConfig
    from inspectloop.train.data import ImageSet, load_image_set
    from inspectloop.train.fit import join
    from inspectloop.train.loop import probe
    from inspectloop.train.ordinal import with_targets
    from inspectloop.train.record import good_index

    try:
        condition = estimate_condition(references, camera)
    except ValueError as exc:
        raise TrainingError(f"the camera's condition cannot be read: {exc}",
                            "check the camera and its recent images (inspectloop camera check CAM), or adapt with "
                            f"--method features; with few training images give --reference {REFERENCE_IMAGES}") from exc
    say("adapt", {"message": "camera condition: " + ", ".join(f"{k} {v}" for k, v in condition.to_dict().items())})
    version = load_version(workspace, run.dataset_version)
    names = list(metadata.class_names)
    config = TrainConfig.model_validate(run.config)
    train_items = version.split("train")
    original = with_targets(  # grade-aware and soft-label targets, as training gave them
        load_image_set(train_items, names, workspace.blobs.get, preprocess, draft=metadata.jpeg_draft,
                       mode=metadata.colour_mode),
        train_items, names, class_grades(workspace.db.labels.classes(), names), good_index(workspace, names), config)
    rendered = [preprocess.resize(condition.render(native_image(workspace.blobs.get(item.sha256), item.sha256[:12],
                                                                preprocess, metadata), seed=i))
                for i, item in enumerate(train_items)]
    both = join(original, ImageSet(rendered, original.labels, [f"{d}~rendered" for d in original.digests],
                                   original.graded))
    val = load_image_set(version.split("val"), names, workspace.blobs.get, preprocess, draft=metadata.jpeg_draft,
                         mode=metadata.colour_mode)
    say("adapt", {"message": f"refitting the head on {len(original)} training images and their {len(rendered)} "
                             "renders"})
    probe(model, both, val if len(val) else original, preprocess, config)
    return {"method": f"{len(rendered)} training images rendered under the camera's condition, estimated against "
                      f"{len(references)} of them; head refitted on the originals plus the renders",
            "condition": condition.to_dict(), "rendered_images": len(rendered)}


def _image_set(found: CameraImages) -> Any:
    from inspectloop.train.data import ImageSet

    return ImageSet(list(found.images), np.zeros(len(found.images), dtype=np.int64), list(found.names))


def _decision_shift(before: np.ndarray, after: np.ndarray, metadata: ModelMetadata) -> dict[str, Any]:
    """What adaptation changed on the camera's own (unlabelled) images: top-class decisions that changed, and the
    share decided as a defect before and after (a label-free sign of false rejects going away, or of escapes)."""
    names = list(metadata.class_names)
    good = names.index(metadata.good_class) if metadata.good_class in names else None
    shares = {} if good is None else {"defect_share_before": float(np.mean(before != good)),
                                      "defect_share_after": float(np.mean(after != good))}
    return {"changed": float(np.mean(before != after)), **shares}


def _export(workspace: Workspace, source: ModelVersion, model: Any, metadata: ModelMetadata, found: CameraImages,
            run_id: str, run_dir: Path, say: Progress) -> Path:
    """The adapted model file: the source's metadata (classes, thresholds, band, novelty guard) under a new
    version, exported and signed like every model, parity-checked on the camera's images."""
    from inspectloop.export import export_classifier
    from inspectloop.keys import site_signing_key
    from inspectloop.train.record import register_model

    say("export", {})
    stamped = replace(metadata, model_version=run_id, run_id=run_id, code_version=code_version(),
                      created_at=now_iso(), weights_sha256="", sha256="")
    report = export_classifier(model, stamped, run_dir / "model.onnx", list(found.images[:16]),
                               signing_key=site_signing_key(workspace.root),
                               novelty_bank=novelty_bank(source.path) if metadata.novelty else None)
    register_model(workspace, run_id, "fp32", report.path, report.weights_sha256)
    return report.path


def novelty_bank(model_path: Path) -> np.ndarray:
    """The novelty guard's bank (M, D) stored in a classifier file. Kept as trained: adapted features of the
    camera are meant to land where the training features were, so that is what the guard measures against."""
    from inspectloop.errors import require

    onnx = require("onnx", "train")
    numpy_helper = require("onnx.numpy_helper", "train", package="onnx")

    for tensor in onnx.load(str(model_path)).graph.initializer:
        if tensor.name.endswith("bank_t"):
            return np.ascontiguousarray(numpy_helper.to_array(tensor).T)
    raise TrainingError(f"{model_path} names a novelty guard but holds no bank",
                        "the file is not as inspectloop exported it: adapt a version trained in this workspace")


def _evaluate(workspace: Workspace, run: TrainingRun, model: Any, preprocess: Preprocess, metadata: ModelMetadata,
              run_id: str, run_dir: Path, say: Progress) -> dict[str, Any]:
    """The adapted model on the frozen test set (it must not break what the source was accepted on)."""
    from inspectloop.decisions.calibration import softmax
    from inspectloop.evaluate.run import evaluate_predictions
    from inspectloop.train.data import load_image_set
    from inspectloop.train.loop import predict_logits

    version = load_version(workspace, run.dataset_version)
    items = version.split("test")
    if not items:
        return {"test": None}
    say("evaluate", {})
    names = list(metadata.class_names)
    test = load_image_set(items, names, workspace.blobs.get, preprocess, draft=metadata.jpeg_draft,
                          mode=metadata.colour_mode)
    logits = predict_logits(model, test, preprocess)
    context = {"run": run_id, "adapted_from": run.id, "dataset_version": version.name, "split": "test",
               "code_version": code_version()}
    evaluation = evaluate_predictions(workspace, items, names, logits.argmax(1), run_dir / "report",
                                      title=f"{run_id} on {version.name}/test", context=context,
                                      scores=softmax(logits, metadata.temperature))
    # The temperature, review band and thresholds are the source's (in the file); their test-set rates are
    # measured by acceptance on this very file, not copied from the source run.
    return {"test": evaluation.summary()}
