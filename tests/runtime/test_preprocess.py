"""Normalising an image for the model: channels first, each channel by its own mean and spread, a grey image
over all three channels."""

from __future__ import annotations

import numpy as np
from PIL import Image

from inspectloop.runtime.preprocess import Preprocess

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _expected(pixels: np.ndarray) -> np.ndarray:
    rgb = np.repeat(pixels[:, :, None], 3, axis=2) if pixels.ndim == 2 else pixels
    return ((rgb / 255.0 - np.array(MEAN)) / np.array(STD)).transpose(2, 0, 1)


def test_an_rgb_image_becomes_channels_first_normalised_per_channel() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (12, 20, 3), dtype=np.uint8)
    array = Preprocess(12, MEAN, STD).to_array(Image.fromarray(pixels, mode="RGB"))
    assert array.shape == (3, 12, 20) and array.dtype == np.float32 and array.flags.c_contiguous
    assert np.allclose(array, _expected(pixels), atol=1e-5)


def test_a_grey_image_fills_all_three_channels() -> None:
    pixels = np.random.default_rng(1).integers(0, 256, (16, 9), dtype=np.uint8)
    array = Preprocess(16, MEAN, STD).to_array(Image.fromarray(pixels, mode="L"))
    assert array.shape == (3, 16, 9) and array.dtype == np.float32 and array.flags.c_contiguous
    assert np.allclose(array, _expected(pixels), atol=1e-5)
