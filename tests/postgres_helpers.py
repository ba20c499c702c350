"""An embedded PostgreSQL server (pgserver's binaries: nothing from the system), and throwaway databases on it.

The test session's ``postgres_server`` fixture and ``benchmarks.scale`` both start their server here.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from sqlalchemy import make_url


@contextmanager
def embedded_postgres(*, fsync: bool) -> Iterator[str]:
    """Start a PostgreSQL server from pgserver's wheel in a new folder; yield the URL of its maintenance database.

    ``fsync=False`` is for tests (a test server need not survive a power cut, and CREATE DATABASE is several
    times faster); a benchmark keeps it on, as production would. Raises whatever stops the server from starting.
    """
    import pgserver  # type: ignore[import-untyped]

    # Not under pytest's basetemp: as root, pgserver runs the server as a user of its own, and every pytest
    # session resets that folder to owner-only; a short path also keeps the socket under its 107-byte limit.
    folder = Path(tempfile.mkdtemp(prefix="inspectloop-pg-"))
    try:
        server = pgserver.get_server(folder / "data", cleanup_mode="delete")
        try:
            if not fsync:
                server.psql("ALTER SYSTEM SET fsync = off; SELECT pg_reload_conf();")
            yield server.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)
        finally:
            server.cleanup()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def new_postgres_database(server_url: str) -> str:
    """Create an empty database on the test server; return its URL (tests never share a database)."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(_libpq(server_url), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def drop_postgres_database(server_url: str, url: str) -> None:
    """Drop a test database, closing whatever connections a test left open (a killed service's, say)."""
    with psycopg.connect(_libpq(server_url), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {make_url(url).database} WITH (FORCE)")


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)
