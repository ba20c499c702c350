"""Decoded images cached on disk by image and preprocessing: read back exactly, shared, rebuilt when torn."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inspectloop.domain import DatasetItem
from inspectloop.runtime.images import load_image
from inspectloop.runtime.preprocess import Preprocess
from inspectloop.train.data import ImageCache, load_image_set
from tests.conftest import surface


def encoded(seed: int, fmt: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(surface(seed, size=120, defect=seed % 2 == 1)).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture
def blobs() -> dict[str, bytes]:
    data = [encoded(seed) for seed in range(4)] + [encoded(9, "PNG")]
    return {hashlib.sha256(b).hexdigest(): b for b in data}


def items(blobs: dict[str, bytes]) -> list[DatasetItem]:
    return [DatasetItem(sha256=digest, label=("good", "scratch")[i % 2], split="train", group_key=digest)
            for i, digest in enumerate(blobs)]


class CountingReader:
    def __init__(self, blobs: dict[str, bytes]) -> None:
        self.blobs, self.reads = blobs, 0

    def __call__(self, digest: str) -> bytes:
        self.reads += 1
        return self.blobs[digest]


def test_a_cached_load_gives_the_same_pixels_without_decoding(tmp_path: Path, blobs: dict[str, bytes]) -> None:
    preprocess = Preprocess(64)
    cache = ImageCache(tmp_path / "cache", preprocess, mode="L")
    uncached = load_image_set(items(blobs), ["good", "scratch"], CountingReader(blobs), preprocess, mode="L")
    first_reader, second_reader = CountingReader(blobs), CountingReader(blobs)
    first = load_image_set(items(blobs), ["good", "scratch"], first_reader, preprocess, mode="L", cache=cache)
    second = load_image_set(items(blobs), ["good", "scratch"], second_reader, preprocess, mode="L", cache=cache)
    assert first_reader.reads == len(blobs) and second_reader.reads == 0
    for run in (first, second):
        assert [np.asarray(a).tolist() for a in run.images] == [np.asarray(b).tolist() for b in uncached.images]
        assert run.labels.tolist() == uncached.labels.tolist() and run.digests == uncached.digests


@pytest.mark.parametrize(("other", "why"), [
    (dict(size=96), "another input size"),
    (dict(mode="RGB"), "another colour mode"),
    (dict(draft=True), "draft decoding"),
    (dict(height=160), "a tall input of the same width"),
])
def test_each_preprocessing_has_its_own_entries(tmp_path: Path, other: dict, why: str) -> None:
    base = dict(size=64, mode="L", draft=False, height=None) | other
    first = ImageCache(tmp_path, Preprocess(64), mode="L")
    second = ImageCache(tmp_path, Preprocess(base["size"], input_height=base["height"]), mode=base["mode"],
                        draft=base["draft"])
    assert first.path("ab" * 32) != second.path("ab" * 32), why


def test_a_tall_input_decodes_as_the_edge_does(tmp_path: Path) -> None:
    """A draft JPEG decode keeps the input's width and height, so a tall input is never enlarged from a smaller
    decode; training reads the same pixels as the edge."""
    part = Image.fromarray(np.random.default_rng(0).integers(0, 255, (1200, 480), dtype=np.uint8), "L")
    buffer = io.BytesIO()
    part.save(buffer, "JPEG")
    data = buffer.getvalue()
    preprocess = Preprocess(96, input_height=240)
    digest = hashlib.sha256(data).hexdigest()
    loaded = load_image_set([DatasetItem(digest, "good", "train", digest)], ["good"], lambda _: data, preprocess,
                            draft=True, mode="L")
    edge = preprocess.resize(load_image(data, draft=preprocess.draft_size, mode="L"))
    assert loaded.images[0].size == (96, 240) and np.array_equal(np.asarray(loaded.images[0]), np.asarray(edge))
    assert preprocess.draft_size == (96, 240) and Preprocess(96).draft_size == (96, 96)
    assert load_image(data, draft=preprocess.draft_size).size == (120, 300)  # 1/4 scale: still >= 96 x 240


def test_a_torn_entry_is_decoded_again(tmp_path: Path, blobs: dict[str, bytes]) -> None:
    preprocess = Preprocess(64)
    cache = ImageCache(tmp_path, preprocess, mode="L")
    load_image_set(items(blobs), ["good", "scratch"], CountingReader(blobs), preprocess, mode="L", cache=cache)
    torn = next(iter(blobs))
    cache.path(torn).write_bytes(cache.path(torn).read_bytes()[:40])  # a crash mid-write of an older version
    reader = CountingReader(blobs)
    again = load_image_set(items(blobs), ["good", "scratch"], reader, preprocess, mode="L", cache=cache)
    assert reader.reads == 1 and again.images[0].size == (64, 64)
    assert not list(cache.folder.rglob("*.tmp"))
