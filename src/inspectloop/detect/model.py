"""A one-stage, anchor-free detector: an EfficientNet-Lite trunk (Lite0 or Lite2), a P3-P5 feature pyramid, a
decoupled head.

Pure ``nn.Module``s, no training code. Each location of each pyramid level predicts, for every
class, a box-present logit and, shared by the classes, its distances to the box's four sides (in
strides; plain regression, no distribution). ``forward`` decodes them into what the exported file
gives: boxes (N, A, 4) as x0, y0, x1, y1 in input pixels and class scores (N, A, K) in [0, 1].
"""

from __future__ import annotations

import math

import torch
from torch import nn

from inspectloop.models.backbones import load_backbone

STRIDES = (8, 16, 32)  # the pyramid taps the trunk where its blocks end each of these strides
PRIOR = 0.01  # initial box-present probability: most locations are background


def _conv(channels_in: int, channels_out: int, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(channels_in, channels_out, kernel, padding=kernel // 2, bias=False),
                         nn.BatchNorm2d(channels_out), nn.SiLU())


class FeaturePyramid(nn.Module):
    """Top-down pyramid: lateral 1x1 projections, upsample-and-add, a 3x3 smoothing conv per level."""

    def __init__(self, channels_in: tuple[int, ...], width: int) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(_conv(c, width, 1) for c in channels_in)
        self.smooth = nn.ModuleList(_conv(width, width) for _ in channels_in)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        laterals = [lateral(f) for lateral, f in zip(self.lateral, features)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + nn.functional.interpolate(laterals[i], size=laterals[i - 1].shape[-2:],
                                                                          mode="nearest")
        return [smooth(x) for smooth, x in zip(self.smooth, laterals)]


class DecoupledHead(nn.Module):
    """One pyramid level's head: a class branch and a box branch of two 3x3 convs each."""

    def __init__(self, width: int, num_classes: int) -> None:
        super().__init__()
        self.cls = nn.Sequential(_conv(width, width), _conv(width, width), nn.Conv2d(width, num_classes, 1))
        self.box = nn.Sequential(_conv(width, width), _conv(width, width), nn.Conv2d(width, 4, 1))
        nn.init.constant_(self.cls[-1].bias, -math.log((1 - PRIOR) / PRIOR))
        nn.init.constant_(self.box[-1].bias, 1.0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cls(x), self.box(x)


class Detector(nn.Module):
    """Images (N, 3, S, S), normalised as the trunk expects -> boxes (N, A, 4) and scores (N, A, K).

    ``raw`` gives what the loss reads: class logits (N, A, K), side distances (N, A, 4) in input
    pixels, and the location centres (A, 2) and strides (A,) they refer to.
    """

    def __init__(self, trunk: nn.Module, num_classes: int, width: int = 64) -> None:
        super().__init__()
        self.trunk = trunk
        self.num_classes = num_classes
        ends = trunk.stride_ends()  # Lite0: blocks 4, 10, 15 with 40, 112, 320 channels; Lite2: 6, 14, 20
        self.level_blocks = tuple(ends[stride][0] for stride in STRIDES)
        self.pyramid = FeaturePyramid(tuple(ends[stride][1] for stride in STRIDES), width)
        self.heads = nn.ModuleList(DecoupledHead(width, num_classes) for _ in STRIDES)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.trunk.stem(x)
        taken = []
        for index, block in enumerate(self.trunk.blocks):
            x = block(x)
            if index in self.level_blocks:
                taken.append(x)
            if index == self.level_blocks[-1]:
                break
        return self.pyramid(taken)

    def raw(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        logits, distances, points, strides = [], [], [], []
        levels = self.features(x)
        for head, stride, feature in zip(self.heads, STRIDES, levels):
            cls, box = head(feature)
            n, _, h, w = cls.shape
            logits.append(cls.flatten(2).transpose(1, 2))
            distances.append(nn.functional.softplus(box.flatten(2).transpose(1, 2)) * stride)
            ys, xs = torch.meshgrid(torch.arange(h, dtype=x.dtype), torch.arange(w, dtype=x.dtype), indexing="ij")
            points.append(torch.stack(((xs.reshape(-1) + 0.5) * stride, (ys.reshape(-1) + 0.5) * stride), 1))
            strides.append(torch.full((h * w,), float(stride), dtype=x.dtype))
        return torch.cat(logits, 1), torch.cat(distances, 1), torch.cat(points), torch.cat(strides)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, distances, points, _ = self.raw(x)
        return decode(points, distances), torch.sigmoid(logits)


def decode(points: torch.Tensor, distances: torch.Tensor) -> torch.Tensor:
    """Side distances (..., A, 4: left, top, right, bottom) from centres (A, 2) -> boxes x0, y0, x1, y1."""
    return torch.cat((points - distances[..., :2], points + distances[..., 2:]), -1)


def build_detector(num_classes: int, *, backbone: str = "efficientnet-lite0", input_size: int = 320,
                   pretrained: bool = True, width: int = 64) -> Detector:
    """A detector for ``num_classes`` defect classes on the ImageNet trunk of the installed package."""
    return Detector(load_backbone(backbone, input_size=input_size, pretrained=pretrained), num_classes, width)
