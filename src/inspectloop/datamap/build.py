"""A dataset version's 2-D map, computed once per (version, features, method) and kept in the workspace.

A version is immutable, so its map never goes stale: ``maps/<version>.<features>.<method>.npz`` holds the
images' digests, their coordinates and their features (float16). Labels, predictions and metadata are
not in it; they change, and are read fresh each time the map is shown (:mod:`inspectloop.datamap.points`).
The features of a new version's images that an earlier map of the same backbone already embedded are
taken from that map, so a version that adds 200 images to 10,000 embeds 200.
"""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inspectloop.datamap.columns import fixed_table
from inspectloop.datamap.projection import check_method, project
from inspectloop.errors import BrowseError
from inspectloop.store import atomic_write_bytes
from inspectloop.workspace import Workspace

DEFAULT_FEATURES = "efficientnet-lite0"
PIXELS = "pixels"  # 16x16 grey thumbnails: no torch needed, for tests and quick looks; clusters by brightness
_PIXEL_SIDE = 16
MAPS_DIR = "maps"
_FEATURES_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")  # part of a file name: no dots, no slashes
Embedder = Callable[[Sequence[str]], np.ndarray]  # image digests -> (N, D) features
Progress = Callable[[int, int], None]


@dataclass(frozen=True, eq=False)
class DataMap:
    """Map coordinates (N, 2) in [0, 1] of a version's images, in ``sha256`` order."""

    version: str
    features: str  # what embedded the images: a backbone name
    method: str
    sha256: tuple[str, ...]
    xy: np.ndarray
    seconds: float  # time to compute it (embedding + projection)
    embedded: int  # images embedded for it (the rest came from earlier maps)
    embed_seconds: float = 0.0  # of ``seconds``, embedding those images


def version_name(workspace: Workspace, version: str) -> str:
    """The stored name of ``version`` (``latest``: the newest); BrowseError (not_found) naming the known ones."""
    versions = [v.name for v in workspace.db.datasets.list()]
    if version == "latest" and versions:
        return versions[-1]
    if version not in versions:
        raise BrowseError(f"no dataset version {version!r} (known: {', '.join(versions) or 'none'})",
                          "make one with: inspectloop dataset create", kind="not_found")
    return version


def check_features(features: str) -> str:
    """``features`` when it can name a map file's features (a backbone name, ``pixels``); BrowseError otherwise."""
    if not _FEATURES_NAME.match(features):
        raise BrowseError(f"unknown features {features[:40]!r}", f"name a backbone, e.g. {DEFAULT_FEATURES}, or {PIXELS}")
    return features


def map_path(workspace: Workspace, version: str, features: str, method: str) -> Path:
    """Where the map of ``version`` by ``features`` and ``method`` is kept."""
    return workspace.root / MAPS_DIR / f"{version}.{features}.{method}.npz"


def compute_map(workspace: Workspace, version: str = "latest", *, features: str = DEFAULT_FEATURES,
                method: str = "tsne", seed: int = 0, embed: Embedder | None = None,
                progress: Progress | None = None) -> DataMap:
    """Embed a version's images (frozen backbone ``features``, or ``embed``), project them, keep the map."""
    method, features = check_method(method), check_features(features)
    name = version_name(workspace, version)
    digests = sorted({item.sha256 for item in workspace.db.datasets.items(name)})
    if not digests:
        raise BrowseError(f"dataset version {name} has no images", "nothing to map", kind="empty")
    started = time.perf_counter()
    known = known_features(workspace, features, digests)
    from inspectloop.embeddings import kept_embeddings  # embeddings reads maps: imported here, not at the top

    known |= kept_embeddings(workspace, features, [d for d in digests if d not in known])  # e.g. label-error finding's
    missing = [d for d in digests if d not in known]
    if missing:
        fresh = (embed or backbone_embedder(workspace, features, progress))(missing)
        known |= dict(zip(missing, np.asarray(fresh, dtype=np.float32), strict=True))
    embedded_at = time.perf_counter()
    matrix = np.stack([known[d] for d in digests]).astype(np.float32)
    xy = project(matrix, method, seed=seed)
    result = DataMap(name, features, method, tuple(digests), xy, time.perf_counter() - started, len(missing),
                     embedded_at - started)
    save_map(workspace, result, matrix)
    write_fixed(workspace, result)
    return result


def backbone_embedder(workspace: Workspace, backbone: str, progress: Progress | None = None) -> Embedder:
    """The pretrained trunk's pooled features of stored images (as label-error finding uses them), or
    ``pixels``: grey thumbnails."""
    if backbone == PIXELS:
        return lambda digests: pixel_features(workspace, digests, progress)
    from inspectloop.labelquality.probabilities import frozen_features
    from inspectloop.models.backbones import BACKBONES

    if backbone not in BACKBONES:
        raise BrowseError(f"unknown features {backbone!r}", f"use one of: {', '.join(sorted([*BACKBONES, PIXELS]))}")
    return lambda digests: frozen_features(digests, workspace.blobs.get, backbone=backbone, progress=progress)


def pixel_features(workspace: Workspace, digests: Sequence[str], progress: Progress | None = None) -> np.ndarray:
    """(N, 256) float32: each stored image as a 16x16 grey thumbnail, values in [0, 1]."""
    from PIL import Image

    from inspectloop.runtime.images import load_image

    rows = []
    for n, digest in enumerate(digests, start=1):
        image = load_image(workspace.blobs.get(digest), name=digest[:12], draft=_PIXEL_SIDE, mode="L")
        rows.append(np.asarray(image.resize((_PIXEL_SIDE, _PIXEL_SIDE), Image.Resampling.BOX), np.float32).ravel())
        if progress and (n % 256 == 0 or n == len(digests)):
            progress(n, len(digests))
    return np.stack(rows) / 255.0


def save_map(workspace: Workspace, data_map: DataMap, features: np.ndarray) -> Path:
    """Write the map (and the features it came from, as float16) atomically; return its path."""
    path = map_path(workspace, data_map.version, data_map.features, data_map.method)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, sha256=np.array(data_map.sha256), xy=data_map.xy, features=features.astype(np.float16),
             seconds=np.float64(data_map.seconds), embedded=np.int64(data_map.embedded),
             embed_seconds=np.float64(data_map.embed_seconds))
    atomic_write_bytes(path, buffer.getvalue())
    return path


def load_map(workspace: Workspace, version: str = "latest", *, features: str | None = None,
             method: str | None = None) -> DataMap:
    """The kept map of a version (the newest one when ``features`` or ``method`` is not given).

    BrowseError: not_found for an unknown version, no_map when no map of it was computed yet.
    """
    name = version_name(workspace, version)
    if features is not None:
        check_features(features)
    if method is not None:
        check_method(method)
    pattern = f"{name}.{features or '*'}.{method or '*'}.npz"
    found = sorted((workspace.root / MAPS_DIR).glob(pattern), key=lambda p: p.stat().st_mtime, reverse=True)
    found = [p for p in found if p.name.removesuffix(".npz").rsplit(".", 2)[0] == name]  # not version "v1.b"
    if not found:
        raise BrowseError(f"no map of dataset version {name} yet", f"compute it with: inspectloop dataset map {name}",
                          kind="no_map")
    return read_map(found[0])


def read_map(path: Path) -> DataMap:
    """A map file as :func:`save_map` wrote it (its name says version, features and method)."""
    version, features, method = path.name.removesuffix(".npz").rsplit(".", 2)
    with np.load(path, allow_pickle=False) as data:
        return DataMap(version, features, method, tuple(str(d) for d in data["sha256"]), data["xy"],
                       float(data["seconds"]), int(data["embedded"]), float(data["embed_seconds"]))


def fixed_path(workspace: Workspace, data_map: DataMap) -> Path:
    """Where the map's fixed columns (:func:`inspectloop.datamap.columns.fixed_table`) are kept, as JSON."""
    return map_path(workspace, data_map.version, data_map.features, data_map.method).with_suffix(".points.json")


def write_fixed(workspace: Workspace, data_map: DataMap) -> bytes:
    """Write the map's fixed columns beside it (the slow part of showing a map: a record per image); return them."""
    items = {item.sha256: item for item in workspace.db.datasets.items(data_map.version)}
    records = workspace.db.images.get_many(list(data_map.sha256))
    table = fixed_table(data_map.version, data_map.features, data_map.method, data_map.sha256, data_map.xy,
                        items, records)
    body = json.dumps(table, separators=(",", ":")).encode("utf-8")
    atomic_write_bytes(fixed_path(workspace, data_map), body)
    return body


def fixed_json(workspace: Workspace, data_map: DataMap) -> bytes:
    """The map's fixed columns as JSON bytes: the kept file, or written now when missing or older than the map."""
    path = fixed_path(workspace, data_map)
    source = map_path(workspace, data_map.version, data_map.features, data_map.method)
    if path.is_file() and path.stat().st_mtime >= source.stat().st_mtime:
        return path.read_bytes()
    return write_fixed(workspace, data_map)


def known_features(workspace: Workspace, features: str, digests: Sequence[str]) -> dict[str, np.ndarray]:
    """Features of ``digests`` already kept in any map made with ``features`` (newest map first)."""
    wanted, known = set(digests), {}
    folder = workspace.root / MAPS_DIR
    paths = sorted(folder.glob(f"*.{features}.*.npz"), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in paths if folder.is_dir() else []:
        with np.load(path, allow_pickle=False) as data:
            rows = {str(d): i for i, d in enumerate(data["sha256"]) if str(d) in wanted and str(d) not in known}
            if rows:
                stored = data["features"]
                known |= {d: stored[i].astype(np.float32) for d, i in rows.items()}
        if len(known) == len(wanted):
            break
    return known
