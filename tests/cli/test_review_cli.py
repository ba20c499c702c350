"""``inspectloop review backlog``: the queue's counts from the command line."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from inspectloop.cli.app import app
from tests.review_helpers import seed


def test_review_backlog_counts_open_items_by_reason(tmp_path: Path) -> None:
    seeded = seed(tmp_path, items=8)
    seeded.workspace.close()
    result = CliRunner().invoke(app, ["review", "backlog", "-w", str(tmp_path / "ws"), "--json"])
    assert result.exit_code == 0, result.output
    counts = json.loads(result.stdout)
    assert counts["open"] == 8 and counts["open_by_reason"]["shadow"] == 2
    table = CliRunner().invoke(app, ["review", "backlog", "-w", str(tmp_path / "ws")])
    assert table.exit_code == 0 and "uncertain" in table.stdout


def test_review_backlog_outside_a_workspace_is_one_clear_message(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["review", "backlog", "-w", str(tmp_path)])
    assert result.exit_code == 1 and "inspectloop init" in result.stderr and "Traceback" not in result.output
