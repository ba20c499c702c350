"""Augmentations that mimic production variability, not generic photo augmentations.

Lighting and contrast drift (ageing LEDs, night shift), focus drift (blur), sensor noise (gain),
JPEG compression (camera settings), small part shifts and rotations (fixture play).
"""

from __future__ import annotations

import io
import math
import random
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

if TYPE_CHECKING:
    from inspectloop.train.config import TrainConfig


ZOOM_CHANCE = 0.5  # pose=zoom: the share of draws that zoom in; the rest keep the whole image in view
ZOOM_SMALLEST = 0.5  # the smallest zoom window, as a share of each side


class ProductionAugment:
    """Random production-like perturbations of a PIL image (L or RGB), drawn from ``rng``.

    ``keep`` (pose=zoom) is where the image's defect lies: its annotated boxes as fractions of the image
    (x0, y0, x1, y1 rows), an empty array for a good image (nothing to keep) or None when a defect's place is
    unknown (never zoomed: a zoom could cut the defect out while the label stays).
    """

    def __init__(self, strength: float = 1.0, flips: bool = True, pose: str = "crop") -> None:
        self.strength = strength
        self.flips = flips
        self.pose = pose

    def __call__(self, image: Image.Image, rng: random.Random, keep: np.ndarray | None = None) -> Image.Image:
        s = self.strength
        if self.flips:
            if rng.random() < 0.5:
                image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
                keep = None if keep is None else _flipped(keep, (0, 2))
            if rng.random() < 0.5:
                image = image.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
                keep = None if keep is None else _flipped(keep, (1, 3))
        if self.pose == "zoom" and keep is not None and rng.random() < ZOOM_CHANCE:
            return photometric(zoomed(image, keep, rng), rng, s)
        return photometric(_geometry(image, rng, s, contain=self.pose in ("contain", "zoom")), rng, s)


def zoomed(image: Image.Image, keep: np.ndarray, rng: random.Random, smallest: float = ZOOM_SMALLEST) -> Image.Image:
    """A random window of ``image`` (each side ``smallest`` to all of the image's) that holds every box of
    ``keep``, stretched back to the image's size. A camera that frames a part tighter than the training
    images did puts a defect on the very edge of the view, without the background around the part; a model
    that learnt the defect by its surroundings misses it there (magnetic tile's edge breaks, see the README)."""
    width, height = image.size
    x0, x1 = _window(keep[:, 0].min(), keep[:, 2].max(), smallest, rng) if len(keep) else _window(1, 0, smallest, rng)
    y0, y1 = _window(keep[:, 1].min(), keep[:, 3].max(), smallest, rng) if len(keep) else _window(1, 0, smallest, rng)
    left, top = math.floor(x0 * width), math.floor(y0 * height)  # outwards: the kept boxes stay whole
    box = (left, top, max(min(math.ceil(x1 * width), width), left + 1), max(min(math.ceil(y1 * height), height), top + 1))
    return image.crop(box).resize((width, height), Image.Resampling.BILINEAR)


def _window(low: float, high: float, smallest: float, rng: random.Random) -> tuple[float, float]:
    """A span of [0, 1] at least ``smallest`` long that covers [low, high] (nothing to cover when low > high)."""
    length = max(rng.uniform(smallest, 1.0), high - low)
    if low > high:
        start = rng.uniform(0.0, 1.0 - length)
    else:
        latest = min(low, 1.0 - length)
        start = rng.uniform(min(max(0.0, high - length), latest), latest)  # min(): rounding when length = high - low
    return start, start + length


def _flipped(boxes: np.ndarray, columns: tuple[int, int]) -> np.ndarray:
    flipped = boxes.copy()
    flipped[:, columns[0]], flipped[:, columns[1]] = 1 - boxes[:, columns[1]], 1 - boxes[:, columns[0]]
    return flipped


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
