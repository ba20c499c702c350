"""The training image cache of a dataset version, and filling it ahead of training on the batch engine.

A run decodes each image once and keeps it at training resolution (:class:`~inspectloop.train.data.ImageCache`).
For a large version of big frames that first decode is the slow part of the first run: ``fill_image_cache``
spreads it over this machine's cores with Ray (:mod:`inspectloop.batch`). It fills exactly the entries the
run will read (same input size, colour mode and JPEG draft: :func:`training_images` is what the run uses),
with the same pixels either way. The workers write into the workspace's cache folder, so on a cluster the
workspace must be on a folder every node mounts at the same path.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from inspectloop.batch.engine import Engine, LocalEngine
from inspectloop.datasets import load_version
from inspectloop.domain import DatasetVersion
from inspectloop.runtime.preprocess import Preprocess
from inspectloop.store.blobs import BlobStore
from inspectloop.train.config import TrainConfig
from inspectloop.train.data import ImageCache, decoded_image
from inspectloop.train.record import colour_mode
from inspectloop.workspace import Workspace


def training_images(workspace: Workspace, version: DatasetVersion,
                    config: TrainConfig) -> tuple[Preprocess, str, ImageCache]:
    """The preprocessing, colour mode and image cache a training run with ``config`` uses on ``version``."""
    from inspectloop.models.backbones import backbone_spec

    spec = backbone_spec(config.backbone)
    preprocess = Preprocess(config.input_size, spec.mean, spec.std)
    colour = colour_mode(workspace, version, config)
    return preprocess, colour, ImageCache(workspace.cache_dir / "images", preprocess, draft=config.jpeg_draft,
                                          mode=colour)


@dataclass
class CacheFill:
    version: str
    images: int
    decoded: int  # the rest were cached already
    folder: str
    engine: dict[str, Any]
    seconds: float


@dataclass
class CacheImages:
    """Decode and cache images at training resolution (returns how many it decoded: 1 or 0 each)."""

    blobs: BlobStore
    cache: ImageCache
    preprocess: Preprocess
    draft: bool
    mode: str

    def setup(self) -> None:
        """Nothing to open: decoding needs no model."""

    def __call__(self, digests: list[str]) -> list[int]:
        return [self._fill(digest) for digest in digests]

    def _fill(self, digest: str) -> int:
        if self.cache.path(digest).exists():  # another worker or run got there first
            return 0
        decoded_image(digest, self.blobs.get, self.preprocess, self.draft, self.mode, self.cache)
        return 1


def fill_image_cache(workspace: Workspace, version: str = "latest", config: TrainConfig | None = None, *,
                     engine: Engine | None = None) -> CacheFill:
    """Put every image of a dataset version not yet cached into the cache a run with ``config`` will read."""
    started = time.perf_counter()
    config = config or TrainConfig()
    chosen = load_version(workspace, version)
    preprocess, colour, cache = training_images(workspace, chosen, config)
    digests = sorted({item.sha256 for item in chosen.items})
    pending = [digest for digest in digests if not cache.path(digest).exists()]
    engine = engine or LocalEngine()
    decoded = sum(engine.map(CacheImages(workspace.blobs, cache, preprocess, config.jpeg_draft, colour), pending))
    return CacheFill(chosen.name, len(digests), decoded, str(cache.folder), engine.describe(),
                     time.perf_counter() - started)
