"""The object store's local cache: bounded, least recently used out first, never the last copy of a blob."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from inspectloop.store import sha256_bytes
from inspectloop.store.blob_cache import BlobCache
from inspectloop.store.objects import ObjectBlobStore
from inspectloop.workspace import init_workspace, open_workspace

BLOB = 10_000  # bytes per test blob


def blobs(count: int) -> list[bytes]:
    return [bytes([n]) * BLOB for n in range(count)]


@pytest.fixture
def store(s3_server: dict[str, str], s3_bucket: str, tmp_path: Path) -> ObjectBlobStore:
    """A store whose cache holds at most 3.5 blobs, with no grace period (the tests control every use)."""
    return ObjectBlobStore(f"s3://{s3_bucket}/site", tmp_path / "cache", s3_server, cache_max_bytes=int(3.5 * BLOB),
                           cache_grace_seconds=0)


def _age(store: ObjectBlobStore, digests: list[str]) -> None:
    """Give the cached files distinct last-use times, in list order (oldest first)."""
    now = time.time()
    for n, digest in enumerate(digests):
        path = store.cache.root / digest[:2] / digest[2:4] / digest
        os.utime(path, (now - 100 + n, now - 100 + n))


def test_the_cache_stays_under_its_bound_and_keeps_what_was_used_last(store: ObjectBlobStore) -> None:
    digests = store.put_many(blobs(5))
    for digest in digests[:3]:
        store.get(digest)
    _age(store, digests[:3])
    store.get(digests[0])  # used again: now the most recent
    store.get(digests[3])  # a fourth blob passes the bound: evicted down to 80% of it (2.8 blobs)
    cached = {p.name for p in store.cache.root.rglob("*") if p.is_file()}
    assert cached == {digests[0], digests[3]} and store.cache.size() <= 3.5 * BLOB
    assert store.get(digests[1]) == blobs(5)[1]  # an evicted blob is simply downloaded again


def test_a_cached_copy_the_bucket_does_not_hold_is_never_evicted(store: ObjectBlobStore) -> None:
    digests = store.put_many(blobs(4))
    for digest in digests[:3]:
        store.get(digest)
    _age(store, digests[:3])
    store.fs.rm_file(store.key(digests[0]))  # lost from the bucket: the cached copy is the last one
    store.get(digests[3])
    cached = {p.name for p in store.cache.root.rglob("*") if p.is_file()}
    assert digests[0] in cached and digests[1] not in cached
    result = store.cache.evict(store.holds, target=0)  # evict everything it may
    assert result.kept_not_in_store == [digests[0]] and set(result.evicted) == cached - {digests[0]}
    assert (store.cache.root / digests[0][:2] / digests[0][2:4] / digests[0]).read_bytes() == blobs(4)[0]


def test_a_file_just_handed_out_stays_within_the_grace_period(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path, max_bytes=1, grace_seconds=60)
    data = b"x" * 100
    path = tmp_path / sha256_bytes(data)[:2] / sha256_bytes(data)[2:4] / sha256_bytes(data)
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    result = cache.added(len(data), lambda digest, size: True)
    assert result is not None and result.evicted == [] and path.exists()


def test_a_workspace_bounds_its_cache_from_its_config(tmp_path: Path, s3_server: dict[str, str],
                                                      s3_bucket: str) -> None:
    with init_workspace(tmp_path / "ws", blobs=f"s3://{s3_bucket}/w", blob_options=s3_server) as ws:
        assert isinstance(ws.blobs, ObjectBlobStore) and ws.blobs.cache.max_bytes == 4096 * 1024 * 1024
    config = tmp_path / "ws" / "inspectloop.yaml"
    config.write_text(config.read_text().replace("blob_cache_mb: 4096", "blob_cache_mb: 1"))
    with open_workspace(tmp_path / "ws") as ws:
        assert ws.blobs.cache.max_bytes == 1024 * 1024
