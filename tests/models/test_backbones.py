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

    from inspectloop.models.backbones import BACKBONES, pretrained_state_dict

    net = EfficientNet.from_name("efficientnet-lite0", image_size=input_size)
    net.load_state_dict(pretrained_state_dict(BACKBONES["efficientnet-lite0"]), strict=True)
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


@pytest.mark.parametrize(("name", "taps", "guard"), [
    ("efficientnet-lite0", {8: (4, 40), 16: (10, 112), 32: (15, 320)}, 14),
    ("efficientnet-lite2", {8: (6, 48), 16: (14, 120), 32: (20, 352)}, 19),
])
def test_each_backbone_loads_its_packages_weights_and_names_where_its_strides_end(name: str, taps: dict,
                                                                                  guard: int) -> None:
    """The larger Lite2 comes from its own registry package; a detector's pyramid and the novelty guard find
    their blocks from the trunk, not from Lite0's numbers."""
    from inspectloop.models.novelty import guard_block

    trunk = load_backbone(name, input_size=64).eval()
    ends = trunk.stride_ends()
    assert {stride: ends[stride] for stride in taps} == taps and max(ends) == 32
    assert guard_block(trunk) == guard
    with torch.inference_mode():
        assert trunk(torch.zeros(1, 3, 64, 64)).shape == (1, 1280)


def test_a_detector_on_lite2_taps_its_pyramid_where_lite2s_strides_end() -> None:
    from inspectloop.detect.model import build_detector

    detector = build_detector(3, backbone="efficientnet-lite2", input_size=64, pretrained=False).eval()
    assert detector.level_blocks == (6, 14, 20)
    with torch.inference_mode():
        boxes, scores = detector(torch.zeros(2, 3, 64, 64))
    assert boxes.shape == (2, 64 + 16 + 4, 4) and scores.shape == (2, 64 + 16 + 4, 3)
