"""The camera condition read from unlabelled images: a known gain, blur, noise or JPEG setting applied to
textured images is found again; the same images give the identity; renders keep size and mode."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import gaussian_filter

from inspectloop.adapt.condition import CameraCondition, blockiness, estimate_condition


def textures(count: int, seed: int, size: int = 96) -> list[Image.Image]:
    """Grey surfaces with grain at several scales, like steel or ceramic tiles under even light."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        fine, coarse = rng.normal(0, 1, (size, size)), gaussian_filter(rng.normal(0, 1, (size, size)), 4)
        pixels = 120 + 14 * gaussian_filter(fine, 0.8) + 180 * coarse
        out.append(Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "L"))
    return out


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer).convert("L")


def test_the_same_conditions_read_as_no_change() -> None:
    condition = estimate_condition(textures(24, 0), textures(24, 1))
    assert condition.blur_sigma <= 0.2 and abs(condition.gain - 1) < 0.05 and condition.noise_sigma < 1.5
    assert condition.jpeg_quality is None and condition.misfit < 0.05


@pytest.mark.parametrize("truth", [CameraCondition(gain=0.7, offset=-10.0, blur_sigma=1.0),
                                   CameraCondition(noise_sigma=6.0),
                                   CameraCondition(gain=0.85, blur_sigma=0.6, noise_sigma=3.0)])
def test_a_known_condition_is_found_again(truth: CameraCondition) -> None:
    camera = [truth.render(image, seed=i) for i, image in enumerate(textures(24, 1))]
    found = estimate_condition(textures(24, 0), camera)
    assert found.jpeg_quality is None
    assert abs(found.gain - truth.gain) < 0.06
    assert abs(found.blur_sigma - truth.blur_sigma) <= 0.25
    assert abs(found.noise_sigma - truth.noise_sigma) < 1.5
    assert abs(found.offset - truth.offset) < 6


def test_a_new_jpeg_setting_is_found_from_its_block_grid() -> None:
    camera = [jpeg(image, 40) for image in textures(24, 1)]
    assert np.mean([blockiness(np.asarray(i, np.float32)) for i in camera]) > 1.05
    found = estimate_condition(textures(24, 0), camera)
    assert found.jpeg_quality is not None and abs(found.jpeg_quality - 40) <= 10


def test_render_keeps_size_and_mode_and_is_seeded() -> None:
    condition = CameraCondition(gain=0.9, offset=3, blur_sigma=0.8, noise_sigma=2, jpeg_quality=70)
    grey = textures(1, 3, size=64)[0].crop((0, 0, 64, 40))
    colour = grey.convert("RGB")
    for image in (grey, colour):
        rendered = condition.render(image, seed=5)
        assert rendered.size == image.size and rendered.mode == image.mode
        assert np.array_equal(np.asarray(rendered), np.asarray(condition.render(image, seed=5)))
    assert np.array_equal(np.asarray(CameraCondition().render(grey)), np.asarray(grey))
    assert CameraCondition().identity and not condition.identity


def test_too_few_images_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 8 images on each side, got 24 reference and 3 camera"):
        estimate_condition(textures(24, 0), textures(3, 1))


def test_flat_camera_images_are_refused_not_divided_by() -> None:
    capped = [Image.new("L", (96, 96), 0) for _ in range(12)]
    with pytest.raises(ValueError, match="the camera's images are flat"):
        estimate_condition(textures(24, 0), capped)
