import random

import numpy as np
import pytest
from PIL import Image

from inspectloop.train.augment import ProductionAugment, _geometry, augment_for, build_augment
from inspectloop.train.config import TrainConfig
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


def _edge_mark(mode: str) -> Image.Image:
    """A mid-grey, wide image (as a magnetic tile) with a white 3-px stripe on its right edge: a defect on a
    part's very edge."""
    pixels = np.full((60, 150), 100, np.uint8)
    pixels[:, -3:] = 255
    return Image.fromarray(pixels, "L").convert(mode)


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_a_contained_pose_keeps_an_edge_defect_in_view(mode: str) -> None:
    image = _edge_mark(mode)
    for seed in range(60):
        out = np.asarray(_geometry(image, random.Random(seed), 1.0, contain=True).convert("L"))
        assert out.shape == (60, 150) and (out > 200).sum() >= 60  # most of the stripe, shrunk at most ~25%


def test_a_cropping_pose_can_cut_an_edge_defect_away() -> None:
    image = _edge_mark("L")
    kept = [(np.asarray(_geometry(image, random.Random(seed), 1.0)) > 200).sum() for seed in range(60)]
    assert min(kept) == 0  # why ``pose=contain`` exists


def test_the_pose_draws_the_same_numbers_either_way() -> None:
    """Only the borders differ: contain and crop take the same random draws, so the photometric part after
    them (and every later view) stays as it was with the same seed."""
    image = _edge_mark("L")
    crop_rng, contain_rng = random.Random(3), random.Random(3)
    _geometry(image, crop_rng, 1.0)
    _geometry(image, contain_rng, 1.0, contain=True)
    assert crop_rng.random() == contain_rng.random()
    assert build_augment("production", flips=True, pose="contain").pose == "contain"


def test_a_config_gives_every_augmentation_setting_it_holds() -> None:
    augment = augment_for(TrainConfig(augment="light", flips=False, pose="contain"))
    assert augment is not None and (augment.strength, augment.flips, augment.pose) == (0.5, False, "contain")
    assert augment_for(TrainConfig(augment="none")) is None


def test_balanced_order_sees_rare_classes_as_often_as_common_ones() -> None:
    labels = np.array([0] * 950 + [1] * 50)
    order = balanced_order(labels, 20000, np.random.default_rng(0))
    share_rare = np.mean(labels[order] == 1)
    assert 0.45 < share_rare < 0.55
