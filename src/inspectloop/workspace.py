"""A workspace: one site's project on disk (config file, database, blob store, runs, reports)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from inspectloop.domain.labelling import LabellingPolicy
from inspectloop.envref import expand, expand_options
from inspectloop.errors import WorkspaceError
from inspectloop.keys import create_signing_key
from inspectloop.store import BlobStore, Database, atomic_write_text, now_iso
from inspectloop.store.objects import ObjectBlobStore, is_object_url

CONFIG_NAME = "inspectloop.yaml"
OBJECT_CACHE = "blob-cache"  # local copies of an object store's blobs, for code that needs a file


class WorkspaceConfig(BaseModel):
    """The workspace's config file. Paths are relative to the workspace folder."""

    model_config = ConfigDict(extra="forbid")

    format: int = 1
    name: str
    created_at: str
    # ${NAME} in these three is read from the environment when the workspace opens (inspectloop.envref):
    # passwords and secrets stay out of this file
    database: str = "sqlite:///inspectloop.db"
    blobs: str = "blobs"  # a folder, or an object store URL: s3://BUCKET/PREFIX
    blob_options: dict[str, Any] = Field(default_factory=dict)  # fsspec options, e.g. endpoint_url for MinIO
    # an object store's local copies (for code that needs files) are kept under this size, least recently used
    # out first; None: unbounded
    blob_cache_mb: int | None = Field(default=4096, gt=0)
    labelling: LabellingPolicy = Field(default_factory=LabellingPolicy)  # whose word counts most


@dataclass
class Workspace:
    root: Path
    config: WorkspaceConfig
    db: Database
    blobs: BlobStore

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    @property
    def cache_dir(self) -> Path:
        """Derived files that can be rebuilt (decoded training images): never backed up, safe to delete."""
        return self.root / "cache"

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def init_workspace(root: Path, name: str | None = None, database: str | None = None, blobs: str | None = None,
                   blob_options: dict[str, Any] | None = None) -> Workspace:
    """Create a workspace in ``root`` (new or empty folder) with its model signing key (``inspectloop.keys``).

    ``database`` is the database URL (default: an SQLite file in the folder), e.g. an empty PostgreSQL
    database ``postgresql+psycopg://USER:PASSWORD@HOST:5432/NAME`` shared by several services. ``blobs``
    is the blob store (default: a folder in the workspace), e.g. ``s3://BUCKET/PREFIX`` with ``blob_options``
    for fsspec (``endpoint_url`` of an S3-compatible server, ``key``/``secret`` unless in the environment).
    Refuses to touch an existing one.
    """
    root = Path(root)
    if (root / CONFIG_NAME).exists():
        raise WorkspaceError(f"{root} is already an inspectloop workspace", "open it instead of initialising it")
    if root.exists() and any(root.iterdir()):
        raise WorkspaceError(f"{root} is not empty", "choose a new or empty folder for the workspace")
    chosen = {"database": database, "blobs": blobs, "blob_options": blob_options}
    config = WorkspaceConfig(name=name or root.resolve().name, created_at=now_iso(),
                             **{key: value for key, value in chosen.items() if value})
    # A database or blob store it cannot reach leaves no half-made folder behind.
    if not config.database.startswith("sqlite"):
        with Database(config.database) as db:
            db.ping()
    if is_object_url(config.blobs):
        object_store(root, config).check()
    root.mkdir(parents=True, exist_ok=True)
    for folder in ("runs", "reports", *([] if is_object_url(config.blobs) else [config.blobs])):
        (root / folder).mkdir(exist_ok=True)
    workspace = _connect(root, config)
    workspace.db.migrate()
    create_signing_key(root)
    # The config is written last: a folder without it is not (yet) a workspace.
    atomic_write_text(root / CONFIG_NAME, yaml.safe_dump(config.model_dump(), sort_keys=False))
    return workspace


def open_workspace(root: Path) -> Workspace:
    """Open an existing workspace and bring its database schema up to date."""
    root = Path(root)
    path = root / CONFIG_NAME
    if not path.exists():
        raise WorkspaceError(f"{root} is not an inspectloop workspace (no {CONFIG_NAME})",
                             f"create one with: inspectloop init {root}")
    try:
        config = WorkspaceConfig(**(yaml.safe_load(path.read_text()) or {}))
    except (yaml.YAMLError, ValidationError, TypeError) as exc:
        raise WorkspaceError(f"{path} is malformed: {exc}", "restore it from backup or fix the named field") from exc
    workspace = _connect(root, config)
    workspace.db.migrate()
    _remove_abandoned_temporaries(workspace)
    return workspace


def _remove_abandoned_temporaries(workspace: Workspace) -> None:
    """A writer killed mid-ingest leaves ``.tmp-*`` files; remove those no live writer can still rename.

    Best effort: a read-only store is still opened (``inspectloop doctor`` reports what is left).
    """
    try:
        workspace.blobs.remove_abandoned()
    except OSError:
        pass


def object_store(root: Path, config: WorkspaceConfig) -> ObjectBlobStore:
    """The workspace's object store, its options' ``${NAME}`` references read from the environment."""
    bound = None if config.blob_cache_mb is None else config.blob_cache_mb * 1024 * 1024
    return ObjectBlobStore(expand(config.blobs, "blobs"), root / OBJECT_CACHE,
                           expand_options(config.blob_options, "blob_options"), cache_max_bytes=bound)


def _connect(root: Path, config: WorkspaceConfig) -> Workspace:
    url = config.database
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        url = f"sqlite:///{(root / url.removeprefix('sqlite:///')).resolve()}"
    blobs = BlobStore(root / config.blobs)
    if is_object_url(config.blobs):
        blobs = object_store(root, config)
        blobs.check()  # an unreachable bucket fails at start, not at the first image
    return Workspace(root=root, config=config, db=Database(url, root=root), blobs=blobs)
