"""``inspectloop backup`` / ``restore``: a live workspace copied without stopping the service.

Consistency between the database and the blobs comes from their order: the database is copied first,
with SQLite's online backup API, or from PostgreSQL in one ``REPEATABLE READ`` transaction (either
way a snapshot as of one committed transaction, taken while the services keep writing); then every
blob *that snapshot* names, read from the store itself (an object store's objects, not their cache). Blobs are content-addressed and immutable, and
are written before the rows that name them, so each one the snapshot names is already complete on
disk, and its bytes are checked against its name as they are copied. The config, runs (models) and
reports follow, each with its SHA-256 in the manifest. Everything is written to a temporary folder
beside the destination and renamed into place last, so a crash never leaves half a backup under its
name. Restore verifies every hash and the database before it touches the destination.

A backup is always an SQLite file and a blob folder, whatever the workspace used, so it can be
opened anywhere; ``restore`` can put it back onto an empty PostgreSQL database and an object store.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from inspectloop.envref import hide_password
from inspectloop.errors import BackupError
from inspectloop.store import BlobStore, Database, atomic_write_text, now_iso
from inspectloop.store.blobs import TMP_PREFIX
from inspectloop.store.transfer import copy_rows, rows_outside_migrations
from inspectloop.workspace import CONFIG_NAME, Workspace, WorkspaceConfig, object_store, open_workspace

MANIFEST = "backup.json"
DB_NAME = "inspectloop.db"
FORMAT = 1


@dataclass(frozen=True)
class BackupReport:
    path: Path
    counts: dict[str, int]  # rows per table in the snapshot
    blobs: int
    blob_bytes: int
    files: int
    missing_blobs: list[str]  # named by the snapshot but absent from the live store (doctor says more)
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "counts": self.counts, "blobs": self.blobs, "blob_bytes": self.blob_bytes,
                "files": self.files, "missing_blobs": self.missing_blobs, "seconds": round(self.seconds, 3)}


@dataclass(frozen=True)
class RestoreReport:
    path: Path
    counts: dict[str, int]
    blobs: int
    files: int
    replaced: bool  # a non-empty destination was replaced (--force)

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "counts": self.counts, "blobs": self.blobs, "files": self.files,
                "replaced": self.replaced}


def backup(workspace: Workspace, dest: Path) -> BackupReport:
    """Copy ``workspace`` to the new folder ``dest``: database snapshot, the blobs it names, config, runs, reports."""
    started = time.perf_counter()
    dest = Path(dest).absolute()
    _refuse_target(dest, force=False, what="backup")
    if dest.is_relative_to(workspace.root.absolute()):
        raise BackupError(f"{dest} is inside the workspace", "write the backup to a folder outside the workspace")
    with _staging(dest) as tmp:
        workspace.db.backup_to(tmp / DB_NAME)  # the snapshot first; the blobs follow it, never the reverse
        snapshot = Database(f"sqlite:///{tmp / DB_NAME}")
        try:
            referenced, counts = snapshot.integrity.referenced_blobs(), snapshot.integrity.counts()
        finally:
            snapshot.close()
        blobs, size, missing = _copy_blobs(workspace.blobs, BlobStore(tmp / "blobs"), sorted(referenced))
        files = _copy_files(workspace, tmp)
        manifest = {"format": FORMAT, "created_at": now_iso(), "source": str(workspace.root.absolute()),
                    "workspace": workspace.config.name, "source_database": workspace.db.url,
                    "source_blobs": hide_password(workspace.config.blobs), "counts": counts, "blobs": blobs, "blob_bytes": size,
                    "missing_blobs": missing, "files": files}
        atomic_write_text(tmp / MANIFEST, json.dumps(manifest, indent=2))
        os.sync()  # every copied file reaches the disk before the backup gets its name
    return BackupReport(dest, counts, blobs, size, len(files), missing, time.perf_counter() - started)


def restore(backup_dir: Path, dest: Path, *, force: bool = False, database: str | None = None,
            blobs: str | None = None) -> RestoreReport:
    """Restore a backup into ``dest`` (new or empty; ``force`` replaces a non-empty one), verifying every hash.

    The backup holds an SQLite file and a blob folder whatever the workspace used. ``database`` (an empty
    PostgreSQL database's URL) and ``blobs`` (an object store URL, reached with the backup's
    ``blob_options``) put the rows and the blobs back on servers instead; ``${NAME}`` references stay in
    the restored config as given.
    """
    backup_dir, dest = Path(backup_dir).absolute(), Path(dest).absolute()
    manifest = read_manifest(backup_dir)
    replaced = _refuse_target(dest, force=force, what="restore")
    with _staging(dest) as tmp:
        for entry in backup_dir.iterdir():
            if entry.name != MANIFEST:
                (shutil.copytree if entry.is_dir() else shutil.copy2)(entry, tmp / entry.name)
        counts = verify_copy(tmp, manifest)
        _onto_servers(tmp, database, blobs)
        os.chmod(tmp, 0o777 & ~_umask())  # a workspace folder as mkdir makes it, not mkdtemp's 0700
        os.sync()
        if replaced:  # the old contents go only once the verified copy is complete
            old = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}replaced-{dest.name}-", dir=dest.parent))
            os.replace(dest, old / dest.name)
            shutil.rmtree(old, ignore_errors=True)
    open_workspace(dest).close()  # brings an older backup's schema up to date
    return RestoreReport(dest, counts, manifest["blobs"], len(manifest["files"]), replaced)


def read_manifest(backup_dir: Path) -> dict[str, Any]:
    """The manifest of a backup folder; BackupError when it is not one."""
    try:
        manifest = json.loads((backup_dir / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise BackupError(f"{backup_dir} is not an inspectloop backup (no readable {MANIFEST})",
                          "give the folder that 'inspectloop backup' wrote") from exc
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{backup_dir} is a backup of format {manifest.get('format')!r}, not {FORMAT}",
                          "restore it with the inspectloop version that wrote it")
    return manifest


def verify_copy(root: Path, manifest: dict[str, Any]) -> dict[str, int]:
    """Check a backup's files against its manifest: every hash, the database, every named blob."""
    problems = [f"{name}: missing or changed" for name, digest in manifest["files"].items()
                if _file_sha256(root / name) != digest]
    database = Database(f"sqlite:///{root / DB_NAME}")
    try:
        integrity = database.integrity.integrity_check()
        referenced, counts = database.integrity.referenced_blobs(), database.integrity.counts()
    finally:
        database.close()
    if integrity != ["ok"]:
        problems.append(f"database: {'; '.join((integrity or [])[:3])}")
    store = BlobStore(root / "blobs")
    stored = set(store.digests())
    problems += [f"blob {d[:12]}...: missing" for d in sorted(set(referenced) - stored - set(manifest["missing_blobs"]))]
    problems += [f"blob {d[:12]}...: damaged" for d in sorted(stored) if _file_sha256(store.path_for(d)) != d]
    if problems:
        raise BackupError(f"the backup does not verify ({len(problems)} problem(s)): {'; '.join(problems[:5])}",
                          "use another backup; this one was damaged after it was written")
    return counts


def _onto_servers(tmp: Path, database: str | None, blobs: str | None) -> None:
    """Move a verified copy's blobs into an object store and its rows into an empty server database, and
    point its config at them. Blobs first (uploads are idempotent), rows in one transaction, config last."""
    if database is None and blobs is None:
        return
    config = WorkspaceConfig(**yaml.safe_load((tmp / CONFIG_NAME).read_text()))
    if blobs is not None:
        config = config.model_copy(update={"blobs": blobs})
        _upload_blobs(BlobStore(tmp / "blobs"), object_store(tmp, config))
        shutil.rmtree(tmp / "blobs")
    if database is not None:
        config = config.model_copy(update={"database": database})
        with Database(database) as target, Database(f"sqlite:///{tmp / DB_NAME}") as copy:
            if rows_outside_migrations(target.engine):
                raise BackupError(f"the database {target.url} already holds workspace data",
                                  "restore into a new, empty database (CREATE DATABASE ...), or drop this one first")
            target.migrate()
            copy_rows(copy.engine, target.engine)
        (tmp / DB_NAME).unlink()
    atomic_write_text(tmp / CONFIG_NAME, yaml.safe_dump(config.model_dump(), sort_keys=False))


def _upload_blobs(source: BlobStore, target: BlobStore, batch: int = 64) -> None:
    """Every blob of ``source`` into ``target``, a batch of concurrent uploads at a time."""
    digests = list(source.digests())
    for start in range(0, len(digests), batch):
        target.put_many([source.get(digest) for digest in digests[start:start + batch]])


def _refuse_target(dest: Path, *, force: bool, what: str) -> bool:
    """Whether ``dest`` holds something to replace; BackupError unless that is allowed."""
    if not dest.exists():
        return False
    if not dest.is_dir():
        raise BackupError(f"{dest} exists and is not a folder", f"{what} into a new or empty folder")
    if not any(dest.iterdir()):
        return False
    if not force:
        hint = "choose a new or empty folder" + (", or pass --force to replace its contents" if what == "restore" else "")
        raise BackupError(f"{dest} is not empty", hint)
    return True


@contextmanager
def _staging(dest: Path) -> Iterator[Path]:
    """A temporary folder beside ``dest`` that becomes ``dest`` when the block completes, or vanishes."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{dest.name}-", dir=dest.parent))
    try:
        yield tmp
        if dest.exists() and not any(dest.iterdir()):
            dest.rmdir()
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _copy_blobs(source: BlobStore, target: BlobStore, digests: list[str]) -> tuple[int, int, list[str]]:
    """Copy the named blobs, checking each one's bytes against its name; return count, bytes, missing."""
    copied, size, missing = 0, 0, []
    for digest in digests:
        try:
            with source.open(digest) as handle:  # the store itself: an object store's local cache is no backup
                data = handle.read()
        except FileNotFoundError:
            missing.append(digest)
            continue
        if hashlib.sha256(data).hexdigest() != digest:
            raise BackupError(f"blob {digest[:12]}... in the workspace is damaged (its bytes do not match its name)",
                              "run inspectloop doctor, then back up again")
        path = target.path_for(digest)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        copied, size = copied + 1, size + len(data)
    return copied, size, missing


def _copy_files(workspace: Workspace, tmp: Path) -> dict[str, str]:
    """The config (pointing at the copied database) and every other file of the workspace but the
    database and the blobs (runs, models, reports, keys), with their SHA-256."""
    config = WorkspaceConfig(**{**workspace.config.model_dump(), "database": f"sqlite:///{DB_NAME}",
                                "blobs": "blobs"})
    atomic_write_text(tmp / CONFIG_NAME, yaml.safe_dump(config.model_dump(), sort_keys=False))
    files = {CONFIG_NAME: _file_sha256(tmp / CONFIG_NAME)}
    skip = {workspace.root / CONFIG_NAME, *(_database_files(workspace)), workspace.blobs.root}
    for path in sorted(_walk(workspace.root, skip)):
        relative = path.relative_to(workspace.root).as_posix()
        if not (tmp / relative).parent.exists():
            (tmp / relative).parent.mkdir(parents=True)
            shutil.copymode(path.parent, (tmp / relative).parent)  # keys/ stays 0700
        shutil.copy2(path, tmp / relative)  # with its mode: the signing key stays 0600
        files[relative] = _file_sha256(tmp / relative)
    return files


def _database_files(workspace: Workspace) -> list[Path]:
    name = workspace.db.engine.url.database
    if not name or workspace.db.engine.dialect.name != "sqlite":  # a server's database is not a file here
        return []
    return [Path(name + suffix) for suffix in ("", "-wal", "-shm", "-journal")]


def _walk(root: Path, skip: set[Path]) -> Iterator[Path]:
    """Regular files under ``root``, leaving out ``skip`` (files or folders) and temporary files."""
    skip = {p.resolve() for p in skip}
    for folder, subfolders, names in os.walk(root):
        here = Path(folder)
        subfolders[:] = [d for d in subfolders if (here / d).resolve() not in skip and not d.startswith(TMP_PREFIX)]
        for name in names:
            path = here / name
            if path.resolve() not in skip and not name.startswith(TMP_PREFIX) and path.is_file():
                yield path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _file_sha256(path: Path) -> str | None:
    try:
        with open(path, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError:
        return None
