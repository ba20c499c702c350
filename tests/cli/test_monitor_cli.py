"""``inspectloop monitor``, ``camera`` and ``recalibrate`` from the command line."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from inspectloop.cli.app import app
from tests.monitoring_helpers import darker, log_predictions, monitored_line
from tests.camera.targets import targets

pytest.importorskip("onnx")
runner = CliRunner()


def invoke(*args: object) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def test_monitor_from_no_baseline_to_an_alert(tmp_path: Path) -> None:
    line = monitored_line(tmp_path / "ws")
    start = datetime.now(UTC) - timedelta(hours=5)
    log_predictions(line, "cam-a", 40, start=start, degrade=darker)
    line.workspace.close()
    ws = ("-w", tmp_path / "ws")
    code, _, stderr = invoke("monitor", *ws)
    assert code == 1 and "no drift baseline" in stderr and "inspectloop monitor baseline" in stderr
    code, stdout, _ = invoke("monitor", "baseline", *ws, "--camera", "cam-a")
    assert code == 0 and "cam-a" in stdout
    code, stdout, stderr = invoke("monitor", *ws, "--window", "1d", "--min-predictions", "20", "--fail-on-alert")
    assert code == 2, stderr
    assert "brightness" in stdout and "alert:" in stdout and "p (Holm)" in stdout
    code, _, stderr = invoke("monitor", *ws, "--window", "soon")
    assert code == 1 and "cannot read the window" in stderr


def test_camera_baseline_and_check(tmp_path: Path) -> None:
    line = monitored_line(tmp_path / "ws")
    line.workspace.close()
    ws = ("-w", tmp_path / "ws")
    flat, edge = targets(tmp_path)
    code, _, stderr = invoke("camera", "check", "cam-a", *ws, "--flat", flat, "--edge", edge)
    assert code == 1 and "inspectloop camera baseline cam-a" in stderr
    assert invoke("camera", "baseline", "cam-a", *ws, "--flat", flat, "--edge", edge)[0] == 0
    code, _, stderr = invoke("camera", "check", "cam-a", *ws, "--flat", flat)
    assert code == 1 and "slanted-edge" in stderr
    bad_flat, blurred = targets(tmp_path, falloff=0.35, level=120, sigma=2.5, seed=2)
    code, stdout, _ = invoke("camera", "check", "cam-a", *ws, "--flat", bad_flat, "--edge", blurred)
    assert code == 2 and "fail" in stdout and "suspect" in stdout


def test_recalibrate_status_and_due(tmp_path: Path) -> None:
    line = monitored_line(tmp_path / "ws")
    log_predictions(line, "cam-a", 12, start=datetime.now(UTC) - timedelta(days=2), stored_every=1)
    line.workspace.close()
    ws = ("-w", tmp_path / "ws")
    code, _, stderr = invoke("recalibrate", *ws, "--window-days", "1")
    assert code == 1 and "no predictions" in stderr
    code, _, stderr = invoke("recalibrate", *ws, "--sample-size", "6", "--retrain-on", "always")
    assert code == 1 and "unknown retraining policy" in stderr
    code, stdout, stderr = invoke("recalibrate", *ws, "--sample-size", "6", "--trigger-source", "drift",
                                  "--retrain-on", "drop")
    assert code == 0 and "6 images wait for review" in stdout, stderr
    code, _, stderr = invoke("recalibrate", *ws, "--continue", "2")
    assert code == 1 and "still wait for review" in stderr
    code, stdout, _ = invoke("recalibrate", "status", *ws, "--json")
    assert code == 0 and [(c["status"], c["outcome"]) for c in json.loads(stdout)] == [
        ("awaiting_labels", None), ("done", "no_predictions")]
    assert json.loads(stdout)[0]["retrain_on"] == "drop"  # the option overrides the drift source's default
    code, stdout, _ = invoke("recalibrate", "due", *ws)
    assert code == 0 and "not due" in stdout
