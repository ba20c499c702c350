"""Training loops: fine-tuning with checkpoints and resume, and the fast linear probe.

Pure training glue: models come from ``inspectloop.models``, data from ``inspectloop.train.data``.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import random
import time
import types
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from inspectloop.models.classifier import Classifier
from inspectloop.models.ensemble import Ensemble
from inspectloop.runtime.preprocess import Preprocess
from inspectloop.train.augment import augment_for
from inspectloop.train.config import TrainConfig
from inspectloop.train.data import ImageSet, augmented_batch, balanced_order, to_batch
from inspectloop.train.logistic import LogisticProbe
from inspectloop.train.ordinal import GradedTargets

EpochCallback = Callable[[dict[str, Any]], None]
PREDICT_BATCH = 64  # images per forward pass when scoring (validation, calibration, test)
# The probe's variance shrinkage. On the shift study's cached magnetic-tile features (a one-off check, not a benchmark)
# 0.1 gave 95.5% macro recall and 1.6% of good tiles rejected on the unseen sessions against 93.5% / 1.3% with none,
# and a largest folded weight of 1.5 instead of 100 (INT8 lost agreement with 100).
SCALE_SHRINK = 0.1


@dataclass
class TrainResult:
    """A finished training: the best epoch's model, the curve, the seconds of every part (a resumed run's
    included), and ``stopped_at_budget`` (True when ``config.max_minutes`` ended it before its last epoch)."""

    model: Classifier | Ensemble
    best_epoch: int
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    resumed_from: int | None = None
    stopped_at_budget: bool = False


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def predict_logits(model: nn.Module, images: ImageSet, preprocess: Preprocess,
                   batch_size: int = PREDICT_BATCH) -> np.ndarray:
    model.eval()
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            outputs.append(model(to_batch(images.images[start:start + batch_size], preprocess)).numpy())
    return np.concatenate(outputs) if outputs else np.zeros((0, 0), dtype=np.float32)


def macro_recall(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> float:
    recalls = [float(np.mean(predicted[labels == c] == c)) for c in range(num_classes) if np.any(labels == c)]
    return float(np.mean(recalls)) if recalls else 0.0


@functools.cache
def bf16_native() -> bool:
    """True when this CPU computes bf16 natively (AVX-512 BF16 or AMX): elsewhere oneDNN emulates it, slower."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def training_precision(config: TrainConfig) -> str:
    """The arithmetic fine-tuning uses: ``bf16`` or ``float32`` (``auto``: bf16 where the CPU has it)."""
    if config.precision == "auto":
        return "bf16" if bf16_native() else "float32"
    return config.precision


@contextlib.contextmanager
def autocast(precision: str) -> Iterator[None]:
    """bf16 autocast (convolutions and matmuls in bf16, weights and optimiser in float32), or nothing."""
    if precision == "bf16":
        with torch.autocast("cpu", dtype=torch.bfloat16):
            yield
    else:
        yield


def training_layout(model: nn.Module, precision: str, channels_last: bool, frozen_blocks: int = 0) -> nn.Module:
    """``model`` as it fine-tunes (the same weights and state dict): channels-last when asked; in bf16, two
    changes of arithmetic. :func:`plain_layout` undoes all of it.

    - Its depthwise convolutions that train compute in float32: oneDNN's bf16 depthwise backward is slower than
      its float32 one (an EfficientNet-Lite0 step took 1.4x as long with them in bf16 on an AVX-512 BF16 + AMX
      Xeon), while the pointwise convolutions, most of the arithmetic, gain from bf16. Call it after freezing:
      it reads which weights train.
    - In the frozen stem and first ``frozen_blocks`` blocks (BatchNorm in eval mode, weights fixed) each
      BatchNorm is folded into the convolution before it: the BatchNorm passes on the large early activations
      took a third of that prefix's time.
    """
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if precision == "bf16":
        for module in _depthwise(model):
            if module.weight.requires_grad:  # a frozen one is in the frozen prefix: no backward, bf16 is faster
                # bound to the module, so a deep copy (a weight average) runs its own weights
                module.forward = types.MethodType(_float32_forward, module)
        if frozen_blocks:
            for conv, norm in model.trunk.conv_norm_pairs(frozen_blocks):
                _fold_norm(conv, norm)
    return model


def plain_layout(model: nn.Module) -> nn.Module:
    """``model`` as export and scoring expect it: the contiguous layout and every module's own forward."""
    for module in model.modules():
        module.__dict__.pop("forward", None)
        module.__dict__.pop("folded", None)
    return model.to(memory_format=torch.contiguous_format)


def _depthwise(model: nn.Module) -> list[nn.Conv2d]:
    return [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels]


def _float32_forward(self: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """The convolution in float32 (its backward follows the forward's dtype), its output handed on in the
    input's dtype: the BatchNorm and activation after it run faster in bf16 and the next convolution needs no
    cast (a NEU 160 px step 4% faster, a magnetic-tile 192 px one 9%)."""
    with torch.autocast("cpu", enabled=False):
        return type(self).forward(self, x.float()).to(x.dtype)


def _fold_norm(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> None:
    """Give ``conv`` the weights of conv-then-``norm`` (eval statistics) and make ``norm`` pass through. The
    folded weights are plain attributes, outside the state dict, so checkpoints keep the model's own keys."""
    with torch.no_grad():
        conv.folded = fuse_conv_bn_weights(conv.weight, conv.bias, norm.running_mean, norm.running_var, norm.eps,
                                           norm.weight, norm.bias)
    conv.forward = types.MethodType(_folded_forward, conv)
    norm.forward = types.MethodType(_pass_through, norm)


def _folded_forward(self: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    pad = getattr(self, "static_padding", None)  # the backbone package's TensorFlow-style "same" pad
    return self._conv_forward(pad(x) if pad is not None else x, *self.folded)


def _pass_through(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return x


def freeze_early_layers(model: Classifier, blocks: int) -> list[nn.Module]:
    """Freeze the stem and the first ``blocks`` blocks; return the frozen modules (kept in eval mode)."""
    if blocks == 0:
        return []
    trunk = model.trunk
    frozen: list[nn.Module] = [trunk.net._conv_stem, trunk.net._bn0, *list(trunk.blocks)[:blocks]]
    for module in frozen:
        for parameter in module.parameters():
            parameter.requires_grad = False
    return frozen


def finetune(model: Classifier, train: ImageSet, val: ImageSet, preprocess: Preprocess, config: TrainConfig,
             checkpoint: Path, on_epoch: EpochCallback | None = None) -> TrainResult:
    """Fine-tune ``model``; resume from ``checkpoint`` when it exists; keep the best epoch by val macro recall.

    With ``config.max_minutes``, stop before an epoch that would end past the budget (the mean epoch so far
    says how long one takes; every part of a resumed run counts), keeping the best epoch so far.
    """
    frozen = freeze_early_layers(model, config.freeze_blocks)
    # before the optimiser: its moments take the parameters' layout
    training_layout(model, training_precision(config), config.channels_last, config.freeze_blocks)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = max(1, len(train) // config.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, total_steps=config.epochs * steps_per_epoch,
                                                    pct_start=0.15)
    # the class-balanced draw and the augmentations from the config's seed: seeds (and ensemble members) differ
    # in what they see, not only in their heads' first weights
    state = _State(best_state=copy.deepcopy(model.state_dict()), py_rng=random.Random(config.seed),
                   np_rng=np.random.default_rng(config.seed))
    resumed = _resume(checkpoint, model, optimizer, scheduler, state)
    started, earlier = time.perf_counter(), state.seconds  # this part's start; the seconds of earlier parts
    augment = augment_for(config)
    stepper = torch.compile(model) if config.compile else model  # shares the model's parameters
    stopped = False
    for epoch in range(state.epoch + 1, config.epochs):
        if _over_budget(state, config.max_minutes):
            stopped = True
            break
        loss = _train_epoch(model, stepper, frozen, train, preprocess, config, optimizer, scheduler, augment, state,
                            steps_per_epoch)
        score = macro_recall(val.labels, predict_logits(model, val, preprocess).argmax(1), int(train.labels.max()) + 1)
        state.seconds = earlier + time.perf_counter() - started
        record = {"epoch": epoch, "loss": round(loss, 4), "val_macro_recall": round(score, 4),
                  "seconds": round(state.seconds, 1)}
        state.history.append(record)
        if score >= state.best_score:
            state.best_score, state.best_epoch = score, epoch
            state.best_state = copy.deepcopy(model.state_dict())
        state.epoch = epoch
        _save(checkpoint, model, optimizer, scheduler, state)
        if on_epoch:
            on_epoch(record)
        if config.patience and epoch - state.best_epoch >= config.patience:
            break
    model.load_state_dict(state.best_state)
    plain_layout(model)
    return TrainResult(model, state.best_epoch, state.history, state.seconds, resumed, stopped)


def _over_budget(state: _State, max_minutes: float | None) -> bool:
    """True when one more epoch, as long as the mean one so far, would end past the budget."""
    if max_minutes is None or state.epoch < 0:
        return False  # the first epoch always runs: a run refused for too small a budget never gets here
    return state.seconds + state.seconds / (state.epoch + 1) > max_minutes * 60


@dataclass
class _State:
    best_state: dict[str, torch.Tensor]
    py_rng: random.Random  # no default: the draws come from the run's seed, never from a fixed one
    np_rng: np.random.Generator
    epoch: int = -1
    best_epoch: int = -1
    best_score: float = -1.0
    seconds: float = 0.0  # training seconds of every part so far (a resumed run's earlier parts too)
    history: list[dict[str, Any]] = field(default_factory=list)


def _train_epoch(model: Classifier, stepper: nn.Module, frozen: Sequence[nn.Module], train: ImageSet,
                 preprocess: Preprocess, config: TrainConfig, optimizer: torch.optim.Optimizer, scheduler: Any,
                 augment: Any, state: _State, steps: int) -> float:
    """One epoch of optimiser steps; ``stepper`` is ``model`` or its compiled form (same parameters)."""
    model.train()
    for module in frozen:
        module.eval()  # frozen BatchNorm keeps its ImageNet statistics
    count = steps * config.batch_size
    order = (balanced_order(train.labels, count, state.np_rng) if config.balance == "sampler"
             else state.np_rng.permutation(len(train))[:count])
    total = 0.0
    for step in range(steps):
        index = order[step * config.batch_size:(step + 1) * config.batch_size]
        x = augmented_batch([train.images[i] for i in index], preprocess, augment, state.py_rng,
                            None if train.keep is None else [train.keep[i] for i in index])
        y = train.graded.batch(index) if train.graded is not None else torch.from_numpy(train.labels[index])
        total += train_step(stepper, x, y, optimizer, config, train.graded)
        scheduler.step()
    return total / steps


def train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer,
               config: TrainConfig, graded: GradedTargets | None = None) -> float:
    """One optimiser step on one batch, in the config's precision and layout; its loss (towards ``graded``'s
    targets ``y`` when given). The duration estimate times this very step."""
    if config.channels_last and x.dim() == 4:  # image batches; a head trained on features has no layout
        x = x.contiguous(memory_format=torch.channels_last)
    with autocast(training_precision(config)):
        logits = model(x).float()  # the loss in float32 whatever the precision
    loss = (graded.loss(logits, y, smoothing=config.label_smoothing) if graded is not None
            else nn.functional.cross_entropy(logits, y, label_smoothing=config.label_smoothing))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.item())


def _save(path: Path, model: nn.Module, optimizer: Any, scheduler: Any, state: _State) -> None:
    """Write the checkpoint atomically: a crash mid-save leaves the previous one intact."""
    payload = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
               "epoch": state.epoch, "best_epoch": state.best_epoch, "best_score": state.best_score,
               "seconds": state.seconds, "best_state": state.best_state, "history": state.history, "py_rng": state.py_rng.getstate(),
               "np_rng": state.np_rng.bit_generator.state, "torch_rng": torch.get_rng_state()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def checkpoint_epoch(path: Path) -> int:
    """The last finished epoch saved in a checkpoint (-1 when there is none yet)."""
    if not path.exists():
        return -1
    return int(torch.load(path, map_location="cpu", weights_only=False)["epoch"])


def _resume(path: Path, model: nn.Module, optimizer: Any, scheduler: Any, state: _State) -> int | None:
    if not path.exists():
        return None
    payload = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    state.epoch, state.best_epoch, state.best_score = payload["epoch"], payload["best_epoch"], payload["best_score"]
    state.best_state, state.history = payload["best_state"], payload["history"]
    state.seconds = float(payload.get("seconds", 0.0))  # checkpoints written before it was recorded: 0
    state.py_rng.setstate(payload["py_rng"])
    state.np_rng.bit_generator.state = payload["np_rng"]
    torch.set_rng_state(payload["torch_rng"])
    return int(payload["epoch"])


def probe(model: Classifier, train: ImageSet, val: ImageSet, preprocess: Preprocess, config: TrainConfig,
          on_epoch: EpochCallback | None = None) -> TrainResult:
    """Fit only the linear head on frozen-trunk features, computed once (several augmented views if asked).

    The head is a class-balanced logistic regression on standardised features with an L2 penalty of
    strength ``1 / config.probe_c``, fitted to convergence (L-BFGS), then folded back into the linear layer
    so the exported model keeps its shape. The penalty, not early stopping on validation images from the
    training sessions, is what holds it across sessions: on magnetic tile's unseen sessions the old head (Adam,
    weak decay, best round on validation) rejected 15.7% of good tiles, this one 0.9% (standardised trunk;
    ``benchmarks.magnetic_tile --standardise-study --mode probe``).
    ``epochs``, ``weight_decay`` and ``label_smoothing`` apply to fine-tuning only.
    """
    started = time.perf_counter()
    augment = augment_for(config) if config.probe_views > 1 else None
    rng = random.Random(config.seed)
    features = [_features(model.trunk, train, preprocess, augment if view > 0 else None, rng)
                for view in range(config.probe_views)]
    targets = None if train.graded is None else train.graded.batch(np.tile(np.arange(len(train)),
                                                                           config.probe_views)).double()
    rounds = on_epoch and (lambda record: on_epoch({**record, "epochs": LogisticProbe.MAX_ROUNDS}))
    history = fit_probe_head(model.head[1], np.concatenate(features), np.tile(train.labels, config.probe_views),
                             _features(model.trunk, val, preprocess, None, rng), val.labels, config,
                             targets=targets, graded=train.graded, on_epoch=rounds)
    return TrainResult(model, len(history) - 1, history, time.perf_counter() - started)


def fit_probe_head(head: nn.Linear, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
                   config: TrainConfig, *, targets: torch.Tensor | None = None, graded: Any = None,
                   on_epoch: EpochCallback | None = None) -> list[dict[str, Any]]:
    """The probe's head from frozen-trunk features (N, D): standardise them (:func:`feature_scale`), fit the
    regularised logistic regression (:class:`~inspectloop.train.logistic.LogisticProbe`, C = ``config.probe_c``)
    and fold both into ``head`` in place. ``y_val`` only scores each round (validation macro recall in the
    returned history). Benchmarks that cache features call this to get the product's head."""
    x, x_held = torch.from_numpy(np.asarray(x_train)).double(), torch.from_numpy(np.asarray(x_val)).double()
    mean, scale = x.mean(0), feature_scale(x)
    fit = LogisticProbe(head.out_features, 1.0 / (config.probe_c * len(x)))
    history = fit.fit((x - mean) / scale, torch.from_numpy(np.asarray(y_train, dtype=np.int64)), targets, graded,
                      lambda: macro_recall(y_val, fit.logits((x_held - mean) / scale).argmax(1).numpy(),
                                           head.out_features), on_epoch)
    with torch.no_grad():  # logits = W (x - mean) / scale + b, folded into one linear layer
        weight = fit.weight / scale
        head.weight.copy_(weight.float())
        head.bias.copy_((fit.bias - weight @ mean).float())
    return history


def feature_scale(features: torch.Tensor, shrink: float = SCALE_SHRINK) -> torch.Tensor:
    """Per-feature scale for the probe: the standard deviation with its variance shrunk by ``shrink`` towards
    the mean variance. A feature nearly constant in training would otherwise get a huge folded weight: it
    swings the decision when it moves in a new session, and INT8 cannot hold the weight row."""
    variance = features.var(0, correction=0)
    return torch.sqrt((1 - shrink) * variance + shrink * variance.mean()) + 1e-6


def _features(trunk: nn.Module, images: ImageSet, preprocess: Preprocess, augment: Any,
              rng: random.Random, batch_size: int = 64) -> np.ndarray:
    trunk.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            keep = None if images.keep is None else images.keep[start:start + batch_size]
            x = augmented_batch(images.images[start:start + batch_size], preprocess, augment, rng, keep)
            out.append(trunk(x).numpy())
    return np.concatenate(out)
