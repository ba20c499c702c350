"""The detector's training loop: seeded, checkpointed every epoch (resume picks up where a crash left),
best epoch kept by validation mAP50; and prediction on whole frames through the runtime's tiling."""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel

from inspectloop.detect.augment import BoxAugment, View, mosaic
from inspectloop.detect.data import Frame, training_view
from inspectloop.detect.loss import detection_loss
from inspectloop.detect.metrics import Boxes, coco_map
from inspectloop.detect.model import Detector
from inspectloop.runtime.detection import detect_frame
from inspectloop.runtime.preprocess import Preprocess
from inspectloop.train.average import weight_average
from inspectloop.train.loop import autocast, freeze_early_layers, plain_layout, training_layout
from inspectloop.train.schedule import OneCycle

EpochCallback = Callable[[dict[str, Any]], None]
EVAL_FLOOR = 0.01  # box confidence floor for mAP: the precision-recall curve needs the low-confidence tail
MOSAIC_CLOSE = 0.85  # mosaics stop for the last 15% of the schedule: the model ends on views like the line's (YOLO)


@dataclass(frozen=True)
class FitSettings:
    """What the loop reads (a subset of :class:`~inspectloop.train.config.TrainConfig`)."""

    input_size: int
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    freeze_blocks: int
    augment: str
    flips: bool
    seed: int
    tile_overlap: int
    nms_iou: float
    patience: int = 0
    precision: str = "float32"  # "bf16": autocast through oneDNN (the loss stays float32)
    channels_last: bool = False
    max_minutes: float | None = None  # the schedule anneals by it and training stops at it; the best epoch is kept
    ema: bool = False  # validate and keep a moving average of the weights (train.average), not the last step's
    mosaic: float = 0.0  # share of augmented training views that are mosaics of four (detect.augment.mosaic)


@dataclass
class DetectorTraining:
    """The loop's result: the model at its best epoch, and the history."""

    model: Detector
    best_epoch: int
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    resumed_from: int | None = None
    stopped_at_budget: bool = False


def predict_frames(model: Detector, frames: Sequence[Frame], preprocess: Preprocess, *, tile_overlap: int,
                   nms_iou: float, floor: float = EVAL_FLOOR) -> list[Boxes]:
    """Each frame's boxes, scores and classes, tiled and merged exactly as the runtime does, in held-image pixels."""
    model.eval()

    def run(tiles: list[Any]) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            batch = torch.from_numpy(np.stack([preprocess.to_array(tile) for tile in tiles]))
            boxes, scores = model(batch)
        return boxes.numpy(), scores.numpy()

    out = []
    for frame in frames:
        boxes, scores, classes = detect_frame(frame.image, preprocess.input_size, run,
                                              {"tile_overlap": tile_overlap, "nms_iou": nms_iou}, min_score=floor)
        out.append(Boxes(boxes, classes, scores))
    return out


def truth_of(frames: Sequence[Frame]) -> list[Boxes]:
    return [Boxes(frame.boxes, frame.labels) for frame in frames]


def fit_detector(model: Detector, train: Sequence[Frame], val: Sequence[Frame], preprocess: Preprocess,
                 settings: FitSettings, class_names: Sequence[str], checkpoint: Path,
                 on_epoch: EpochCallback | None = None) -> DetectorTraining:
    """Train ``model`` on ``train``; resume from ``checkpoint`` when it exists; keep the best epoch by
    validation mAP50 (the last epoch when ``val`` is empty). With ``settings.max_minutes`` the learning rate
    anneals by the clock as well as by the steps (:class:`~inspectloop.train.schedule.OneCycle`) and training
    stops when the budget is spent, mid-epoch if need be (that epoch is still validated and may be kept)."""
    frozen = freeze_early_layers(model, settings.freeze_blocks)  # type: ignore[arg-type]  # any model with a trunk
    training_layout(model, settings.precision, settings.channels_last, settings.freeze_blocks)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    steps = max(1, len(train) // settings.batch_size)
    schedule = OneCycle(settings.lr, settings.epochs * steps,
                        None if settings.max_minutes is None else settings.max_minutes * 60)
    state = _State(best_state=copy.deepcopy(model.state_dict()), py_rng=random.Random(settings.seed),
                   np_rng=np.random.default_rng(settings.seed),
                   average=weight_average(model) if settings.ema else None)
    resumed = _resume(checkpoint, model, optimizer, state, steps)
    scored = state.average.module if state.average is not None else model  # what is validated and kept
    augment = None if settings.augment == "none" else BoxAugment(1.0 if settings.augment == "production" else 0.5,
                                                                 settings.flips)
    stopped = False
    for epoch in range(state.epoch + 1, settings.epochs):
        if schedule.done(state.step, state.seconds):
            stopped = True  # the budget ran out at the end of the last epoch
            break
        epoch_started = time.perf_counter()
        losses = _train_epoch(model, frozen, train, preprocess, settings, optimizer, schedule, augment, state, steps,
                              epoch_started)
        score = _val_map(scored, val, preprocess, settings, class_names)
        state.seconds += time.perf_counter() - epoch_started
        stopped = losses.pop("cut")
        record = {"epoch": epoch, "loss": round(losses["loss"], 4), "cls": round(losses["cls"], 4),
                  "box": round(losses["box"], 4), "val_map50": score, "seconds": round(state.seconds, 1)}
        state.history.append(record)
        if score is None or score >= state.best_score:
            state.best_score, state.best_epoch = (score if score is not None else -1.0), epoch
            state.best_state = copy.deepcopy(scored.state_dict())
        state.epoch = epoch
        _save(checkpoint, model, optimizer, state)
        if on_epoch:
            on_epoch(record)
        if stopped or (settings.patience and epoch - state.best_epoch >= settings.patience):
            break
    model.load_state_dict(state.best_state)
    plain_layout(model)  # the export traces the usual layout and the modules' own forwards
    return DetectorTraining(model, state.best_epoch, state.history, state.seconds, resumed, stopped)


@dataclass
class _State:
    best_state: dict[str, torch.Tensor]
    py_rng: random.Random
    np_rng: np.random.Generator
    epoch: int = -1
    best_epoch: int = -1
    best_score: float = -1.0
    seconds: float = 0.0  # training time of the epochs done, a resumed run's earlier part included
    step: int = 0  # optimiser steps done
    history: list[dict[str, Any]] = field(default_factory=list)
    average: AveragedModel | None = None  # the weights' moving average, when kept


def _train_epoch(model: Detector, frozen: Sequence[torch.nn.Module], train: Sequence[Frame], preprocess: Preprocess,
                 settings: FitSettings, optimizer: torch.optim.Optimizer, schedule: OneCycle, augment: BoxAugment | None,
                 state: _State, steps: int, epoch_started: float) -> dict[str, Any]:
    """One pass over ``train`` (cut short when the time budget runs out: ``cut`` says so); mean losses."""
    model.train()
    for module in frozen:
        module.eval()  # frozen BatchNorm keeps its ImageNet statistics
    order = state.np_rng.permutation(len(train))
    if len(order) < steps * settings.batch_size:  # fewer frames than one batch: draw with repetition
        order = state.np_rng.choice(len(train), size=steps * settings.batch_size)
    totals, done = {"loss": 0.0, "cls": 0.0, "box": 0.0}, 0
    for step in range(steps):
        elapsed = state.seconds + time.perf_counter() - epoch_started
        if state.step and schedule.done(state.step, elapsed):  # a run always takes its first step
            break
        for group in optimizer.param_groups:
            group["lr"] = schedule.rate(state.step, elapsed)
        images, boxes, labels = [], [], []
        mosaics = settings.mosaic if schedule.progress(state.step, elapsed) < MOSAIC_CLOSE else 0.0
        for i in order[step * settings.batch_size:(step + 1) * settings.batch_size]:
            if augment is not None and mosaics and state.py_rng.random() < mosaics:
                others = [int(state.np_rng.integers(len(train))) for _ in range(3)]
                image, b, lab = mosaic([_view(train[j], settings, augment, state) for j in (i, *others)],
                                       state.py_rng)
            else:
                image, b, lab = _view(train[i], settings, augment, state)
            images.append(preprocess.to_array(image))
            boxes.append(torch.from_numpy(np.asarray(b, dtype=np.float32).reshape(-1, 4)))
            labels.append(torch.from_numpy(np.asarray(lab, dtype=np.int64)))
        batch = torch.from_numpy(np.stack(images))
        if settings.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with autocast(settings.precision):
            logits, distances, points, strides = model.raw(batch)
        loss, parts = detection_loss(logits.float(), distances.float(), points.float(), strides.float(), boxes, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()
        if state.average is not None:
            state.average.update_parameters(model)
        state.step, done = state.step + 1, done + 1
        totals["loss"] += float(loss.detach())
        totals["cls"] += parts["cls"]
        totals["box"] += parts["box"]
    return {**{name: value / max(1, done) for name, value in totals.items()}, "cut": done < steps}


def _view(frame: Frame, settings: FitSettings, augment: BoxAugment | None, state: _State) -> View:
    image, boxes, labels = training_view(frame, settings.input_size, state.py_rng)
    return (image, boxes, labels) if augment is None else augment(image, boxes, labels, state.py_rng)


def _val_map(model: Detector, val: Sequence[Frame], preprocess: Preprocess, settings: FitSettings,
             class_names: Sequence[str]) -> float | None:
    if not val:
        return None
    predicted = predict_frames(model, val, preprocess, tile_overlap=settings.tile_overlap, nms_iou=settings.nms_iou)
    return coco_map(truth_of(val), predicted, class_names)["map50"]


def _save(path: Path, model: torch.nn.Module, optimizer: Any, state: _State) -> None:
    """Write the checkpoint atomically: a crash mid-save leaves the previous one intact."""
    payload = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": state.step,
               "epoch": state.epoch, "best_epoch": state.best_epoch, "best_score": state.best_score,
               "best_state": state.best_state, "history": state.history, "seconds": state.seconds,
               "py_rng": state.py_rng.getstate(),
               "np_rng": state.np_rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
               "average": state.average.state_dict() if state.average is not None else None}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def _resume(path: Path, model: torch.nn.Module, optimizer: Any, state: _State, steps: int) -> int | None:
    if not path.exists():
        return None
    payload = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    state.step = int(payload.get("step", (payload["epoch"] + 1) * steps))  # older checkpoints: whole epochs
    state.epoch, state.best_epoch, state.best_score = payload["epoch"], payload["best_epoch"], payload["best_score"]
    state.best_state, state.history = payload["best_state"], payload["history"]
    state.seconds = float(payload.get("seconds", 0.0))
    state.py_rng.setstate(payload["py_rng"])
    state.np_rng.bit_generator.state = payload["np_rng"]
    torch.set_rng_state(payload["torch_rng"])
    if state.average is not None and payload.get("average") is not None:
        state.average.load_state_dict(payload["average"])
    return int(payload["epoch"])
