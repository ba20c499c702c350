"""Per-image standardisation inside the trunk: a change of exposure or gain no longer moves the features."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from inspectloop.models.backbones import load_backbone  # noqa: E402
from inspectloop.models.photometric import MIN_STD, STANDARD_MEAN, STANDARD_STD, standardise  # noqa: E402


def test_each_image_gets_the_standard_mean_and_contrast_and_a_flat_one_stays_flat() -> None:
    x = torch.rand(3, 3, 16, 16) * torch.tensor([0.5, 2.0, 4.0])[:, None, None, None]
    out = standardise(x)
    assert torch.allclose(out.flatten(1).mean(1), torch.full((3,), STANDARD_MEAN), atol=1e-5)
    assert torch.allclose(out.flatten(1).std(1, unbiased=False), torch.full((3,), STANDARD_STD), atol=1e-4)
    flat = standardise(torch.full((1, 3, 8, 8), 0.3) + torch.randn(1, 3, 8, 8) * MIN_STD / 100)
    assert float(flat.std()) < STANDARD_STD / 50  # noise far under one grey level is not blown up


def test_a_standardising_trunk_ignores_exposure_and_gain_and_a_plain_one_does_not() -> None:
    torch.manual_seed(0)
    image = torch.rand(2, 3, 64, 64) - 0.5
    brighter = image * 1.7 + 0.4  # the same parts under another exposure and gain
    with torch.inference_mode():
        steady = load_backbone(input_size=64, standardise=True).eval()
        assert torch.allclose(steady(image), steady(brighter), atol=1e-4)
        plain = load_backbone(input_size=64).eval()
        assert not torch.allclose(plain(image), plain(brighter), atol=1e-2)
