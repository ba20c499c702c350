"""Augmentations that mimic production variability, not generic photo augmentations.

Lighting and contrast drift (ageing LEDs, night shift), focus drift (blur), sensor noise (gain),
JPEG compression (camera settings), small part shifts and rotations (fixture play).
"""

from __future__ import annotations

import io
import random
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

if TYPE_CHECKING:
    from inspectloop.train.config import TrainConfig


class ProductionAugment:
    """Random production-like perturbations of a PIL image (L or RGB), drawn from ``rng``."""

    def __init__(self, strength: float = 1.0, flips: bool = True, pose: str = "crop") -> None:
        self.strength = strength
        self.flips = flips
        self.pose = pose

    def __call__(self, image: Image.Image, rng: random.Random) -> Image.Image:
        s = self.strength
        if self.flips:
            if rng.random() < 0.5:
                image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            if rng.random() < 0.5:
                image = image.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
        return photometric(_geometry(image, rng, s, contain=self.pose == "contain"), rng, s)


def photometric(image: Image.Image, rng: random.Random, strength: float = 1.0) -> Image.Image:
    """The pixel-only part of the production family (lighting, contrast, focus, sensor noise, JPEG): it
    moves nothing, so box-aware augmentation (:mod:`inspectloop.detect.augment`) reuses it as is."""
    s = strength
    image = ImageEnhance.Brightness(image).enhance(1 + rng.uniform(-0.3, 0.3) * s)
    image = ImageEnhance.Contrast(image).enhance(1 + rng.uniform(-0.3, 0.3) * s)
    if rng.random() < 0.3 * s:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))
    if rng.random() < 0.3 * s:
        image = _sensor_noise(image, rng.uniform(2, 8), rng)
    if rng.random() < 0.3 * s:
        image = _jpeg(image, rng.randint(40, 90))
    return image


def _geometry(image: Image.Image, rng: random.Random, s: float, contain: bool = False) -> Image.Image:
    width, height = image.size
    angle = rng.uniform(-6, 6) * s
    dx, dy = (rng.uniform(-0.05, 0.05) * s * width, rng.uniform(-0.05, 0.05) * s * height)
    scale = 1 + rng.uniform(-0.08, 0.08) * s
    # Reflect-free affine: fill with the mean grey so borders look like out-of-focus surface, not black.
    fill = int(np.asarray(image.convert("L")).mean())
    fill_value: int | tuple[int, ...] = fill if image.mode == "L" else (fill, fill, fill)
    if contain:
        return _contained(image, angle, dx / width, dy / height, scale, fill_value)
    return image.rotate(angle, resample=Image.Resampling.BILINEAR, translate=(dx, dy), fillcolor=fill_value) \
        .resize((round(width * scale), round(height * scale)), Image.Resampling.BILINEAR) \
        .crop(_centre_box(round(width * scale), round(height * scale), width, height))


def _contained(image: Image.Image, angle: float, shift_x: float, shift_y: float, scale: float,
               fill: int | tuple[int, ...]) -> Image.Image:
    """The same pose, with every pixel of ``image`` kept in view: rotated with its corners, shrunk to fit (never
    zoomed in) and shifted only within the margin that leaves. A crack on a part's very edge, which a cropping
    shift or zoom would cut from the view while the label still says crack, stays in the picture."""
    width, height = image.size
    turned = image.rotate(angle, resample=Image.Resampling.BILINEAR, expand=True, fillcolor=fill)
    factor = min(width / turned.width, height / turned.height) * min(scale, 1.0)
    size = (max(1, round(turned.width * factor)), max(1, round(turned.height * factor)))
    canvas = Image.new(image.mode, (width, height), fill)
    margin_x, margin_y = width - size[0], height - size[1]
    # shift_x, shift_y in [-0.05, 0.05]: -0.05 puts the shrunk image against one side, +0.05 the other.
    canvas.paste(turned.resize(size, Image.Resampling.BILINEAR),
                 (round(margin_x * (0.5 + 10 * shift_x)), round(margin_y * (0.5 + 10 * shift_y))))
    return canvas


def _centre_box(width: int, height: int, target_w: int, target_h: int) -> tuple[int, int, int, int]:
    left, top = (width - target_w) // 2, (height - target_h) // 2
    return left, top, left + target_w, top + target_h


def _sensor_noise(image: Image.Image, sigma: float, rng: random.Random) -> Image.Image:
    pixels = np.asarray(image, dtype=np.float32)
    noise = np.random.default_rng(rng.randrange(2**32)).normal(0, sigma, pixels.shape)
    return Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8), mode=image.mode)


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert(image.mode)


def augment_for(config: TrainConfig) -> ProductionAugment | None:
    """The augmentation a training config asks for (every setting that shapes it, in one place)."""
    return build_augment(config.augment, config.flips, config.pose)


def build_augment(preset: str, flips: bool, pose: str = "crop") -> ProductionAugment | None:
    if preset == "none":
        return None
    return ProductionAugment(strength=1.0 if preset == "production" else 0.5, flips=flips, pose=pose)
