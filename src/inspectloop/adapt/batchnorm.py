"""BatchNorm re-estimation on unlabelled images (AdaBN): the pure part of adaptation.

A new session or camera mostly shifts the statistics of the trunk's activations (brightness, contrast,
texture scale). BatchNorm layers normalise with statistics stored at training time; re-estimating them
on the target camera's own images, with every learned weight unchanged, maps its activations back to
where the head was trained. No labels are read. Pure model code: images in, model changed in place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import nn

from inspectloop.runtime.preprocess import Preprocess
from inspectloop.train.data import to_batch

ADAPT_BATCH = 32  # images per forward pass: batch means of 32 images are stable, and memory stays small


@dataclass(frozen=True)
class BatchNormShift:
    """How far adaptation moved the BatchNorm statistics: ``layers`` re-estimated, the mean absolute change
    of their running means and of their running variances (relative), over every channel."""

    layers: int
    images: int
    mean_shift: float
    variance_ratio: float

    def to_dict(self) -> dict[str, float | int]:
        """JSON-safe form."""
        return {"layers": self.layers, "images": self.images, "mean_shift": round(self.mean_shift, 5),
                "variance_ratio": round(self.variance_ratio, 5)}


_BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def batchnorm_layers(model: nn.Module) -> list[nn.BatchNorm2d]:
    """The model's BatchNorm layers that keep running statistics, in order (empty: adaptation by normalisation
    statistics does not apply)."""
    return [m for m in model.modules() if isinstance(m, _BATCHNORM) and m.track_running_stats]  # type: ignore[misc]


def adapt_batchnorm(model: nn.Module, images: Sequence[Image.Image], preprocess: Preprocess, *,
                    weight: float = 1.0, batch_size: int = ADAPT_BATCH) -> BatchNormShift:
    """Re-estimate every BatchNorm layer's running mean and variance on ``images`` (decoded, resized to the
    model input); every learned weight stays as it was. The model is left in eval mode.

    ``weight`` blends: 1 replaces the training statistics with the images' own, 0.5 takes the middle
    (safer on a few dozen images). ValueError when the model has no BatchNorm layer or no images are given.
    """
    if not 0.0 < weight <= 1.0:
        raise ValueError(f"weight must be in (0, 1], got {weight}")
    layers = batchnorm_layers(model)
    if not layers:
        raise ValueError("the model has no BatchNorm layer whose statistics could be re-estimated")
    if not images:
        raise ValueError("no images to re-estimate the BatchNorm statistics on")
    before = [(m.running_mean.clone(), m.running_var.clone(), m.momentum) for m in layers]  # type: ignore[union-attr]
    model.eval()
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over every batch, not an exponential one biased to the last
        m.train()
    with torch.no_grad():
        # Batches of near-equal size: the cumulative average weights every batch alike, so a small last batch
        # would count as much as a full one.
        for index in np.array_split(np.arange(len(images)), -(-len(images) // batch_size)):
            model(to_batch([images[i] for i in index], preprocess))
    shifts, ratios = [], []
    for m, (mean, var, momentum) in zip(layers, before):
        m.momentum = momentum
        m.running_mean.mul_(weight).add_(mean, alpha=1.0 - weight)  # type: ignore[union-attr]
        m.running_var.mul_(weight).add_(var, alpha=1.0 - weight)  # type: ignore[union-attr]
        shifts.append((m.running_mean - mean).abs().mean().item())  # type: ignore[operator]
        ratios.append((m.running_var / var.clamp_min(1e-8)).mean().item())  # type: ignore[operator]
    model.eval()
    return BatchNormShift(len(layers), len(images), sum(shifts) / len(shifts), sum(ratios) / len(ratios))
