"""inspectloop train and runs: an estimate first, one line per epoch in a log, a time budget refused when
shorter than one epoch."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.cli.test_app import invoke
from tests.train.test_progress import make_line_workspace

TINY = ("--epochs", "2", "--input-size", "64", "--set", "batch_size=8", "--set", "freeze_blocks=12",
        "--set", "augment=none", "--set", "novelty_rate=0")


@pytest.fixture(scope="module")
def line_ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_line_workspace(tmp_path_factory.mktemp("train-cli"))


@pytest.mark.slow
def test_train_says_how_long_then_one_line_per_epoch_to_a_log(line_ws: Path) -> None:
    code, out, err = invoke("train", "-w", line_ws, *TINY)  # the runner's streams are not terminals
    assert code == 0, err
    lines = err.splitlines()
    estimate = next(i for i, line in enumerate(lines) if line.startswith("training: about "))
    epochs = [i for i, line in enumerate(lines) if re.match(r"train epoch \d/2  loss [\d.]+  val macro recall [\d.]+"
                                                            r"  elapsed \d:\d\d:\d\d  about \d:\d\d:\d\d left$", line)]
    assert len(epochs) == 2 and estimate < epochs[0]
    assert "\r" not in err and "\x1b[" not in err  # no redraws, no control codes in a log
    assert re.search(r"training took .+ \(estimated .+\)", out)


@pytest.mark.slow
def test_a_budget_shorter_than_one_epoch_is_refused_in_one_line(line_ws: Path) -> None:
    code, _, err = invoke("train", "-w", line_ws, *TINY, "--max-minutes", "0.0001")
    assert code == 1 and "Traceback" not in err
    assert re.search(r"error: --max-minutes 0.0001 is shorter than one epoch: one epoch takes about \d+ seconds on "
                     r"this machine", " ".join(err.split()))  # the console wraps long messages


def test_runs_shows_whole_ids_at_80_columns(line_ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from inspectloop.workspace import open_workspace

    with open_workspace(line_ws) as workspace:
        for run_id in ("run-20261130-235501-ab12", "run-20261201-000102-cd34"):  # as start_run names them
            workspace.db.runs.add(run_id, "v1", {"mode": "finetune"}, "0.1.0", str(line_ws / "runs" / run_id))
        ids = [run.id for run in workspace.db.runs.list()]
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = invoke("runs", "-w", line_ws)
    assert code == 0 and all(run_id in out for run_id in ids)
    assert max(len(line) for line in out.splitlines()) <= 80
