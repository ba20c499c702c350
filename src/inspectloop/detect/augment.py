"""Box-aware augmentations: flips and scale/crop that move the boxes with the pixels, then the
production family's lighting, focus, noise and JPEG (:func:`inspectloop.train.augment.photometric`);
and the YOLO family's mosaic, four training views around a random centre in one input."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from PIL import Image

from inspectloop.train.augment import photometric

MIN_SIDE = 2.0  # pixels: a box cut thinner than this by a crop is no longer a visible defect
MIN_KEPT = 0.3  # share of a box's area that must stay in view for it to still be labelled


@dataclass(frozen=True)
class BoxAugment:
    """Random production-like views of an image of the model input's size and its boxes (K, 4).

    ``scale`` is the range of zoom (a zoomed-out view is padded with the image's mean grey); ``flips``
    mirrors left-right and top-bottom (turn off when orientation carries meaning).
    """

    strength: float = 1.0
    flips: bool = True
    scale: tuple[float, float] = (0.75, 1.25)

    def __call__(self, image: Image.Image, boxes: np.ndarray, labels: np.ndarray,
                 rng: random.Random) -> tuple[Image.Image, np.ndarray, np.ndarray]:
        width, height = image.size
        boxes = boxes.astype(np.float32).copy()
        if self.flips and rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            boxes[:, [0, 2]] = width - boxes[:, [2, 0]]
        if self.flips and rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
            boxes[:, [1, 3]] = height - boxes[:, [3, 1]]
        if rng.random() < 0.5 * self.strength:
            image, boxes, labels = zoom(image, boxes, labels, rng.uniform(*self.scale), rng)
        return photometric(image, rng, self.strength), boxes, labels


def zoom(image: Image.Image, boxes: np.ndarray, labels: np.ndarray, factor: float,
         rng: random.Random) -> tuple[Image.Image, np.ndarray, np.ndarray]:
    """Scale by ``factor`` and cut (or pad) back to the original size at a random offset; boxes follow,
    clipped, and those mostly cut away are dropped."""
    width, height = image.size
    scaled = image.resize((max(1, round(width * factor)), max(1, round(height * factor))), Image.Resampling.BILINEAR)
    dx = rng.randint(min(0, width - scaled.width), max(0, width - scaled.width))
    dy = rng.randint(min(0, height - scaled.height), max(0, height - scaled.height))
    fill = int(np.asarray(image.convert("L")).mean())
    canvas = Image.new(image.mode, (width, height), fill if image.mode == "L" else (fill,) * len(image.getbands()))
    canvas.paste(scaled, (dx, dy))
    moved = boxes * factor + np.array([dx, dy, dx, dy], dtype=np.float32)
    return (canvas, *clip_boxes(moved, labels, width, height))


View = tuple[Image.Image, np.ndarray, np.ndarray]  # an input-sized image, its boxes (K, 4) and labels (K,)


def mosaic(views: list[View], rng: random.Random) -> View:
    """Four views of the input's size around a random centre, cut back to one input (YOLO's mosaic without
    its affine): each view keeps its scale, and its boxes are clipped where the cut crosses them (those mostly
    cut away are dropped). A defect then meets other surfaces, other defects and the cut's edges in one view."""
    if len(views) != 4:
        raise ValueError(f"a mosaic needs 4 views, got {len(views)}")
    image = views[0][0]
    size = image.width
    cx, cy = rng.randint(size // 2, 3 * size // 2), rng.randint(size // 2, 3 * size // 2)  # in a 2x canvas
    canvas = Image.new(image.mode, (size, size))
    boxes, labels = [], []
    for (view, view_boxes, view_labels), (right, below) in zip(views, ((0, 0), (1, 0), (0, 1), (1, 1)), strict=True):
        x = cx - size * (1 - right) - size // 2  # the view's corner in the output (the canvas cut at size // 2)
        y = cy - size * (1 - below) - size // 2
        canvas.paste(view, (x, y))
        kept, kept_labels = clip_boxes(view_boxes.reshape(-1, 4) + np.array([x, y, x, y], dtype=np.float32),
                                       view_labels, size, size)
        boxes.append(kept)
        labels.append(kept_labels)
    return canvas, np.concatenate(boxes).reshape(-1, 4), np.concatenate(labels).astype(np.int64)


def clip_boxes(boxes: np.ndarray, labels: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Boxes clipped to the image; those left thinner than MIN_SIDE or with under MIN_KEPT of their area dropped."""
    area = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    clipped = np.clip(boxes, 0, [width, height, width, height]).astype(np.float32)
    sides = clipped[:, 2:] - clipped[:, :2]
    kept = (sides.min(1) >= MIN_SIDE) & (sides.prod(1) >= MIN_KEPT * np.maximum(area, 1e-9))
    return clipped[kept].reshape(-1, 4), labels[kept]
