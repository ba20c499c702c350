"""PatchCore as a plain ``nn.Module``: locally aware patch features, a memory bank, nearest-neighbour scores.

Pure model code (no fitting, no files): :mod:`inspectloop.anomaly.fit` fills the bank, and
:mod:`inspectloop.export` writes this very module to ONNX, so the edge runs the same arithmetic.

The nearest-neighbour search is written as ``||a||^2 - 2 a.b + ||b||^2`` (one MatMul) and a ReduceMin
so that it exports to plain ONNX operators: the model file carries backbone, bank and search.

Every fixed linear resampling of a grid (bilinear resizing, average pooling, the heatmap's gaussian) is
separable, so it is applied as two small matrix products, ``rows @ grid @ columns.T``, built once per
grid size: the same arithmetic as the ``F.interpolate`` / ``avg_pool2d`` / ``conv2d`` chain it replaces,
without the full-resolution intermediate images those write (a fifth of the edge file's time).
"""

from __future__ import annotations

import math
from collections.abc import Callable

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
        self._resamplers = _Resamplers()

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
        pool = self.stride // 8
        maps = [t if t.shape[-2:] == size and pool == 1 else self._resample(t, size, pool) for t in taken]
        return torch.cat(maps, dim=1)

    def _resample(self, tap: torch.Tensor, size: tuple[int, int], pool: int) -> torch.Tensor:
        """Bilinear resize of ``tap`` to ``size``, then ``pool`` x ``pool`` averaging, as two matrix products."""
        rows, columns = self._resamplers.get(tap, size, lambda n, to: _pooled(_bilinear(n, to), pool))
        return rows @ tap @ columns.t()


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
        self._smoothers = _Resamplers()

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
        """Patch scores (N, h, w) -> a heatmap (N, H, W): bilinear upsampling, then a gaussian (reflected
        at the borders), as two matrix products."""
        rows, columns = self._smoothers.get(patches, self.input_shape,
                                            lambda n, to: _blurred(_bilinear(n, to), self.blur))
        return rows @ patches @ columns.t()


class _Resamplers:
    """One module's resampling matrices by grid size, target, dtype and device: built on first use, then
    constants (also to the ONNX exporter, which sees plain tensors)."""

    def __init__(self) -> None:
        self._made: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def get(self, grid: torch.Tensor, target: tuple[int, int],
            make: Callable[[int, int], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(rows, columns) for ``grid`` (..., h, w): ``make(n, to)`` along each axis, ``n`` the grid's
        length and ``to`` the target's."""
        shape = (int(grid.shape[-2]), int(grid.shape[-1]))
        key = (shape, tuple(target), grid.dtype, grid.device)
        if key not in self._made:
            rows, columns = (make(n, to).to(grid.device, grid.dtype) for n, to in zip(shape, target))
            self._made[key] = (rows, columns)
        return self._made[key]


def _bilinear(n: int, to: int) -> torch.Tensor:
    """(to, n): 1-D linear resizing from ``n`` to ``to`` samples, exactly as ``F.interpolate`` (bilinear,
    ``align_corners=False``) does along one axis."""
    if n == to:
        return torch.eye(n)
    return F.interpolate(torch.eye(n)[None], size=to, mode="linear", align_corners=False)[0].t()


def _pooled(matrix: torch.Tensor, pool: int) -> torch.Tensor:
    """``matrix`` followed by averaging of ``pool`` consecutive outputs (a trailing remainder dropped, as
    ``avg_pool2d`` does)."""
    if pool == 1:
        return matrix
    kept = matrix.shape[0] // pool * pool
    return matrix[:kept].reshape(kept // pool, pool, -1).mean(dim=1)


def _blurred(matrix: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """``matrix`` (to, n) followed by a 1-D convolution with ``kernel``, the border reflected."""
    pad = kernel.numel() // 2
    columns = F.pad(matrix.t()[:, None], (pad, pad), mode="reflect")
    return F.conv1d(columns, kernel.reshape(1, 1, -1))[:, 0].t()


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = int(4.0 * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()
