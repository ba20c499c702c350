"""The local cache of an object store's blobs: bounded in size, least recently used out first.

Training and the review pages need files, so an object store's blobs are downloaded once into a
local folder (``ObjectBlobStore.path_for``). Left alone, that folder grows into a second copy of the
bucket. When it passes its bound, the least recently used files go until it is back under
``LOW_WATER`` of the bound (so one download does not trigger an eviction each time). A file goes
only when the bucket holds the same object (its size checked with one HEAD): a cached copy that is
the last copy (the object was lost or never uploaded) is kept and reported, never deleted. Files
used in the last ``grace_seconds`` stay too: a path just handed to a reader must still be there
when it opens it. Use is recorded as the file's mtime (atime is often off: ``noatime``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from inspectloop.store.blobs import DIGEST

LOW_WATER = 0.8  # evict down to this share of the bound
GRACE_SECONDS = 60.0


@dataclass
class Eviction:
    """What one eviction pass did."""

    before_bytes: int
    after_bytes: int
    evicted: list[str] = field(default_factory=list)
    kept_not_in_store: list[str] = field(default_factory=list)  # the only copy: never evicted


class BlobCache:
    """``root/ab/cd/<sha256>`` files, at most ``max_bytes`` in all (None: unbounded)."""

    def __init__(self, root: Path, max_bytes: int | None, *, grace_seconds: float = GRACE_SECONDS) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.grace_seconds = grace_seconds
        self._estimate: int | None = None  # bytes cached, counted once then kept up to date here

    def used(self, path: Path) -> None:
        """Record a cache hit (the file becomes the most recently used)."""
        try:
            os.utime(path)
        except OSError:  # evicted by another process meanwhile: the caller downloads it again
            pass

    def added(self, size: int, in_store: Callable[[str, int], bool]) -> Eviction | None:
        """Count a new file of ``size`` bytes (already written); evict when over the bound (``in_store(digest, size)``: the
        bucket holds that object)."""
        if self.max_bytes is None:
            return None
        # counted from the folder once (the new file included), then kept up to date without listing it again
        self._estimate = self.size() if self._estimate is None else self._estimate + size
        if self._estimate <= self.max_bytes:
            return None
        return self.evict(in_store)

    def evict(self, in_store: Callable[[str, int], bool], target: int | None = None) -> Eviction:
        """Remove least recently used files until at most ``target`` bytes (default ``LOW_WATER`` of the bound)."""
        files = sorted(self._files(), key=lambda entry: entry[1])  # oldest use first
        total = sum(size for _, _, size, _ in files)
        target = target if target is not None else int((self.max_bytes or total) * LOW_WATER)
        result = Eviction(total, total)
        recent = time.time() - self.grace_seconds
        for digest, used_at, size, path in files:
            if result.after_bytes <= target or used_at > recent:
                break
            if not in_store(digest, size):
                result.kept_not_in_store.append(digest)
                continue
            path.unlink(missing_ok=True)
            result.evicted.append(digest)
            result.after_bytes -= size
        self._estimate = result.after_bytes
        return result

    def size(self) -> int:
        """Bytes cached now."""
        return sum(size for _, _, size, _ in self._files())

    def _files(self) -> list[tuple[str, float, int, Path]]:
        """(digest, last use, size, path) of every cached blob (temporary files of a download left out)."""
        found = []
        for path in self.root.glob("??/??/*"):
            if not DIGEST.fullmatch(path.name):
                continue
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            found.append((path.name, stat.st_mtime, stat.st_size, path))
        return found
