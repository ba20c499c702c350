"""Synthetic camera targets: a slanted edge of known blur and a flat field of known vignetting."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from inspectloop.workspace import Workspace

_erf = np.vectorize(math.erf)


def slanted_edge(sigma: float, angle_deg: float = 5.0, size: int = 128, noise: float = 1.0, seed: int = 0) -> np.ndarray:
    """A dark/light edge through the centre, tilted ``angle_deg``, blurred by a Gaussian of ``sigma`` px."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    theta, centre = math.radians(angle_deg), (size - 1) / 2.0
    distance = (xx - centre) * math.cos(theta) - (yy - centre) * math.sin(theta)
    pixels = 40.0 + 160.0 * 0.5 * (1.0 + _erf(distance / (sigma * math.sqrt(2.0))))
    pixels += np.random.default_rng(seed).normal(0.0, noise, pixels.shape)
    return np.clip(pixels, 0, 255)


def flat_field(falloff: float = 0.1, level: float = 180.0, size: tuple[int, int] = (160, 120),
               noise: float = 2.0, seed: int = 0) -> np.ndarray:
    """An evenly lit card seen through a lens whose corners are ``falloff`` darker (cos^4-like, quadratic)."""
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    r = np.hypot(yy - (height - 1) / 2, xx - (width - 1) / 2) / math.hypot((height - 1) / 2, (width - 1) / 2)
    pixels = level * (1.0 - falloff * r * r) + np.random.default_rng(seed).normal(0.0, noise, r.shape)
    return np.clip(pixels, 0, 255)


def save(array: np.ndarray, path: Path) -> Path:
    """Write a grey array as an 8-bit PNG, as a camera would save a capture."""
    Image.fromarray(np.clip(array, 0, 255).astype(np.uint8), "L").save(path)
    return path


def targets(folder: Path, *, falloff: float = 0.1, level: float = 180.0, sigma: float = 1.2,
            seed: int = 0) -> tuple[Path, Path]:
    """A flat-field and a slanted-edge capture written to ``folder``."""
    return (save(flat_field(falloff, level=level, seed=seed), folder / f"flat-{seed}.png"),
            save(slanted_edge(sigma, seed=seed), folder / f"edge-{seed}.png"))


def fail_camera_check(workspace: Workspace, camera: str, folder: Path) -> None:
    """Record ``camera``'s health baseline, then a check that fails (a blurred lens, dimmer light): the
    camera is suspect from then on."""
    from inspectloop.camera import run

    folder.mkdir(parents=True, exist_ok=True)
    flat, edge = targets(folder)
    run.record_camera_baseline(workspace, camera, flat=flat, edge=edge)
    worn_flat, blurred = targets(folder, falloff=0.35, level=120, sigma=2.5, seed=2)
    assert run.check(workspace, camera, flat=worn_flat, edge=blurred).status == "fail"
