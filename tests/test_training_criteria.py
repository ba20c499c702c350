"""A training run names the locked criteria it will be judged by, and they steer its decisions (the training
loop itself is stubbed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from inspectloop.accept.criteria import lock_criteria
from inspectloop.errors import CriteriaError, TrainingError
from inspectloop.train import run as training
from inspectloop.train.config import TrainConfig
from inspectloop.train.run import RunResult, train
from inspectloop.workspace import Workspace
from tests.registry_helpers import CRITERIA_YAML, seeded_workspace, write_criteria


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    def execute(_ws: Workspace, _version: Any, _config: Any, run_id: str, run_dir: Path, *_: Any) -> RunResult:
        _ws.db.runs.finish(run_id, "failed")  # ends like a run that stopped early: resumable, not still running
        return RunResult(run_id, run_dir, run_dir / "model.onnx", {}, run_dir / "report.html")

    monkeypatch.setattr(training, "_check_trainable", lambda _version: None)
    monkeypatch.setattr(training, "_execute", execute)
    with seeded_workspace(tmp_path / "ws") as workspace:
        yield workspace


def test_a_run_records_the_criteria_it_names(ws: Workspace, tmp_path: Path) -> None:
    locked = lock_criteria(ws, write_criteria(tmp_path), by="ana")
    by_name = train(ws, criteria="line3")
    by_id = train(ws, criteria=str(locked.id))
    without = train(ws)
    recorded = [ws.db.runs.get(r.run_id).criteria_id for r in (by_name, by_id, without)]  # type: ignore[union-attr]
    assert recorded == [locked.id, locked.id, None]


def test_unknown_criteria_are_refused_before_the_run_starts(ws: Workspace) -> None:
    with pytest.raises(CriteriaError, match="no locked criteria 'line3'") as info:
        train(ws, criteria="line3")
    assert "inspectloop criteria lock" in (info.value.hint or "")
    assert ws.db.runs.list() == []


def test_a_resumed_run_keeps_its_criteria(ws: Workspace, tmp_path: Path) -> None:
    first = lock_criteria(ws, write_criteria(tmp_path), by="ana")
    other = write_criteria(tmp_path, "name: other\nclasses: {scratch: {min_recall: 0.5}}\n", name="other.yaml")
    second = lock_criteria(ws, other, by="ana")
    run = train(ws, criteria=first.name).run_id
    assert train(ws, resume=run, criteria=first.name).run_id == run
    assert train(ws, resume=run).run_id == run
    with pytest.raises(TrainingError, match=f"judged by criteria #{first.id}, not #{second.id}"):
        train(ws, resume=run, criteria="other")


def test_the_criteria_steer_the_band_and_the_run_records_what_it_used(ws: Workspace, tmp_path: Path) -> None:
    lock_criteria(ws, write_criteria(tmp_path, CRITERIA_YAML + "guarantee: marginal\n"), by="ana")
    steered = ws.db.runs.get(train(ws, criteria="line3").run_id).config  # type: ignore[union-attr]
    assert (steered["alpha"], steered["guarantee"], steered["confidence"]) == (0.05, "marginal", 0.9)
    assert steered["recall_targets"] == {"scratch": 0.9}  # the good class's min_recall is no operating point
    plain = ws.db.runs.get(train(ws, TrainConfig(alpha=0.2)).run_id).config  # type: ignore[union-attr]
    assert (plain["alpha"], plain["guarantee"], plain["recall_targets"]) == (0.2, "pac", {})


def test_a_run_stricter_than_its_criteria_keeps_its_settings_a_looser_one_is_refused(ws: Workspace,
                                                                                      tmp_path: Path) -> None:
    lock_criteria(ws, write_criteria(tmp_path), by="ana")
    stricter = train(ws, TrainConfig(alpha=0.01, recall_targets={"scratch": 0.99}), criteria="line3")
    config = ws.db.runs.get(stricter.run_id).config  # type: ignore[union-attr]
    assert (config["alpha"], config["recall_targets"]) == (0.01, {"scratch": 0.99})
    with pytest.raises(TrainingError, match="looser than criteria #1 'line3'") as info:
        train(ws, TrainConfig(alpha=0.1, recall_targets={"scratch": 0.5}), criteria="line3")
    assert "alpha 0.1 (run config, looser than criteria 'line3' max_escape_rate 0.05)" in info.value.message
    assert "recall_targets.scratch 0.5" in info.value.message and "at least as strict" in (info.value.hint or "")
    assert len(ws.db.runs.list()) == 1


def test_a_cross_fitted_run_is_refused_by_criteria_that_demand_a_stronger_escape_guarantee(ws: Workspace,
                                                                                           tmp_path: Path) -> None:
    lock_criteria(ws, write_criteria(tmp_path), by="ana")
    with pytest.raises(TrainingError, match="under the pac guarantee, which a cross-fitted band") as info:
        train(ws, TrainConfig(band_fit="crossfit"), criteria="line3")
    assert "band_fit=split" in (info.value.hint or "")
    assert ws.db.runs.list() == []
    no_escape_bound = write_criteria(tmp_path, "name: recall-only\nclasses: {scratch: {min_recall: 0.9}}\n",
                                     name="recall.yaml")
    lock_criteria(ws, no_escape_bound, by="ana")
    crossfitted = train(ws, TrainConfig(band_fit="crossfit"), criteria="recall-only")
    assert ws.db.runs.get(crossfitted.run_id).config["band_fit"] == "crossfit"  # type: ignore[union-attr]
