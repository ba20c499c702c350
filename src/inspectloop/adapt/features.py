"""Feature-statistics alignment on unlabelled images: the pure part of adaptation by pooled features.

A camera that drifts (light decay, dust, blur, noise) moves the trunk's pooled features away from where the
head was trained. Re-standardising them per dimension, from the camera's recent window to the statistics of
reference features (training images, as the line sees them), maps them back without a label; the move is an
affine map per dimension, so for a linear head it folds into the head's weights and bias and the model keeps
its shape. The alignment and the fold are numpy only; :func:`pooled_features` and :func:`fold_into_classifier`
apply them to a PyTorch classifier (torch is imported inside them, never at import).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

    from inspectloop.runtime.preprocess import Preprocess

Match = Literal["mean", "mean_std"]
MAX_SCALE = 4.0  # a dimension almost constant in one set and not the other must not blow up the head


@dataclass(frozen=True)
class FeatureAlignment:
    """Per-dimension affine map ``aligned = features * scale + shift`` fitted on ``images`` unlabelled images.

    ``match``: "mean" moves each dimension's mean only; "mean_std" matches mean and standard deviation.
    ``weight``: the share of the move applied (1: all of it)."""

    scale: np.ndarray  # (D,)
    shift: np.ndarray  # (D,)
    images: int
    match: Match
    weight: float

    def apply(self, features: np.ndarray) -> np.ndarray:
        """The features as the aligned model sees them, (N, D) -> (N, D)."""
        return features * self.scale + self.shift

    def to_dict(self) -> dict[str, float | int | str]:
        """JSON-safe summary: how far the alignment moves the features."""
        return {"images": self.images, "match": self.match, "weight": self.weight, "dimensions": int(self.scale.size),
                "mean_abs_shift": round(float(np.abs(self.shift).mean()), 5),
                "mean_scale": round(float(self.scale.mean()), 5),
                "min_scale": round(float(self.scale.min()), 5), "max_scale": round(float(self.scale.max()), 5)}


def align_features(target: np.ndarray, reference: np.ndarray, *, match: Match = "mean_std",
                   weight: float = 1.0) -> FeatureAlignment:
    """The alignment that brings ``target`` features (N, D: the camera's recent images) to the per-dimension
    statistics of ``reference`` features (M, D: images of the training conditions, in the line's class mix).

    Both sets should hold the line's usual class mix: the map moves whatever differs between them, a change
    of mix included. ValueError on empty or mismatched sets, or a weight outside (0, 1].
    """
    if not 0.0 < weight <= 1.0:
        raise ValueError(f"weight must be in (0, 1], got {weight}")
    if match not in ("mean", "mean_std"):
        raise ValueError(f"match must be 'mean' or 'mean_std', got {match!r}")
    target, reference = np.asarray(target, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if target.ndim != 2 or reference.ndim != 2 or target.shape[1] != reference.shape[1]:
        raise ValueError(f"expected two (N, D) feature arrays of equal D, got {target.shape} and {reference.shape}")
    if len(target) < 2 or len(reference) < 2:
        raise ValueError(f"need at least 2 images on each side, got {len(target)} and {len(reference)}")
    mu_t, mu_r = target.mean(0), reference.mean(0)
    ratio = np.ones_like(mu_t)
    if match == "mean_std":
        sd_t, sd_r = target.std(0), reference.std(0)
        floor = 1e-3 * float(sd_r.mean()) + 1e-12  # dead dimensions: no ratio out of two zeros
        ratio = np.clip((sd_r + floor) / (sd_t + floor), 1 / MAX_SCALE, MAX_SCALE)
    # Full map: (x - mu_t) * ratio + mu_r; the weight blends it with the identity.
    scale = 1.0 + weight * (ratio - 1.0)
    shift = weight * (mu_r - ratio * mu_t)
    return FeatureAlignment(scale.astype(np.float32), shift.astype(np.float32), len(target), match, weight)


def fold_into_linear(weight: np.ndarray, bias: np.ndarray, alignment: FeatureAlignment) -> tuple[np.ndarray, np.ndarray]:
    """A linear layer ``features @ weight.T + bias`` (weight (C, D), bias (C,)) that first aligns its input:
    the returned pair gives on raw features what the given pair gives on aligned ones."""
    weight = np.asarray(weight)
    if weight.ndim != 2 or weight.shape[1] != alignment.scale.size:
        raise ValueError(f"expected a (C, {alignment.scale.size}) weight, got {weight.shape}")
    folded = weight * alignment.scale[None, :]
    return folded.astype(weight.dtype), (np.asarray(bias) + weight @ alignment.shift).astype(weight.dtype)


def pooled_features(model: Any, images: Sequence[Image.Image], preprocess: Preprocess, *,
                    batch_size: int = 32) -> np.ndarray:
    """The trunk's pooled features (N, D) of a :class:`~inspectloop.models.classifier.Classifier` on decoded images
    resized to its input, in eval mode (what its head reads)."""
    import torch

    from inspectloop.train.data import to_batch

    model.eval()
    with torch.no_grad():
        parts = [model.trunk(to_batch(images[i:i + batch_size], preprocess)).float().numpy()
                 for i in range(0, len(images), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)


def fold_into_classifier(model: Any, alignment: FeatureAlignment) -> None:
    """Fold ``alignment`` into the classifier's linear head, in place: the model then decides on raw trunk features
    as it did on aligned ones, and keeps its shape (the exported file needs nothing new).

    ValueError when the head is not a linear layer behind dropout only (the fold would not be exact)."""
    import torch
    from torch import nn

    layers = list(model.head) if isinstance(model.head, nn.Sequential) else [model.head]
    linear = layers[-1]
    if not isinstance(linear, nn.Linear) or not all(isinstance(m, (nn.Dropout, nn.Identity)) for m in layers[:-1]):
        raise ValueError("feature alignment folds into a linear head behind dropout only; this head is "
                         f"{[type(m).__name__ for m in layers]}")
    weight, bias = fold_into_linear(linear.weight.detach().cpu().numpy(),
                                    np.zeros(linear.out_features, np.float32) if linear.bias is None
                                    else linear.bias.detach().cpu().numpy(), alignment)
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(weight))
        if linear.bias is None:
            linear.bias = nn.Parameter(torch.from_numpy(bias))
        else:
            linear.bias.copy_(torch.from_numpy(bias))
