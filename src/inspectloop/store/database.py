"""The workspace database: its engine, transactions, migrations, and one repository per concept."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, create_engine, event, make_url, text
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from inspectloop.envref import expand, has_literal_password, hide_password
from inspectloop.errors import WorkspaceError, missing_extra
from inspectloop.store.base import ConnectionSource
from inspectloop.store.cameras import CameraRepository
from inspectloop.store.criteria import CriteriaRepository
from inspectloop.store.datasets import DatasetRepository
from inspectloop.store.drift import DriftRepository
from inspectloop.store.hashes import ImageHashRepository
from inspectloop.store.images import ImageRepository
from inspectloop.store.integrity import IntegrityRepository
from inspectloop.store.labels import LabelRepository
from inspectloop.store.migrations import migrate
from inspectloop.store.people import PeopleRepository
from inspectloop.store.predictions import PredictionRepository
from inspectloop.store.recalibration import RecalibrationRepository
from inspectloop.store.regions import RegionRepository
from inspectloop.store.registry import RegistryRepository
from inspectloop.store.review import ReviewRepository
from inspectloop.store.runs import RunRepository
from inspectloop.store.settle import SettleRepository
from inspectloop.store.sync import SyncRepository
from inspectloop.store.transfer import copy_rows


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer (service + CLI at once)
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints, safe against corruption in WAL
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


# The driver each database uses when its URL names none: psycopg 3, the one the ``postgres`` extra installs
# (SQLAlchemy's own default for ``postgresql://`` is psycopg2, which nothing here installs).
DEFAULT_DRIVERS = {"postgresql": "postgresql+psycopg", "postgres": "postgresql+psycopg"}
CONNECT_TIMEOUT_S = 10  # an unreachable server fails at start, not after the OS's TCP timeout


def parse_database_url(url: str) -> URL:
    """A database URL parsed, with the driver inspectloop installs when it names none (``postgresql://``)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise WorkspaceError(f"the workspace database URL {hide_password(url)!r} is not a database URL",
                             "set database: in inspectloop.yaml to sqlite:///inspectloop.db or "
                             "postgresql+psycopg://USER:PASSWORD@HOST:5432/DATABASE") from None
    parsed = _from_environment(parsed)
    return parsed.set(drivername=DEFAULT_DRIVERS.get(parsed.drivername, parsed.drivername))


def _from_environment(url: URL) -> URL:
    """``url`` with ``${NAME}`` references in its user, password, host or database read from the environment.

    Each part is replaced on its own, so a password holding ``@`` or ``/`` needs no URL quoting.
    """
    parts = {name: getattr(url, name) for name in ("username", "password", "host", "database")}
    changed = {name: expand(value, "database:") for name, value in parts.items()
               if isinstance(value, str) and "${" in value}
    return url.set(**changed) if changed else url


def redacted(url: str | URL) -> str:
    """A database URL fit for a message or a log: its password replaced by ``***``."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<not a database URL>"


def password_written_out(url: str) -> bool:
    """Whether a database URL carries its password itself rather than a ``${NAME}`` reference."""
    try:
        return has_literal_password(make_url(url).password)
    except ArgumentError:
        return False


def make_engine(url: str) -> Engine:
    """An engine for a database URL; MissingExtraError (one line) when its driver is not installed."""
    parsed = parse_database_url(url)
    options: dict[str, Any] = {}
    if parsed.get_backend_name() == "postgresql":
        # pre_ping: a pooled connection the server dropped (restart, failover) is replaced, not handed out
        options = {"pool_pre_ping": True, "connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}
    try:
        engine = create_engine(parsed, **options)
    except ImportError as exc:  # SQLAlchemy imports the driver here: psycopg for postgresql://
        raise (missing_extra(exc) or exc) from None
    except NoSuchModuleError:
        raise WorkspaceError(f"the workspace database URL {redacted(parsed)} names an unknown database or driver",
                             "use sqlite:///FILE or postgresql+psycopg://USER:PASSWORD@HOST:5432/DATABASE") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def unreachable(url: str | URL, exc: DBAPIError) -> WorkspaceError:
    """The one-line error for a database that refused or could not take a connection."""
    reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
    return WorkspaceError(f"cannot open the workspace database {redacted(url)}: {reason}",
                          "check that the server is running and reachable, and the host, port, user, password "
                          "and database name in inspectloop.yaml (database:)")


class Repositories:
    """One repository per concept, all drawing their connections from one source."""

    def __init__(self, connect: ConnectionSource, root: Path | None) -> None:
        self.images = ImageRepository(connect, root)
        self.labels = LabelRepository(connect, root)
        self.datasets = DatasetRepository(connect, root)
        self.runs = RunRepository(connect, root)
        self.criteria = CriteriaRepository(connect, root)
        self.registry = RegistryRepository(connect, root)
        self.people = PeopleRepository(connect, root)
        self.predictions = PredictionRepository(connect, root)
        self.review = ReviewRepository(connect, root)
        self.drift = DriftRepository(connect, root)
        self.cameras = CameraRepository(connect, root)
        self.recalibration = RecalibrationRepository(connect, root)
        self.integrity = IntegrityRepository(connect, root)
        self.regions = RegionRepository(connect, root)
        self.settle = SettleRepository(connect, root)
        self.hashes = ImageHashRepository(connect, root)
        self.sync = SyncRepository(connect, root)


class Transaction(Repositories):
    """The repositories inside one transaction: everything done through them commits together or not at all."""

    def __init__(self, conn: Connection, root: Path | None) -> None:
        @contextmanager
        def same() -> Iterator[Connection]:
            yield conn

        super().__init__(same, root)


class DurableWriter:
    """One long-lived connection that runs one transaction after another (see ``Database.durable_writer``)."""

    def __init__(self, conn: Connection, root: Path | None) -> None:
        self._conn = conn
        self._root = root

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        with self._conn.begin():
            yield Transaction(self._conn, self._root)


class Database(Repositories):
    """The workspace database. Each repository call on it runs in a transaction of its own;
    ``transaction()`` gives the same repositories inside one transaction."""

    def __init__(self, url: str, root: Path | None = None) -> None:
        self.engine = make_engine(url)
        self.root = Path(root).resolve() if root is not None else None
        super().__init__(self.engine.begin, self.root)

    def connect(self) -> Connection:
        """A connection of this database's; WorkspaceError (URL, password hidden, and the fix) when unreachable."""
        try:
            return self.engine.connect()
        except DBAPIError as exc:
            raise unreachable(self.engine.url, exc) from None

    def migrate(self) -> list[int]:
        """Bring the schema up to date; return the versions applied."""
        with self.connect() as conn, conn.begin():
            return migrate(conn)

    def ping(self) -> str:
        """The server's name and version (``SQLite 3.45.1``, ``PostgreSQL 16.2``); WorkspaceError when unreachable."""
        with self.connect() as conn:
            if conn.dialect.name == "sqlite":
                return f"SQLite {conn.exec_driver_sql('SELECT sqlite_version()').scalar_one()}"
            return " ".join(str(conn.execute(text("SELECT version()")).scalar_one()).split()[:2])

    @property
    def url(self) -> str:
        """This database's URL, password hidden."""
        return redacted(self.engine.url)

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """All writes inside commit together or not at all."""
        with self.engine.begin() as conn:
            yield Transaction(conn, self.root)

    @contextmanager
    def durable_writer(self) -> Iterator[DurableWriter]:
        """A long-lived connection whose commits reach the disk before they return (the prediction log's)."""
        with self.engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                # Commits reach the disk before any request is answered, so not even a power cut loses an
                # answered prediction (the engine default, NORMAL, only survives a killed process). Measured:
                # with group commit the fsync costs nothing visible at half load (benchmarks.service_load).
                conn.exec_driver_sql("PRAGMA synchronous=FULL")
                conn.commit()
            yield DurableWriter(conn, self.root)

    def backup_to(self, path: Path) -> None:
        """Copy a consistent snapshot of this database to the SQLite file ``path`` while others keep writing.

        SQLite: its online backup API. PostgreSQL: every row, read in one ``REPEATABLE READ`` transaction
        (:mod:`inspectloop.store.transfer`). Either way the copy is the database as of one moment, so
        writers (the services) never stop and the copy never holds half a transaction.
        """
        if self.engine.dialect.name != "sqlite":
            with Database(f"sqlite:///{path}") as target:
                target.migrate()
                copy_rows(self.engine, target.engine)
            return
        source = self.engine.raw_connection()
        target = sqlite3.connect(path)
        try:
            source.driver_connection.backup(target)  # type: ignore[union-attr]
        finally:
            target.close()
            source.close()

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
