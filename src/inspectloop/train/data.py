"""Images of a dataset version, decoded once and held in memory at training resolution.

Decoding is paid once per image and preprocessing, not once per run: the decoded, resized pixels are kept
on disk (:class:`ImageCache`, lossless) so that the next run, a resumed run or a run on a new dataset
version reads them back. Augmentations run on these small images every epoch, after the cache.
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
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
CACHE_FORMAT = 1  # part of every cache key: bump it when decoding or resizing changes what an entry holds


class ImageCache:
    """Decoded images resized to the model input, on disk, keyed by image SHA-256 and preprocessing.

    Entries are the raw pixel arrays (``.npy``: the cached pixels are the decoded pixels, so a run reads the
    same images with or without the cache, and reading one back is a copy, not a decode) written atomically,
    so concurrent runs may share the folder; deleting it only costs decoding again.
    """

    def __init__(self, folder: Path, preprocess: Preprocess, *, draft: bool = False, mode: str | None = None) -> None:
        # draftwh: a draft decode keeps the input's width and height (it once kept its longer side on both)
        key = f"v{CACHE_FORMAT}-{preprocess.key}-{mode or 'any'}-{'draftwh' if draft else 'full'}"
        self.folder = Path(folder) / key

    def path(self, sha256: str) -> Path:
        return self.folder / sha256[:2] / f"{sha256}.npy"

    def get(self, sha256: str) -> Image.Image | None:
        """The cached image, or None when it is not (or not readably) cached."""
        try:
            pixels = np.load(self.path(sha256), allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None  # absent or torn by a crash: decode again
        return Image.fromarray(pixels)  # uint8 (H, W) is L, (H, W, 3) is RGB: the modes a run decodes to

    def put(self, sha256: str, image: Image.Image) -> None:
        path = self.path(sha256)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        with open(tmp, "wb") as out:
            np.save(out, np.asarray(image), allow_pickle=False)
        os.replace(tmp, path)


@dataclass
class ImageSet:
    """Decoded images (resized to the model input) with integer labels and metadata."""

    images: list[Image.Image]
    labels: np.ndarray
    digests: list[str]
    graded: GradedTargets | None = None  # soft / grade-aware targets (train.ordinal); None: plain labels
    keep: list[np.ndarray | None] | None = None  # where each image's defect lies, for pose=zoom (train.places)

    def __len__(self) -> int:
        return len(self.images)

    def take(self, index: Sequence[int] | np.ndarray) -> ImageSet:
        """The images at ``index``, with their labels, targets and defect places."""
        index = np.asarray(index, dtype=np.int64)
        return ImageSet([self.images[i] for i in index], self.labels[index], [self.digests[i] for i in index],
                        None if self.graded is None else self.graded.take(index),
                        None if self.keep is None else [self.keep[i] for i in index])


def load_image_set(items: Sequence[DatasetItem], class_names: Sequence[str], read: Loader,
                   preprocess: Preprocess, *, draft: bool = False, mode: str | None = None,
                   progress: Callable[[int, int], None] | None = None, cache: ImageCache | None = None) -> ImageSet:
    """Decode and resize every item once (or read it from ``cache``); augmentation then works on small images."""
    index = {name: i for i, name in enumerate(class_names)}
    images = []
    for n, item in enumerate(items, start=1):
        images.append(decoded_image(item.sha256, read, preprocess, draft, mode, cache))
        if progress and (n % 50 == 0 or n == len(items)):
            progress(n, len(items))
    labels = np.array([index[item.label] for item in items], dtype=np.int64)
    return ImageSet(images=images, labels=labels, digests=[item.sha256 for item in items])


def decoded_image(sha256: str, read: Loader, preprocess: Preprocess, draft: bool, mode: str | None,
                  cache: ImageCache | None) -> Image.Image:
    """One image at training resolution: from ``cache`` when there, else decoded, resized and cached."""
    cached = None if cache is None else cache.get(sha256)
    if cached is not None:
        return cached
    image = preprocess.resize(load_image(read(sha256), name=sha256[:12],
                                         draft=preprocess.draft_size if draft else None, mode=mode))
    if cache is not None:
        cache.put(sha256, image)
    return image


def to_batch(images: Sequence[Image.Image], preprocess: Preprocess) -> torch.Tensor:
    return torch.from_numpy(np.stack([preprocess.to_array(image) for image in images]))


def augmented_batch(images: Sequence[Image.Image], preprocess: Preprocess, augment: ProductionAugment | None,
                    rng: random.Random, keep: Sequence[np.ndarray | None] | None = None) -> torch.Tensor:
    if augment is None:
        return to_batch(images, preprocess)
    places = keep if keep is not None else [None] * len(images)
    return to_batch([augment(image, rng, place) for image, place in zip(images, places, strict=True)], preprocess)


def balanced_order(labels: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Indices drawn so every class is seen equally often: rare defects are the ones that matter."""
    per_class = np.bincount(labels)
    weights = 1.0 / per_class[labels]
    return rng.choice(len(labels), size=count, replace=True, p=weights / weights.sum())
