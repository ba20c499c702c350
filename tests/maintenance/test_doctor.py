"""``inspectloop doctor``: each kind of damage is found, only safe things are fixed, the exit code tells."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from inspectloop.cli.app import app
from inspectloop.errors import WorkspaceError
from inspectloop.ingest import ingest, scan_folder
from inspectloop.maintenance.doctor import doctor
from inspectloop.store.blobs import GRACE_SECONDS
from inspectloop.workspace import Workspace, init_workspace

runner = CliRunner()


@pytest.fixture
def ws(tmp_path: Path, class_tree: Path) -> Workspace:
    workspace = init_workspace(tmp_path / "ws")
    ingest(workspace, scan_folder(class_tree), source="tree")
    yield workspace
    workspace.close()


def first_blob(ws: Workspace) -> Path:
    return ws.blobs.path_for(sorted(ws.db.images.get_many())[0])


def delete_a_blob(ws: Workspace) -> None:
    first_blob(ws).unlink()


def damage_a_blob(ws: Workspace) -> None:
    path = first_blob(ws)
    path.write_bytes(path.read_bytes()[:-1] + b"\0")


def leave_an_old_temporary_file(ws: Workspace) -> None:
    path = first_blob(ws).with_name(".tmp-killed.abc123")  # where versions before the staging folder wrote them
    path.write_bytes(b"half")
    old = time.time() - GRACE_SECONDS - 60
    os.utime(path, (old, old))


def add_an_unreferenced_blob(ws: Workspace) -> None:
    ws.blobs.put(b"bytes no row names")


def leave_a_live_writers_temporary_file(ws: Workspace) -> None:
    (ws.blobs.root / ".staging").mkdir(exist_ok=True)
    (ws.blobs.root / ".staging" / ".tmp-elsewhere-1-abcdef").write_bytes(b"being written")


@pytest.mark.parametrize("damage, check, healthy, fixable", [
    (delete_a_blob, "missing_blob", False, False),
    (damage_a_blob, "corrupt_blob", False, False),
    (leave_an_old_temporary_file, "temporary_file", False, True),
    (add_an_unreferenced_blob, "unreferenced_blob", True, False),  # a warning: kept, never deleted
    (leave_a_live_writers_temporary_file, "temporary_file", True, False),  # a live writer's: left alone
])
def test_each_kind_of_damage_is_found_and_only_safe_ones_fixed(
        ws: Workspace, damage: Callable[[Workspace], None], check: str, healthy: bool, fixable: bool) -> None:
    assert doctor(ws).healthy and doctor(ws).findings == []
    stored_before = set(ws.blobs.digests())
    damage(ws)
    report = doctor(ws)
    assert report.healthy == healthy and [f.check for f in report.findings] == [check]
    assert all(f.fix for f in report.problems)  # every problem says what to do
    fixed = doctor(ws, fix=True)
    assert fixed.healthy == (healthy or fixable)
    assert doctor(ws).healthy == (healthy or fixable)
    assert set(ws.blobs.digests()) >= stored_before - {first_blob(ws).name}  # --fix never deletes a blob


def test_a_damaged_database_is_a_problem(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(type(ws.db.integrity), "integrity_check", lambda _self: ["row 3 missing from index"])
    report = doctor(ws)
    assert not report.healthy and report.problems[0].check == "database"
    assert "row 3 missing from index" in report.problems[0].detail


def test_the_cli_exits_non_zero_on_problems_and_reports_json(ws: Workspace) -> None:
    root = str(ws.root)
    assert runner.invoke(app, ["doctor", "-w", root]).exit_code == 0
    leave_an_old_temporary_file(ws)
    result = runner.invoke(app, ["doctor", "-w", root, "--json"])
    assert result.exit_code == 1 and json.loads(result.stdout)["problems"] == 1
    fixed = runner.invoke(app, ["doctor", "-w", root, "--fix"])
    assert fixed.exit_code == 0 and "1 fixed" in fixed.stdout
    assert runner.invoke(app, ["doctor", "-w", root]).exit_code == 0


def test_doctor_names_the_database_that_answered_and_a_lost_one_is_a_problem(
        tmp_path: Path, class_tree: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with init_workspace(tmp_path / "ws", database=database_url) as workspace:
        ingest(workspace, scan_folder(class_tree), source="tree")
        report = doctor(workspace)
        assert report.healthy and report.findings == [] and report.checked["stored_blobs"] == 12
        server = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}[workspace.db.engine.dialect.name]
        assert report.database.startswith(f"{server} ") and "://" in report.database
        shown = runner.invoke(app, ["doctor", "-w", str(workspace.root)])
        assert shown.exit_code == 0 and f"database: {report.database}" in " ".join(shown.stdout.split())

        def lost(_self: object) -> str:
            raise WorkspaceError("cannot open the workspace database postgresql+psycopg://u:***@db/plant: refused",
                                 "check that the server is running")
        monkeypatch.setattr(type(workspace.db), "ping", lost)
        report = doctor(workspace)
        assert not report.healthy and report.problems[0].check == "database"
        assert "refused" in report.problems[0].detail and report.problems[0].fix
