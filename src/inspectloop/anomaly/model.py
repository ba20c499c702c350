"""PatchCore as a plain ``nn.Module``: locally aware patch features, a memory bank, nearest-neighbour scores.

Pure model code (no fitting, no files): :mod:`inspectloop.anomaly.fit` fills the bank, and
:mod:`inspectloop.export` writes this very module to ONNX, so the edge runs the same arithmetic.

The nearest-neighbour search is written as ``||a||^2 - 2 a.b + ||b||^2`` (one MatMul) and a ReduceMin
so that it exports to plain ONNX operators: the model file carries backbone, bank and search.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from inspectloop.models.photometric import standardise

HEATMAP_SIGMA = 4.0  # PatchCore's gaussian smoothing of the upsampled patch scores, in input pixels
class PatchFeatures(nn.Module):
    """Images (N, 3, H, W) -> locally aware patch features (N, D, h, w) from backbone stages.

    Each stage's activations are averaged over a 3x3 neighbourhood (a patch sees its surroundings),
    resized to the grid of the first stage or, when that is coarser, to the input's stride-8 grid (deep
    stride-32 blocks are upsampled, as the tuning benchmark measured them) and concatenated; ``stride`` 16
    pools that grid 2x2 (4x fewer patches: faster search, coarser maps), ``stride`` 32 pools it 4x4.
    ``standardise``: each image is first brought to a fixed mean and standard deviation, so that a change
    of exposure or lighting between sessions is not an anomaly.
    """

    def __init__(self, trunk: nn.Module, stages: tuple[int, ...], stride: int = 8, *,
                 standardise: bool = False) -> None:
        super().__init__()
        if not stages or list(stages) != sorted(set(stages)):
            raise ValueError(f"stages must be increasing block indices, got {stages!r}")
        if stages[-1] >= len(trunk.blocks):
            raise ValueError(f"stage {stages[-1]} is past the trunk's last block ({len(trunk.blocks) - 1})")
        self.stages = tuple(int(s) for s in stages)
        self.stride = int(stride)
        self.standardise = bool(standardise)
        self.stem = _Stem(trunk)
        self.blocks = nn.ModuleList(list(trunk.blocks)[: self.stages[-1] + 1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.standardise:
            x = standardise(x)
        h = self.stem(x)
        taken = []
        for index, block in enumerate(self.blocks):
            h = block(h)
            if index in self.stages:
                taken.append(F.avg_pool2d(h, 3, stride=1, padding=1, count_include_pad=False))
        size = (max(taken[0].shape[-2], x.shape[-2] // 8), max(taken[0].shape[-1], x.shape[-1] // 8))
        maps = [t if t.shape[-2:] == size else F.interpolate(t, size=size, mode="bilinear", align_corners=False)
                for t in taken]
        features = torch.cat(maps, dim=1)
        if self.stride > 8:
            features = F.avg_pool2d(features, self.stride // 8)
        return features


class _Stem(nn.Module):
    def __init__(self, trunk: nn.Module) -> None:
        super().__init__()
        net = trunk.net
        self.conv, self.bn, self.act = net._conv_stem, net._bn0, net._swish

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class PatchCore(nn.Module):
    """Normalised images (N, 3, H, W) -> ``(logits (N, 2), score (N,), heatmap (N, H, W), features (N, D))``.

    ``score`` is the image's anomaly score: the mean of the ``top`` largest distances of its patches to
    their nearest memory-bank patch (``top`` 1: the largest; a few: one odd patch of a good part weighs
    less than a defect that spans several). ``heatmap`` is every patch's distance, upsampled to the input and smoothed.
    ``logits`` are ``[0, (score - centre) / scale]``: their softmax is (P(good), P(anomaly)), a monotone
    map of the score that is 0.5 at ``centre`` (the calibrated threshold), so one decision core serves
    classifiers and anomaly models alike. ``features`` are the image's patch features averaged over its
    patches: what embedding drift compares (a classifier's are its pooled backbone features).
    """

    def __init__(self, features: PatchFeatures, bank: torch.Tensor, input_shape: tuple[int, int], *,
                 top: int = 1) -> None:
        super().__init__()
        self.features = features
        self.input_shape = (int(input_shape[0]), int(input_shape[1]))  # (height, width)
        self.top = int(top)
        self.register_buffer("bank", bank.float().contiguous())
        self.register_buffer("bank_sq", (bank.float() ** 2).sum(dim=1))
        self.register_buffer("centre", torch.zeros(()))
        self.register_buffer("scale", torch.ones(()))
        self.register_buffer("blur", _gaussian_kernel(HEATMAP_SIGMA))

    def set_normalisation(self, centre: float, scale: float) -> None:
        """Where P(anomaly) crosses 0.5 (``centre``, in score units) and how fast it rises (``scale``)."""
        if not (math.isfinite(centre) and math.isfinite(scale) and scale > 0):
            raise ValueError(f"centre must be finite and scale positive, got {centre!r}, {scale!r}")
        self.centre.fill_(float(centre))
        self.scale.fill_(float(scale))

    def patch_scores(self, x: torch.Tensor) -> torch.Tensor:
        """Each patch's distance to its nearest bank patch, (N, h, w)."""
        return self._nearest(self.features(x))

    def _nearest(self, f: torch.Tensor) -> torch.Tensor:
        n, d, h, w = f.shape
        a = f.permute(0, 2, 3, 1).reshape(n, h * w, d)
        d2 = (a * a).sum(dim=2, keepdim=True) - 2.0 * torch.matmul(a, self.bank.t()) + self.bank_sq
        nearest = d2.amin(dim=2).clamp_min(0.0).sqrt()
        return nearest.reshape(n, h, w)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        f = self.features(x)
        patches = self._nearest(f)
        flat = patches.flatten(1)
        top = min(self.top, flat.shape[1])
        score = flat.amax(dim=1) if top == 1 else flat.topk(top, dim=1).values.mean(dim=1)
        heatmap = self.smooth(patches)
        z = (score - self.centre) / self.scale
        logits = torch.stack([torch.zeros_like(z), z], dim=1)
        return logits, score, heatmap, f.mean(dim=(2, 3))

    def smooth(self, patches: torch.Tensor) -> torch.Tensor:
        """Patch scores (N, h, w) -> a heatmap (N, H, W): bilinear upsampling, then a separable gaussian."""
        up = F.interpolate(patches[:, None], size=self.input_shape, mode="bilinear",
                           align_corners=False)
        pad = self.blur.numel() // 2
        kernel = self.blur.reshape(1, 1, 1, -1)
        up = F.conv2d(F.pad(up, (pad, pad, 0, 0), mode="reflect"), kernel)
        up = F.conv2d(F.pad(up, (0, 0, pad, pad), mode="reflect"), kernel.transpose(2, 3))
        return up[:, 0]


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = int(4.0 * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()
