"""A run says how long it will take, keeps to a time budget, and a killed run shows as interrupted and resumes
with its time counted whole. On a tiny synthetic line at 64 px: a few seconds per training."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from inspectloop.datasets import SplitPlan, create_version
from inspectloop.domain import TrainingRun
from inspectloop.errors import TrainingError
from inspectloop.ingest import ingest, scan_manifest
from inspectloop.synthetic import generate_line
from inspectloop.train import loop
from inspectloop.train.config import TrainConfig
from inspectloop.train.record import INTERRUPTED, run_status
from inspectloop.train.run import train
from inspectloop.workspace import Workspace, init_workspace, open_workspace

TINY = dict(epochs=3, input_size=64, batch_size=8, freeze_blocks=12, augment="none", novelty_rate=0.0)
CHILD = """
import json, sys, time
from pathlib import Path
from inspectloop.train import loop

class Clock:  # the killed part's one epoch reads as 1000 s, so that the resumed total must include it
    now = 0.0
    def perf_counter(self):
        self.now += 1000.0
        return self.now

loop.time = Clock()
from inspectloop.train.config import TrainConfig
from inspectloop.train.run import train
from inspectloop.workspace import open_workspace

def hold(stage, info):
    if stage == "epoch":  # the first epoch is checkpointed: say so, then wait to be killed
        Path(sys.argv[2]).write_text("epoch 1 done")
        time.sleep(600)

train(open_workspace(Path(sys.argv[1])), TrainConfig(**json.loads(sys.argv[3])), progress=hold)
"""


def make_line_workspace(root: Path) -> Path:
    """A workspace with a 12-images-per-class synthetic line (4 classes) and its dataset version v1."""
    synthetic = generate_line(root / "line", per_class=12, size=64)
    workspace = init_workspace(root / "ws")
    items, refused = scan_manifest(synthetic.manifest)
    ingest(workspace, items, source="line", kind="manifest", refused=refused)
    create_version(workspace, SplitPlan(group_by="none", val_fraction=0.2, test_fraction=0.2))
    workspace.close()
    return root / "ws"


@pytest.fixture(scope="module")
def line_ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_line_workspace(tmp_path_factory.mktemp("progress"))


@pytest.fixture
def ws(line_ws: Path) -> Workspace:
    workspace = open_workspace(line_ws)
    yield workspace
    workspace.close()


@pytest.mark.slow
def test_the_estimate_comes_before_the_first_epoch_and_is_recorded(ws: Workspace) -> None:
    events: list[tuple[str, dict[str, Any]]] = []
    result = train(ws, TrainConfig(**TINY), progress=lambda stage, info: events.append((stage, info)))
    stages = [stage for stage, _ in events]
    assert "estimate" in stages and stages.index("estimate") < stages.index("epoch")
    said = next(info["message"] for stage, info in events if stage == "estimate")
    assert said.startswith("about ") and said.endswith("for 3 epochs (measured on 3 batches)")
    estimate = result.metrics["estimate"]
    assert estimate["epochs"] == 3 and estimate["seconds"] > 0 and estimate["epoch_seconds"] > 0
    assert result.metrics["budget"] is None


@pytest.mark.slow
def test_a_time_budget_stops_training_and_keeps_the_best_epoch(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    class Clock:  # every epoch reads as 40 s: a 1.5-minute budget fits two, and a third would end past it
        now = 0.0

        def perf_counter(self) -> float:
            self.now += 40.0
            return self.now

    monkeypatch.setattr(loop, "time", Clock())
    notes: list[str] = []
    result = train(ws, TrainConfig(**TINY | {"epochs": 5, "max_minutes": 1.5}),
                   progress=lambda stage, info: notes.append(info["message"]) if stage == "note" else None)
    assert [h["epoch"] for h in result.metrics["history"]] == [0, 1]
    assert result.metrics["budget"] == {"max_minutes": 1.5, "stopped_at_budget": True, "last_epoch": 1}
    assert result.metrics["best_epoch"] in (0, 1) and ws.db.runs.get(result.run_id).status == "finished"
    assert any(note.startswith("stopped at the time budget (1.5 minutes) after epoch 2 of 5; kept epoch")
               for note in notes)


@pytest.mark.slow
def test_a_budget_shorter_than_one_epoch_is_refused_saying_how_long_one_takes(ws: Workspace) -> None:
    with pytest.raises(TrainingError, match=r"--max-minutes 0.0001 is shorter than one epoch: one epoch takes "
                                            r"about \d+ seconds on this machine") as caught:
        train(ws, TrainConfig(**TINY | {"max_minutes": 0.0001}))
    assert "--max-minutes" in caught.value.hint


def test_a_budget_is_refused_for_a_cross_fitted_run() -> None:
    with pytest.raises(ValueError, match="max_minutes stops one training"):
        TrainConfig(max_minutes=10, band_fit="crossfit")


@pytest.mark.slow
def test_a_killed_run_shows_as_interrupted_and_resumes_with_every_part_counted(
        line_ws: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.cli.test_app import invoke

    marker = tmp_path / "epoch-done"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(loop.__file__).parents[2]), os.getcwd()])}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(line_ws), str(marker), json.dumps(TINY)], env=env)
    try:
        deadline = time.monotonic() + 180
        while not marker.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert marker.exists(), "the training process never finished its first epoch"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    with open_workspace(line_ws) as workspace:
        killed = workspace.db.runs.list()[-1]
        assert killed.status == "running" and run_status(killed) == INTERRUPTED  # recorded running, process gone
    monkeypatch.setenv("COLUMNS", "80")
    code, listing, _ = invoke("runs", "-w", line_ws)
    assert code == 0 and killed.id in listing and INTERRUPTED in listing and "--resume" in listing
    with open_workspace(line_ws) as workspace:
        assert all(r.id in listing for r in workspace.db.runs.list())  # every id whole at 80 columns
        result = train(workspace, TrainConfig(**TINY), resume=killed.id)
        assert workspace.db.runs.get(killed.id).status == "finished"
    history = result.metrics["history"]
    assert result.metrics["resumed_from_epoch"] == 0 and [h["epoch"] for h in history] == [0, 1, 2]
    assert history[0]["seconds"] == 1000.0  # the killed part's epoch, as its process measured it
    assert result.metrics["train_seconds"] >= history[-1]["seconds"] > 1000.0  # both parts, then the head's refit


def _run(status: str, pid: int | None, host: str | None, beat: datetime) -> TrainingRun:
    return TrainingRun(id="run-x", kind="train", status=status, dataset_version="v1", config={}, code_version="0",
                       metrics=None, artifacts="", started_at=beat.isoformat(), pid=pid, host=host,
                       heartbeat_at=beat.isoformat(timespec="seconds"))


def _gone_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.parametrize(("status", "pid", "host", "age", "expected"), [
    ("finished", None, None, timedelta(days=9), "finished"),
    ("failed", None, None, timedelta(0), "failed"),
    ("running", "self", "here", timedelta(days=9), "running"),  # alive on this host: however old its beat
    ("running", "gone", "here", timedelta(0), INTERRUPTED),
    ("running", 1234, "another-host", timedelta(minutes=5), "running"),
    ("running", 1234, "another-host", timedelta(hours=2), INTERRUPTED),
    ("running", None, None, timedelta(hours=2), INTERRUPTED),  # recorded before processes were
])
def test_run_status(status: str, pid: Any, host: str | None, age: timedelta, expected: str) -> None:
    import socket

    now = datetime.now(UTC)
    pid = {"gone": _gone_pid, "self": os.getpid}.get(pid, lambda: pid)()  # resolved here: test ids stay stable
    run = _run(status, pid, socket.gethostname() if host == "here" else host, now - age)
    assert run_status(run, now) == expected


def test_a_run_still_training_is_not_resumed(ws: Workspace) -> None:
    import socket

    ws.db.runs.add("run-live", "v1", TrainConfig(**TINY).model_dump(), "0", str(ws.root / "runs" / "run-live"),
                   pid=os.getpid(), host=socket.gethostname())  # this very process: alive
    with pytest.raises(TrainingError, match="run run-live is still training"):
        train(ws, TrainConfig(**TINY), resume="run-live")


def test_the_estimate_counts_the_heads_refit_after_each_training() -> None:
    from inspectloop.train.estimate import StepTimes, estimate
    # Scoring after training (float32, standard layout) is slower than during it on the fast path.
    steps = StepTimes(train_step=2.0, predict_image=0.01, batch_size=10, batches=3, refit_image=0.03)
    epochs = 3 * (10 * 2.0 + 50 * 0.01)  # 100 training images: 10 steps; 50 validation images scored
    plain = estimate(steps, [(100, 3)], 50, TrainConfig(head_refit=False))
    refit = estimate(steps, [(100, 3)], 50, TrainConfig(head_refit=True))
    assert plain.seconds == pytest.approx(epochs)
    assert refit.seconds == pytest.approx(epochs + 150 * 0.03) and refit.epoch_seconds == plain.epoch_seconds


def test_the_estimate_times_the_refits_scoring_on_the_model_as_training_hands_it_back() -> None:
    from inspectloop.models.backbones import backbone_spec, load_backbone
    from inspectloop.models.classifier import Classifier
    from inspectloop.runtime.preprocess import Preprocess
    from inspectloop.train.data import ImageSet
    from inspectloop.train.estimate import measure_steps

    images = ImageSet([Image.new("L", (64, 64), 90 + i) for i in range(8)], np.arange(8) % 2,
                      [str(i) for i in range(8)])
    model = Classifier(load_backbone(input_size=64), backbone_spec("efficientnet-lite0").feature_dim, 2)
    config = TrainConfig(**TINY, precision="bf16", channels_last=True)
    fast = measure_steps(model, images, images, Preprocess(64), config, batches=1)
    assert fast.refit_image > 0 and fast.predict_image > 0
    assert all(not hasattr(m, "folded") and "forward" not in vars(m) for m in model.modules())  # model untouched
