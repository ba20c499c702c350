"""A training run: dataset version in, evaluated and exported model out, everything recorded.

Workspace-bound (the pure pieces are beside it in ``inspectloop.train``): the run reads the dataset
version and class definitions, and records its config, code version, metrics and model files. Its
steps each return a typed result: load (:class:`Loaded`) -> fit (:class:`~inspectloop.train.fit.Fitted`;
cross-fitted runs train the fold models first) -> calibrate (:class:`Calibrated`: temperature, review
band, operating points, from held-out scores only) -> evaluate (:class:`Evaluated`: the frozen test
set, scored once by the finished model) -> export (:class:`Exported`). The run folder holds the
checkpoints (for resume), the weights, the report and the model files.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from inspectloop.accept.criteria import LockedCriteria, get_criteria
from inspectloop.datasets import load_version
from inspectloop.domain import DatasetItem, DatasetVersion
from inspectloop.decisions.calibration import softmax
from inspectloop.decisions.crossfit import OutOfFold, Stability, assign_folds, stability
from inspectloop.errors import TrainingError
from inspectloop.evaluate.run import EvaluationResult, evaluate_predictions
from inspectloop.grades import class_grades
from inspectloop.provenance import code_version
from inspectloop.runtime.metadata import ModelMetadata
from inspectloop.runtime.preprocess import Preprocess
from inspectloop.store import atomic_write_text, now_iso
from inspectloop.train.calibrate import (
    CalibrationResult, ConfidenceFit, DecisionBand, FittedBand, fit_band, fit_confidence, measure_band,
    measure_confidence,
)
from inspectloop.train.config import TrainConfig, decision_settings
from inspectloop.train.novelty import NoveltyGuard, NoveltyMeasure, fit_novelty, measure_novelty
from inspectloop.train.places import version_regions, with_places
from inspectloop.train.record import RunResult, failing_run, good_index, register_model, spread, start_run
from inspectloop.workspace import Workspace

if TYPE_CHECKING:  # the training stack (torch) is imported when a run trains
    from inspectloop.models.classifier import Classifier
    from inspectloop.train.data import ImageSet
    from inspectloop.train.estimate import Estimate
    from inspectloop.train.fit import Fitted, HeldOut

Progress = Callable[[str, dict[str, Any]], None]
MIN_TRAIN_IMAGES = 8
INT8_CALIBRATION_IMAGES = 200
INT8_CHECK_IMAGES = 128




def train(workspace: Workspace, config: TrainConfig | None = None, *, dataset: str = "latest",
          resume: str | None = None, export_int8: bool = False, progress: Progress | None = None,
          criteria: str | None = None, update: str | None = None) -> RunResult:
    """Train, evaluate on the frozen test set, export to ONNX with a parity check, and register the model.

    ``config.task`` anomaly trains an anomaly model on the good images alone (:mod:`inspectloop.anomaly.run`);
    ``update`` (an anomaly run's id) adds the version's new good images to that run's memory bank instead
    of fitting a new one.

    ``criteria`` (id or name of locked acceptance criteria) is recorded as what the run will be judged by,
    and fixes the settings of its review band and operating points (see :func:`steer_by_criteria`).
    """
    locked = None if criteria is None else get_criteria(workspace, criteria)
    version = load_version(workspace, dataset)
    if (config or TrainConfig()).task == "anomaly":
        from inspectloop.anomaly.run import train_anomaly

        if export_int8:
            raise TrainingError("INT8 export is for classifiers and detectors: an anomaly model's memory bank and "
                                "neighbour search stay in float", "leave out --int8 for --task anomaly")

        return train_anomaly(workspace, version, steer_by_criteria(workspace, version, config or TrainConfig(), locked),
                             criteria=locked, update=update, progress=progress or _quiet)
    if (config or TrainConfig()).task == "detect":
        from inspectloop.detect.run import train_detector

        return train_detector(workspace, version, config or TrainConfig(), resume=resume, export_int8=export_int8,
                              progress=progress or _quiet)
    if update is not None:
        raise TrainingError("--update adds good images to an anomaly model's memory bank; this run trains a "
                            "classifier", "train with --task anomaly, or leave out --update")
    _check_trainable(version)
    if (config or TrainConfig()).pose == "zoom":
        version_regions(workspace, version)  # refused before a run is started, not half-way through loading
    config = steer_by_criteria(workspace, version, config or TrainConfig(), locked)
    run_id, config = start_run(workspace, version, config, resume, None if locked is None else locked.id)
    run_dir = workspace.runs_dir / run_id
    with failing_run(workspace, run_id):
        return _execute(workspace, version, config, run_id, run_dir, export_int8, progress or _quiet)


def steer_by_criteria(workspace: Workspace, version: DatasetVersion, config: TrainConfig,
                      criteria: LockedCriteria | None) -> TrainConfig:
    """``config`` with the band and operating-point settings the run's locked ``criteria`` fix (alpha,
    guarantee, confidence, per-class recall targets: see :func:`~inspectloop.train.config.decision_settings`).

    Refuses a setting given explicitly that is looser than the criteria: a run may be stricter than
    what it is judged by, never looser.
    """
    if criteria is None:
        return config
    judged = criteria.criteria
    if config.band_fit == "crossfit" and judged.max_escape_rate is not None:
        # A cross-fitted band certifies its escape rate only approximately (2 x alpha for the fold models
        # together, stability for the refit): weaker than the pac or marginal guarantee the criteria demand.
        raise TrainingError(f"criteria {criteria.label} bound the escape rate under the {judged.guarantee} guarantee, "
                            "which a cross-fitted band (band_fit=crossfit) does not give",
                            "train with band_fit=split and a calibration split, or judge the run by criteria "
                            "without max_escape_rate")
    good = good_index(workspace, list(version.class_names))
    defects = [name for i, name in enumerate(version.class_names) if i != good]
    settings = decision_settings(config, criteria.criteria, defects)
    if settings.looser:
        looser = "; ".join(f"{name} {setting.describe()}" for name, setting in settings.looser.items())
        raise TrainingError(f"the run's settings are looser than criteria {criteria.label} it will be judged by: "
                            f"{looser}", "leave them out (the criteria decide) or make them at least as strict")
    return settings.apply(config)


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


@dataclass(frozen=True)
class _Run:
    """What every step of one run reads: where it records, what it trains on, how it reports."""

    workspace: Workspace
    version: DatasetVersion
    config: TrainConfig
    run_id: str
    run_dir: Path
    progress: Progress


@dataclass(frozen=True, eq=False)
class Loaded:
    """The load step's result: the image sets, decoded once at the model's input size, and their classes.

    ``folds`` (cross-fitted runs): the fold of each pool image (training images, then calibration
    images), dealt before any training so that an impossible fold count fails at once.
    """

    names: tuple[str, ...]
    good_index: int | None
    colour: str
    preprocess: Preprocess
    train: ImageSet
    val: ImageSet
    calib: ImageSet | None
    test: ImageSet
    test_items: tuple[DatasetItem, ...]
    folds: np.ndarray | None


@dataclass(frozen=True)
class Calibrated:
    """The calibrate step's result, fitted on held-out scores only: temperature, review band and operating
    points, (cross-fitted) how closely the shipped refit decides like the fold models on validation images,
    and the novelty guard (None without a good class: nothing is passed, so there is nothing to guard)."""

    confidence: ConfidenceFit
    band: FittedBand | None
    stability: Stability | None
    novelty: NoveltyGuard | None = None


@dataclass(frozen=True, eq=False)
class Evaluated:
    """The evaluate step's result: the finished model on the frozen test set."""

    evaluation: EvaluationResult
    calibration: CalibrationResult
    decisions: DecisionBand | None
    novelty: NoveltyMeasure | None = None


@dataclass(frozen=True)
class Exported:
    """The export step's result: the model file (and its registered variants)."""

    model_path: Path
    variants: tuple[str, ...]


def _execute(workspace: Workspace, version: DatasetVersion, config: TrainConfig, run_id: str, run_dir: Path,
             export_int8: bool, progress: Progress) -> RunResult:
    run = _Run(workspace, version, config, run_id, run_dir, progress)
    loaded = _load(run)
    estimated = _estimate(run, loaded)
    fitted = _fit(run, loaded)
    calibrated = _calibrate(run, loaded, fitted)
    evaluated = _evaluate(run, loaded, fitted, calibrated)
    exported = _export(run, loaded, fitted, calibrated, export_int8)
    metrics = _metrics(fitted, calibrated, evaluated) | {"estimate": estimated.to_dict(),
                                                         "budget": _budget_summary(run.config, fitted),
                                                         "precision": _precision(run.config)}
    atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2))
    workspace.db.runs.finish(run_id, "finished", metrics=metrics)
    return RunResult(run_id, run_dir, exported.model_path, metrics, evaluated.evaluation.files.html)


def _precision(config: TrainConfig) -> str | None:
    """The arithmetic fine-tuning used on this machine (``auto`` resolved), for the metrics; None for a probe."""
    from inspectloop.train.loop import training_precision

    return training_precision(config) if config.mode == "finetune" else None


def _load(run: _Run) -> Loaded:
    """Decode every split once (the test set too: loading is not scoring)."""
    from inspectloop.train.data import load_image_set
    from inspectloop.train.image_cache import training_images
    from inspectloop.train.ordinal import with_targets

    config, version = run.config, run.version
    preprocess, colour, cache = training_images(run.workspace, version, config)
    cache = cache if config.image_cache else None
    names = list(version.class_names)
    grades, good = class_grades(run.workspace.db.labels.classes(), names), good_index(run.workspace, names)

    def load(split: str) -> ImageSet:
        return load_image_set(version.split(split), names, run.workspace.blobs.get, preprocess,
                              draft=config.jpeg_draft, mode=colour, cache=cache,
                              progress=lambda n, total: run.progress("load", {"split": split, "done": n, "total": total}))

    def trained_on(split: str) -> ImageSet:  # graded and soft-label targets for the splits training sees
        return with_places(with_targets(load(split), version.split(split), names, grades, good, config), config,
                           run.workspace, version, version.split(split), None if good is None else names[good],
                           lambda message: run.progress("warning", {"message": message}))

    pool = version.split("train") + version.split("calib")
    folds = None if config.band_fit != "crossfit" else assign_folds(
        [item.label for item in pool], _fold_keys(run.workspace, pool, config.fold_by), config.folds, config.seed)
    calib = trained_on("calib") if version.split("calib") else None
    return Loaded(tuple(names), good, colour, preprocess, trained_on("train"), load("val"),
                  calib, load("test"), tuple(version.split("test")), folds)


def _fold_keys(workspace: Workspace, items: list[DatasetItem], fold_by: str) -> list[str]:
    """What keeps pool images together in one fold: the version's group key, or a capture field."""
    if fold_by == "group":
        return [item.group_key for item in items]
    records = workspace.db.images.get_many([item.sha256 for item in items])
    values = [getattr(records[item.sha256].meta, fold_by) for item in items]
    return [f"{fold_by}:{value}" if value else f"image:{item.sha256}" for item, value in zip(items, values)]


def _estimate(run: _Run, loaded: Loaded) -> Estimate:
    """Time a few training steps before the first epoch, say how long training will take, and refuse a time
    budget shorter than one epoch."""
    from inspectloop.train.estimate import check_budget, duration_text, estimate, measure_steps
    from inspectloop.train.fit import member_checkpoint, new_classifier
    from inspectloop.train.loop import checkpoint_epoch

    config, members = run.config, range(run.config.ensemble)
    steps = measure_steps(new_classifier(config, len(loaded.names)), loaded.train, loaded.val, loaded.preprocess, config)
    if loaded.folds is None:  # a resumed run: the epochs after each (ensemble member's) checkpoint
        done = [checkpoint_epoch(member_checkpoint(run.run_dir / "checkpoint.pt", m)) for m in members]
        trainings = [(len(loaded.train), config.epochs - 1 - epoch) for epoch in done]
    else:  # the fold models not finished by an earlier attempt, then the refit on the whole pool
        trainings = [(int(np.sum(loaded.folds != k)), config.epochs) for k in range(config.folds) for _ in members
                     if not (run.run_dir / f"fold-{k}.npz").exists()]
        trainings += [(len(loaded.folds), config.epochs)] * len(members)
    estimated = estimate(steps, trainings, len(loaded.val), config)
    message = estimated.describe()
    if config.max_minutes is not None and config.mode == "finetune" and estimated.seconds > config.max_minutes * 60:
        message += (f"; the time budget ({duration_text(config.max_minutes * 60)}) allows about "
                    f"{max(1, int(config.max_minutes * 60 // estimated.epoch_seconds))} of them")
    run.progress("estimate", {"message": message, **estimated.to_dict()})
    check_budget(estimated, config)
    return estimated


def _fit(run: _Run, loaded: Loaded) -> Fitted:
    """Train the model that ships (cross-fitted: the fold models first) and keep its weights."""
    import torch

    from inspectloop.train.fit import fit_crossfitted, fit_split, join, new_classifier

    config = run.config

    def new_model(seed: int) -> Classifier:
        return new_classifier(config, len(loaded.names), seed)

    def on_epoch(record: dict[str, Any]) -> None:
        run.workspace.db.runs.beat(run.run_id)
        run.progress("epoch", {"epochs": config.epochs, **record,  # a probe's record gives its own round cap
                               **({"folds": config.folds} if "fold" in record else {})})

    if loaded.folds is None:
        fitted = fit_split(new_model, loaded.train, loaded.val, loaded.calib, loaded.preprocess, config, run.run_dir,
                           on_epoch)
    else:
        fitted = fit_crossfitted(new_model, join(loaded.train, loaded.calib), loaded.folds, loaded.val,
                                 loaded.preprocess, config, run.run_dir, on_epoch)
    torch.save(fitted.model.state_dict(), run.run_dir / "weights.pt")
    budget = _budget_summary(config, fitted)
    if budget and budget["stopped_at_budget"]:
        from inspectloop.train.estimate import duration_text

        run.progress("note", {"message": f"stopped at the time budget ({duration_text((config.max_minutes or 0) * 60)}) "
                                         f"after epoch {budget['last_epoch'] + 1} of {config.epochs}; kept epoch "
                                         f"{fitted.training.best_epoch + 1} (best validation macro recall)"})
    return fitted


def _budget_summary(config: TrainConfig, fitted: Fitted) -> dict[str, Any] | None:
    """The time budget and whether it ended training early (after which epoch), for the metrics."""
    if config.max_minutes is None:
        return None
    history = fitted.training.history
    return {"max_minutes": config.max_minutes, "stopped_at_budget": fitted.training.stopped_at_budget,
            "last_epoch": history[-1]["epoch"] if history else None}


def _calibrate(run: _Run, loaded: Loaded, fitted: Fitted) -> Calibrated:
    """Temperature, review band, operating points and novelty guard from held-out images (the test set is not
    read)."""
    held = fitted.held_out
    guard = _fit_guard(run, loaded, fitted)
    if held is None:
        return Calibrated(fit_confidence(None, None), None, None, guard)
    confidence = fit_confidence(held.logits, held.labels, source=held.source)
    for warning in confidence.warnings:
        run.progress("warning", {"message": warning})
    probs = softmax(held.logits, confidence.temperature)
    crossfitted = held.folds is not None
    band = fit_band(probs, held.labels, good_index=loaded.good_index, alpha=run.config.alpha,
                    confidence=run.config.confidence, guarantee="crossfit" if crossfitted else run.config.guarantee,
                    folds=held.num_folds if crossfitted else None,
                    targets=_recall_targets(run.workspace, list(loaded.names), loaded.good_index, run.config),
                    class_names=loaded.names)
    return Calibrated(confidence, band, _stability(fitted, held, probs, band, confidence.temperature), guard)


def _fit_guard(run: _Run, loaded: Loaded, fitted: Fitted) -> NoveltyGuard | None:
    """The novelty guard: the bank of the shipped model's training embeddings, its threshold set at the run's
    ``novelty_rate`` on held-out images of known classes (calibration and validation splits; cross-fitted
    runs trained on the calibration images, so validation only)."""
    if loaded.good_index is None or not run.config.novelty_rate:
        return None
    from inspectloop.train.fit import join

    run.progress("novelty", {})
    banked = loaded.train if loaded.folds is None else join(loaded.train, loaded.calib)
    held = [loaded.val] + ([loaded.calib] if loaded.folds is None and loaded.calib is not None else [])
    held_images = [image for part in held for image in part.images]
    names = [name for name, part in (("validation", loaded.val), ("calibration", loaded.calib))
             if part is not None and any(part is h for h in held)]
    source = " and ".join(names) + (" splits" if len(names) > 1 else " split")
    return fit_novelty(embeddings(fitted.model, banked.images, loaded.preprocess),
                       embeddings(fitted.model, held_images, loaded.preprocess), rate=run.config.novelty_rate,
                       source=source, seed=run.config.seed)


def embeddings(model: Any, images: list[Any], preprocess: Preprocess, batch_size: int = 64) -> np.ndarray:
    """The novelty guard's embeddings (N, E) of decoded images, as the exported graph computes them."""
    import torch

    from inspectloop.models.novelty import guard_embedding
    from inspectloop.train.data import to_batch

    model.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            out.append(guard_embedding(model.trunk, to_batch(images[start:start + batch_size], preprocess)).numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


def _stability(fitted: Fitted, held: HeldOut, probs: np.ndarray, band: FittedBand,
               temperature: float) -> Stability | None:
    """Cross-fitted runs: the shipped refit against the fold models together, on the validation split."""
    models = fitted.fold_models
    if models is None or fitted.val_logits is None or not len(fitted.val_logits) or held.folds is None:
        return None
    oof = OutOfFold(probs, held.labels, held.folds, int(held.num_folds or 0))
    return stability(softmax(fitted.val_logits, temperature),
                     np.stack([softmax(logits, temperature) for logits in models.val_logits]), oof, band.band)


def _evaluate(run: _Run, loaded: Loaded, fitted: Fitted, calibrated: Calibrated) -> Evaluated:
    """Score the frozen test set once, with the finished model: accuracy, calibration, decisions."""
    from inspectloop.train.loop import predict_logits

    run.progress("evaluate", {})
    logits = predict_logits(fitted.model, loaded.test, loaded.preprocess)
    labels = loaded.test.labels
    calibration = measure_confidence(calibrated.confidence, logits, labels)
    for warning in calibration.warnings[len(calibrated.confidence.warnings):]:
        run.progress("warning", {"message": warning})
    decisions = None if calibrated.band is None else measure_band(
        calibrated.band, softmax(logits, calibrated.confidence.temperature), labels, loaded.names)
    novelty = _measure_guard(loaded, fitted, calibrated, logits)
    config = run.config
    context = {"run": run.run_id, "dataset_version": run.version.name, "split": "test", "backbone": config.backbone,
               "input_size": config.input_size, "mode": config.mode, "band_fit": config.band_fit,
               "best_epoch": fitted.training.best_epoch, "train_seconds": round(fitted.training.seconds, 1),
               "temperature": round(calibrated.confidence.temperature, 4), "code_version": code_version()}
    evaluation = evaluate_predictions(run.workspace, loaded.test_items, loaded.names, logits.argmax(1),
                                      run.run_dir / "report", title=f"{run.run_id} on {run.version.name}/test",
                                      context=context, figures=[calibration.figure],
                                      scores=softmax(logits, calibrated.confidence.temperature))
    return Evaluated(evaluation, calibration, decisions, novelty)


def _measure_guard(loaded: Loaded, fitted: Fitted, calibrated: Calibrated, logits: np.ndarray) -> NoveltyMeasure | None:
    """What the guard does on the frozen test set: the parts the classifier alone would pass, sent to review."""
    guard = calibrated.novelty
    if guard is None:
        return None
    from inspectloop.decisions.conformal import band_policy
    from inspectloop.runtime.decision import Decision, DecisionPolicy, threshold_array

    band = calibrated.band
    policy = (DecisionPolicy(num_classes=len(loaded.names), good_index=loaded.good_index) if band is None
              else band_policy(band.band, threshold_array(list(loaded.names), band.thresholds)))
    passed = policy.decide(softmax(logits, calibrated.confidence.temperature)).decisions == Decision.PASS.value
    scores = guard.scores(embeddings(fitted.model, loaded.test.images, loaded.preprocess))
    return measure_novelty(guard, scores, passed, loaded.test.labels, loaded.names)


def _export(run: _Run, loaded: Loaded, fitted: Fitted, calibrated: Calibrated, int8: bool) -> Exported:
    """Export fp32 (parity-checked against PyTorch) and, on request, an INT8 variant.

    Export checks use validation images: the frozen test set only ever scores the finished model.
    INT8 is calibrated on training images and must agree with the float model's top-1 on at least 97%
    of up to 128 validation images: a strict per-image gate on a handful of images would fail on one
    near-tie.
    """
    from inspectloop.export import export_classifier, quantize_int8
    from inspectloop.keys import site_signing_key

    run.progress("export", {})
    checks = spread(loaded.val.images, INT8_CHECK_IMAGES)
    fitted.model.eval()
    key = site_signing_key(run.workspace.root)
    guard = calibrated.novelty
    report = export_classifier(fitted.model, _metadata(run, loaded, calibrated), run.run_dir / "model.onnx",
                               checks[:16], signing_key=key, novelty_bank=None if guard is None else guard.bank)
    register_model(run.workspace, run.run_id, "fp32", report.path, report.weights_sha256)
    if not int8:
        return Exported(report.path, ("fp32",))
    q = quantize_int8(report.path, spread(loaded.train.images, INT8_CALIBRATION_IMAGES),
                      run.run_dir / "model-int8.onnx", parity_images=checks, min_top1_agreement=0.97,
                      signing_key=key)
    register_model(run.workspace, run.run_id, "int8", q.path, q.weights_sha256)
    return Exported(report.path, ("fp32", "int8"))


def _metadata(run: _Run, loaded: Loaded, calibrated: Calibrated) -> ModelMetadata:
    """What the model file carries: classes, preprocessing, temperature, review band, thresholds, novelty guard,
    lineage."""
    from inspectloop.models.backbones import backbone_spec

    config, names, good = run.config, loaded.names, loaded.good_index
    spec = backbone_spec(config.backbone)
    band = calibrated.band
    return ModelMetadata(
        model_name=run.workspace.config.name, model_version=run.run_id, class_names=names,
        good_class=names[good] if good is not None else None, input_size=config.input_size, mean=spec.mean,
        std=spec.std, temperature=calibrated.confidence.temperature, review=band.review if band else None,
        thresholds=band.thresholds if band else {}, jpeg_draft=config.jpeg_draft, colour_mode=loaded.colour,
        novelty=calibrated.novelty.metadata if calibrated.novelty else None, dataset_version=run.version.name, run_id=run.run_id, code_version=code_version(), created_at=now_iso(),
        weights_sha256="")


def _metrics(fitted: Fitted, calibrated: Calibrated, evaluated: Evaluated) -> dict[str, Any]:
    training = fitted.training
    return {"test": evaluated.evaluation.summary(), "calibration": evaluated.calibration.to_dict(),
            "decisions": evaluated.decisions.summary if evaluated.decisions else None,
            "novelty": _novelty_summary(calibrated.novelty, evaluated.novelty),
            "crossfit": _crossfit_summary(fitted, calibrated), "history": list(training.history),
            "best_epoch": training.best_epoch, "train_seconds": round(training.seconds, 1),
            "resumed_from_epoch": training.resumed_from, "warnings": list(evaluated.calibration.warnings)}


def _novelty_summary(guard: NoveltyGuard | None, measured: NoveltyMeasure | None) -> dict[str, Any] | None:
    """The guard for the run's metrics and the model card: how it was set, and what it did on the test set."""
    if guard is None:
        return None
    return {**guard.metadata, "certified": guard.certified, "source": guard.source,
            "training_images": guard.training_images, "test": measured.to_dict() if measured else None}


def _crossfit_summary(fitted: Fitted, calibrated: Calibrated) -> dict[str, Any] | None:
    models, held = fitted.fold_models, fitted.held_out
    if models is None or held is None or held.folds is None:
        return None
    return {"folds": held.num_folds, "fold_by": models.fold_by, "pool_images": int(held.labels.size),
            "fold_images": np.bincount(held.folds, minlength=held.num_folds or 0).tolist(),
            "fold_trainings": [{"best_epoch": t.best_epoch, "seconds": round(t.seconds, 1)} for t in models.trainings],
            "train_seconds_all_models": round(fitted.training.seconds + sum(t.seconds for t in models.trainings), 1),
            "stability_on_val": calibrated.stability.to_dict() if calibrated.stability else None}


def _recall_targets(workspace: Workspace, names: list[str], good_index: int | None,
                    config: TrainConfig) -> dict[str, float]:
    """Each defect class's target recall: the run's own setting, else its severity's default."""
    from inspectloop.decisions.operating_points import target_recalls

    severities = {c.name: c.severity.value for c in workspace.db.labels.classes().values()}
    return target_recalls(names, severities, names[good_index] if good_index is not None else None,
                          per_class=config.recall_targets)

