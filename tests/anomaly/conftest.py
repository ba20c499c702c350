"""Tiny synthetic parts for anomaly tests: a textured good surface, and the same surface with a dark blob."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

SIZE = 64


def surface(seed: int, *, defect: bool = False, size: int = SIZE) -> Image.Image:
    """A greyscale part: smooth stripes plus noise; a defect adds a dark square where no good part has one."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    pixels = 128 + 40 * np.sin(x / 3.0 + rng.uniform(0, 0.3)) + rng.normal(0, 4, (size, size))
    if defect:
        top, left = rng.integers(8, size - 24, 2)
        pixels[top:top + 14, left:left + 14] = 10
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="L")


@pytest.fixture(scope="session")
def good_images() -> list[Image.Image]:
    return [surface(i) for i in range(12)]


@pytest.fixture(scope="session")
def fitted(good_images: list[Image.Image]):  # noqa: ANN201 - a PatchCoreModel (torch imported lazily)
    from inspectloop.anomaly import PatchCoreConfig, fit_patchcore

    # stride 8: a 64-pixel part on the default stride-16 grid would be 4 x 4 patches
    config = PatchCoreConfig(input_size=SIZE, stride=8, coreset_ratio=0.1, chunk_images=5, threads=1)
    return fit_patchcore(good_images, config)
