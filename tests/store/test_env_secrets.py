"""Passwords and secrets from environment variables: ``${NAME}`` in inspectloop.yaml, never the value itself."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import make_url

from inspectloop.envref import expand, expand_options, hide_password
from inspectloop.errors import WorkspaceError
from inspectloop.ingest import ingest, scan_folder
from inspectloop.store.database import Database, parse_database_url
from inspectloop.workspace import CONFIG_NAME, init_workspace, open_workspace
from tests.service_helpers import free_port


def test_references_are_expanded_and_a_missing_one_is_named() -> None:
    environ = {"PW": "p@ss/w:rd", "HOST": "db"}
    assert expand("${PW}-$literal-${HOST}", "database:", environ) == "p@ss/w:rd-$literal-db"
    with pytest.raises(WorkspaceError) as caught:
        expand("x${NOPE}", "blob_options.secret", environ)
    assert "blob_options.secret in inspectloop.yaml refers to the environment variable NOPE" in caught.value.message
    assert "export NOPE=" in (caught.value.hint or "")


def test_a_database_password_from_the_environment_needs_no_quoting_and_is_never_shown(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LINE3_DB_PASSWORD", "p@ss/w:rd")
    url = parse_database_url("postgresql://inspect:${LINE3_DB_PASSWORD}@db.plant:5432/line3")
    assert url.password == "p@ss/w:rd" and url.host == "db.plant" and url.drivername == "postgresql+psycopg"
    assert "p@ss" not in url.render_as_string(hide_password=True)
    port = free_port()
    with pytest.raises(WorkspaceError) as caught:
        Database(f"postgresql://inspect:${{LINE3_DB_PASSWORD}}@127.0.0.1:{port}/line3").ping()
    assert f"inspect:***@127.0.0.1:{port}/line3" in caught.value.message and "p@ss" not in str(caught.value)
    with pytest.raises(WorkspaceError) as caught:  # not even parseable: the password is still hidden
        parse_database_url("postgresql//inspect:hunter2@db/line3 extra")
    assert "hunter2" not in str(caught.value)
    assert hide_password("s3://AKIA:secret@bucket/x") == "s3://AKIA:***@bucket/x"


def test_a_postgresql_workspace_keeps_the_reference_not_the_value(tmp_path: Path, postgres_server: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.postgres_helpers import drop_postgres_database, new_postgres_database

    url = new_postgres_database(postgres_server)
    real = make_url(url)
    monkeypatch.setenv("TEST_DB_NAME", real.database or "")
    monkeypatch.setenv("TEST_DB_PASSWORD", real.password or "")
    # written as a person would write it in inspectloop.yaml (SQLAlchemy would percent-quote the braces)
    text = f"postgresql+psycopg://{real.username}:${{TEST_DB_PASSWORD}}@/${{TEST_DB_NAME}}?host={real.query['host']}"
    try:
        init_workspace(tmp_path / "ws", database=text).close()
        config = (tmp_path / "ws" / CONFIG_NAME).read_text()
        assert "${TEST_DB_NAME}" in config and real.database not in config
        with open_workspace(tmp_path / "ws") as ws:
            assert ws.db.engine.url.database == real.database and ws.db.ping().startswith("PostgreSQL")
        monkeypatch.delenv("TEST_DB_NAME")
        with pytest.raises(WorkspaceError, match="refers to the environment variable TEST_DB_NAME"):
            open_workspace(tmp_path / "ws")
    finally:
        drop_postgres_database(postgres_server, url)


def test_s3_credentials_from_the_environment(tmp_path: Path, class_tree: Path, s3_server: dict[str, str],
                                             s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LINE3_S3_KEY", s3_server["key"])
    monkeypatch.setenv("LINE3_S3_SECRET", "s3cr3t-value")
    options = {"endpoint_url": s3_server["endpoint_url"], "key": "${LINE3_S3_KEY}", "secret": "${LINE3_S3_SECRET}"}
    assert expand_options(options, "blob_options")["secret"] == "s3cr3t-value"
    with init_workspace(tmp_path / "ws", blobs=f"s3://{s3_bucket}/line-3", blob_options=options) as ws:
        ingest(ws, scan_folder(class_tree), source="tree")
    assert "s3cr3t-value" not in (tmp_path / "ws" / CONFIG_NAME).read_text()
    with open_workspace(tmp_path / "ws") as ws:
        assert len(list(ws.blobs.digests())) == 12
    monkeypatch.delenv("LINE3_S3_SECRET")
    with pytest.raises(WorkspaceError, match="blob_options.secret .* LINE3_S3_SECRET"):
        open_workspace(tmp_path / "ws")


def test_doctor_warns_about_a_written_out_secret_and_not_about_a_reference(
        tmp_path: Path, s3_server: dict[str, str], s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from inspectloop.maintenance.doctor import doctor

    monkeypatch.setenv("LINE3_S3_SECRET", s3_server["secret"])
    written = {**s3_server}
    referenced = {**s3_server, "secret": "${LINE3_S3_SECRET}"}
    for name, options in (("written", written), ("referenced", referenced)):
        with init_workspace(tmp_path / name, blobs=f"s3://{s3_bucket}/{name}", blob_options=options) as ws:
            report = doctor(ws)
            warned = [(f.check, f.subject) for f in report.findings if f.check == "secret_in_config"]
            assert report.healthy and warned == ([("secret_in_config", "blob_options.secret")] if name == "written"
                                                 else [])


def test_a_database_password_written_out_is_told_from_a_reference() -> None:
    from inspectloop.store.database import password_written_out

    assert password_written_out("postgresql+psycopg://inspect:hunter2@db/line3")
    assert not password_written_out("postgresql+psycopg://inspect:${PW}@db/line3")
    assert not password_written_out("postgresql+psycopg://inspect@db/line3")  # libpq's PGPASSWORD or .pgpass
    assert not password_written_out("sqlite:///inspectloop.db")
