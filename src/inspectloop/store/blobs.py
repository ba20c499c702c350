"""Content-addressed blob store: every image is kept once, under the SHA-256 of its bytes.

Writes go to a temporary file in the store's staging folder (same filesystem), are flushed to disk,
then renamed into place, so a crash never leaves a half-written blob under a real name. Blobs are
never overwritten. A writer killed mid-write leaves its temporary files behind; they carry the
writer's host and process id, so the next open can tell abandoned ones from a live writer's.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from inspectloop.fileio import atomic_write_bytes, atomic_write_text

__all__ = ["BlobStore", "TemporaryFile", "atomic_write_bytes", "atomic_write_text", "sha256_bytes"]

STAGING = ".staging"
TMP_PREFIX = ".tmp-"
DIGEST = re.compile(r"[0-9a-f]{64}")
# A temporary file older than this is abandoned whoever made it: blob writes take seconds, not an hour.
GRACE_SECONDS = 3600.0


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class TemporaryFile:
    """A ``.tmp-*`` file in the store, and whether removing it cannot hurt a writer."""

    path: Path
    age_seconds: float
    abandoned: bool  # its writer (on this host) is gone, or it is older than the grace period


class BlobStore:
    """Blobs under ``root/ab/cd/<sha256>`` (two fan-out levels keep folders small)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path_for(self, digest: str) -> Path:
        return self.root / digest[:2] / digest[2:4] / digest

    def put(self, data: bytes) -> tuple[str, bool]:
        """Store ``data`` durably (one fsync); return its digest and whether it was new."""
        digest = sha256_bytes(data)
        target = self.path_for(digest)
        if target.exists():
            return digest, False
        descriptor, tmp = self._staged()
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return digest, True

    def put_many(self, blobs: list[bytes]) -> list[str]:
        """Store several blobs with two filesystem syncs in all instead of one fsync per file.

        Temporary files are written, synced, renamed into place, and the renames synced, so a
        crash leaves either a complete blob or none under its real name (never a partial one).
        """
        staged: list[tuple[str, Path]] = []
        digests = []
        try:
            for data in blobs:
                digest = sha256_bytes(data)
                digests.append(digest)
                if self.path_for(digest).exists() or any(d == digest for d, _ in staged):
                    continue
                descriptor, tmp = self._staged()
                staged.append((digest, tmp))
                with os.fdopen(descriptor, "wb") as handle:
                    handle.write(data)
            if not staged:
                return digests
            os.sync()
            for digest, tmp in staged:
                self.path_for(digest).parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, self.path_for(digest))
            os.sync()
        finally:
            for _, tmp in staged:
                tmp.unlink(missing_ok=True)
        return digests

    def get(self, digest: str) -> bytes:
        return self.path_for(digest).read_bytes()

    def open(self, digest: str) -> BinaryIO:
        """The stored bytes, for reading as a stream (what a check must see: the store, never a cache)."""
        return self.path_for(digest).open("rb")

    def exists(self, digest: str) -> bool:
        return self.path_for(digest).exists()

    def digests(self) -> Iterator[str]:
        """Every stored blob's digest (names that are not a digest in its right place are skipped)."""
        for first in sorted(_subfolders(self.root)):
            for second in sorted(_subfolders(first)):
                for entry in os.scandir(second):
                    name = entry.name
                    if DIGEST.fullmatch(name) and name[:2] == first.name and name[2:4] == second.name:
                        yield name

    def temporary_files(self, *, everywhere: bool = False, grace_seconds: float = GRACE_SECONDS) -> list[TemporaryFile]:
        """Temporary files left in the staging folder (``everywhere``: anywhere in the store, where
        older versions wrote them beside their blobs)."""
        folder = self.root / STAGING
        paths = self.root.rglob(f"{TMP_PREFIX}*") if everywhere else folder.glob(f"{TMP_PREFIX}*")
        now = time.time()
        found = []
        for path in paths:
            try:
                age = now - path.stat().st_mtime
            except FileNotFoundError:  # its writer renamed or removed it meanwhile
                continue
            found.append(TemporaryFile(path, age, age > grace_seconds or _writer_gone(path.name)))
        return sorted(found, key=lambda t: t.path)

    def remove_abandoned(self, *, everywhere: bool = False, grace_seconds: float = GRACE_SECONDS) -> list[Path]:
        """Remove abandoned temporary files (a killed writer's); leave a live writer's alone."""
        removed = []
        for temporary in self.temporary_files(everywhere=everywhere, grace_seconds=grace_seconds):
            if temporary.abandoned:
                temporary.path.unlink(missing_ok=True)
                removed.append(temporary.path)
        return removed

    def _staged(self) -> tuple[int, Path]:
        """A new, exclusive temporary file in the staging folder, named after this writer."""
        folder = self.root / STAGING
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{TMP_PREFIX}{_writer_tag()}-{secrets.token_hex(6)}"
        # The usual permissions (0o666 less the umask), so blobs stay readable by the service account.
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), path


def _writer_tag() -> str:
    return f"{socket.gethostname().replace('-', '_')}-{os.getpid()}"


def _writer_gone(name: str) -> bool:
    """Whether the process that made temporary file ``name`` has ended (only knowable on this host)."""
    parts = name.removeprefix(TMP_PREFIX).split("-")
    if len(parts) != 3 or parts[0] != socket.gethostname().replace("-", "_") or not parts[1].isdigit():
        return False  # another host's, or an older version's name: only its age can tell
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, under another user
        return False
    return False


def _subfolders(folder: Path) -> list[Path]:
    try:
        return [Path(e.path) for e in os.scandir(folder) if e.is_dir() and len(e.name) == 2 and e.name != STAGING]
    except FileNotFoundError:
        return []
