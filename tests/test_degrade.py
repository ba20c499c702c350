"""Production degradations: each does what it says, is seeded, and is the identity at severity 0."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from inspectloop.degrade import (
    DegradationSchedule,
    Ramp,
    camera_shift,
    dust_mask,
    focus_drift,
    jpeg_change,
    lens_dust,
    light_decay,
    sensor_noise,
    shift,
)
from inspectloop.quality import quality_stats


def texture(seed: int = 0, size: tuple[int, int] = (128, 96), mode: str = "L") -> Image.Image:
    """A steel-like surface: mid grey, fine random texture and a few bright scratches."""
    rng = np.random.default_rng(seed)
    width, height = size
    pixels = 120 + 25 * rng.standard_normal((height, width))
    pixels[20:23, 10:100] = 230
    pixels[60:90, 70:72] = 30
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "L")
    return image.convert(mode)


ALL = [
    lambda image, s: light_decay(image, s),
    lambda image, s: lens_dust(image, s, camera_seed=3),
    lambda image, s: focus_drift(image, s),
    lambda image, s: jpeg_change(image, s),
    lambda image, s: camera_shift(image, s, camera_seed=3),
    lambda image, s: sensor_noise(image, s, seed=7),
]


@pytest.mark.parametrize("degrade", ALL, ids=["light", "dust", "focus", "jpeg", "shift", "noise"])
@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_identity_at_zero_same_mode_and_size_and_seeded(degrade, mode: str) -> None:
    image = texture(mode=mode)
    assert np.array_equal(np.asarray(degrade(image, 0.0)), np.asarray(image))
    out = degrade(image, 0.7)
    assert (out.mode, out.size) == (image.mode, image.size)
    assert not np.array_equal(np.asarray(out), np.asarray(image))
    assert np.array_equal(np.asarray(degrade(image, 0.7)), np.asarray(out))


@pytest.mark.parametrize("severity", [-0.1, 1.5, float("nan")])
def test_severity_outside_zero_to_one_is_refused(severity: float) -> None:
    with pytest.raises(ValueError, match="severity must be in"):
        focus_drift(texture(), severity)


def test_light_decay_darkens_progressively() -> None:
    levels = [quality_stats(light_decay(texture(), s)).brightness for s in (0.0, 0.3, 0.6, 1.0)]
    assert levels == sorted(levels, reverse=True)
    assert levels[-1] / levels[0] < 0.6


def test_focus_drift_lowers_laplacian_sharpness_monotonically() -> None:
    sharpness = [quality_stats(focus_drift(texture(), s)).sharpness for s in (0.0, 0.2, 0.5, 1.0)]
    assert sharpness == sorted(sharpness, reverse=True)
    assert sharpness[-1] < 0.05 * sharpness[0]


def test_dust_lowers_local_contrast_only_in_the_blotches() -> None:
    image = texture()
    dusty = np.asarray(lens_dust(image, 1.0, camera_seed=3), dtype=np.float64)
    clean = np.asarray(image, dtype=np.float64)
    mask = dust_mask(image.size, camera_seed=3)
    core, outside = mask > 0.6, mask == 0.0
    assert core.sum() > 50 and outside.sum() > 0.5 * mask.size
    assert np.array_equal(dusty[outside], clean[outside])
    assert dusty[core].std() < 0.75 * clean[core].std()
    assert np.array_equal(dust_mask(image.size, 3), dust_mask(image.size, 3))  # fixed per camera
    assert not np.array_equal(dust_mask(image.size, 3), dust_mask(image.size, 4))


def test_shift_moves_a_pattern_by_the_asked_pixels() -> None:
    image = texture()
    moved = np.asarray(shift(image, 5, -3))
    original = np.asarray(image)
    assert np.array_equal(moved[10:-10, 10:-10], original[13:-7, 5:-15])
    assert moved[:, :5].std() > 0  # the uncovered edge repeats the border, not black


def test_camera_shift_grows_with_severity() -> None:
    image = np.asarray(texture(), dtype=np.float64)
    diffs = [np.abs(np.asarray(camera_shift(texture(), s, camera_seed=1), dtype=np.float64) - image).mean()
             for s in (0.1, 0.5, 1.0)]
    assert diffs == sorted(diffs)


def test_jpeg_change_loses_detail_as_quality_drops() -> None:
    image = np.asarray(texture(), dtype=np.float64)
    errors = [np.abs(np.asarray(jpeg_change(texture(), s), dtype=np.float64) - image).mean() for s in (0.1, 0.5, 1.0)]
    assert errors == sorted(errors)


def test_sensor_noise_raises_the_measured_noise() -> None:
    flat = Image.fromarray(np.full((96, 128), 128, np.uint8), "L")
    noise = quality_stats(sensor_noise(flat, 1.0, seed=1)).noise
    assert noise == pytest.approx(12.0, rel=0.1)
    assert not np.array_equal(np.asarray(sensor_noise(flat, 1.0, seed=1)), np.asarray(sensor_noise(flat, 1.0, seed=2)))


def test_ramps_and_the_year_schedule() -> None:
    ramp = Ramp(3, 9, 0.6)
    assert [ramp.severity(m) for m in (0, 3, 6, 9, 12)] == pytest.approx([0, 0, 0.3, 0.6, 0.6])
    assert Ramp(7, 7, 0.5).severity(6.99) == 0 and Ramp(7, 7, 0.5).severity(7) == 0.5
    year = DegradationSchedule.year(camera_seed=2)
    assert all(v == 0 for v in year.severities(0).values())
    assert all(v > 0 for v in year.severities(12).values())
    image = texture()
    assert np.array_equal(np.asarray(year.apply(image, 0)), np.asarray(image))
    late = year.apply(image, 12, image_seed=5)
    assert quality_stats(late).brightness < quality_stats(image).brightness
    assert quality_stats(late).sharpness < quality_stats(image).sharpness
    assert np.array_equal(np.asarray(year.apply(image, 12, image_seed=5)), np.asarray(late))
    assert DegradationSchedule.from_dict(json.loads(json.dumps(year.to_dict()))) == year


def test_schedule_refuses_unknown_degradations_and_bad_ramps() -> None:
    with pytest.raises(ValueError, match="unknown degradations"):
        DegradationSchedule({"rust": Ramp(0, 1)})
    with pytest.raises(ValueError, match="start_month <= full_month"):
        Ramp(5, 2)
