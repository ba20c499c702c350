"""Content-addressed blob store: every image is kept once, under the SHA-256 of its bytes.

Writes go to a temporary file in the same filesystem, are flushed to disk, then renamed into place,
so a crash never leaves a half-written blob under a real name. Blobs are never overwritten.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from inspectloop.fileio import atomic_write_bytes, atomic_write_text, temporary_beside

__all__ = ["BlobStore", "atomic_write_bytes", "atomic_write_text", "sha256_bytes"]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class BlobStore:
    """Blobs under ``root/ab/cd/<sha256>`` (two fan-out levels keep folders small)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path_for(self, digest: str) -> Path:
        return self.root / digest[:2] / digest[2:4] / digest

    def put(self, data: bytes) -> tuple[str, bool]:
        """Store ``data``; return its digest and whether it was new."""
        digest = sha256_bytes(data)
        target = self.path_for(digest)
        if target.exists():
            return digest, False
        atomic_write_bytes(target, data)
        return digest, True

    def put_many(self, blobs: list[bytes]) -> list[str]:
        """Store several blobs with two filesystem syncs in all instead of one fsync per file.

        Temporary files are written, synced, renamed into place, and the renames synced, so a
        crash leaves either a complete blob or none under its real name (never a partial one).
        """
        staged: list[tuple[str, Path]] = []
        digests = []
        for data in blobs:
            digest = sha256_bytes(data)
            digests.append(digest)
            target = self.path_for(digest)
            if target.exists() or any(d == digest for d, _ in staged):
                continue
            descriptor, tmp = temporary_beside(target)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
            staged.append((digest, tmp))
        if not staged:
            return digests
        try:
            os.sync()
            for digest, tmp in staged:
                os.replace(tmp, self.path_for(digest))
            os.sync()
        finally:
            for _, tmp in staged:
                tmp.unlink(missing_ok=True)
        return digests

    def get(self, digest: str) -> bytes:
        return self.path_for(digest).read_bytes()

    def exists(self, digest: str) -> bool:
        return self.path_for(digest).exists()
