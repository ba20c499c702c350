"""How long a training will take on this machine, measured before its first epoch, and its time budget.

A few training steps and one scoring pass are timed on a copy of the model (the model, the optimiser and
every random state of the run stay untouched, so the same seed still gives the same model). The load of the
machine at that moment is in the figure: a busy machine gets a longer estimate.
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from inspectloop.errors import TrainingError
from inspectloop.models.classifier import Classifier
from inspectloop.runtime.preprocess import Preprocess
from inspectloop.train.augment import augment_for
from inspectloop.train.config import TrainConfig
from inspectloop.train.data import ImageSet, augmented_batch
from inspectloop.train.loop import (freeze_early_layers, plain_layout, predict_logits, train_step, training_layout,
                                    training_precision)

TIMED_BATCHES = 3  # after one untimed warm-up batch (its first call builds the CPU kernels)


@dataclass(frozen=True)
class StepTimes:
    """Seconds of one training step (``batch_size`` images, augmentation included; 0 in probe mode), of scoring
    one image as the model trains (validation after each epoch) and as training hands it back (float32, standard
    layout: the head's refit scores the training images that way), each the mean over ``batches`` timed batches."""

    train_step: float
    predict_image: float
    batch_size: int
    batches: int
    refit_image: float

    def epoch_seconds(self, train_images: int, val_images: int) -> float:
        """One fine-tuning epoch: its training steps, then scoring the validation images."""
        return max(1, train_images // self.batch_size) * self.train_step + val_images * self.predict_image


@dataclass(frozen=True)
class Estimate:
    """The training still to run: ``seconds`` in all, ``epochs`` (of every model it trains), and one epoch of the
    shipped model (``epoch_seconds``: what a time budget must at least allow)."""

    seconds: float
    epochs: int
    epoch_seconds: float
    steps: StepTimes

    def describe(self) -> str:
        """One line for people: "about 12 minutes for 15 epochs (measured on 3 batches)"."""
        plural = "s" if self.epochs != 1 else ""
        return f"about {duration_text(self.seconds)} for {self.epochs} epoch{plural} (measured on {self.steps.batches} batches)"

    def to_dict(self) -> dict[str, float | int]:
        """JSON-safe form, for the run's metrics (beside the actual ``train_seconds``)."""
        return {"seconds": round(self.seconds, 1), "epochs": self.epochs, "epoch_seconds": round(self.epoch_seconds, 1),
                "batches": self.steps.batches, "train_step_seconds": round(self.steps.train_step, 4),
                "predict_image_seconds": round(self.steps.predict_image, 5),
                "refit_image_seconds": round(self.steps.refit_image, 5)}


def duration_text(seconds: float) -> str:
    """A duration as people say it: "40 seconds", "2.5 minutes", "12 minutes", "2.5 hours"."""
    if seconds < 90:
        return f"{max(1, round(seconds))} seconds"
    if seconds < 10 * 60:
        return f"{seconds / 60:.1f}".removesuffix(".0") + " minutes"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} minutes"
    return f"{seconds / 3600:.1f} hours"


def measure_steps(model: Classifier, train: ImageSet, val: ImageSet, preprocess: Preprocess, config: TrainConfig,
                  batches: int = TIMED_BATCHES) -> StepTimes:
    """Time training steps and scoring as ``config`` trains, on a copy of ``model`` (left as it was)."""
    torch_rng = torch.get_rng_state()
    try:
        trial = copy.deepcopy(model)
        step = 0.0 if config.mode == "probe" else _time_training(trial, train, preprocess, config, batches)
        scored = val if len(val) else train
        predict = _time_scoring(trial, scored, preprocess)
        # On the fast path the trained model is handed back in float32 and the standard layout, where scoring
        # is slower (about 2x on an AVX-512 BF16 CPU): the refit's pass is timed that way.
        refitted = config.mode == "finetune" and config.head_refit
        refit = _time_scoring(plain_layout(trial), scored, preprocess) if refitted else predict
    finally:
        torch.set_rng_state(torch_rng)  # dropout draws of the real training are those it would have had
    return StepTimes(step, predict, config.batch_size, batches, refit)


def estimate(steps: StepTimes, trainings: Sequence[tuple[int, int]], val_images: int, config: TrainConfig) -> Estimate:
    """The time of ``trainings`` (training images, epochs still to run: one pair per model, the shipped one
    last), with the head's refit after each (``head_refit``). Probe mode: one scoring pass over the training
    views and the validation images per model."""
    if config.mode == "probe":
        seconds = sum((images * config.probe_views + val_images) * steps.predict_image for images, _ in trainings)
        return Estimate(seconds, sum(epochs for _, epochs in trainings), 0.0, steps)
    seconds = sum(epochs * steps.epoch_seconds(images, val_images) for images, epochs in trainings)
    if config.head_refit:  # then one scoring pass over its training and validation images per model
        seconds += sum((images + val_images) * steps.refit_image for images, _ in trainings)
    shipped = trainings[-1][0] if trainings else 0
    return Estimate(seconds, sum(epochs for _, epochs in trainings), steps.epoch_seconds(shipped, val_images), steps)


def check_budget(estimated: Estimate, config: TrainConfig) -> None:
    """Refuse a time budget shorter than one epoch, saying how long one takes here."""
    if config.max_minutes is None or config.mode == "probe" or estimated.epoch_seconds <= config.max_minutes * 60:
        return
    need = math.ceil(estimated.epoch_seconds / 60 * 1.25)  # one epoch with a margin for a busier machine
    raise TrainingError(f"--max-minutes {config.max_minutes:g} is shorter than one epoch: one epoch takes about "
                        f"{duration_text(estimated.epoch_seconds)} on this machine",
                        f"give --max-minutes {need} or more, or train on smaller images (--input-size)")


def _time_training(model: Classifier, train: ImageSet, preprocess: Preprocess, config: TrainConfig,
                   batches: int) -> float:
    frozen = freeze_early_layers(model, config.freeze_blocks)
    training_layout(model, training_precision(config), config.channels_last, config.freeze_blocks)
    model.train()
    for module in frozen:
        module.eval()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.lr,
                                  weight_decay=config.weight_decay)
    augment = augment_for(config)
    rng, draw = random.Random(config.seed), np.random.default_rng(config.seed)  # private: the run's stay as they are
    size = min(config.batch_size, len(train))
    seconds = []
    for _ in range(batches + 1):
        index = draw.choice(len(train), size=size, replace=False)
        started = time.perf_counter()
        x = augmented_batch([train.images[i] for i in index], preprocess, augment, rng)
        train_step(model, x, torch.from_numpy(train.labels[index]), optimizer, config)
        seconds.append(time.perf_counter() - started)
    return float(np.mean(seconds[1:]))


def _time_scoring(model: Classifier, images: ImageSet, preprocess: Preprocess, count: int = 32) -> float:
    batch = ImageSet(images.images[:count], images.labels[:count], images.digests[:count])
    predict_logits(model, batch, preprocess)  # warm-up: the first pass of a batch shape builds its kernels
    started = time.perf_counter()
    predict_logits(model, batch, preprocess)
    return (time.perf_counter() - started) / max(1, len(batch))
