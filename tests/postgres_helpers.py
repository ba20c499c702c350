"""Throwaway databases on the test session's PostgreSQL server (the ``postgres_server`` fixture)."""

from __future__ import annotations

import uuid

import psycopg
from sqlalchemy import make_url


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
