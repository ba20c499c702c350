"""A camera's imaging condition, estimated from unlabelled images: the pure part of adaptation by rendering.

A drifting camera changes how every part looks in the same few physical ways: the light's gain falls, the
lens defocuses, the sensor gets noisier. Those changes leave a fingerprint in simple image statistics that
does not need a label: the grey levels' mean and spread, and how the image's energy spreads over spatial
frequencies (defocus removes the fine bands first; sensor noise adds the same energy to every image).

:func:`estimate_condition` fits a :class:`CameraCondition` (gain, offset, Gaussian blur, added noise) that
turns the training images' statistics into the camera's. The training images rendered under it
(:meth:`CameraCondition.render`) are what the camera would show of the parts the model was trained on, with
their labels; a head refitted on them learns the drifted look before a single production label exists.

Each band's energy follows ``gain**2 * E(blur) + noise**2 * c``, where ``E(blur)`` is the band's energy in
the reference images after the blur and ``c`` is the band's response to unit white noise: for each blur on
a grid the gain and noise follow from a non-negative least-squares fit, and the blur with the smallest
relative misfit wins. Numpy and SciPy only; no torch.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter
from scipy.optimize import nnls

BAND_SIGMAS = (0.0, 0.7, 1.4, 2.8, 5.6)  # difference-of-Gaussian band edges (pixels): 4 bands, fine to coarse
BLUR_GRID = tuple(round(0.1 * i, 1) for i in range(31))  # candidate extra blur, 0-3 px sigma
MIN_IMAGES = 8  # band energies of fewer images move with the parts, not the camera
JPEG_GRID = (90, 80, 70, 60, 50, 40, 30)  # candidate encoder qualities when the camera's images show 8x8 blocks
NOISE_GRID = (0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0, 12.0)  # grey levels, for the search under compression
COARSE_BLUR = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
# Relative rise of 8x8 blockiness over the references' that reads as a new compression: between subsets of one
# JPEG data set (NEU) it varies by 1-2%; re-encoding at quality 80 raises it by 35%.
BLOCK_TOLERANCE = 0.10
RENDER_SAMPLE = 48  # reference images rendered per candidate in the search under compression
FLAT_ENERGY = 1e-3  # grey levels squared: a band this empty has nothing to read a condition from


@dataclass(frozen=True)
class CameraCondition:
    """How a camera renders what it sees, relative to the training images: ``gain * blur(x) + offset`` plus
    Gaussian noise of ``noise_sigma`` grey levels, ``blur_sigma`` in pixels of the image it is applied to."""

    gain: float = 1.0
    offset: float = 0.0
    blur_sigma: float = 0.0
    noise_sigma: float = 0.0
    jpeg_quality: int | None = None  # re-encoded at this JPEG quality after the sensor (None: not re-encoded)
    misfit: float = 0.0  # RMS log misfit of the band energies (and blockiness) (0: the statistics match exactly)

    def render(self, image: Image.Image, seed: int = 0) -> Image.Image:
        """``image`` as the camera in this condition would capture it (same size and mode, 8-bit)."""
        pixels = np.asarray(image, dtype=np.float32)
        if self.blur_sigma > 0:
            axes = (self.blur_sigma, self.blur_sigma, 0) if pixels.ndim == 3 else self.blur_sigma
            pixels = gaussian_filter(pixels, axes)
        pixels = self.gain * pixels + self.offset
        if self.noise_sigma > 0:
            pixels = pixels + np.random.default_rng(seed).normal(0.0, self.noise_sigma, pixels.shape)
        rendered = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), image.mode)
        if self.jpeg_quality is None:
            return rendered
        buffer = io.BytesIO()
        rendered.save(buffer, format="JPEG", quality=self.jpeg_quality)
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            return decoded.convert(image.mode)

    @property
    def identity(self) -> bool:
        return (self.blur_sigma == 0 and self.noise_sigma == 0 and self.jpeg_quality is None
                and abs(self.gain - 1) < 1e-6 and abs(self.offset) < 1e-6)

    def to_dict(self) -> dict[str, float | int | None]:
        return {"gain": round(self.gain, 4), "offset": round(self.offset, 2), "blur_sigma": round(self.blur_sigma, 2),
                "noise_sigma": round(self.noise_sigma, 2), "jpeg_quality": self.jpeg_quality,
                "misfit": round(self.misfit, 4)}


def grey(image: Image.Image) -> np.ndarray:
    """The image's grey plane as float32, full size: a blur is measured in the pixels it is applied in."""
    return np.asarray(image if image.mode == "L" else image.convert("L"), dtype=np.float32)


def band_energies(plane: np.ndarray) -> np.ndarray:
    """Variance of the plane (its total energy) and of its difference-of-Gaussian bands, fine to coarse: (5,)."""
    levels = [plane if s == 0 else gaussian_filter(plane, s) for s in BAND_SIGMAS]
    bands = [levels[i] - levels[i + 1] for i in range(len(levels) - 1)]
    return np.array([plane.var(), *(band.var() for band in bands)], dtype=np.float64)


def blockiness(plane: np.ndarray) -> float:
    """Mean grey step across the 8x8 JPEG block borders over the mean step elsewhere (1: no block grid)."""
    steps = []
    for diff in (np.abs(np.diff(plane, axis=1)).mean(0), np.abs(np.diff(plane, axis=0)).mean(1)):
        border = (np.arange(diff.size) % 8) == 7
        if border.any() and (~border).any():
            steps.append(diff[border].mean() / max(float(diff[~border].mean()), 1e-6))
    return float(np.mean(steps)) if steps else 1.0


def noise_response(shape: tuple[int, int] = (256, 256)) -> np.ndarray:
    """Each band's energy for white noise of unit variance (the ``c`` of the module docstring)."""
    return band_energies(np.random.default_rng(0).normal(0.0, 1.0, shape).astype(np.float32))


def estimate_condition(reference: Sequence[Image.Image], camera: Sequence[Image.Image]) -> CameraCondition:
    """The condition that renders ``reference`` images (training conditions) with ``camera``'s statistics.

    Both sets should show the line's usual parts at the resolution the condition will be rendered at (the
    camera's own pixels): what differs between them is read as the camera's doing. When the camera's images
    show a sharper 8x8 block grid than the references', a new JPEG setting is searched for as well (noise is
    added before the encoder, so that part is rendered, not solved). ValueError when either set has fewer
    than :data:`MIN_IMAGES` images.
    """
    if min(len(reference), len(camera)) < MIN_IMAGES:
        raise ValueError(f"estimating a camera's condition needs at least {MIN_IMAGES} images on each side, got "
                         f"{len(reference)} reference and {len(camera)} camera images")
    ref_planes = [grey(image) for image in reference]
    cam_planes = [grey(image) for image in camera]
    target = np.mean([band_energies(p) for p in cam_planes], axis=0)
    if not np.all(target > FLAT_ENERGY):
        raise ValueError("the camera's images are flat (no texture in at least one frequency band): a capped lens, "
                         "a dark or saturated frame reads as no condition at all")
    brightness = float(np.mean([p.mean() for p in cam_planes])), float(np.mean([p.mean() for p in ref_planes]))
    best = _solved(ref_planes, target, brightness)
    block_target = float(np.mean([blockiness(p) for p in cam_planes]))
    block_reference = float(np.mean([blockiness(p) for p in ref_planes]))
    if block_target <= block_reference * (1 + BLOCK_TOLERANCE):
        return best
    sample = [reference[i] for i in np.linspace(0, len(reference) - 1, min(RENDER_SAMPLE, len(reference))).astype(int)]
    return _searched(best, sample, target, block_target)


def _solved(ref_planes: Sequence[np.ndarray], target: np.ndarray, brightness: tuple[float, float]) -> CameraCondition:
    """Gain, blur and noise without compression: per blur, gain and noise by non-negative least squares."""
    response = noise_response()
    best: CameraCondition | None = None
    for blur in BLUR_GRID:
        blurred = np.mean([band_energies(gaussian_filter(p, blur) if blur else p) for p in ref_planes], axis=0)
        # target_k ~ g2 * blurred_k + n2 * response_k, in relative terms (every band counts alike)
        design = np.stack([blurred, response], axis=1) / target[:, None]
        (g2, n2), _ = nnls(design, np.ones_like(target))
        misfit = _log_misfit(g2 * blurred + n2 * response, target)
        if best is None or misfit < best.misfit - 1e-9:
            gain = float(np.sqrt(g2))
            best = CameraCondition(gain, brightness[0] - gain * brightness[1], float(blur), float(np.sqrt(n2)),
                                   misfit=misfit)
    assert best is not None
    return best


def _searched(start: CameraCondition, sample: Sequence[Image.Image], target: np.ndarray,
              block_target: float) -> CameraCondition:
    """Quality (or none) and noise, then blur, by rendering ``sample`` under each candidate (coordinate search)."""
    def scored(condition: CameraCondition) -> CameraCondition:
        planes = [grey(condition.render(image, seed=i)) for i, image in enumerate(sample)]
        bands = np.mean([band_energies(p) for p in planes], axis=0)
        block = float(np.mean([blockiness(p) for p in planes]))
        misfit = float(np.sqrt((_log_misfit(bands, target) ** 2 * bands.size + np.log(block / block_target) ** 2)
                               / (bands.size + 1)))
        return replace(condition, misfit=misfit)

    best = min((scored(replace(start, jpeg_quality=q, noise_sigma=n)) for q in (None, *JPEG_GRID) for n in NOISE_GRID),
               key=lambda c: c.misfit)
    return min((scored(replace(best, blur_sigma=b)) for b in COARSE_BLUR), key=lambda c: c.misfit)


def _log_misfit(fitted: np.ndarray, target: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.log(np.maximum(fitted, 1e-9)) - np.log(target)) ** 2)))
