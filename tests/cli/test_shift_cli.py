"""``inspectloop crossval`` and ``inspectloop adapt``: results printed and stored; bad input in one line each."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from inspectloop.cli.app import app
from tests.evaluate.test_crossval import line_with_sessions

runner = CliRunner()


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workspace, _ = line_with_sessions(tmp_path_factory.mktemp("shift-cli"))
    workspace.close()
    return workspace.root


def test_crossval_prints_the_worst_session_and_stores_it(ws: Path) -> None:
    result = runner.invoke(app, ["crossval", "-w", str(ws), "--by", "session"])
    assert result.exit_code == 0, result.output
    assert "leave-one-session-out" in result.stdout and "worst session" in result.stdout
    assert "session=s3 not held out: only 4 image(s)" in " ".join(result.stderr.split())
    assert (ws / "runs" / "run-recipe" / "crossval-session-probe.json").is_file()
    result = runner.invoke(app, ["crossval", "-w", str(ws), "--by", "session", "--json"])
    assert json.loads(result.stdout)["summary"]["groups_evaluated"] == 2


@pytest.mark.parametrize(("args", "message"), [
    (["crossval", "--by", "shift"], "same one ('day')"),
    (["crossval", "--by", "nosuch"], "has a 'nosuch' value"),
    (["crossval", "--run", "nope"], "no run 'nope'"),
    (["adapt", "cam-2"], "no model version is in production"),
    (["adapt", "cam-2", "--since", "soon"], "cannot read the window 'soon'"),
    (["adapt", "cam-2", "--method", "median"], "unknown adaptation method 'median'"),
    (["adapt", "cam-2", "--method", "features", "--reference", "0"], "--reference is 0"),
    (["adapt", "cam-2", "--method", "features", "--weight", "2"], "must be in (0, 1], got 2"),
    (["adapt", "cam-2", "--method", "render", "--weight", "0.5"], "--weight 0.5 does not apply to rendering"),
    (["adapt", "cam-2", "--method", "render", "--reference", "0"], "--reference is 0"),
])
def test_bad_input_is_one_line(ws: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, [*args, "-w", str(ws)])
    said = " ".join(result.stderr.split())  # Rich wraps at the terminal width
    assert result.exit_code == 1 and message in said and "Traceback" not in result.output
    assert result.stderr.startswith("error:")
