"""BatchNorm re-estimation on unlabelled images: statistics move to the new images', weights stay."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from inspectloop.adapt.batchnorm import adapt_batchnorm, batchnorm_layers
from inspectloop.runtime.preprocess import Preprocess

PRE = Preprocess(16, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, 2)).eval()


def images(level: int, count: int = 40) -> list[Image.Image]:
    rng = np.random.default_rng(level)
    return [Image.fromarray(np.clip(rng.normal(level, 10, (16, 16, 3)), 0, 255).astype(np.uint8)) for _ in range(count)]


def conv_output_mean(model: nn.Module, shots: list[Image.Image]) -> torch.Tensor:
    from inspectloop.train.data import to_batch

    with torch.no_grad():
        return model[0](to_batch(shots, PRE)).mean(dim=(0, 2, 3))


def test_running_mean_becomes_the_new_images_and_weights_stay() -> None:
    model = tiny()
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "num_batches" not in k}
    dark = images(40)
    shift = adapt_batchnorm(model, dark, PRE)
    bn = model[1]
    assert torch.allclose(bn.running_mean, conv_output_mean(model, dark), atol=1e-4)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in weights.items())
    assert not model.training and shift.layers == 1 and shift.images == 40 and shift.mean_shift > 0.1
    assert bn.momentum == 0.1  # restored: later training of this model behaves as before


def test_weight_blends_trained_and_new_statistics() -> None:
    full, half = tiny(), tiny()
    trained = half[1].running_mean.clone()
    adapt_batchnorm(full, images(200), PRE)
    adapt_batchnorm(half, images(200), PRE, weight=0.5)
    assert torch.allclose(half[1].running_mean, 0.5 * (trained + full[1].running_mean), atol=1e-5)


@pytest.mark.parametrize(("model", "shots", "weight", "message"), [
    (nn.Sequential(nn.Flatten(), nn.Linear(768, 2)), images(50, 4), 1.0, "no BatchNorm layer"),
    (tiny(), [], 1.0, "no images"),
    (tiny(), images(50, 4), 0.0, "weight must be in"),
])
def test_refusals(model: nn.Module, shots: list[Image.Image], weight: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        adapt_batchnorm(model, shots, PRE, weight=weight)


def test_layers_without_running_statistics_are_not_counted() -> None:
    model = nn.Sequential(nn.BatchNorm2d(3, track_running_stats=False), nn.BatchNorm1d(3))
    assert [type(m) for m in batchnorm_layers(model)] == [nn.BatchNorm1d]


def test_relative_move_is_zero_when_the_images_look_like_the_reference() -> None:
    model = tiny()
    stored = model[1].running_mean.clone(), model[1].running_var.clone()
    shift = adapt_batchnorm(model, images(90), PRE, reference=images(90))
    assert torch.allclose(model[1].running_mean, stored[0]) and torch.allclose(model[1].running_var, stored[1])
    assert shift.relative and shift.mean_shift == pytest.approx(0, abs=1e-6)


def test_relative_move_is_the_difference_between_the_two_sets() -> None:
    from inspectloop.adapt.batchnorm import batchnorm_statistics

    model = tiny()
    stored = model[1].running_mean.clone()
    new, old = batchnorm_statistics(model, images(60), PRE), batchnorm_statistics(model, images(120), PRE)
    assert torch.equal(model[1].running_mean, stored)  # estimating leaves the model as it was
    adapt_batchnorm(model, images(60), PRE, reference_statistics=old)
    assert torch.allclose(model[1].running_mean, stored + new[0][0] - old[0][0], atol=1e-5)
