"""Schema migrations: step 1 stays the released schema, v1 workspaces upgrade in place, schema.py is the truth."""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect, insert, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from inspectloop.accept.criteria import lock_criteria
from inspectloop.domain import ClassDefinition
from inspectloop.people import authenticate, token_digest
from inspectloop.registry import register
from inspectloop.store import migrations, now_iso, schema
from inspectloop.workspace import init_workspace, open_workspace
from tests.registry_helpers import add_run_with_model, write_criteria

RELEASED_V1 = Path(__file__).parent / "data" / "schema_v1.sql"


def _statements(sql: str) -> list[str]:
    """Each CREATE statement with its whitespace normalised, sorted."""
    body = "\n".join(line for line in sql.splitlines() if not line.startswith("--"))
    return sorted(re.sub(r"\s+", " ", s).strip() for s in body.split(";") if s.strip())


def _schema_sql(database: Path) -> list[str]:
    with sqlite3.connect(database) as conn:
        rows = conn.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name != 'schema_migrations'")
        return _statements(";".join(row[0] for row in rows))


def _v1_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:1])
    monkeypatch.setattr(migrations, "LATEST", 1)


def _make_v1_workspace(root: Path, monkeypatch: pytest.MonkeyPatch, database: str | None = None) -> None:
    """A workspace as inspectloop 0.1.0 made it (migration step 1 only), with a class, a run and a model."""
    with monkeypatch.context() as patch:
        _v1_only(patch)
        with init_workspace(root, name="old-line", database=database) as ws:
            with ws.db.engine.connect() as conn:
                assert migrations.current_version(conn) == 1
            with ws.db.engine.begin() as conn:  # the columns classes had in version 1
                conn.execute(text("INSERT INTO classes (name, task, criterion, severity, is_good, created_at, "
                                  "updated_at) VALUES ('scratch', 'classification', '', 'major', 0, "
                                  "'2025-01-01T00:00:00+00:00', '2025-01-01T00:00:00+00:00')"))
            ws.db.datasets.add("v1", None, {}, {"count": 0}, [])
            with ws.db.engine.begin() as conn:  # the columns runs had in version 1
                conn.execute(text(
                    "INSERT INTO runs (id, kind, status, dataset_version, config, code_version, metrics, artifacts, "
                    "started_at) VALUES ('run-old', 'train', 'finished', 'v1', '{\"mode\": \"probe\"}', '0.1.0', "
                    "'{\"test\": {\"macro_recall\": 0.9}}', 'runs/run-old', '2025-01-01T00:00:00+00:00')"))


def test_step_one_still_creates_exactly_the_released_schema(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _make_v1_workspace(tmp_path / "ws", monkeypatch)
    assert _schema_sql(tmp_path / "ws" / "inspectloop.db") == _statements(RELEASED_V1.read_text())


def test_a_v1_workspace_upgrades_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          database_url: str) -> None:
    _make_v1_workspace(tmp_path / "ws", monkeypatch, database_url)
    with open_workspace(tmp_path / "ws") as ws:
        with ws.db.engine.connect() as conn:
            assert migrations.current_version(conn) == migrations.LATEST == 8
            names = conn.execute(select(schema.schema_migrations.c.name)).scalars().all()
        assert len(names) == 8 and names[1].startswith("acceptance criteria") and names[2].startswith("people")
        assert names[3].startswith("drift baselines") and names[4].startswith("token expiry")
        assert names[5].startswith("region annotations") and names[6].startswith("interrupted training runs")
        assert names[7].startswith("stations and sites")
        run = ws.db.runs.get("run-old")
        assert run is not None and run.criteria_id is None and run.metrics == {"test": {"macro_recall": 0.9}}
        assert list(ws.db.labels.classes()) == ["scratch"]
        for name in ("good", "dark"):  # the new tables work on the upgraded database
            ws.db.labels.upsert_class(ClassDefinition(name=name))
        criteria = lock_criteria(ws, write_criteria(tmp_path), by="ana")
        add_run_with_model(ws, "run-new", criteria_id=criteria.id)
        assert register(ws, "run-new").criteria_id == criteria.id
    with open_workspace(tmp_path / "ws") as ws, ws.db.engine.begin() as conn:
        assert migrations.migrate(conn) == []  # nothing left to apply


def test_tokens_issued_before_expiry_existed_get_the_default_lifetime_from_the_upgrade(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str) -> None:
    with monkeypatch.context() as patch:
        patch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:4])
        patch.setattr(migrations, "LATEST", 4)
        with init_workspace(tmp_path / "ws", database=database_url) as ws, ws.db.engine.begin() as conn:
            conn.execute(text("INSERT INTO users (name, role, token_sha256, created_at, disabled) VALUES "
                              "('rita', 'reviewer', :digest, '2025-01-01T00:00:00+00:00', :disabled)"),
                         {"digest": token_digest("old-token"), "disabled": False})
    with open_workspace(tmp_path / "ws") as ws:
        assert authenticate(ws, "old-token").name == "rita"
        expires = datetime.fromisoformat(str(ws.db.people.get("rita").token_expires_at))
        assert timedelta(days=89) < expires - datetime.now(UTC) <= timedelta(days=90)


def test_the_released_v1_database_upgrades_like_a_fresh_one(tmp_path: Path) -> None:
    old, fresh = tmp_path / "old.db", tmp_path / "fresh.db"
    with sqlite3.connect(old) as conn:
        conn.executescript(RELEASED_V1.read_text())
        conn.execute("CREATE TABLE schema_migrations (version INTEGER NOT NULL, name VARCHAR NOT NULL, "
                     "applied_at VARCHAR NOT NULL, PRIMARY KEY (version))")
        conn.execute("INSERT INTO schema_migrations VALUES (1, 'foundation', '2025-01-01T00:00:00+00:00')")
    for path in (old, fresh):
        with create_engine(f"sqlite:///{path}").begin() as conn:
            migrations.migrate(conn)
    assert _describe(old) == _describe(fresh) == _describe_metadata()


def test_at_most_one_version_is_in_production(tmp_path: Path, database_url: str) -> None:
    with init_workspace(tmp_path / "ws", database=database_url) as ws:
        ws.db.datasets.add("v1", None, {}, {"count": 0}, [])
        ws.db.runs.add("run-a", "v1", {}, "0.1.0", "runs/run-a")
        ids = [ws.db.runs.add_model("run-a", "fp32", f"m{i}.onnx", "0" * 64, "0" * 64, {}) for i in range(3)]
        row = dict(run_id="run-a", variant="fp32", path="m.onnx", file_sha256="0" * 64, created_at=now_iso(),
                   lineage={})
        with ws.db.engine.begin() as conn:
            conn.execute(insert(schema.model_versions).values(name="a", model_id=ids[0], stage="production", **row))
            conn.execute(insert(schema.model_versions).values(name="b", model_id=ids[1], stage="retired", **row))
        with pytest.raises(IntegrityError), ws.db.engine.begin() as conn:
            conn.execute(insert(schema.model_versions).values(name="c", model_id=ids[2], stage="production", **row))


def _describe(path: Path) -> dict[str, Any]:
    return _describe_engine(create_engine(f"sqlite:///{path}"))


def _describe_metadata() -> dict[str, Any]:
    """The same description of the tables as ``schema.py`` declares them, created in one go."""
    engine = create_engine("sqlite://")  # in memory: one connection, kept by the pool
    schema.metadata.create_all(engine)
    return _describe_engine(engine)


def _describe_engine(engine: Engine) -> dict[str, Any]:
    """Tables with their columns (name, type, nullable, default), primary key, foreign keys and indexes."""
    with engine.connect() as conn:
        found = inspect(conn)
        return {table: {
            "columns": [(c["name"], str(c["type"]), c["nullable"], c["default"]) for c in found.get_columns(table)],
            "primary_key": found.get_pk_constraint(table)["constrained_columns"],
            "foreign_keys": sorted((tuple(f["constrained_columns"]), f["referred_table"])
                                   for f in found.get_foreign_keys(table)),
            "unique": sorted(tuple(u["column_names"]) for u in found.get_unique_constraints(table)),
            "indexes": sorted((i["name"], tuple(i["column_names"]), bool(i["unique"]))
                              for i in found.get_indexes(table)),
            "partial": sorted(conn.execute(text(PARTIAL_INDEXES[conn.dialect.name]), {"t": table}).scalars()),
        } for table in sorted(found.get_table_names())}


PARTIAL_INDEXES = {  # each dialect's own text of a table's partial indexes
    "sqlite": "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = :t AND sql LIKE '%WHERE%'",
    "postgresql": "SELECT indexdef FROM pg_indexes WHERE tablename = :t AND indexdef LIKE '%WHERE%'",
}


def test_on_postgresql_the_migrations_build_what_schema_py_declares(postgres_server: str) -> None:
    from tests.postgres_helpers import drop_postgres_database, new_postgres_database

    migrated, declared = new_postgres_database(postgres_server), new_postgres_database(postgres_server)
    try:
        with create_engine(migrated).begin() as conn:
            assert migrations.migrate(conn) == list(range(1, migrations.LATEST + 1))
        schema.metadata.create_all(create_engine(declared))
        described = [_describe_engine(create_engine(url)) for url in (migrated, declared)]
        assert described[0]["predictions"]["columns"] and described[0] == described[1]
    finally:
        for url in (migrated, declared):
            create_engine(url).dispose()
            drop_postgres_database(postgres_server, url)
