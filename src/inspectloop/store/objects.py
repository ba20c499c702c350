"""Blobs in an object store (S3 or S3-compatible, through fsspec), content-addressed like the local store.

Keys are ``<prefix>/ab/cd/<sha256>``, the local store's layout. An object store publishes a single PUT
atomically (readers see the whole object or none), so a blob is written straight to its key: no
temporary name, no rename. A key is only ever written with the bytes that hash to it, so writing
one twice (two services keeping the same image) is harmless. Code that needs a file (training, the
review pages) gets one from ``path_for``: the blob downloaded once into a local cache, itself a
local folder written atomically, bounded in size (least recently used out first, and only what the
bucket is confirmed to hold: :mod:`inspectloop.store.blob_cache`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO, cast

from inspectloop.envref import hide_password
from inspectloop.errors import WorkspaceError, require
from inspectloop.fileio import atomic_write_bytes
from inspectloop.store.blob_cache import GRACE_SECONDS as CACHE_GRACE_SECONDS
from inspectloop.store.blob_cache import BlobCache
from inspectloop.store.blobs import DIGEST, BlobStore, sha256_bytes

# URL schemes served by an object store: each one's fsspec driver and the extra that installs it.
OBJECT_SCHEMES = {"s3": ("s3fs", "s3"), "s3a": ("s3fs", "s3")}


def is_object_url(location: str) -> bool:
    """Whether a workspace's ``blobs:`` setting names an object store rather than a local folder."""
    return "://" in location


class ObjectBlobStore(BlobStore):
    """Blobs under an fsspec URL (``s3://bucket/prefix``); ``root`` is the local read cache."""

    def __init__(self, url: str, cache: Path, options: Mapping[str, Any] | None = None, *,
                 cache_max_bytes: int | None = None, cache_grace_seconds: float = CACHE_GRACE_SECONDS) -> None:
        super().__init__(cache)
        self.cache = BlobCache(cache, cache_max_bytes, grace_seconds=cache_grace_seconds)
        self.url = url.rstrip("/")
        scheme = self.url.split("://", 1)[0]
        if scheme not in OBJECT_SCHEMES:
            raise WorkspaceError(f"blob store {hide_password(self.url)}: {scheme}:// is not a supported object store",
                                 "set blobs: in inspectloop.yaml to a folder or to s3://BUCKET/PREFIX")
        driver, extra = OBJECT_SCHEMES[scheme]
        require(driver, extra)  # before fsspec, whose own message names no extra
        core = require("fsspec.core", extra, package="fsspec")
        self.fs, self.prefix = core.url_to_fs(self.url, **dict(options or {}))

    def key(self, digest: str) -> str:
        return f"{self.prefix}/{digest[:2]}/{digest[2:4]}/{digest}"

    def check(self) -> None:
        """Raise WorkspaceError (the URL and the fix) unless the bucket answers."""
        try:
            self.fs.ls(self.prefix.split("/", 1)[0], refresh=True)
        except Exception as exc:  # noqa: BLE001 (botocore, aiohttp and OSError all mean: cannot reach it)
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise WorkspaceError(
                f"cannot reach the blob store {hide_password(self.url)}: {hide_password(reason)}",
                "check the bucket name, the endpoint (blob_options: endpoint_url in inspectloop.yaml) and the "
                "credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or blob_options: key and secret)",
            ) from None

    def put(self, data: bytes) -> tuple[str, bool]:
        """Store ``data`` (one atomic PUT); return its digest and whether it was new."""
        digest = sha256_bytes(data)
        if self.fs.exists(self.key(digest)):
            return digest, False
        self.fs.pipe_file(self.key(digest), data)
        return digest, True

    def put_many(self, blobs: list[bytes]) -> list[str]:
        """Store several blobs in one concurrent upload; return their digests."""
        by_key = {self.key(sha256_bytes(data)): data for data in blobs}
        if by_key:
            self.fs.pipe(by_key)
        return [sha256_bytes(data) for data in blobs]

    def get(self, digest: str) -> bytes:
        return self.path_for(digest).read_bytes()

    def open(self, digest: str) -> BinaryIO:
        """The object itself, streamed from the store (not the local cache)."""
        return cast(BinaryIO, self.fs.open(self.key(digest), "rb"))

    def exists(self, digest: str) -> bool:
        return self.fs.exists(self.key(digest))

    def path_for(self, digest: str) -> Path:
        """A local file holding the blob (downloaded into the cache once); a missing path when not stored."""
        cached = super().path_for(digest)
        if cached.exists():
            self.cache.used(cached)
        elif DIGEST.fullmatch(digest):
            try:
                data = self.fs.cat_file(self.key(digest))
            except FileNotFoundError:
                return cached
            atomic_write_bytes(cached, data)  # as stored, damage included: doctor hashes what is really there
            self.cache.added(len(data), self.holds)
        return cached

    def holds(self, digest: str, size: int) -> bool:
        """Whether the bucket holds the object of ``size`` bytes (False when it cannot be asked: keep the copy)."""
        try:
            return int(self.fs.info(self.key(digest), refresh=True)["size"]) == size
        except Exception:  # noqa: BLE001 (missing, or the store unreachable: either way not confirmed)
            return False

    def digests(self) -> Iterator[str]:
        """Every stored blob's digest (keys that are not a digest in its right place are skipped)."""
        for key in sorted(self.fs.find(self.prefix)):
            parts = key.rsplit("/", 3)
            if len(parts) == 4 and DIGEST.fullmatch(parts[3]) and parts[1] == parts[3][:2] and parts[2] == parts[3][2:4]:
                yield parts[3]
