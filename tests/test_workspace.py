from pathlib import Path

import pytest
from sqlalchemy import text

from inspectloop.errors import WorkspaceError
from inspectloop.store.migrations import LATEST
from inspectloop.workspace import CONFIG_NAME, init_workspace, open_workspace


def test_init_creates_config_database_and_blob_store(tmp_path: Path) -> None:
    ws = init_workspace(tmp_path / "site")
    assert (tmp_path / "site" / CONFIG_NAME).exists()
    assert (tmp_path / "site" / "blobs").is_dir()
    with ws.db.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("SELECT max(version) FROM schema_migrations")).scalar() == LATEST
    ws.close()


def test_open_round_trips(tmp_path: Path, database_url: str) -> None:
    init_workspace(tmp_path / "site", name="line-7", database=database_url).close()
    with open_workspace(tmp_path / "site") as ws:
        assert ws.config.name == "line-7" and ws.config.database == database_url
        assert ws.db.ping().split()[0] in {"SQLite", "PostgreSQL"}


def test_init_on_an_unreachable_database_is_one_line_and_leaves_no_folder(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from inspectloop.cli.app import app

    url = "postgresql://inspector:s3cret@127.0.0.1:1/plant"
    result = CliRunner().invoke(app, ["init", str(tmp_path / "site"), "--database", url])
    assert result.exit_code == 1 and "Traceback" not in result.output and "s3cret" not in result.output
    said = " ".join(result.stderr.split())
    assert "cannot open the workspace database postgresql+psycopg://inspector:***@127.0.0.1:1/plant" in said
    assert "fix: check that the server is running" in said and not (tmp_path / "site").exists()


def test_init_refuses_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "keep.txt").write_text("operator data")
    with pytest.raises(WorkspaceError, match="not empty"):
        init_workspace(tmp_path / "site")
    assert (tmp_path / "site" / "keep.txt").read_text() == "operator data"


def test_init_refuses_existing_workspace(tmp_path: Path) -> None:
    init_workspace(tmp_path / "site").close()
    with pytest.raises(WorkspaceError, match="already an inspectloop workspace"):
        init_workspace(tmp_path / "site")


def test_open_refuses_plain_folder_with_a_fix(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError) as info:
        open_workspace(tmp_path)
    assert "inspectloop init" in (info.value.hint or "")


def test_open_refuses_malformed_config(tmp_path: Path) -> None:
    init_workspace(tmp_path / "site").close()
    (tmp_path / "site" / CONFIG_NAME).write_text("name: [unclosed")
    with pytest.raises(WorkspaceError, match="malformed"):
        open_workspace(tmp_path / "site")


def test_open_refuses_newer_schema(tmp_path: Path) -> None:
    ws = init_workspace(tmp_path / "site")
    with ws.db.engine.begin() as conn:
        conn.execute(text("INSERT INTO schema_migrations VALUES (999, 'future', '2030-01-01')"))
    ws.close()
    with pytest.raises(WorkspaceError, match="newer than this inspectloop"):
        open_workspace(tmp_path / "site")


def test_a_moved_workspace_still_finds_its_runs_and_models(tmp_path: Path) -> None:
    import shutil

    ws = init_workspace(tmp_path / "site")
    run_dir = ws.runs_dir / "run-1"
    run_dir.mkdir()
    with ws.db.engine.begin() as conn:
        conn.execute(text("INSERT INTO dataset_versions VALUES ('v1', NULL, '2026-01-01', '{}', '{}')"))
    ws.db.runs.add("run-1", "v1", {}, "0.1.0", str(run_dir))
    ws.db.runs.add_model("run-1", "fp32", str(run_dir / "model.onnx"), "0" * 64, "0" * 64, {})
    ws.close()
    shutil.move(tmp_path / "site", tmp_path / "moved")
    with open_workspace(tmp_path / "moved") as moved:
        assert Path(moved.db.runs.get("run-1").artifacts) == (tmp_path / "moved" / "runs" / "run-1").resolve()
        assert Path(moved.db.runs.models("run-1")[0].path).parent == (tmp_path / "moved" / "runs" / "run-1").resolve()
