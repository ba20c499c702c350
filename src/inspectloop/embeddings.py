"""Frozen-backbone embeddings of stored images, kept in the workspace so each image is embedded once.

Near-duplicate search, label-error finding and the dataset map read them. They are named by backbone and
input size: ``efficientnet-lite0`` is the 224 px embedding the map and label-error finding share, so an
image either embedded is not embedded again by the other; ``efficientnet-lite0-128px`` is the cheaper one the
duplicate search uses by default (a third of the pixels; what ``benchmarks/near_duplicates.py`` measures).
Embeddings not found in a map are kept in ``embeddings/<name>.npz``.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from inspectloop.datamap.build import check_features, known_features
from inspectloop.store import atomic_write_bytes
from inspectloop.workspace import Workspace

DEFAULT_BACKBONE = "efficientnet-lite0"
MAP_INPUT_SIZE = 224  # what the dataset map and label-error finding embed at
DUPLICATE_INPUT_SIZE = 128
EMBEDDINGS_DIR = "embeddings"
_CHUNK = 512  # images embedded between two writes of the cache: an interrupted pass keeps what it did
Embedder = Callable[[Sequence[str]], np.ndarray]  # image digests -> (N, D) features
Progress = Callable[[int, int], None]


def embedding_name(backbone: str = DEFAULT_BACKBONE, input_size: int = DUPLICATE_INPUT_SIZE) -> str:
    """The kept name of ``backbone``'s embedding at ``input_size`` px (the map's own name at 224 px)."""
    return check_features(backbone if input_size == MAP_INPUT_SIZE else f"{backbone}-{input_size}px")


def image_embeddings(workspace: Workspace, digests: Sequence[str], *, backbone: str = DEFAULT_BACKBONE,
                     input_size: int = DUPLICATE_INPUT_SIZE, embed: Embedder | None = None,
                     progress: Progress | None = None) -> dict[str, np.ndarray]:
    """Each stored image's embedding (float32), embedding (and keeping) only those not embedded before."""
    name = embedding_name(backbone, input_size)
    wanted = sorted(set(digests))
    known = known_features(workspace, name, wanted) | kept_embeddings(workspace, name, wanted)
    missing = [d for d in wanted if d not in known]
    for start in range(0, len(missing), _CHUNK):
        chunk = missing[start:start + _CHUNK]
        step = None if progress is None else (lambda n, _total, at=start: progress(at + n, len(missing)))
        rows = (embed or _backbone(workspace, backbone, input_size, step))(chunk)
        # through float16, as kept: a pair's similarity is the same on the first pass and every later one
        fresh = dict(zip(chunk, np.asarray(rows, dtype=np.float16).astype(np.float32), strict=True))
        _keep(workspace, name, fresh)
        known |= fresh
        if progress and embed is not None:
            progress(start + len(chunk), len(missing))
    return {d: known[d] for d in wanted}


def _path(workspace: Workspace, name: str) -> Path:
    return workspace.root / EMBEDDINGS_DIR / f"{name}.npz"


def _backbone(workspace: Workspace, backbone: str, input_size: int, progress: Progress | None) -> Embedder:
    from inspectloop.labelquality.probabilities import frozen_features

    return lambda digests: frozen_features(digests, workspace.blobs.get, backbone=backbone, input_size=input_size,
                                           progress=progress)


def kept_embeddings(workspace: Workspace, name: str, wanted: Sequence[str]) -> dict[str, np.ndarray]:
    """The embeddings named ``name`` of ``wanted`` images kept outside maps (those not kept are left out)."""
    path = _path(workspace, name)
    if not path.is_file():
        return {}
    keep = set(wanted)
    with np.load(path, allow_pickle=False) as data:
        rows = [(str(d), i) for i, d in enumerate(data["sha256"]) if str(d) in keep]
        stored = data["features"]
        return {d: stored[i].astype(np.float32) for d, i in rows}


def _keep(workspace: Workspace, name: str, fresh: dict[str, np.ndarray]) -> None:
    """Add ``fresh`` to the kept embeddings (float16, as the maps keep theirs), written atomically."""
    path = _path(workspace, name)
    digests, rows = list(fresh), [fresh[d] for d in fresh]
    if path.is_file():
        with np.load(path, allow_pickle=False) as data:
            old = [str(d) for d in data["sha256"]]
            keep = [i for i, d in enumerate(old) if d not in fresh]
            digests = [old[i] for i in keep] + digests
            rows = list(data["features"][keep].astype(np.float32)) + rows
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, sha256=np.array(digests), features=np.stack(rows).astype(np.float16))
    atomic_write_bytes(path, buffer.getvalue())
