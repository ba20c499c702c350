"""The anomaly training run (workspace-bound): good images in, a certified threshold and one model file out.

Steps: the good class's training images fit the memory bank (or, with ``update``, join a finished
run's bank); the held-out split (calibration, else validation) sets the threshold from its good
images and, when it holds enough labelled defects, the escape side of the review band; the frozen
test set is scored once; the model file is exported with a parity check and registered. Defect images
never reach the bank.
"""

from __future__ import annotations

import json
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from inspectloop.anomaly.fit import MIN_GOOD_IMAGES, PatchCoreConfig
from inspectloop.anomaly.threshold import (
    ANOMALY_CLASS, NO_ESCAPE_CLAIM, AnomalyThreshold, anomaly_probs, fit_anomaly_band, fit_threshold,
)
from inspectloop.decisions.conformal import ReviewBand, rates_of_decisions
from inspectloop.domain import DatasetItem, DatasetVersion
from inspectloop.errors import TrainingError
from inspectloop.provenance import code_version
from inspectloop.runtime.decision import DecisionPolicy
from inspectloop.runtime.metadata import ANOMALY
from inspectloop.store import atomic_write_text, now_iso
from inspectloop.train.config import TrainConfig
from inspectloop.train.record import RunResult, colour_mode, failing_run, good_index, register_model, start_run
from inspectloop.workspace import Workspace

if TYPE_CHECKING:
    from PIL import Image

    from inspectloop.accept.criteria import LockedCriteria
    from inspectloop.anomaly.fit import PatchCoreModel

Progress = Callable[[str, dict[str, Any]], None]
MODEL_STATE = "patchcore.npz"
TRAINED_ON = "trained_on.json"  # the digests of the good images in the bank, for --update
_PARITY_IMAGES = 16


@dataclass(frozen=True)
class _Plan:
    """What an anomaly run reads: its good class and, per role, the dataset items."""

    good: str
    bank: tuple[DatasetItem, ...]
    held_out: tuple[DatasetItem, ...]
    held_out_split: str
    test: tuple[DatasetItem, ...]
    parent: str | None


def train_anomaly(workspace: Workspace, version: DatasetVersion, config: TrainConfig, *,
                  criteria: LockedCriteria | None = None, update: str | None = None,
                  progress: Progress) -> RunResult:
    """Train (or, with ``update``, extend) an anomaly model on ``version``'s good images; see the module docstring.

    TrainingError, before anything is recorded, for a version without the good class or with too few
    good images, or an ``update`` of a run that is not a finished anomaly run.
    """
    plan = _plan(workspace, version, config, update)
    run_id, config = start_run(workspace, version, config, None, None if criteria is None else criteria.id)
    run_dir = workspace.runs_dir / run_id
    with failing_run(workspace, run_id):
        return _execute(workspace, version, config, plan, run_id, run_dir, progress)


def good_class_of(workspace: Workspace, version: DatasetVersion, config: TrainConfig) -> str:
    """The class an anomaly model learns: ``config.good_class``, else the workspace's good class."""
    names = list(version.class_names)
    if config.good_class is not None:
        if config.good_class not in names:
            raise TrainingError(f"good class {config.good_class!r} is not a class of {version.name} ({', '.join(names)})",
                                "set good_class to one of the version's classes")
        return config.good_class
    index = good_index(workspace, names)
    if index is None:
        raise TrainingError(f"dataset version {version.name} has no good class (classes: {', '.join(names)}); an "
                            "anomaly model learns what good parts look like",
                            "mark the pass class as good in its class definition, or --set good_class=NAME")
    return names[index]


def _plan(workspace: Workspace, version: DatasetVersion, config: TrainConfig, update: str | None) -> _Plan:
    good = good_class_of(workspace, version, config)
    if good == ANOMALY_CLASS:
        raise TrainingError(f"the good class is named {ANOMALY_CLASS!r}, the name an anomaly model gives defects",
                            "rename the class")
    if config.band_fit != "split":
        raise TrainingError("an anomaly model's threshold is fitted on a held-out split, not cross-fitted",
                            "train with band_fit=split")
    bank = tuple(item for item in version.split("train") if item.label == good)
    parent = None
    if update is not None:
        parent, seen = _parent(workspace, update)
        bank = tuple(item for item in bank if item.sha256 not in seen)
        if not bank:
            raise TrainingError(f"{version.name} has no good training images that run {update} has not seen",
                                "make a dataset version with the new good images first")
    elif len(bank) < MIN_GOOD_IMAGES:
        raise TrainingError(f"dataset version {version.name} has {len(bank)} good training image(s) of class "
                            f"{good!r}; an anomaly model needs at least {MIN_GOOD_IMAGES}",
                            "ingest more good images and make a new dataset version")
    split = "calib" if any(i.label == good for i in version.split("calib")) else "val"
    held = tuple(version.split(split))
    if not any(item.label == good for item in held):
        raise TrainingError(f"dataset version {version.name} has no held-out good images (calibration or validation "
                            "split) to set the anomaly threshold on", "make a version with a calibration split")
    return _Plan(good, bank, held, split, tuple(version.split("test")), parent)


def _parent(workspace: Workspace, run_id: str) -> tuple[str, set[str]]:
    row = workspace.db.runs.get(run_id)
    if row is None or row.status != "finished" or row.config.get("task") != ANOMALY:
        raise TrainingError(f"run {run_id!r} is not a finished anomaly run", "list runs with: inspectloop runs")
    state = Path(row.artifacts) / TRAINED_ON
    if not state.exists():
        raise TrainingError(f"run {run_id} has no saved memory bank ({state})", "train a new anomaly run instead")
    return run_id, set(json.loads(state.read_text()))


def _execute(workspace: Workspace, version: DatasetVersion, config: TrainConfig, plan: _Plan, run_id: str,
             run_dir: Path, progress: Progress) -> RunResult:
    load = _loader(workspace, version, config, progress)
    started = time.perf_counter()
    model = _fit(workspace, config, plan, load(plan.bank, "train"), progress)
    fit_seconds = time.perf_counter() - started
    held_images = load(plan.held_out, "held-out")
    held_scores = model.image_scores(held_images)
    is_defect = np.array([item.label != plan.good for item in plan.held_out])
    threshold = fit_threshold(held_scores[~is_defect], false_reject_target=config.false_reject_target,
                              confidence=config.confidence, guarantee=config.guarantee)
    band = fit_anomaly_band(held_scores, is_defect, threshold, alpha=config.alpha, guarantee=config.guarantee)
    model.with_normalisation(threshold.threshold, threshold.scale)
    review = _review(band, threshold, config.alpha)
    evaluation = _evaluate(workspace, version, plan, model, threshold, review, load(plan.test, "test"), run_id,
                           run_dir, config)
    model_path, weights = _export(workspace, run_id, run_dir, version, plan, config, model, review, held_images)
    model.save(run_dir / MODEL_STATE)
    seen = [item.sha256 for item in plan.bank] + (_seen(workspace, plan.parent) if plan.parent else [])
    atomic_write_text(run_dir / TRAINED_ON, json.dumps(sorted(set(seen))))
    evaluation["decisions"]["band"] = _band_summary(band, threshold, review, int(is_defect.sum()))
    metrics = {**evaluation, "task": ANOMALY, "threshold": threshold.to_dict(),
               "band": None if band is None else band.to_dict(), "review": review,
               "fit": {"seconds": round(fit_seconds, 1), "bank_rows": int(model.bank.shape[0]),
                       "bank_dim": int(model.bank.shape[1]), "good_images": model.images_seen,
                       "new_good_images": len(plan.bank), "updated_from": plan.parent,
                       "process_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)},
               "held_out": {"split": plan.held_out_split, "good": int((~is_defect).sum()),
                            "defects": int(is_defect.sum())},
               "weights_sha256": weights}
    atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2))
    workspace.db.runs.finish(run_id, "finished", metrics=metrics)
    return RunResult(run_id, run_dir, model_path, metrics, Path(evaluation["test"]["report"]))


def _loader(workspace: Workspace, version: DatasetVersion, config: TrainConfig,
            progress: Progress) -> Callable[[Sequence[DatasetItem], str], list[Image.Image]]:
    from inspectloop.models.backbones import backbone_spec
    from inspectloop.runtime.preprocess import Preprocess
    from inspectloop.train.data import load_image_set
    spec = backbone_spec(config.backbone)
    preprocess = Preprocess(config.input_size, spec.mean, spec.std, config.input_height)
    mode = colour_mode(workspace, version, config)

    def load(items: Sequence[DatasetItem], split: str) -> list[Image.Image]:
        return load_image_set(items, list(version.class_names), workspace.blobs.get, preprocess,
                              draft=config.jpeg_draft, mode=mode,
                              progress=lambda n, total: progress("load", {"split": split, "done": n,
                                                                          "total": total})).images
    return load


def _fit(workspace: Workspace, config: TrainConfig, plan: _Plan, images: list[Image.Image],
         progress: Progress) -> PatchCoreModel:
    from inspectloop.anomaly.fit import PatchCoreModel, fit_patchcore

    def on_chunk(done: int, total: int) -> None:
        progress("fit", {"done": done, "total": total})

    if plan.parent is not None:
        parent = PatchCoreModel.load(Path(workspace.db.runs.get(plan.parent).artifacts) / MODEL_STATE)
        return parent.update(images, progress=on_chunk)
    return fit_patchcore(images, patchcore_config(config), progress=on_chunk)


def patchcore_config(config: TrainConfig) -> PatchCoreConfig:
    """The PatchCore settings a training config names."""
    return PatchCoreConfig(backbone=config.backbone, input_size=config.input_size, input_height=config.input_height,
                           stages=config.patch_blocks, stride=config.patch_stride,
                           coreset_ratio=config.coreset_ratio, max_bank=config.max_bank,
                           score_share=config.score_share, seed=config.seed, threads=config.threads)


def _seen(workspace: Workspace, run_id: str) -> list[str]:
    return json.loads((Path(workspace.db.runs.get(run_id).artifacts) / TRAINED_ON).read_text())


def _review(band: ReviewBand | None, threshold: AnomalyThreshold, alpha: float) -> dict[str, Any]:
    """The model file's review band: fitted on labelled defects when they certify alpha, else good-only."""
    if band is None:
        return threshold.review(alpha)
    return {"auto_above": band.auto_above, "reject_below": band.reject_below, "alpha": band.alpha,
            "confidence": band.confidence, "certifiable": band.certifiable, "guarantee": band.guarantee}


def _band_summary(band: ReviewBand | None, threshold: AnomalyThreshold, review: dict[str, Any],
                  defects: int) -> dict[str, Any]:
    """What the model card shows as the run's band: the fitted band, or the good-only threshold in its terms."""
    if band is not None:
        return {**band.to_dict(), "score": "P(good) (a map of the anomaly score)"}
    return {"score": "P(good) (0.5 at the anomaly threshold)", **review, "guarantee_kind": threshold.guarantee_kind,
            "calibration_defects": defects, "calibration_good": threshold.held_out_good}


def policy_of(review: dict[str, Any]) -> DecisionPolicy:
    """The runtime's decision rule for an anomaly model's (P(good), P(anomaly)) with ``review``."""
    return DecisionPolicy(num_classes=2, good_index=0, auto_above=review["auto_above"],
                          reject_below=review["reject_below"])


def _evaluate(workspace: Workspace, version: DatasetVersion, plan: _Plan, model: PatchCoreModel,
              threshold: AnomalyThreshold, review: dict[str, Any], images: list[Image.Image], run_id: str,
              run_dir: Path, config: TrainConfig) -> dict[str, Any]:
    """Score the frozen test set once: ranking (AUROC, recall at 1% FPR), and the shipped decisions."""
    from inspectloop.evaluate.run import evaluate_predictions

    scores = model.image_scores(images)
    is_defect = np.array([item.label != plan.good for item in plan.test], dtype=bool)
    probs = anomaly_probs(scores, threshold)
    decisions = policy_of(review).decide(probs)
    rates = rates_of_decisions(decisions, is_defect.astype(np.int64), num_classes=2, good_index=0,
                               alpha=review["alpha"] if review["certifiable"] else None)
    items = [replace(item, label=plan.good if not defect else ANOMALY_CLASS) for item, defect in zip(plan.test, is_defect)]
    context = {"run": run_id, "dataset_version": version.name, "split": "test", "task": ANOMALY,
               "backbone": config.backbone, "input_size": config.input_size,
               "input_height": config.input_height, "code_version": code_version(),
               "threshold": round(threshold.threshold, 6)}
    evaluation = evaluate_predictions(workspace, items, (plan.good, ANOMALY_CLASS), decisions.labels,
                                      run_dir / "report", title=f"{run_id} on {version.name}/test",
                                      context=context, scores=probs,
                                      heatmaps=heatmap_loader(model, plan.test, images))
    return {"test": evaluation.summary(), "ranking": ranking(scores, is_defect),
            "decisions": {"test": rates.to_dict(), "escape_claim": bool(review["certifiable"]),
                          "note": None if review["certifiable"] else NO_ESCAPE_CLAIM}}


def heatmap_loader(model: PatchCoreModel, items: Sequence[DatasetItem],
                   images: Sequence[Image.Image]) -> Callable[[str], np.ndarray]:
    """The report's heatmap of an item's image by its digest (KeyError for another image). Called only for
    the few hard cases the report shows, so the test set's heatmaps are never all held at once."""
    position = {item.sha256: i for i, item in enumerate(items)}

    def heatmap(digest: str) -> np.ndarray:
        return model.score([images[position[digest]]])[1][0]
    return heatmap


def ranking(scores: np.ndarray, is_defect: np.ndarray) -> dict[str, Any]:
    """How well the score separates defects from good parts, threshold-free: image AUROC, and the recall
    at the score that rejects 1% of these good parts (read off this set: a measure, not a setting)."""
    good, bad = scores[~is_defect], scores[is_defect]
    if not good.size or not bad.size:
        return {"auroc": None, "recall_at_1pct_fpr": None, "good": int(good.size), "defects": int(bad.size)}
    # AUROC as the Mann-Whitney statistic, ties counted half
    greater = (bad[:, None] > good[None, :]).mean() + 0.5 * (bad[:, None] == good[None, :]).mean()
    cut = np.quantile(good, 0.99, method="higher")
    return {"auroc": round(float(greater), 4), "recall_at_1pct_fpr": round(float((bad > cut).mean()), 4),
            "good": int(good.size), "defects": int(bad.size)}


def _export(workspace: Workspace, run_id: str, run_dir: Path, version: DatasetVersion, plan: _Plan,
            config: TrainConfig, model: PatchCoreModel, review: dict[str, Any],
            held_images: list[Image.Image]) -> tuple[Path, str]:
    from inspectloop.anomaly.fit import metadata_for
    from inspectloop.export import export_anomaly
    from inspectloop.keys import site_signing_key
    metadata = metadata_for(model, model_name=workspace.config.name, model_version=run_id, good_class=plan.good,
                            review=review, colour_mode=colour_mode(workspace, version, config),
                            jpeg_draft=config.jpeg_draft, dataset_version=version.name, run_id=run_id,
                            code_version=code_version(), created_at=now_iso())
    step = max(1, len(held_images) // _PARITY_IMAGES)
    report = export_anomaly(model.module, metadata, run_dir / "model.onnx", held_images[::step][:_PARITY_IMAGES],
                            signing_key=site_signing_key(workspace.root))
    register_model(workspace, run_id, "fp32", report.path, report.weights_sha256)
    return report.path, report.weights_sha256
