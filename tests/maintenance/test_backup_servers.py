"""``backup`` / ``restore`` of a workspace on PostgreSQL and S3 (the real test servers), and back onto them."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from inspectloop.cli.app import app
from inspectloop.errors import BackupError
from inspectloop.ingest import ingest, scan_folder
from inspectloop.maintenance.backup import MANIFEST, backup, restore
from inspectloop.maintenance.doctor import doctor
from inspectloop.store import schema
from inspectloop.store.objects import ObjectBlobStore
from inspectloop.workspace import Workspace, init_workspace, open_workspace
from tests.postgres_helpers import drop_postgres_database, new_postgres_database


@pytest.fixture
def server_ws(tmp_path: Path, class_tree: Path, postgres_server: str, s3_server: dict[str, str],
              s3_bucket: str) -> Workspace:
    """A workspace with its rows on PostgreSQL and its blobs on S3: 12 images, a model file, a report."""
    url = new_postgres_database(postgres_server)
    workspace = init_workspace(tmp_path / "ws", database=url, blobs=f"s3://{s3_bucket}/line-3",
                               blob_options=s3_server)
    ingest(workspace, scan_folder(class_tree), source="tree")
    (workspace.runs_dir / "run-1").mkdir()
    (workspace.runs_dir / "run-1" / "model.onnx").write_bytes(b"model bytes")
    yield workspace
    workspace.close()
    drop_postgres_database(postgres_server, url)


def _bucket(s3_server: dict[str, str]) -> str:
    import s3fs

    name = f"restore-{uuid.uuid4().hex[:10]}"
    s3fs.S3FileSystem(**s3_server).mkdir(name)
    return name


def test_a_server_workspace_backs_up_to_a_portable_copy_and_restores_back_onto_servers(
        server_ws: Workspace, tmp_path: Path, postgres_server: str, s3_server: dict[str, str]) -> None:
    report = backup(server_ws, tmp_path / "backup")
    assert report.counts["images"] == 12 and report.blobs == 12 and report.missing_blobs == []
    manifest = json.loads((tmp_path / "backup" / MANIFEST).read_text())
    assert manifest["source_database"].startswith("postgresql+psycopg://") and "blob-cache" not in str(manifest)
    assert not (server_ws.root / "blob-cache").exists()  # copied from the bucket, not through the local cache

    restore(tmp_path / "backup", tmp_path / "local")  # anywhere: an SQLite file and a blob folder
    with open_workspace(tmp_path / "local") as copy:
        assert doctor(copy).healthy and copy.db.images.get_many() == server_ws.db.images.get_many()

    url, bucket = new_postgres_database(postgres_server), _bucket(s3_server)
    try:
        restored = restore(tmp_path / "backup", tmp_path / "servers", database=url, blobs=f"s3://{bucket}/line-3")
        assert restored.counts == report.counts
        assert not (tmp_path / "servers" / "inspectloop.db").exists() and not (tmp_path / "servers" / "blobs").exists()
        with open_workspace(tmp_path / "servers") as copy:
            assert copy.db.engine.dialect.name == "postgresql" and isinstance(copy.blobs, ObjectBlobStore)
            assert doctor(copy).healthy and doctor(copy).checked["hashed_blobs"] == 12
            assert copy.db.images.get_many() == server_ws.db.images.get_many()
            with copy.db.engine.connect() as conn:
                last = conn.execute(select(func.max(schema.ingests.c.id))).scalar_one()
            # the sequences were moved past the copied ids: a new row does not collide with id 1
            assert last >= 1 and copy.db.images.begin_ingest("after restore", "folder") == last + 1
    finally:
        drop_postgres_database(postgres_server, url)


def test_restore_refuses_a_database_that_holds_data_and_leaves_nothing_behind(
        server_ws: Workspace, tmp_path: Path) -> None:
    backup(server_ws, tmp_path / "backup")
    live = server_ws.db.engine.url.render_as_string(hide_password=False)
    with pytest.raises(BackupError, match="already holds workspace data") as caught:
        restore(tmp_path / "backup", tmp_path / "servers", database=live)
    assert "CREATE DATABASE" in (caught.value.hint or "")
    shown = CliRunner().invoke(app, ["restore", str(tmp_path / "backup"), str(tmp_path / "servers"),
                                     "--database", live])
    assert shown.exit_code == 1 and "already holds workspace data" in shown.stderr and "Traceback" not in shown.output
    assert not (tmp_path / "servers").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    assert server_ws.db.integrity.counts()["images"] == 12  # the live database is untouched
