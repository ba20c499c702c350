"""The backbone's convolutions pad inside the kernel where TensorFlow's "same" padding is symmetric: the same
output as the package's separate pad, without copying each activation first."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from inspectloop.models.backbones import load_backbone  # noqa: E402


def _package_net(input_size: int) -> nn.Module:
    """The package's own network (every pad separate) with the same weights as ``load_backbone``'s."""
    from efficientnet_lite_pytorch import EfficientNet

    from inspectloop.models.backbones import _lite0_state_dict

    net = EfficientNet.from_name("efficientnet-lite0", image_size=input_size)
    net.load_state_dict(_lite0_state_dict(), strict=True)
    return net.eval()


@pytest.mark.parametrize("input_size", [64, 97])  # an odd size pads strided convolutions unevenly
def test_padding_inside_the_convolution_gives_the_package_networks_output(input_size: int) -> None:
    trunk = load_backbone(input_size=input_size).eval()
    reference = _package_net(input_size)
    torch.manual_seed(0)
    x = torch.randn(2, 3, input_size, input_size)
    with torch.inference_mode():
        expected = torch.flatten(nn.functional.adaptive_avg_pool2d(reference.extract_features(x), 1), 1)
        assert torch.allclose(trunk(x), expected, atol=1e-5)


def test_only_symmetric_pads_move_into_the_convolution() -> None:
    convs = [m for m in load_backbone(input_size=64).modules() if isinstance(m, nn.Conv2d)]
    separate = [m for m in convs if isinstance(m.static_padding, nn.ZeroPad2d)]
    folded = [m for m in convs if m.padding != (0, 0)]
    assert folded and all(tuple(m.stride) == (1, 1) for m in folded)  # at 64 px only stride 1 pads evenly
    for conv in separate:  # what stays separate pads one side more
        left, right, top, bottom = conv.static_padding.padding
        assert (left, top) != (right, bottom)
