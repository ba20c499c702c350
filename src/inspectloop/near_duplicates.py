"""Near-duplicate images: a perceptual hash per stored image, the pairs within a few bits of each other,
and what they mean for a dataset version: a pair on two sides of a split leaks (the model is tested on
what it was trained on), a pair with two labels is a labelling conflict.

The hash is computed at ingest (the image is decoded there anyway) and, for images stored before hashes
existed, once on first use; either way from the same full decode, so the two paths agree bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy.fft import dctn

from inspectloop.domain import DatasetItem, DatasetVersion
from inspectloop.runtime.images import decode_image
from inspectloop.workspace import Workspace

HASH_KIND = "dct64"
# Bits of 64 that may differ. Measured on the shared datasets: KolektorSDD's 16 known duplicate pairs
# and NEU's one byte-identical pair sit at 0; NEU's nearest distinct images at 8 and beyond.
DEFAULT_MAX_DISTANCE = 4
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
    """Two images whose hashes differ in ``distance`` bits (0: the same picture, re-encoded or copied)."""

    first: str
    second: str
    distance: int


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


def version_pairs(workspace: Workspace, version: DatasetVersion,
                  max_distance: int = DEFAULT_MAX_DISTANCE) -> list[PairInVersion]:
    """The near-duplicate pairs among a version's images, with each side's split and label."""
    pairs = near_duplicate_pairs(image_hashes(workspace, (i.sha256 for i in version.items)), max_distance)
    return place_pairs(pairs, version.items)


def place_pairs(pairs: Sequence[NearDuplicate], items: Iterable[DatasetItem]) -> list[PairInVersion]:
    """``pairs`` with each side's split and label in ``items`` (pairs with a side not in them left out)."""
    by_digest = {item.sha256: item for item in items}
    return [PairInVersion(p, (by_digest[p.first].split, by_digest[p.second].split),
                          (by_digest[p.first].label, by_digest[p.second].label))
            for p in pairs if p.first in by_digest and p.second in by_digest]


def pair_summary(pairs: Sequence[PairInVersion], max_distance: int) -> dict[str, int]:
    """Counts for a version's summary: pairs, pairs across splits (leaks), pairs with two labels."""
    return {"max_distance": max_distance, "pairs": len(pairs), "across_splits": sum(p.leaks for p in pairs),
            "label_conflicts": sum(p.conflicts for p in pairs)}
