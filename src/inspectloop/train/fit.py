"""The fit step of a training run: the model, and the held-out logits its calibration is fitted on.

Pure training (image sets in, models and logits out; no workspace). Split: the model trains on the
training split and scores the calibration split. Cross-fitted: the labelled pool (training plus
calibration images) is dealt into folds; fold
model k trains without fold k and scores it, and the shipped model is refit on the whole pool. Each
fold's scores, validation logits and weights are kept in the run folder (``fold-k.npz``, ``fold-k.pt``;
all out-of-fold logits with their folds and image digests in ``out-of-fold.npz``), so an interrupted
run resumes after its last finished fold and the band can be audited.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inspectloop.models.classifier import Classifier
from inspectloop.models.ensemble import Ensemble
from inspectloop.runtime.preprocess import Preprocess
from inspectloop.train.config import TrainConfig
from inspectloop.train.data import ImageSet
from inspectloop.train.loop import TrainResult, finetune, predict_logits, probe
from inspectloop.train.ordinal import joined_targets

NewModel = Callable[[int], Classifier]  # a fresh model seeded with the seed given: every fold model starts alike
EpochProgress = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Training:
    """How one model trained: its best epoch by validation macro recall, the curve, the time."""

    best_epoch: int
    history: tuple[dict[str, Any], ...]
    seconds: float
    resumed_from: int | None = None
    stopped_at_budget: bool = False  # the run's max_minutes ended it before its last epoch

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {"best_epoch": self.best_epoch, "history": list(self.history), "seconds": round(self.seconds, 1),
                "resumed_from": self.resumed_from}


@dataclass(frozen=True, eq=False)
class HeldOut:
    """Logits of labelled images, each from a model that never trained on it: what calibration fits on.

    ``source`` is "calibration split" or "out-of-fold scores"; ``folds`` (fold of each row) and
    ``num_folds`` are set for out-of-fold scores.
    """

    logits: np.ndarray
    labels: np.ndarray
    source: str
    folds: np.ndarray | None = None
    num_folds: int | None = None


@dataclass(frozen=True, eq=False)
class FoldModels:
    """Cross-fitting's by-products: one training per fold, each fold model's validation logits and weights."""

    fold_by: str
    trainings: tuple[Training, ...]
    val_logits: np.ndarray  # (folds, validation images, classes)
    weights: tuple[Path, ...]


@dataclass(frozen=True, eq=False)
class Fitted:
    """The fit step's result: the model that ships, how it trained, and the held-out logits."""

    model: Classifier | Ensemble
    training: Training
    held_out: HeldOut | None
    fold_models: FoldModels | None = None
    val_logits: np.ndarray | None = None  # the shipped model on the validation split (cross-fitted runs)


def new_classifier(config: TrainConfig, classes: int, seed: int | None = None) -> Classifier:
    """A fresh classifier of ``config``'s backbone, its head seeded by ``seed`` (default ``config.seed``): every
    model a run trains from one seed (a fold's, the refit, a timing trial) starts from the same weights."""
    from inspectloop.models.backbones import backbone_spec, load_backbone
    from inspectloop.train.loop import seed_everything

    if config.threads:
        torch.set_num_threads(config.threads)
    seed_everything(config.seed if seed is None else seed)
    trunk = load_backbone(config.backbone, input_size=config.input_size, standardise=config.standardise)
    return Classifier(trunk, backbone_spec(config.backbone).feature_dim, classes)


def fit_split(new_model: NewModel, train: ImageSet, val: ImageSet, calib: ImageSet | None, preprocess: Preprocess,
              config: TrainConfig, run_dir: Path, on_epoch: EpochProgress) -> Fitted:
    """Train on the training split (resuming from the run's checkpoint); score the calibration split."""
    result = _train(new_model, train, val, preprocess, config, run_dir / "checkpoint.pt", on_epoch)
    held = None if calib is None or not len(calib) else HeldOut(predict_logits(result.model, calib, preprocess),
                                                                 calib.labels, "calibration split")
    return Fitted(result.model, _training(result), held)


def fit_crossfitted(new_model: NewModel, pool: ImageSet, folds: np.ndarray, val: ImageSet,
                    preprocess: Preprocess, config: TrainConfig, run_dir: Path, on_epoch: EpochProgress) -> Fitted:
    """A model per fold (``folds``: the fold of each pool image, from
    :func:`~inspectloop.decisions.crossfit.assign_folds`), then the refit on the whole pool.

    Row i of the held-out logits comes from the fold model trained without image i's fold.
    """
    oof: np.ndarray | None = None
    trainings, val_logits, weights = [], [], []
    for k in range(config.folds):
        fold = _fit_fold(k, new_model, pool, folds, val, preprocess, config, run_dir, on_epoch)
        if oof is None:
            oof = np.zeros((len(pool), fold.held_out_logits.shape[1]), dtype=fold.held_out_logits.dtype)
        oof[folds == k] = fold.held_out_logits
        trainings.append(fold.training)
        val_logits.append(fold.val_logits)
        weights.append(fold.weights)
    np.savez(run_dir / "out-of-fold.npz", logits=oof, labels=pool.labels, folds=folds, digests=np.array(pool.digests))
    result = _train(new_model, pool, val, preprocess, config, run_dir / "checkpoint.pt", on_epoch)
    models = FoldModels(config.fold_by, tuple(trainings), np.stack(val_logits), tuple(weights))
    held = HeldOut(oof, pool.labels, "out-of-fold scores", folds, config.folds)  # type: ignore[arg-type]
    return Fitted(result.model, _training(result), held, models, predict_logits(result.model, val, preprocess))


def join(first: ImageSet, second: ImageSet | None) -> ImageSet:
    """Both image sets as one (the cross-fitting pool: training and calibration images)."""
    if second is None:
        return first
    graded = joined_targets(first.graded, first.labels, second.graded, second.labels)
    keep = None if first.keep is None and second.keep is None else \
        (first.keep or [None] * len(first)) + (second.keep or [None] * len(second))
    return ImageSet(first.images + second.images, np.concatenate([first.labels, second.labels]),
                    first.digests + second.digests, graded, keep)


@dataclass(frozen=True, eq=False)
class _Fold:
    training: Training
    held_out_logits: np.ndarray
    val_logits: np.ndarray
    weights: Path


def _fit_fold(k: int, new_model: NewModel, pool: ImageSet, folds: np.ndarray, val: ImageSet, preprocess: Preprocess,
              config: TrainConfig, run_dir: Path, on_epoch: EpochProgress) -> _Fold:
    """Fold ``k``'s model and its scores, or the saved ones when an earlier attempt finished this fold."""
    held = _subset(pool, folds == k)
    saved, weights = run_dir / f"fold-{k}.npz", run_dir / f"fold-{k}.pt"
    if saved.exists() and weights.exists():
        with np.load(saved) as data:
            if list(data["digests"]) == held.digests:  # the same images in this fold: reuse
                record = json.loads(str(data["training"]))
                training = Training(record["best_epoch"], tuple(record["history"]), record["seconds"],
                                    record["resumed_from"])
                return _Fold(training, data["held_out"], data["val"], weights)
    result = _train(new_model, _subset(pool, folds != k), val, preprocess, config,
                    run_dir / f"fold-{k}-checkpoint.pt", lambda record: on_epoch({**record, "fold": k}))
    fold = _Fold(_training(result), predict_logits(result.model, held, preprocess),
                 predict_logits(result.model, val, preprocess), weights)
    torch.save(result.model.state_dict(), weights)
    tmp = saved.with_suffix(".tmp.npz")
    np.savez(tmp, digests=np.array(held.digests), held_out=fold.held_out_logits, val=fold.val_logits,
             training=json.dumps(fold.training.to_dict()))
    tmp.replace(saved)  # a crash mid-write leaves no half fold behind
    remove_checkpoints(run_dir / f"fold-{k}-checkpoint.pt", config)
    return fold


def member_checkpoint(checkpoint: Path, member: int) -> Path:
    """Where ensemble member ``member`` of a training keeps its checkpoint (the first: the training's own)."""
    return checkpoint if member == 0 else checkpoint.with_name(f"{checkpoint.stem}-member-{member}.pt")


def remove_checkpoints(checkpoint: Path, config: TrainConfig) -> None:
    """Delete a finished training's checkpoint, every ensemble member's."""
    for member in range(config.ensemble):
        member_checkpoint(checkpoint, member).unlink(missing_ok=True)


def _train(new_model: NewModel, train: ImageSet, val: ImageSet, preprocess: Preprocess, config: TrainConfig,
           checkpoint: Path, on_epoch: EpochProgress) -> TrainResult:
    """One model, or (``config.ensemble`` > 1) its members one after another, each from its own seed and
    checkpoint (an interrupted run resumes in the member it stopped in), then averaged."""
    if config.ensemble == 1:
        return _train_one(new_model(config.seed), train, val, preprocess, config, checkpoint, on_epoch)
    results = []
    for member in range(config.ensemble):
        seed = config.seed + member
        results.append(_train_one(new_model(seed), train, val, preprocess, config.model_copy(update={"seed": seed}),
                                  member_checkpoint(checkpoint, member),
                                  lambda record, m=member: on_epoch({**record, "member": m})))
    history = [{**record, "member": m} for m, result in enumerate(results) for record in result.history]
    return TrainResult(Ensemble([result.model for result in results]), results[0].best_epoch, history,
                       sum(result.seconds for result in results), results[0].resumed_from,
                       any(result.stopped_at_budget for result in results))


def _train_one(model: Classifier, train: ImageSet, val: ImageSet, preprocess: Preprocess, config: TrainConfig,
               checkpoint: Path, on_epoch: EpochProgress) -> TrainResult:
    if config.mode == "probe":
        return probe(model, train, val, preprocess, config, on_epoch)
    result = finetune(model, train, val, preprocess, config, checkpoint, on_epoch)
    if config.head_refit:  # the fine-tuned trunk keeps its features; the head becomes the regularised probe's
        head = result.model.head[1]
        tuned = (head.weight.detach().clone(), head.bias.detach().clone())
        refit = probe(result.model, train, val, preprocess, config, None)
        blend_head(head, tuned, config.head_blend)
        result.seconds += refit.seconds
    return result


def blend_head(head: torch.nn.Linear, kept: tuple[torch.Tensor, torch.Tensor], share: float) -> None:
    """Blend ``share`` of another head (weight, bias) of the same shape into ``head`` in place. Both read the
    same features, so the blend's logits are the same blend of the two heads' logits."""
    if share:
        with torch.no_grad():
            head.weight.mul_(1 - share).add_(kept[0], alpha=share)
            head.bias.mul_(1 - share).add_(kept[1], alpha=share)


def _training(result: TrainResult) -> Training:
    return Training(result.best_epoch, tuple(result.history), result.seconds, result.resumed_from,
                    result.stopped_at_budget)


def _subset(images: ImageSet, mask: np.ndarray) -> ImageSet:
    return images.take(np.flatnonzero(mask))
