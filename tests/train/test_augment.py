import random

import numpy as np
import pytest
from PIL import Image

from inspectloop.train.augment import ProductionAugment, build_augment
from inspectloop.train.data import balanced_order
from tests.conftest import surface


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_augment_keeps_size_and_mode_and_is_seeded(mode: str) -> None:
    image = Image.fromarray(surface(0, size=96), "L").convert(mode)
    augment = ProductionAugment()
    first = [np.asarray(augment(image, random.Random(7))) for _ in range(2)]
    assert all(a.shape == np.asarray(image).shape for a in first)
    assert np.array_equal(first[0], first[1])  # same rng seed, same pixels
    other = np.asarray(augment(image, random.Random(8)))
    assert not np.array_equal(first[0], other)


def test_augment_varies_lighting_like_a_line_does() -> None:
    image = Image.fromarray(surface(1, size=96), "L")
    augment = ProductionAugment(flips=False)
    means = [np.asarray(augment(image, random.Random(seed))).mean() for seed in range(40)]
    assert max(means) - min(means) > 20  # brightness drift of tens of grey levels


def test_presets() -> None:
    assert build_augment("none", flips=True) is None
    assert build_augment("light", flips=False).strength == 0.5


def test_balanced_order_sees_rare_classes_as_often_as_common_ones() -> None:
    labels = np.array([0] * 950 + [1] * 50)
    order = balanced_order(labels, 20000, np.random.default_rng(0))
    share_rare = np.mean(labels[order] == 1)
    assert 0.45 < share_rare < 0.55
