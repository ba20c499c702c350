"""An exponential moving average of a model's weights, the one the YOLO family validates and ships.

Between two epochs a small-data detector's validation mAP swings by several points as the last steps
push it about; the average over the last few epochs' steps is steadier (on NEU-DET it held validation
mAP50 within 1.2 points over the last 12 epochs, but did not raise test mAP50: see the README). The decay
ramps up (``EMA_DECAY * (1 - exp(-steps / EMA_RAMP_STEPS))``) so that early in training, when the
weights move fast, the average follows them closely instead of dragging the random start along; late
in a 3,000-step run it spans a few epochs. BatchNorm statistics are averaged with the weights.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

EMA_DECAY = 0.999
EMA_RAMP_STEPS = 500.0


def ema_decay(updates: int) -> float:
    """The weight the average keeps at its ``updates``-th update."""
    return EMA_DECAY * (1.0 - math.exp(-updates / EMA_RAMP_STEPS))


def _ema_update(averaged: list[torch.Tensor], current: list[torch.Tensor], updates: torch.Tensor) -> None:
    step = 1.0 - ema_decay(int(updates))
    for mean, value in zip(averaged, current, strict=True):
        if mean.is_floating_point():
            mean.lerp_(value, step)
        else:  # counters (BatchNorm's num_batches_tracked) are copied, not averaged
            mean.copy_(value)


def weight_average(model: nn.Module) -> AveragedModel:
    """A moving average of ``model``'s weights and buffers: call ``update_parameters(model)`` after each
    optimiser step; ``.module`` is the averaged model (same layout, same state-dict keys)."""
    return AveragedModel(model, multi_avg_fn=_ema_update, use_buffers=True)
