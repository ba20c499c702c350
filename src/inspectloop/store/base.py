"""What every repository shares: where its connections come from, timestamps, and workspace-relative paths."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite

ConnectionSource = Callable[[], AbstractContextManager[Connection]]
Row = TypeVar("Row")


def now_iso() -> str:
    """Now, in the store's timestamp format (UTC, to the second), so that text order is time order."""
    return datetime.now(UTC).isoformat(timespec="seconds")


class Repository:
    """One concept's queries. Every call runs on a connection from ``connect``: the caller's transaction
    when the repository belongs to a ``Transaction``, a transaction of its own when it belongs to the
    ``Database``."""

    def __init__(self, connect: ConnectionSource, root: Path | None = None) -> None:
        self._connect = connect
        self._root = root

    def _store_path(self, path: str) -> str:
        """Paths inside the workspace are stored relative to it, so a workspace can be moved or copied."""
        if self._root is None:
            return path
        try:
            return Path(path).resolve().relative_to(self._root).as_posix()
        except ValueError:
            return path

    def _load_path(self, path: str) -> str:
        return path if self._root is None or Path(path).is_absolute() else str(self._root / path)


def as_row(cls: Callable[..., Row], row: Any) -> Row:
    """A typed row from a result row whose columns are exactly ``cls``'s fields."""
    return cls(**row._mapping)


def chunks(values: list[Any], size: int = 500) -> list[list[Any]]:
    """``values`` in pieces small enough for one SQL ``IN`` list."""
    return [values[start:start + size] for start in range(0, len(values), size)]


def insert_new(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows``, skipping those whose key (primary or unique) is taken, also by a concurrent writer.

    ``ON CONFLICT DO NOTHING``, which SQLite and PostgreSQL both speak; a read-then-insert would race when
    several processes (services on one PostgreSQL database) write the same row at once.
    """
    if rows:
        conn.execute(_dialect_insert(conn, table).on_conflict_do_nothing(), rows)


def insert_new_id(conn: Connection, table: Table, values: dict[str, Any]) -> int | None:
    """Insert one row unless a unique key of it is taken (see ``insert_new``); its id, or None when taken."""
    statement = _dialect_insert(conn, table).values(**values).on_conflict_do_nothing().returning(table.c.id)
    found = conn.execute(statement).scalar()
    return None if found is None else int(found)


def _dialect_insert(conn: Connection, table: Table) -> Any:
    return (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(table)
