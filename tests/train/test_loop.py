"""The fine-tuning loop's speed switches (bf16 autocast, channels-last) keep a seeded run repeatable and hand
back a float32 model in the standard layout that export expects."""

from __future__ import annotations

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
    config = TrainConfig(**FAST, **settings)
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


def test_the_fast_path_learns_what_the_old_path_learns(tmp_path: Path) -> None:
    fast = trained(tmp_path, "fast", precision="bf16", channels_last=True)
    old = trained(tmp_path, "old", precision="float32", channels_last=False)
    held = images(8, 200)
    preprocess = Preprocess(64)
    fast_logits, old_logits = loop.predict_logits(fast, held, preprocess), loop.predict_logits(old, held, preprocess)
    assert not np.array_equal(fast_logits, old_logits)  # the switch did something
    assert np.abs(fast_logits - old_logits).max() < 0.5  # two epochs from one start: close, not bitwise equal
