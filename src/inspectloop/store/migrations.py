"""Ordered schema migrations. Each step runs once, inside a transaction, and is recorded.

Version 1 creates the foundation tables. Later steps append here (never edit a released one).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Connection, inspect, select

from inspectloop.errors import WorkspaceError
from inspectloop.store import schema

Step = Callable[[Connection], None]


def _v1_foundation(conn: Connection) -> None:
    tables = [t for name, t in schema.metadata.tables.items() if name != "schema_migrations"]
    schema.metadata.create_all(conn, tables=tables)


MIGRATIONS: list[tuple[int, str, Step]] = [
    (1, "foundation: images, classes, annotations, datasets, runs, models", _v1_foundation),
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
