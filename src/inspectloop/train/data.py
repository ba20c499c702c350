"""Images of a dataset version, decoded once and held in memory at training resolution."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from inspectloop.domain import DatasetItem
from inspectloop.runtime.images import load_image
from inspectloop.runtime.preprocess import Preprocess
from inspectloop.train.augment import ProductionAugment

if TYPE_CHECKING:
    from inspectloop.train.ordinal import GradedTargets

Loader = Callable[[str], bytes]


@dataclass
class ImageSet:
    """Decoded images (resized to the model input) with integer labels and metadata."""

    images: list[Image.Image]
    labels: np.ndarray
    digests: list[str]
    graded: GradedTargets | None = None  # soft / grade-aware targets (train.ordinal); None: plain labels

    def __len__(self) -> int:
        return len(self.images)


def load_image_set(items: Sequence[DatasetItem], class_names: Sequence[str], read: Loader,
                   preprocess: Preprocess, *, draft: bool = False, mode: str | None = None,
                   progress: Callable[[int, int], None] | None = None) -> ImageSet:
    """Decode and resize every item once; augmentation then works on small images (fast on a CPU)."""
    index = {name: i for i, name in enumerate(class_names)}
    images = []
    for n, item in enumerate(items, start=1):
        image = load_image(read(item.sha256), name=item.sha256[:12], draft=preprocess.input_size if draft else None,
                           mode=mode)
        images.append(preprocess.resize(image))
        if progress and (n % 50 == 0 or n == len(items)):
            progress(n, len(items))
    labels = np.array([index[item.label] for item in items], dtype=np.int64)
    return ImageSet(images=images, labels=labels, digests=[item.sha256 for item in items])


def to_batch(images: Sequence[Image.Image], preprocess: Preprocess) -> torch.Tensor:
    return torch.from_numpy(np.stack([preprocess.to_array(image) for image in images]))


def augmented_batch(images: Sequence[Image.Image], preprocess: Preprocess, augment: ProductionAugment | None,
                    rng: random.Random) -> torch.Tensor:
    if augment is None:
        return to_batch(images, preprocess)
    return to_batch([augment(image, rng) for image in images], preprocess)


def balanced_order(labels: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Indices drawn so every class is seen equally often: rare defects are the ones that matter."""
    per_class = np.bincount(labels)
    weights = 1.0 / per_class[labels]
    return rng.choice(len(labels), size=count, replace=True, p=weights / weights.sum())
