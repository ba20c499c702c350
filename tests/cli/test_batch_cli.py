"""``inspectloop shadow history`` and ``monitor history``: the heavy batch commands, and their bad input."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from typer.testing import CliRunner

from inspectloop.cli.app import app
from inspectloop.monitor.run import record_drift_baseline
from tests.monitoring_helpers import NOW, log_predictions, monitored_line
from tests.service_helpers import add_version, free_port

runner = CliRunner()
SINCE, UNTIL = (NOW - timedelta(days=14)).strftime("%Y-%m-%d"), NOW.strftime("%Y-%m-%dT%H:%M")


def test_history_commands_run_in_this_process_and_an_unreachable_cluster_is_one_line(tmp_path: Path) -> None:
    line = monitored_line(tmp_path / "ws")
    record_drift_baseline(line.workspace, cameras=["cam-a"])
    log_predictions(line, "cam-a", 60, start=NOW - timedelta(days=13), spacing=timedelta(hours=2))
    twin = add_version(line.workspace, "run-twin", line.production.path.read_bytes())
    ws = str(line.workspace.root)

    result = runner.invoke(app, ["monitor", "history", "-w", ws, "--since", SINCE, "--until", UNTIL, "--json"])
    assert result.exit_code == 0, result.output
    windows = json.loads(result.stdout)["windows"]
    assert [w["predictions"] for w in windows] == [60] and windows[0]["fired"] == []
    on_ray = runner.invoke(app, ["monitor", "history", "-w", ws, "--since", SINCE, "--until", UNTIL, "--json",
                                 "--ray", "--workers", "2"])
    assert on_ray.exit_code == 0, on_ray.output
    assert json.loads(on_ray.stdout)["windows"] == windows and json.loads(on_ray.stdout)["engine"]["workers"] == 2

    result = runner.invoke(app, ["shadow", "history", twin.name, "-w", ws, "--since", SINCE, "--until", UNTIL,
                                 "--min-compared", "10", "--min-qc", "0"])
    assert result.exit_code == 0, result.output
    assert "30 stored images re-scored" in result.stdout and "same label 1.000, same fate 1.000" in result.stdout

    address = f"127.0.0.1:{free_port()}"
    result = runner.invoke(app, ["shadow", "history", twin.name, "-w", ws, "--since", SINCE,
                                 "--ray-address", address])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"cannot reach the Ray cluster at {address}" in result.stderr and "ray start --head" in result.stderr

    result = runner.invoke(app, ["monitor", "history", "-w", ws, "--since", "last tuesday"])
    assert result.exit_code == 2 and "since" in result.output.lower()
