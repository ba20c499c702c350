"""Ordered schema migrations. Each step runs once, inside a transaction, and is recorded.

Version 1 creates the foundation tables. Later steps append here (never edit a released one).
``schema.py`` holds the tables as of the latest version; each step creates the tables and columns
marked with its version there (``info=since(N)``): new tables whole, new columns on existing tables
with ``ALTER TABLE ... ADD COLUMN``. So a workspace made by an older inspectloop upgrades in place,
and a fresh database goes through the same steps.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import Column, Connection, ForeignKey, Index, MetaData, Table, inspect, select, text
from sqlalchemy.schema import CreateColumn

from inspectloop.errors import WorkspaceError
from inspectloop.store import schema
from inspectloop.store.people import DEFAULT_TOKEN_DAYS

Step = Callable[[Connection], None]


def _v1_foundation(conn: Connection) -> None:
    # Only the version-1 tables and columns: later ones are their own steps' to add.
    _create_tables_added_in(conn, 1)


def _v2_criteria_and_registry(conn: Connection) -> None:
    _create_tables_added_in(conn, 2)
    _add_columns_added_in(conn, 2)


def _v3_service_and_review(conn: Connection) -> None:
    _create_tables_added_in(conn, 3)
    _add_columns_added_in(conn, 3)


def _v4_monitoring(conn: Connection) -> None:
    _create_tables_added_in(conn, 4)
    _add_columns_added_in(conn, 4)


def _v5_security(conn: Connection) -> None:
    _create_tables_added_in(conn, 5)
    _add_columns_added_in(conn, 5)
    # Tokens issued before expiry existed get the default lifetime from the upgrade, not "never" and not "now".
    expires = (datetime.now(UTC) + timedelta(days=DEFAULT_TOKEN_DAYS)).isoformat(timespec="seconds")
    conn.execute(text("UPDATE users SET token_expires_at = :at WHERE token_expires_at IS NULL"), {"at": expires})


def _v6_regions(conn: Connection) -> None:
    _create_tables_added_in(conn, 6)


def _v7_first_week(conn: Connection) -> None:
    _create_tables_added_in(conn, 7)
    _add_columns_added_in(conn, 7)


def _v8_stations_and_sites(conn: Connection) -> None:
    _create_tables_added_in(conn, 8)
    _add_columns_added_in(conn, 8)


MIGRATIONS: list[tuple[int, str, Step]] = [
    (1, "foundation: images, classes, annotations, datasets, runs, models", _v1_foundation),
    (2, "acceptance criteria, model registry (versions, stages, acceptance reports), runs.criteria_id",
     _v2_criteria_and_registry),
    (3, "people, prediction log, shadow predictions, QC decisions, review queue", _v3_service_and_review),
    (4, "drift baselines and checks, alerts, camera health baselines and checks, recalibration cycles",
     _v4_monitoring),
    (5, "token expiry and revocation, browser sessions, user events, prediction content digests", _v5_security),
    (6, "region annotations (boxes, polygons) and the dataset versions that hold them", _v6_regions),
    (7, "interrupted training runs (process, heartbeat); settle queue for suspected label errors; "
        "perceptual hashes of stored images; graded classes (scale, grade) and soft labels (probability)",
     _v7_first_week),
    (8, "stations and sites: sync peers and their keys, the sync log, records synced from sites, site "
        "summaries (drift, daily metrics), sync cursors; shadow results keep two detectors' matched boxes",
     _v8_stations_and_sites),
]
LATEST = MIGRATIONS[-1][0]


def current_version(conn: Connection) -> int:
    if not inspect(conn).has_table("schema_migrations"):
        return 0
    versions = conn.execute(select(schema.schema_migrations.c.version)).scalars().all()
    return max(versions, default=0)


def migrate(conn: Connection) -> list[int]:
    """Apply every pending step; return the versions applied. Refuse a newer database."""
    schema.schema_migrations.create(conn, checkfirst=True)
    version = current_version(conn)
    if version > LATEST:
        raise WorkspaceError(
            f"workspace database is at schema version {version}, newer than this inspectloop ({LATEST})",
            "upgrade inspectloop to open this workspace",
        )
    applied = []
    for number, name, step in MIGRATIONS:
        if number > version:
            step(conn)
            conn.execute(schema.schema_migrations.insert().values(
                version=number, name=name, applied_at=datetime.now(UTC).isoformat()))
            applied.append(number)
    return applied


def _create_tables_added_in(conn: Connection, version: int) -> None:
    """Create the tables that schema ``version`` added, with the columns they had at that version."""
    frozen = MetaData()  # every table as it was at ``version``, so foreign keys resolve
    existing = [_table_as_of(table, version, frozen) for name, table in schema.metadata.tables.items()
                if name != "schema_migrations" and schema.added_in(table) <= version]
    frozen.create_all(conn, tables=[table for table in existing
                                    if schema.added_in(schema.metadata.tables[table.name]) == version])


def _add_columns_added_in(conn: Connection, version: int) -> None:
    """``ALTER TABLE ADD COLUMN`` for each column that schema ``version`` added to an older table.

    Such a column must be nullable or have a server default: existing rows get it too.
    """
    for table in schema.metadata.tables.values():
        if schema.added_in(table) >= version:
            continue
        for column in table.columns:
            if schema.added_in(column) == version:
                spec = CreateColumn(column).compile(dialect=conn.dialect)
                references = "".join(f" REFERENCES {fk.column.table.name} ({fk.column.name})"
                                     for fk in column.foreign_keys)
                conn.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {spec}{references}"))


def _table_as_of(table: Table, version: int, metadata: MetaData) -> Table:
    """A copy of ``table`` holding only the columns (and their indexes) that existed at ``version``.

    It copies what ``schema.py`` uses: types, keys, nullability, uniqueness, indexes (partial ones
    included), foreign keys, server defaults. ``tests/store/test_migrations.py`` checks that a fresh
    database, an upgraded one and ``schema.py`` agree, so anything this misses shows up there.
    """
    columns = [Column(c.name, c.type, *[ForeignKey(fk.target_fullname) for fk in c.foreign_keys],
                      primary_key=c.primary_key, nullable=c.nullable, index=c.index, unique=c.unique,
                      autoincrement=c.autoincrement, server_default=c.server_default)
               for c in table.columns if schema.added_in(c) <= version]
    copy = Table(table.name, metadata, *columns)
    for index in table.indexes:  # table-level indexes; those from Column(index=True) come with the column
        names = [c.name for c in index.columns]
        if index.name not in {i.name for i in copy.indexes} and all(n in copy.c for n in names):
            Index(index.name, *[copy.c[n] for n in names], unique=index.unique, **index.dialect_kwargs)
    return copy
