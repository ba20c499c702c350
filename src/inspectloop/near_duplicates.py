"""Near-duplicate images: a perceptual hash per stored image, the pairs within a few bits of each other,
the pairs whose frozen-backbone embeddings are nearly parallel (cosine similarity), and what they mean for
a dataset version: a pair on two sides of a split leaks (the model is tested on what it was trained on), a
pair with two labels is a labelling conflict.

The two methods see different things: the hash, the same picture re-encoded, resized or a little brighter;
the embedding, the same part shifted, cropped or re-shot (where the hash's low frequencies move). Each pair
says which method found it.

The hash is computed at ingest (the image is decoded there anyway) and, for images stored before hashes
existed, once on first use; either way from the same full decode, so the two paths agree bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy.fft import dctn

from inspectloop.domain import DatasetItem, DatasetVersion
from inspectloop.errors import DatasetError, require
from inspectloop.runtime.images import decode_image
from inspectloop.workspace import Workspace

Embedder = Callable[[Sequence[str]], np.ndarray]  # image digests -> (N, D) features
Progress = Callable[[int, int], None]

HASH_KIND = "dct64"
# Bits of 64 that may differ. Measured on the shared datasets: KolektorSDD's 16 known duplicate pairs
# and NEU's one byte-identical pair sit at 0; NEU's nearest distinct images at 8 and beyond.
DEFAULT_MAX_DISTANCE = 4
# Cosine similarity of two images' embeddings (efficientnet-lite0, 128 px, pooled) at or above which they are
# near-duplicates. Measured (benchmarks/near_duplicates.py, pairs checked by eye): at 0.98 the pairs beyond the
# hash are NEU's overlapping crops of one strip and magnetic tiles re-shot in another session; at 0.97 distinct
# KolektorSDD surfaces of one texture start to pair up (pooled features of a uniform texture are all alike).
DEFAULT_MIN_SIMILARITY = 0.98
HASH, EMBEDDING = "hash", "embedding"
_THUMB = 32
_LOW = 8


def perceptual_hash(image: Image.Image) -> int:
    """A 64-bit DCT hash: the signs, against their median, of the 8x8 lowest frequencies of a 32x32 grey
    thumbnail. It survives re-encoding, resizing and small exposure changes; not crops or rotations."""
    grey = image if image.mode == "L" else image.convert("L")
    thumb = np.asarray(grey.resize((_THUMB, _THUMB), Image.Resampling.BOX), dtype=np.float64)
    low = dctn(thumb, norm="ortho")[:_LOW, :_LOW]
    return int.from_bytes(np.packbits(low > np.median(low)).tobytes(), "big")


def image_hashes(workspace: Workspace, digests: Iterable[str]) -> dict[str, int]:
    """The perceptual hash of each stored image, computing (and keeping) those not hashed yet."""
    wanted = sorted(set(digests))
    known = workspace.db.hashes.get_many(wanted, HASH_KIND)
    missing = [d for d in wanted if d not in known]
    for start in range(0, len(missing), 256):  # kept as it goes: an interrupted pass is not redone
        batch = {d: perceptual_hash(decode_image(workspace.blobs.get(d), name=d).image)
                 for d in missing[start:start + 256]}
        workspace.db.hashes.add(batch, HASH_KIND)
        known |= batch
    return known


@dataclass(frozen=True)
class NearDuplicate:
    """Two images (``first`` < ``second``) found alike by ``methods``: their hashes differ in ``distance`` bits
    (0: the same picture, re-encoded or copied), and/or their embeddings' cosine ``similarity`` is high."""

    first: str
    second: str
    distance: int | None
    similarity: float | None = None
    methods: tuple[str, ...] = (HASH,)


def near_duplicate_pairs(hashes: Mapping[str, int], max_distance: int = DEFAULT_MAX_DISTANCE) -> list[NearDuplicate]:
    """Every pair of images within ``max_distance`` bits, closest first."""
    digests = sorted(hashes)
    values = np.array([hashes[d] for d in digests], dtype=np.uint64)
    pairs = []
    for i in range(len(values) - 1):  # one row at a time: memory stays linear in the number of images
        distances = np.bitwise_count(values[i + 1:] ^ values[i])
        pairs += [NearDuplicate(digests[i], digests[i + 1 + j], int(distances[j]))
                  for j in np.flatnonzero(distances <= max_distance)]
    return sorted(pairs, key=lambda p: (p.distance, p.first, p.second))


def similar_pairs(embeddings: Mapping[str, np.ndarray],
                  min_similarity: float = DEFAULT_MIN_SIMILARITY) -> list[NearDuplicate]:
    """Every pair of images whose embeddings' cosine similarity is at least ``min_similarity``, most alike first.

    Exact search (faiss ``IndexFlatIP`` range search on unit vectors): the pairs do not depend on an index's
    approximations.
    """
    check_similarity(min_similarity)
    digests = sorted(embeddings)
    if len(digests) < 2:
        return []
    faiss = require("faiss", "train")
    vectors = np.stack([np.asarray(embeddings[d], dtype=np.float32) for d in digests])
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    # range_search keeps scores strictly above the radius; a hair below keeps pairs exactly at the threshold
    limits, scores, neighbours = index.range_search(vectors, float(np.nextafter(np.float32(min_similarity), -1)))
    pairs = []
    for i in range(len(digests)):
        for j, score in zip(neighbours[limits[i]:limits[i + 1]], scores[limits[i]:limits[i + 1]], strict=True):
            if j > i:
                pairs.append(NearDuplicate(digests[i], digests[j], None, round(min(float(score), 1.0), 4), (EMBEDDING,)))
    return sorted(pairs, key=lambda p: (-(p.similarity or 0.0), p.first, p.second))


def check_similarity(min_similarity: float) -> None:
    """DatasetError unless ``min_similarity`` is a usable cosine threshold."""
    if not 0.5 <= min_similarity <= 1.0:
        raise DatasetError(f"near-duplicate similarity {min_similarity} is out of range",
                           f"use a cosine similarity from 0.5 to 1 (default {DEFAULT_MIN_SIMILARITY}), or leave "
                           "embeddings out")


def combine_pairs(*found: Sequence[NearDuplicate]) -> list[NearDuplicate]:
    """The pairs any method found, once each, with every method that found it: hash pairs first (closest
    first), then pairs only the embedding found (most alike first)."""
    merged: dict[tuple[str, str], NearDuplicate] = {}
    for pair in (p for pairs in found for p in pairs):
        key = (pair.first, pair.second)
        seen = merged.get(key)
        if seen is None:
            merged[key] = pair
            continue
        merged[key] = NearDuplicate(pair.first, pair.second,
                                    seen.distance if seen.distance is not None else pair.distance,
                                    seen.similarity if seen.similarity is not None else pair.similarity,
                                    tuple(m for m in (HASH, EMBEDDING) if m in seen.methods + pair.methods))
    return sorted(merged.values(), key=lambda p: (p.distance is None, p.distance or 0, -(p.similarity or 0.0),
                                                  p.first, p.second))


def merge_groups(groups: Mapping[str, str], pairs: Sequence[NearDuplicate], *, kept: set[str],
                 apart: set[str]) -> dict[str, str]:
    """Each image's group key after near-duplicates are put together, so that a split keeps them on one side.

    Only an image that has no group of its own (key ``image:...``) joins its near-duplicate's group: two
    real groups (two capture sessions of one tile) are never merged, as that would chain whole sessions
    together; such pairs are reported instead. ``kept`` keys (the parent version's) are preferred as the
    group's name, so a new copy of a kept image takes the kept image's split. Images in ``apart`` (a
    held-out test set) are never merged with images outside it.
    """
    parent = {key: key for key in groups.values()}

    def root(key: str) -> str:
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    for pair in pairs:
        if pair.first not in groups or pair.second not in groups or (pair.first in apart) != (pair.second in apart):
            continue
        a, b = root(groups[pair.first]), root(groups[pair.second])
        if a == b or not (_alone(a) or _alone(b)):
            continue
        first, second = sorted((a, b), key=lambda k: (k not in kept, _alone(k), k))
        parent[second] = first
    return {digest: root(key) for digest, key in groups.items()}


def _alone(key: str) -> bool:
    return key.startswith("image:")


@dataclass(frozen=True)
class PairInVersion:
    """A near-duplicate pair as a dataset version holds it."""

    pair: NearDuplicate
    splits: tuple[str, str]
    labels: tuple[str, str]

    @property
    def leaks(self) -> bool:
        return self.splits[0] != self.splits[1]

    @property
    def conflicts(self) -> bool:
        return self.labels[0] != self.labels[1]


def version_pairs(workspace: Workspace, version: DatasetVersion, max_distance: int = DEFAULT_MAX_DISTANCE,
                  min_similarity: float | None = None, *, embed: Embedder | None = None,
                  progress: Progress | None = None) -> list[PairInVersion]:
    """The near-duplicate pairs among a version's images, with each side's split and label: by hash, and by
    embedding too when ``min_similarity`` is given (``embed``: digests -> features, instead of the backbone)."""
    digests = [i.sha256 for i in version.items]
    return place_pairs(find_pairs(workspace, digests, max_distance, min_similarity, embed=embed, progress=progress),
                       version.items)


def find_pairs(workspace: Workspace, digests: Sequence[str], max_distance: int = DEFAULT_MAX_DISTANCE,
               min_similarity: float | None = None, *, embed: Embedder | None = None,
               progress: Progress | None = None) -> list[NearDuplicate]:
    """Near-duplicate pairs among stored images: by hash, plus by embedding when ``min_similarity`` is given."""
    pairs = near_duplicate_pairs(image_hashes(workspace, digests), max_distance)
    if min_similarity is None:
        return pairs
    check_similarity(min_similarity)  # before minutes of embedding
    from inspectloop.embeddings import image_embeddings

    return combine_pairs(pairs, similar_pairs(image_embeddings(workspace, digests, embed=embed, progress=progress),
                                              min_similarity))


def place_pairs(pairs: Sequence[NearDuplicate], items: Iterable[DatasetItem]) -> list[PairInVersion]:
    """``pairs`` with each side's split and label in ``items`` (pairs with a side not in them left out)."""
    by_digest = {item.sha256: item for item in items}
    return [PairInVersion(p, (by_digest[p.first].split, by_digest[p.second].split),
                          (by_digest[p.first].label, by_digest[p.second].label))
            for p in pairs if p.first in by_digest and p.second in by_digest]


def pair_summary(pairs: Sequence[PairInVersion], max_distance: int,
                 min_similarity: float | None = None) -> dict[str, object]:
    """Counts for a version's summary: pairs, pairs across splits (leaks), pairs with two labels (and, when
    embeddings were searched, the threshold and the pairs only they found)."""
    summary: dict[str, object] = {"max_distance": max_distance, "pairs": len(pairs),
                                  "across_splits": sum(p.leaks for p in pairs),
                                  "label_conflicts": sum(p.conflicts for p in pairs)}
    if min_similarity is not None:
        summary |= {"min_similarity": min_similarity,
                    "embedding_only": sum(p.pair.methods == (EMBEDDING,) for p in pairs)}
    return summary
