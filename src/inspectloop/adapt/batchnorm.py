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

Statistics = list[tuple[torch.Tensor, torch.Tensor]]  # (running mean, running variance) per BatchNorm layer
ADAPT_BATCH = 32  # images per forward pass: batch means of 32 images are stable, and memory stays small


@dataclass(frozen=True)
class BatchNormShift:
    """How far adaptation moved the BatchNorm statistics: ``layers`` re-estimated on ``images``, the mean absolute
    change of their running means and the mean ratio of new to old running variances, over every channel."""

    layers: int
    images: int
    mean_shift: float
    variance_ratio: float
    relative: bool = False  # moved by the difference to reference images; False: replaced (AdaBN)

    def to_dict(self) -> dict[str, float | int]:
        """JSON-safe form."""
        return {"layers": self.layers, "images": self.images, "mean_shift": round(self.mean_shift, 5),
                "variance_ratio": round(self.variance_ratio, 5), "relative": self.relative}


_BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def batchnorm_layers(model: nn.Module) -> list[nn.BatchNorm2d]:
    """The model's BatchNorm layers that keep running statistics, in order (empty: adaptation by normalisation
    statistics does not apply)."""
    return [m for m in model.modules() if isinstance(m, _BATCHNORM) and m.track_running_stats]  # type: ignore[misc]


def batchnorm_statistics(model: nn.Module, images: Sequence[Image.Image], preprocess: Preprocess, *,
                         batch_size: int = ADAPT_BATCH) -> Statistics:
    """Each BatchNorm layer's input mean and variance over ``images``, as a train-mode pass estimates them (every
    batch normalised by its own statistics upstream). The model is handed back unchanged, in eval mode."""
    layers = batchnorm_layers(model)
    saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone(), m.momentum)  # type: ignore[union-attr]
             for m in layers]
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
    found = [(m.running_mean.clone(), m.running_var.clone()) for m in layers]  # type: ignore[union-attr]
    for m, (mean, var, batches, momentum) in zip(layers, saved):
        m.running_mean.copy_(mean)  # type: ignore[union-attr]
        m.running_var.copy_(var)  # type: ignore[union-attr]
        m.num_batches_tracked.copy_(batches)  # type: ignore[union-attr]
        m.momentum = momentum
    model.eval()
    return found


def adapt_batchnorm(model: nn.Module, images: Sequence[Image.Image], preprocess: Preprocess, *,
                    reference: Sequence[Image.Image] | None = None, weight: float = 1.0,
                    batch_size: int = ADAPT_BATCH, reference_statistics: Statistics | None = None) -> BatchNormShift:
    """Re-estimate every BatchNorm layer's running mean and variance on ``images`` (decoded, resized to the
    model input); every learned weight stays as it was. The model is left in eval mode.

    Without ``reference`` the images' own statistics replace the stored ones (AdaBN). With ``reference``
    (images of the training conditions, in the line's class mix) each layer moves by the difference between
    the two sets' statistics: layers kept frozen in training hold ImageNet statistics, and a class-balanced
    sampler trains on a defect-heavy mix, so the stored statistics are not those of the training images and
    replacing them outright shifts every feature. ``reference_statistics`` (:func:`batchnorm_statistics` of the
    reference images on this model) saves estimating them again. ``weight`` blends (1: the full move, 0.5: half).
    ValueError when the model has no BatchNorm layer, or no images are given.
    """
    if not 0.0 < weight <= 1.0:
        raise ValueError(f"weight must be in (0, 1], got {weight}")
    layers = batchnorm_layers(model)
    if not layers:
        raise ValueError("the model has no BatchNorm layer whose statistics could be re-estimated")
    if not images or (reference is not None and not reference):
        raise ValueError("no images to re-estimate the BatchNorm statistics on")
    target = batchnorm_statistics(model, images, preprocess, batch_size=batch_size)
    source = reference_statistics if reference_statistics is not None else (
        None if reference is None else batchnorm_statistics(model, reference, preprocess, batch_size=batch_size))
    shifts, ratios = [], []
    for n, m in enumerate(layers):
        mean, var = m.running_mean.clone(), m.running_var.clone()  # type: ignore[union-attr]
        if source is None:
            new_mean, new_var = target[n]
        else:
            new_mean = mean + target[n][0] - source[n][0]
            new_var = var * target[n][1] / source[n][1].clamp_min(1e-8)
        m.running_mean.copy_(mean + weight * (new_mean - mean))  # type: ignore[union-attr]
        m.running_var.copy_(var + weight * (new_var - var))  # type: ignore[union-attr]
        shifts.append((m.running_mean - mean).abs().mean().item())  # type: ignore[operator]
        ratios.append((m.running_var / var.clamp_min(1e-8)).mean().item())  # type: ignore[operator]
    return BatchNormShift(len(layers), len(images), sum(shifts) / len(shifts), sum(ratios) / len(ratios),
                          source is not None)
