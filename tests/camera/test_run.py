"""Camera health in the workspace: baselines and checks are stored; a failing camera's predictions are suspect."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from inspectloop.camera import run as camera
from inspectloop.monitor import run as monitoring
from inspectloop.errors import CameraCheckError
from inspectloop.serve.service import InspectionService, ServiceConfig
from inspectloop.store import schema as s
from tests.camera.targets import targets
from tests.monitoring_helpers import log_predictions
from tests.service_helpers import Line, image_bytes, line_workspace


@pytest.fixture()
def line(tmp_path: Path):
    line = line_workspace(tmp_path / "ws")
    yield line
    line.workspace.close()


def suspect_flags(line: Line) -> list[bool]:
    with line.workspace.db.engine.connect() as conn:
        return list(conn.execute(select(s.predictions.c.suspect).order_by(s.predictions.c.id)).scalars())


def test_a_healthy_camera_passes(line: Line, tmp_path: Path) -> None:
    flat, edge = targets(tmp_path)
    baseline = camera.record_camera_baseline(line.workspace, "cam-a", flat=flat, edge=edge)
    assert baseline.camera == "cam-a" and baseline.mtf50 > 0
    flat2, edge2 = targets(tmp_path, seed=1)
    result = camera.check(line.workspace, "cam-a", flat=flat2, edge=edge2)
    assert result.status == "pass" and result.marked_suspect == 0
    assert camera.suspect_cameras(line.workspace) == {}


def test_a_failing_check_marks_predictions_suspect_until_a_check_passes(line: Line, tmp_path: Path) -> None:
    flat, edge = targets(tmp_path)
    camera.record_camera_baseline(line.workspace, "cam-a", flat=flat, edge=edge)
    now = datetime.now(UTC) + timedelta(seconds=1)  # logged after the baseline
    log_predictions(line, "cam-a", 3, start=now, spacing=timedelta(milliseconds=1))
    log_predictions(line, "cam-b", 2, start=now, spacing=timedelta(milliseconds=1))
    bad_flat, blurred = targets(tmp_path, falloff=0.35, level=120, sigma=2.5, seed=2)
    failed = camera.check(line.workspace, "cam-a", flat=bad_flat, edge=blurred)
    assert failed.status == "fail" and failed.marked_suspect == 3
    assert suspect_flags(line) == [True] * 3 + [False] * 2
    assert set(camera.suspect_cameras(line.workspace)) == {"cam-a"}
    service = InspectionService(line.workspace, ServiceConfig(sample_rate=0.0, poll_seconds=60, cameras=("cam-a", "cam-b")))
    service.start()
    try:
        assert service.submit(image_bytes(), {"camera": "cam-a"}).result(timeout=10).id
        assert service.submit(image_bytes(seed=1), {"camera": "cam-b"}).result(timeout=10).id
        flat2, edge2 = targets(tmp_path, seed=3)
        assert camera.check(line.workspace, "cam-a", flat=flat2, edge=edge2).status == "pass"
        service.refresh_camera_status()
        assert service.submit(image_bytes(seed=2), {"camera": "cam-a"}).result(timeout=10).id
    finally:
        service.stop()
    assert suspect_flags(line)[5:] == [True, False, False]
    alerts = [a.signal for a in monitoring.recent_alerts(line.workspace)]
    assert "mtf50" in alerts


def test_missing_targets_and_a_missing_baseline_name_the_fix(line: Line, tmp_path: Path) -> None:
    flat, edge = targets(tmp_path)
    with pytest.raises(CameraCheckError, match="inspectloop camera baseline cam-a"):
        camera.check(line.workspace, "cam-a", flat=flat, edge=edge)
    camera.record_camera_baseline(line.workspace, "cam-a", flat=flat, edge=edge)
    with pytest.raises(CameraCheckError, match="needs a slanted-edge capture") as caught:
        camera.check(line.workspace, "cam-a", flat=flat, edge=None)
    assert caught.value.hint and "capture" in caught.value.hint
    with pytest.raises(CameraCheckError, match="cannot read the flat-field capture"):
        camera.check(line.workspace, "cam-a", flat=tmp_path / "nope.png", edge=edge)
    assert [c.status for c in camera.checks(line.workspace)] == ["error"] * 3


def test_a_check_that_could_not_run_does_not_clear_a_failure(line: Line, tmp_path: Path) -> None:
    """A failed camera stayed suspect only until any later check row, even one with status error."""
    flat, edge = targets(tmp_path)
    camera.record_camera_baseline(line.workspace, "cam-a", flat=flat, edge=edge)
    bad_flat, blurred = targets(tmp_path, falloff=0.35, level=120, sigma=2.5, seed=2)
    assert camera.check(line.workspace, "cam-a", flat=bad_flat, edge=blurred).status == "fail"
    with pytest.raises(CameraCheckError):
        camera.check(line.workspace, "cam-a", flat=tmp_path / "lens-cap-photo-missing.png", edge=edge)
    assert set(camera.suspect_cameras(line.workspace)) == {"cam-a"}
    assert [c.status for c in camera.latest_checks(line.workspace)] == ["fail"]
