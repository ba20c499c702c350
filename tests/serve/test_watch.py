"""Folder watch: stable files are predicted, logged once and moved; bad ones are rejected with the reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
from sqlalchemy import select  # noqa: E402

from inspectloop.serve.service import InspectionService, ServiceConfig  # noqa: E402
from inspectloop.store import schema as s  # noqa: E402
from inspectloop.serve.watch import FolderWatcher  # noqa: E402
from tests.service_helpers import image_bytes, line_workspace  # noqa: E402


def test_the_watcher_logs_moves_and_rejects(tmp_path: Path) -> None:
    line = line_workspace(tmp_path / "ws")
    service = InspectionService(line.workspace, ServiceConfig(cameras=("cam1", "cam2")))
    service.start()
    drop = tmp_path / "drop"
    (drop / "cam1").mkdir(parents=True)
    (drop / "cam1" / "a.png").write_bytes(image_bytes("scratch", 1))
    (drop / "b.png").write_bytes(image_bytes("good", 2))
    (drop / "b.json").write_text(json.dumps({"camera": "cam2", "part_id": "P-9"}))
    (drop / "cam1" / "c.png.tmp").write_bytes(image_bytes("good", 3))  # still being written
    (drop / "cam1" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (drop / "cam7").mkdir()
    (drop / "cam7" / "d.png").write_bytes(image_bytes("good", 4))
    try:
        watcher = FolderWatcher(service, drop)
        assert watcher.scan() == []  # first sight: sizes not yet known to be stable
        done = {p.relative_to(drop).as_posix(): outcome for p, outcome in watcher.scan()}
        assert done == {"cam1/a.png": "processed", "b.png": "processed", "cam1/broken.png": "rejected",
                        "cam7/d.png": "rejected"}
        (drop / "cam1" / "a.png").write_bytes(image_bytes("scratch", 1))  # the camera drops the same file again
        watcher.scan(), watcher.scan()
    finally:
        service.stop()
    with line.workspace.db.engine.connect() as conn:
        rows = conn.execute(select(s.predictions).order_by(s.predictions.c.id)).all()
    assert [(r.camera, r.source, r.part_id) for r in rows] == [("cam2", "watch", "P-9"), ("cam1", "watch", None)]
    assert (drop / "processed" / "cam1" / "a.png").exists() and (drop / "processed" / "cam1" / "a.1.png").exists()
    assert (drop / "processed" / "b.png.json").exists() and (drop / "cam1" / "c.png.tmp").exists()
    assert "cam7" in (drop / "rejected" / "cam7" / "d.png.why.txt").read_text()
    assert (drop / "rejected" / "cam1" / "broken.png.why.txt").exists()
    line.workspace.close()
