"""A workspace: one site's project on disk (config file, database, blob store, runs, reports)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from inspectloop.domain.labelling import LabellingPolicy
from inspectloop.errors import WorkspaceError
from inspectloop.keys import create_signing_key
from inspectloop.store import BlobStore, Database, atomic_write_text, now_iso

CONFIG_NAME = "inspectloop.yaml"


class WorkspaceConfig(BaseModel):
    """The workspace's config file. Paths are relative to the workspace folder."""

    model_config = ConfigDict(extra="forbid")

    format: int = 1
    name: str
    created_at: str
    database: str = "sqlite:///inspectloop.db"
    blobs: str = "blobs"
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

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def init_workspace(root: Path, name: str | None = None, database: str | None = None) -> Workspace:
    """Create a workspace in ``root`` (new or empty folder) with its model signing key (``inspectloop.keys``).

    ``database`` is the database URL (default: an SQLite file in the folder), e.g. an empty PostgreSQL
    database ``postgresql+psycopg://USER:PASSWORD@HOST:5432/NAME`` shared by several services.
    Refuses to touch an existing one.
    """
    root = Path(root)
    if (root / CONFIG_NAME).exists():
        raise WorkspaceError(f"{root} is already an inspectloop workspace", "open it instead of initialising it")
    if root.exists() and any(root.iterdir()):
        raise WorkspaceError(f"{root} is not empty", "choose a new or empty folder for the workspace")
    config = WorkspaceConfig(name=name or root.resolve().name, created_at=now_iso(),
                             **({"database": database} if database else {}))
    if not config.database.startswith("sqlite"):  # a database it cannot reach leaves no half-made folder behind
        with Database(config.database) as db:
            db.ping()
    root.mkdir(parents=True, exist_ok=True)
    for folder in (config.blobs, "runs", "reports"):
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


def _connect(root: Path, config: WorkspaceConfig) -> Workspace:
    url = config.database
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        url = f"sqlite:///{(root / url.removeprefix('sqlite:///')).resolve()}"
    return Workspace(root=root, config=config, db=Database(url, root=root), blobs=BlobStore(root / config.blobs))
