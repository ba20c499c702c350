import random

import numpy as np
import pytest
from PIL import Image

from inspectloop.train.augment import ProductionAugment, _geometry, _window, augment_for, build_augment, zoomed
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


def test_a_zoom_frames_the_defect_tight_and_keeps_it() -> None:
    """pose=zoom: the window shrinks to as little as half of each side, yet the annotated stripe on the right
    edge is in every view, flipped or not, and the mid-grey part around it fills most of the view."""
    image = _edge_mark("L")
    stripe = np.array([[147 / 150, 0.0, 1.0, 1.0]], dtype=np.float32)
    augment = ProductionAugment(pose="zoom")
    zoomed_in = 0
    for seed in range(80):
        out = np.asarray(augment(image, random.Random(seed), stripe).convert("L")).astype(int)
        bright = out > np.median(out) + 40  # lighting and contrast move both stripe and part
        assert out.shape == (60, 150) and bright.sum() >= 60
        zoomed_in += bright.sum() > 3 * 60 * 1.3  # the stripe stretched wider than it is: a zoom
    assert 20 <= zoomed_in <= 60  # about half the views zoom in (ZOOM_CHANCE)


def test_a_zoom_window_covers_what_it_must_and_is_random() -> None:
    rng = random.Random(0)
    spans = [_window(0.7, 0.9, 0.5, rng) for _ in range(200)]
    assert all(start <= 0.7 and end >= 0.9 and 0.5 <= end - start <= 1.0 and 0 <= start and end <= 1.0 + 1e-9
               for start, end in spans)
    assert len({round(start, 3) for start, _ in spans}) > 50
    free = [_window(1.0, 0.0, 0.5, rng) for _ in range(200)]  # nothing to keep: anywhere
    assert all(0 <= start and end <= 1.0 + 1e-9 and end - start >= 0.5 for start, end in free)
    wide = _window(0.05, 0.95, 0.5, rng)  # a defect wider than the smallest window: the window grows
    assert wide[0] <= 0.05 + 1e-9 and wide[1] >= 0.95 - 1e-9


def test_a_good_image_zooms_anywhere_and_an_unplaced_defect_never() -> None:
    image = Image.fromarray(np.tile(np.arange(150, dtype=np.uint8), (60, 1)), "L")  # a left-to-right ramp
    plain = ProductionAugment(strength=0.0, flips=False, pose="zoom")
    good = [zoomed(image, np.zeros((0, 4), np.float32), random.Random(seed)) for seed in range(20)]
    assert len({np.asarray(g)[:, 0].mean().round() for g in good}) > 5  # windows start in many places
    unplaced = [np.asarray(plain(image, random.Random(seed), None)) for seed in range(20)]
    assert all(np.array_equal(u, np.asarray(image)) for u in unplaced)  # strength 0, never zoomed: unchanged
