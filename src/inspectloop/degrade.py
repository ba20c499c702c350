"""Realistic, seeded production degradations for the year-long benchmark: image -> image, severity in [0, 1].

Each function leaves the image unchanged at severity 0 and keeps its mode (``L`` or ``RGB``):

- :func:`light_decay`: LEDs age: gain falls to 60% and a slight gamma darkens mid-tones.
- :func:`lens_dust`: soft, low-contrast blotches at positions fixed by the camera's seed.
- :func:`focus_drift`: Gaussian blur, sigma up to 2.5 pixels.
- :func:`jpeg_change`: recompression, quality 95 down to 25.
- :func:`camera_shift`: a small translation and rotation, edges filled by replication.
- :func:`sensor_noise`: additive Gaussian noise, sigma up to 12 grey levels.

:class:`DegradationSchedule` maps a month of the simulated year to a severity per degradation.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

MAX_GAIN_LOSS = 0.4
MAX_GAMMA = 1.15
MAX_BLUR_SIGMA = 2.5
JPEG_QUALITY = (95, 25)  # at severity 0 and 1
MAX_SHIFT_PX = 6.0
MAX_ROTATION_DEG = 1.5
MAX_NOISE_SIGMA = 12.0
DUST_BLOTCHES = 6
MAX_DUST_STRENGTH = 0.6  # share of a blotch's centre pulled toward the local mean at severity 1
_DUST_REACH = 2.5  # the blotch mask is exactly zero beyond this many radii: clean glass stays clean


def _check_severity(severity: float) -> float:
    if not 0.0 <= severity <= 1.0 or math.isnan(severity):
        raise ValueError(f"severity must be in [0, 1], got {severity}")
    return float(severity)


def _apply_float(image: Image.Image, change: Callable[[np.ndarray], np.ndarray]) -> Image.Image:
    """Run ``change`` on the pixels as float in [0, 255] and write them back, rounded, in the same mode."""
    pixels = np.asarray(image, dtype=np.float64)
    return Image.fromarray(np.clip(np.rint(change(pixels)), 0, 255).astype(np.uint8), image.mode)


def light_decay(image: Image.Image, severity: float) -> Image.Image:
    """Illumination decay: gain ``1 - 0.4 s`` and gamma ``1 + 0.15 s`` on the normalised intensity."""
    s = _check_severity(severity)
    if s == 0.0:
        return image.copy()
    gain, gamma = 1.0 - MAX_GAIN_LOSS * s, 1.0 + (MAX_GAMMA - 1.0) * s
    return _apply_float(image, lambda x: 255.0 * (gain * x / 255.0) ** gamma)


@dataclass(frozen=True)
class Blotch:
    """One dust blotch: centre and radius as fractions of the image's width, height and short side."""

    x: float
    y: float
    radius: float


def dust_blotches(camera_seed: int, count: int = DUST_BLOTCHES) -> tuple[Blotch, ...]:
    """The camera's dust: the same positions every month, so dust accumulates where it sits."""
    rng = np.random.default_rng([camera_seed, 0xD057])
    return tuple(Blotch(float(rng.uniform(0.1, 0.9)), float(rng.uniform(0.1, 0.9)), float(rng.uniform(0.03, 0.07)))
                 for _ in range(count))


def dust_mask(size: tuple[int, int], camera_seed: int) -> np.ndarray:
    """(H, W) blotch opacity in [0, 1]: Gaussian-profiled discs, exactly 0 beyond 2.5 radii."""
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    mask = np.zeros((height, width))
    for blotch in dust_blotches(camera_seed):
        radius = blotch.radius * min(width, height)
        r2 = ((xx - blotch.x * width) ** 2 + (yy - blotch.y * height) ** 2) / (radius * radius)
        mask = np.maximum(mask, np.where(r2 <= _DUST_REACH ** 2, np.exp(-0.5 * r2), 0.0))
    return mask


def lens_dust(image: Image.Image, severity: float, camera_seed: int) -> Image.Image:
    """Out-of-focus dust on the lens: in each blotch, pixels are pulled toward a dimmed local mean.

    That lowers local contrast (the scattered light is a haze) and slightly darkens, only where the
    blotches are; everywhere else the image is untouched.
    """
    s = _check_severity(severity)
    if s == 0.0:
        return image.copy()
    alpha = MAX_DUST_STRENGTH * s * dust_mask(image.size, camera_seed)
    if image.mode == "RGB":
        alpha = alpha[:, :, None]
    haze_radius = max(2, min(image.size) // 16)
    haze = np.asarray(image.filter(ImageFilter.BoxBlur(haze_radius)), dtype=np.float64) * 0.9
    return _apply_float(image, lambda x: (1.0 - alpha) * x + alpha * haze)


def focus_drift(image: Image.Image, severity: float) -> Image.Image:
    """Defocus as a Gaussian blur of sigma ``2.5 s`` pixels."""
    s = _check_severity(severity)
    if s == 0.0:
        return image.copy()
    return image.filter(ImageFilter.GaussianBlur(MAX_BLUR_SIGMA * s))


def jpeg_change(image: Image.Image, severity: float) -> Image.Image:
    """A change of compression setting: re-encode as JPEG at quality 95 (s -> 0) down to 25 (s = 1)."""
    s = _check_severity(severity)
    if s == 0.0:
        return image.copy()
    best, worst = JPEG_QUALITY
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=round(best - (best - worst) * s))
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return decoded.convert(image.mode)


def shift(image: Image.Image, dx: float, dy: float, angle_deg: float = 0.0) -> Image.Image:
    """Move the image content by (dx, dy) pixels (right, down) and rotate it by ``angle_deg`` about its centre.

    Uncovered borders repeat the nearest edge pixel (what a slightly moved camera sees is more of
    the same surface, not black).
    """
    margin = math.ceil(abs(dx) + abs(dy) + abs(math.radians(angle_deg)) * max(image.size)) + 2
    pixels = np.asarray(image)
    pad = ((margin, margin), (margin, margin)) + (((0, 0),) if pixels.ndim == 3 else ())
    padded = Image.fromarray(np.pad(pixels, pad, mode="edge"), image.mode)
    centre = (padded.width / 2.0, padded.height / 2.0)
    moved = padded.rotate(angle_deg, resample=Image.Resampling.BILINEAR, center=centre, translate=(dx, dy))
    return moved.crop((margin, margin, margin + image.width, margin + image.height))


def camera_shift(image: Image.Image, severity: float, camera_seed: int) -> Image.Image:
    """The camera creeps: up to 6 px of translation and 1.5 degrees of rotation, direction fixed by the seed."""
    s = _check_severity(severity)
    if s == 0.0:
        return image.copy()
    rng = np.random.default_rng([camera_seed, 0x5417])
    direction = float(rng.uniform(0.0, 2.0 * math.pi))
    turn = float(rng.choice([-1.0, 1.0]))
    dx, dy = MAX_SHIFT_PX * s * math.cos(direction), MAX_SHIFT_PX * s * math.sin(direction)
    return shift(image, dx, dy, turn * MAX_ROTATION_DEG * s)


def sensor_noise(image: Image.Image, severity: float, seed: int) -> Image.Image:
    """Additive Gaussian noise of sigma ``12 s`` grey levels (a warmer or ageing sensor, more gain)."""
    s = _check_severity(severity)
    if s == 0.0:
        return image.copy()
    rng = np.random.default_rng([seed, 0x0015E])
    sigma = MAX_NOISE_SIGMA * s
    return _apply_float(image, lambda x: x + rng.normal(0.0, sigma, x.shape))


# --- a year of degradation -----------------------------------------------------------------------------

DEGRADATIONS = ("camera_shift", "light_decay", "lens_dust", "focus_drift", "sensor_noise", "jpeg_change")


@dataclass(frozen=True)
class Ramp:
    """Severity 0 until ``start_month``, rising linearly to ``peak`` at ``full_month`` and holding there.

    ``start_month == full_month`` is a step (a setting changed on one day).
    """

    start_month: float
    full_month: float
    peak: float = 1.0

    def __post_init__(self) -> None:
        if self.full_month < self.start_month or not 0.0 <= self.peak <= 1.0:
            raise ValueError(f"a ramp needs start_month <= full_month and peak in [0, 1], got {self}")

    def severity(self, month: float) -> float:
        """The severity at ``month`` (months since deployment, fractional allowed)."""
        if month < self.start_month:
            return 0.0
        if month >= self.full_month:
            return self.peak
        return self.peak * (month - self.start_month) / (self.full_month - self.start_month)


@dataclass(frozen=True)
class DegradationSchedule:
    """Per-degradation ramps for one camera (``camera_seed`` fixes its dust and shift direction)."""

    ramps: Mapping[str, Ramp] = field(default_factory=dict)
    camera_seed: int = 0

    def __post_init__(self) -> None:
        unknown = sorted(set(self.ramps) - set(DEGRADATIONS))
        if unknown:
            raise ValueError(f"unknown degradations {unknown}; known: {', '.join(DEGRADATIONS)}")

    @classmethod
    def year(cls, camera_seed: int = 0) -> DegradationSchedule:
        """A plausible first year: light fades from month 1, dust from 3, noise from 4, focus drifts
        from 5, the JPEG setting changes at month 7, the camera is knocked at month 9."""
        return cls({"light_decay": Ramp(1, 12, 0.7), "lens_dust": Ramp(3, 12, 0.8), "sensor_noise": Ramp(4, 12, 0.5),
                    "focus_drift": Ramp(5, 12, 0.6), "jpeg_change": Ramp(7, 7, 0.6), "camera_shift": Ramp(9, 9, 0.5)},
                   camera_seed)

    def severities(self, month: float) -> dict[str, float]:
        """Severity of every scheduled degradation at ``month``."""
        return {name: ramp.severity(month) for name, ramp in self.ramps.items()}

    def apply(self, image: Image.Image, month: float, image_seed: int = 0) -> Image.Image:
        """``image`` as this camera would capture it at ``month``: geometry, light, optics, sensor, encoding."""
        levels = self.severities(month)
        for name in DEGRADATIONS:  # the physical order of the imaging chain
            level = levels.get(name, 0.0)
            if level > 0.0:
                image = self._step(name, image, level, image_seed)
        return image

    def _step(self, name: str, image: Image.Image, level: float, image_seed: int) -> Image.Image:
        if name == "lens_dust":
            return lens_dust(image, level, self.camera_seed)
        if name == "camera_shift":
            return camera_shift(image, level, self.camera_seed)
        if name == "sensor_noise":
            return sensor_noise(image, level, image_seed)
        simple: dict[str, Callable[[Image.Image, float], Image.Image]] = {
            "light_decay": light_decay, "focus_drift": focus_drift, "jpeg_change": jpeg_change}
        return simple[name](image, level)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"camera_seed": self.camera_seed,
                "ramps": {name: [r.start_month, r.full_month, r.peak] for name, r in self.ramps.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DegradationSchedule:
        """Inverse of :meth:`to_dict`."""
        return cls({name: Ramp(*values) for name, values in data["ramps"].items()}, int(data.get("camera_seed", 0)))
