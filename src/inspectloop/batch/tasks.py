"""The batch tasks: score stored images with a model, embed them, check drift windows.

Each task carries only what pickles (the model file's bytes, the blob store's settings), opens the
model once per worker in ``setup`` and handles images one by one (batch of one, as on the line), so
a result never depends on which chunk or which worker an image fell in.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inspectloop.errors import ImageError, InspectloopError
from inspectloop.monitor.drift import CameraWindow, DriftBaseline, DriftSignal, check_drift
from inspectloop.runtime import EdgeModel
from inspectloop.store.blobs import BlobStore


@dataclass(frozen=True)
class ImageScore:
    """A model's verdict on one stored image (what the prediction log keeps, without the latency)."""

    sha256: str
    label: str | None
    decision: str | None
    confidence: float | None
    scores: dict[str, float] = field(default_factory=dict)
    error: str | None = None  # the image could not be read or decoded: left out, named in the report


def open_model(data: bytes, open_file: Any) -> Any:
    """``open_file(path)`` on the model bytes written to a private temporary file (the runtime opens paths;
    it reads and hash-checks the file once, so the file goes as soon as the model is open)."""
    descriptor, name = tempfile.mkstemp(prefix="inspectloop-batch-", suffix=".onnx")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        return open_file(Path(name))
    finally:
        os.unlink(name)


@dataclass
class ScoreImages:
    """Score stored images (by digest) with one model: its label, decision, confidence and scores."""

    model: bytes
    blobs: BlobStore
    _edge: EdgeModel | None = field(default=None, init=False, repr=False)

    def setup(self) -> None:
        self._edge = open_model(self.model, EdgeModel)

    def __call__(self, digests: list[str]) -> list[ImageScore]:
        return [self._score(digest) for digest in digests]

    def _score(self, digest: str) -> ImageScore:
        assert self._edge is not None, "setup() runs before the first chunk"
        try:
            prediction = self._edge.predict(self.blobs.get(digest))
        except (OSError, ImageError) as exc:
            return ImageScore(digest, None, None, None, error=_reason(exc))
        return ImageScore(digest, prediction.label, str(prediction.decision), float(prediction.confidence),
                          {name: float(score) for name, score in prediction.scores.items()})


@dataclass
class EmbedImages:
    """Backbone features of stored images (one float32 vector each; None when unreadable)."""

    model: bytes
    blobs: BlobStore
    _embed: Any = field(default=None, init=False, repr=False)

    def setup(self) -> None:
        edge = open_model(self.model, EdgeModel)
        if edge.has_features:
            self._embed = lambda data: edge.predict_with_features(data)[1]
        else:  # an older file: expose the features with onnx (inspectloop[train]), as monitoring does
            from inspectloop.monitor.embeddings import EmbeddingModel

            embedder = open_model(self.model, EmbeddingModel)
            self._embed = lambda data: embedder.embed([data])[0]

    def __call__(self, digests: list[str]) -> list[np.ndarray | None]:
        return [self._vector(digest) for digest in digests]

    def _vector(self, digest: str) -> np.ndarray | None:
        try:
            return np.asarray(self._embed(self.blobs.get(digest)), dtype=np.float32).reshape(-1)
        except (OSError, ImageError):
            return None


@dataclass
class CheckWindows:
    """Drift statistics of (baseline, window) pairs: every signal of ``check_drift``, or why none."""

    alpha: float = 0.01
    permutations: int = 500

    def setup(self) -> None:
        """Pure statistics: nothing to open."""

    def __call__(self, pairs: list[tuple[DriftBaseline, CameraWindow]]) -> list[list[DriftSignal] | str]:
        return [self._check(baseline, window) for baseline, window in pairs]

    def _check(self, baseline: DriftBaseline, window: CameraWindow) -> list[DriftSignal] | str:
        try:
            return check_drift(baseline, window, alpha=self.alpha, permutations=self.permutations)
        except InspectloopError as exc:  # a window too small for its test: said, not fatal to the period
            return exc.message


def _reason(exc: Exception) -> str:
    if isinstance(exc, FileNotFoundError):
        return "image not in the blob store"
    return exc.message if isinstance(exc, InspectloopError) else str(exc) or type(exc).__name__
