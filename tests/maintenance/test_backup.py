"""``inspectloop backup`` / ``restore``: complete, verified, atomic, and consistent under a live service."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from inspectloop.cli.app import app
from inspectloop.errors import BackupError
from inspectloop.ingest import ingest, scan_folder
from inspectloop.maintenance.backup import MANIFEST, backup, restore
from inspectloop.maintenance.doctor import doctor
from inspectloop.workspace import Workspace, init_workspace, open_workspace

runner = CliRunner()


@pytest.fixture
def ws(tmp_path: Path, class_tree: Path) -> Workspace:
    workspace = init_workspace(tmp_path / "ws")
    ingest(workspace, scan_folder(class_tree), source="tree")
    (workspace.runs_dir / "run-1").mkdir()
    (workspace.runs_dir / "run-1" / "model.onnx").write_bytes(b"model bytes")
    (workspace.reports_dir / "report.html").write_text("<p>report</p>")
    yield workspace
    workspace.close()


def test_a_backup_restores_to_an_identical_healthy_workspace(ws: Workspace, tmp_path: Path) -> None:
    report = backup(ws, tmp_path / "backup")
    assert report.counts["images"] == 12 and report.blobs == 12 and report.missing_blobs == []
    manifest = json.loads((tmp_path / "backup" / MANIFEST).read_text())
    assert {"runs/run-1/model.onnx", "reports/report.html", "inspectloop.yaml"} <= set(manifest["files"])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]  # the staging folder was renamed
    restored = restore(tmp_path / "backup", tmp_path / "restored")
    assert restored.counts == report.counts
    with open_workspace(tmp_path / "restored") as copy:
        assert doctor(copy).healthy and doctor(copy).findings == []
        assert copy.db.images.get_many() == ws.db.images.get_many()
        assert (copy.runs_dir / "run-1" / "model.onnx").read_bytes() == b"model bytes"
    for name in ("keys", "keys/signing-key.pem"):  # the site's private key keeps its owner-only mode
        if (ws.root / name).exists():
            assert (tmp_path / "restored" / name).stat().st_mode & 0o777 == (ws.root / name).stat().st_mode & 0o777


def test_restore_refuses_a_non_empty_folder_unless_forced(ws: Workspace, tmp_path: Path) -> None:
    backup(ws, tmp_path / "backup")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("keep me")
    with pytest.raises(BackupError, match="is not empty"):
        restore(tmp_path / "backup", tmp_path / "busy")
    assert (tmp_path / "busy" / "notes.txt").exists()
    assert restore(tmp_path / "backup", tmp_path / "busy", force=True).replaced
    assert not (tmp_path / "busy" / "notes.txt").exists() and (tmp_path / "busy" / "inspectloop.yaml").exists()


@pytest.mark.parametrize("damage", ["blob", "file", "manifest"])
def test_a_damaged_backup_is_refused_and_the_destination_untouched(ws: Workspace, tmp_path: Path,
                                                                  damage: str) -> None:
    backup(ws, tmp_path / "backup")
    if damage == "blob":
        blob = next(p for p in (tmp_path / "backup" / "blobs").rglob("*") if p.is_file())
        blob.write_bytes(blob.read_bytes()[:-1] + b"\0")
    elif damage == "file":
        (tmp_path / "backup" / "runs" / "run-1" / "model.onnx").write_bytes(b"swapped")
    else:
        (tmp_path / "backup" / MANIFEST).write_text("{")
    with pytest.raises(BackupError, match="does not verify|not an inspectloop backup"):
        restore(tmp_path / "backup", tmp_path / "restored")
    assert not (tmp_path / "restored").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_backup_refuses_a_used_folder_or_one_inside_the_workspace(ws: Workspace, tmp_path: Path) -> None:
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("x")
    with pytest.raises(BackupError, match="is not empty"):
        backup(ws, tmp_path / "used")
    with pytest.raises(BackupError, match="inside the workspace"):
        backup(ws, ws.root / "backups" / "today")


def test_the_cli_backs_up_and_restores(ws: Workspace, tmp_path: Path) -> None:
    made = runner.invoke(app, ["backup", str(tmp_path / "b"), "-w", str(ws.root), "--json"])
    assert made.exit_code == 0 and json.loads(made.stdout)["counts"]["images"] == 12
    done = runner.invoke(app, ["restore", str(tmp_path / "b"), str(tmp_path / "r")])
    assert done.exit_code == 0 and "restored to" in done.stdout
    again = runner.invoke(app, ["restore", str(tmp_path / "b"), str(tmp_path / "r")])
    assert again.exit_code == 1 and "--force" in again.stderr and "Traceback" not in again.stderr


def test_a_backup_taken_under_load_holds_every_prediction_answered_before_it(tmp_path: Path,
                                                                             database_url: str) -> None:
    """A real ``serve`` under about 50 requests/s; the backup is taken mid-load, then restored and checked.
    On PostgreSQL too: there the snapshot is one REPEATABLE READ transaction instead of SQLite's backup API."""
    pytest.importorskip("torch")
    httpx = pytest.importorskip("httpx")
    from tests.service_helpers import free_port, image_bytes, line_workspace, start_service

    line = line_workspace(tmp_path / "ws", None if database_url.startswith("sqlite") else database_url)
    line.workspace.close()
    port = free_port()
    server = start_service(line.workspace.root, port, tmp_path / "serve.log")
    answered: dict[str, int] = {}
    stop = threading.Event()
    images = [image_bytes(("good", "scratch", "dark")[i % 3], i) for i in range(30)]

    def load(worker: int) -> None:  # 6 workers x at most 10 requests/s
        with httpx.Client() as client:
            for n in range(10_000):
                if stop.is_set():
                    return
                request_id = f"w{worker}-{n:05d}"
                started = time.monotonic()
                response = client.post(f"http://127.0.0.1:{port}/v1/inspect", headers={
                    **line.auth(), "X-Request-ID": request_id}, files={"image": ("p.png", images[n % len(images)])},
                    data={"camera": "cam1"}, timeout=10)
                if response.status_code == 200:
                    answered[request_id] = response.json()["prediction_id"]
                time.sleep(max(0.0, 0.1 - (time.monotonic() - started)))

    workers = [threading.Thread(target=load, args=(w,)) for w in range(6)]
    try:
        for worker in workers:
            worker.start()
        deadline = time.monotonic() + 60  # about 4 s on a quiet machine; a loaded one answers slower
        while len(answered) < 100 and time.monotonic() < deadline:
            time.sleep(0.1)
        before = dict(answered)  # acknowledged before the backup began
        with open_workspace(line.workspace.root) as live:
            report = backup(live, tmp_path / "backup")
        time.sleep(2)
    finally:
        stop.set()
        for worker in workers:
            worker.join(20)
        server.terminate()
        server.wait(20)
    restore(tmp_path / "backup", tmp_path / "restored")
    with open_workspace(tmp_path / "restored") as restored:
        kept = restored.db.integrity.prediction_request_ids()
        health = doctor(restored)
    missing = sorted(set(before) - kept)
    rate = len(answered) / 6
    print(f"backup under load: {rate:.0f} req/s answered, acknowledged before the backup {len(before)}, "
          f"in the backup {report.counts['predictions']}, missing after restore {len(missing)}, "
          f"backup took {report.seconds:.2f} s, doctor on the restored workspace: "
          f"{'clean' if health.healthy and not health.findings else health.to_dict()}")
    assert len(before) >= 100 and missing == []
    assert len(answered) > report.counts["predictions"] >= len(before)  # the service kept answering throughout
    assert health.healthy and health.findings == []
