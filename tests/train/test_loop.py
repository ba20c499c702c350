"""The fine-tuning loop's speed switches (bf16 autocast, channels-last) keep a seeded run repeatable and hand
back a float32 model in the standard layout that export expects."""

from __future__ import annotations

from copy import deepcopy
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from inspectloop.models.backbones import backbone_spec, load_backbone
from inspectloop.models.classifier import Classifier
from inspectloop.runtime.preprocess import Preprocess
from inspectloop.train import loop
from inspectloop.train.config import TrainConfig
from inspectloop.train.data import ImageSet
from tests.conftest import surface

FAST = dict(input_size=64, batch_size=8, epochs=2, freeze_blocks=12, augment="light", seed=0)


@pytest.mark.parametrize(("setting", "native", "expected"), [
    ("auto", True, "bf16"),
    ("auto", False, "float32"),  # emulated bf16 is slower than float32: auto does not take it
    ("bf16", False, "bf16"),
    ("float32", True, "float32"),
])
def test_precision_auto_takes_bf16_only_where_the_cpu_has_it(monkeypatch: pytest.MonkeyPatch, setting: str,
                                                             native: bool, expected: str) -> None:
    monkeypatch.setattr(loop, "bf16_native", lambda: native)
    assert loop.training_precision(TrainConfig(precision=setting)) == expected


def images(count: int, seed: int) -> ImageSet:
    pictures = [Image.fromarray(surface(seed + i, defect=i % 2 == 1)) for i in range(count)]
    return ImageSet(pictures, np.array([i % 2 for i in range(count)], dtype=np.int64), [f"{i:064x}" for i in range(count)])


def trained(tmp_path: Path, name: str, **settings: object) -> Classifier:
    config = TrainConfig(**(FAST | settings))
    loop.seed_everything(config.seed)
    model = Classifier(load_backbone(config.backbone, input_size=config.input_size),
                       backbone_spec(config.backbone).feature_dim, 2)
    result = loop.finetune(model, images(16, 0), images(6, 100), Preprocess(64), config, tmp_path / name / "ckpt.pt")
    return result.model


def test_the_fast_path_is_seeded_and_hands_back_a_float32_model_in_standard_layout(tmp_path: Path) -> None:
    first = trained(tmp_path, "a", precision="bf16", channels_last=True)
    second = trained(tmp_path, "b", precision="bf16", channels_last=True)
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), f"{name} differs between two runs with the same seed"
    assert all(p.dtype == torch.float32 and p.is_contiguous() for p in first.parameters())


def test_the_seed_draws_the_batches_not_only_the_first_weights(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Ensemble members and seed studies differ in what they see: the class-balanced draw follows the seed."""
    draws: list[np.ndarray] = []
    drawn = loop.balanced_order

    def recorded(*args: object) -> np.ndarray:
        draws.append(drawn(*args))
        return draws[-1]

    monkeypatch.setattr(loop, "balanced_order", recorded)
    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        draws.clear()
        trained(tmp_path, name, seed=seed)
        runs[name] = np.concatenate(draws)
    assert np.array_equal(runs["a"], runs["b"])
    assert not np.array_equal(runs["a"], runs["c"])


def test_the_fast_path_learns_what_the_old_path_learns(tmp_path: Path) -> None:
    fast = trained(tmp_path, "fast", precision="bf16", channels_last=True)
    old = trained(tmp_path, "old", precision="float32", channels_last=False)
    held = images(8, 200)
    preprocess = Preprocess(64)
    fast_logits, old_logits = loop.predict_logits(fast, held, preprocess), loop.predict_logits(old, held, preprocess)
    assert not np.array_equal(fast_logits, old_logits)  # the switch did something
    assert np.abs(fast_logits - old_logits).max() < 0.5  # two epochs from one start: close, not bitwise equal


def _depthwise_and_pointwise(model: torch.nn.Module) -> tuple[torch.nn.Conv2d, torch.nn.Conv2d]:
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    return (next(m for m in convs if m.groups > 1 and m.groups == m.in_channels),
            next(m for m in convs if m.groups == 1 and m.kernel_size == (1, 1)))


def _depthwise_in_float32(model: torch.nn.Module, x: torch.Tensor) -> bool:
    """Under bf16 autocast, whether ``model``'s first depthwise convolution computes in float32 (its output then
    is the float32 result rounded to bf16, not bf16 arithmetic's), checked with its pointwise neighbours in bf16."""
    seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    depthwise, pointwise = _depthwise_and_pointwise(model)

    def record(name: str) -> object:
        def hook(_module: object, inputs: tuple[torch.Tensor], out: torch.Tensor) -> None:
            seen.setdefault(name, (inputs[0].detach(), out.detach()))
        return hook

    hooks = [depthwise.register_forward_hook(record("depthwise")), pointwise.register_forward_hook(record("pointwise"))]
    with torch.no_grad(), loop.autocast("bf16"):
        model(x)
    for hook in hooks:
        hook.remove()
    assert seen["pointwise"][1].dtype == seen["depthwise"][1].dtype == torch.bfloat16
    inputs, out = seen["depthwise"]
    with torch.no_grad():
        in_float32 = type(depthwise).forward(depthwise, inputs.float()).to(torch.bfloat16)
    return torch.equal(out, in_float32)


def test_in_bf16_depthwise_convolutions_that_train_compute_in_float32_and_the_plain_layout_undoes_it() -> None:
    model = load_backbone(input_size=64)
    x = torch.randn(2, 3, 64, 64)
    assert not _depthwise_in_float32(model, x)  # autocast alone
    loop.training_layout(model, "bf16", channels_last=True)
    assert _depthwise_in_float32(model, x)  # oneDNN's slow bf16 depthwise backward avoided
    loop.plain_layout(model)
    _depthwise_and_pointwise(model)[0].weight.requires_grad = False  # frozen: no backward to avoid
    loop.training_layout(model, "bf16", channels_last=True)
    assert not _depthwise_in_float32(model, x)
    loop.plain_layout(model)
    assert not _depthwise_in_float32(model, x)
    assert all(p.is_contiguous() for p in model.parameters())


def test_a_deep_copy_of_a_model_in_training_layout_runs_its_own_weights() -> None:
    model = loop.training_layout(load_backbone(input_size=64), "bf16", channels_last=False).eval()
    twin = deepcopy(model)  # as a weight average copies the model it follows
    with torch.no_grad():
        for parameter in _depthwise_and_pointwise(twin)[0].parameters():
            parameter.mul_(0.5)
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        assert not torch.allclose(model(x), twin(x))


def test_in_bf16_the_frozen_prefix_folds_its_batchnorm_and_keeps_the_state_dict() -> None:
    torch.manual_seed(0)
    model = Classifier(load_backbone(input_size=64), backbone_spec("efficientnet-lite0").feature_dim, 2).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
    state = {name: value.clone() for name, value in model.state_dict().items()}
    loop.freeze_early_layers(model, 2)
    loop.training_layout(model, "bf16", channels_last=True, frozen_blocks=2)
    folded = [conv for conv, _ in model.trunk.conv_norm_pairs(2)]
    assert all("folded" in conv.__dict__ for conv in folded)
    assert not any("folded" in m.__dict__ for m in model.modules() if m not in folded)  # trained layers keep theirs
    with torch.no_grad():
        assert torch.allclose(model(x), expected, atol=1e-4)  # in float32: the same network, rounded otherwise
    assert model.state_dict().keys() == state.keys()  # checkpoints and the best epoch keep the model's own keys
    loop.plain_layout(model)
    with torch.no_grad():
        assert torch.equal(model(x), expected)
    assert all(torch.equal(value, state[name]) for name, value in model.state_dict().items())
