"""Leave-one-group-out evaluation on a synthetic line with capture sessions: figures per held-out session,
the worst beside the mean, skipped groups with their reason, resume, the model card, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from inspectloop.datasets import SplitPlan, create_version, load_version
from inspectloop.domain import CaptureMeta, ClassDefinition
from inspectloop.errors import DatasetError, TrainingError
from inspectloop.evaluate.crossval import crossval, crossval_summary, stored_crossvals
from inspectloop.ingest import SourceItem, ingest
from inspectloop.labels import define_class
from inspectloop.train.config import TrainConfig
from inspectloop.workspace import Workspace, init_workspace
from tests.conftest import save, surface

SESSIONS = {"s1": 10, "s2": 10, "s3": 2}  # images per class; s3 is too small to hold out
RECIPE = TrainConfig(mode="probe", input_size=64, epochs=30, augment="none")


def line_with_sessions(root: Path) -> tuple[Workspace, str]:
    """good / scratch images from three sessions (one shift throughout), a version and a finished run row."""
    items = []
    seed = 0
    for session, count in SESSIONS.items():
        for label in ("good", "scratch"):
            for i in range(count):
                seed += 1
                path = save(Image.fromarray(surface(seed, defect=label == "scratch")),
                            root / "images" / session / label / f"{i}.png")
                items.append(SourceItem(path=path, label=label, meta=CaptureMeta(session=session, shift="day")))
    ws = init_workspace(root / "ws")
    ingest(ws, items, source="test")
    define_class(ws, ClassDefinition(name="good", severity="none", is_good=True))
    version = create_version(ws, SplitPlan(group_by="none", val_fraction=0.25, test_fraction=0.2, seed=0))
    run_dir = ws.runs_dir / "run-recipe"
    run_dir.mkdir(parents=True)
    ws.db.runs.add("run-recipe", version.name, RECIPE.model_dump(), "test", str(run_dir))
    ws.db.runs.finish("run-recipe", "finished", metrics={})
    return ws, "run-recipe"


@pytest.fixture(scope="module")
def line(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    ws, run_id = line_with_sessions(tmp_path_factory.mktemp("crossval"))
    yield ws, run_id
    ws.close()


def test_every_session_held_out_in_turn(line: tuple[Workspace, str]) -> None:
    ws, run_id = line
    result = crossval(ws, "session", run=run_id)
    assert sorted(result.groups) == ["s1", "s2"]
    assert result.skipped == {"s3": "only 4 image(s), fewer than 10"}
    for figures in result.groups.values():
        assert figures["count"] == 20 and figures["good"] == 10 and figures["defective"] == 10
        assert set(figures["per_class_recall"]) == {"good", "scratch"}
        assert figures["trained_on"] < 44 - 20  # the group and the validation images are not trained on
    summary = result.summary
    assert summary["groups_evaluated"] == 2
    assert summary["worst_macro_recall"] == min(f["macro_recall"] for f in result.groups.values())
    assert summary["worst_macro_recall"] <= summary["mean_macro_recall"]
    stored = json.loads(result.path.read_text())
    assert result.path.name == "crossval-session-probe.json" and stored["summary"] == summary
    assert stored["config"]["mode"] == "probe" and stored["decisions"].startswith("top class")


def test_a_finished_group_is_read_back(line: tuple[Workspace, str]) -> None:
    ws, run_id = line
    first = crossval(ws, "session", run=run_id)
    folder = first.path.with_suffix("")
    (folder / "s1.json").write_text(json.dumps({"config": first.config, "figures": {**first.groups["s1"],
                                                                                    "count": 999}}))
    assert crossval(ws, "session", run=run_id).groups["s1"]["count"] == 999  # not retrained


def test_the_model_card_shows_the_worst_session(line: tuple[Workspace, str]) -> None:
    from inspectloop.reports.shift import crossval_section

    ws, run_id = line
    crossval(ws, "session", run=run_id)
    html = crossval_section(stored_crossvals(ws.runs_dir / run_id))
    assert "Leave-one-session-out" in html and "Worst session" in html and "s3: only 4 image(s)" in html
    assert "No leave-one-group-out evaluation" in crossval_section([])


@pytest.mark.parametrize(("by", "error", "message"), [
    ("camera", DatasetError, "no image of dataset version v1 has a 'camera' value"),
    ("operator", DatasetError, "no image of dataset version v1 has a 'operator' value"),
    ("shift", DatasetError, "same one ('day'): there is no other group"),
])
def test_bad_fields(line: tuple[Workspace, str], by: str, error: type, message: str) -> None:
    ws, run_id = line
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        crossval(ws, by, run=run_id)


def test_unknown_run_and_anomaly_run(line: tuple[Workspace, str]) -> None:
    ws, _ = line
    with pytest.raises(TrainingError, match="no run 'nope'"):
        crossval(ws, "session", run="nope")
    ws.db.runs.add("run-anomaly", "v1", TrainConfig(task="anomaly").model_dump(), "test", str(ws.runs_dir / "a"))
    with pytest.raises(TrainingError, match="run-anomaly is of task 'anomaly'"):
        crossval(ws, "session", run="run-anomaly")


def test_the_overrides_change_the_mode_and_epochs_and_nothing_else(line: tuple[Workspace, str]) -> None:
    from inspectloop.evaluate.crossval import crossval_config as _config

    run = line[0].db.runs.get(line[1])
    finetune = run.__class__(**{**run.__dict__, "config": TrainConfig(epochs=12, max_minutes=5).model_dump()})
    probe = _config(finetune, "probe", None)
    assert (probe.mode, probe.epochs, probe.max_minutes, probe.band_fit) == ("probe", 12, None, "split")
    assert _config(finetune, "probe", 50).epochs == 50
    assert _config(finetune, None, None).mode == "finetune"


def test_summary_without_scored_groups() -> None:
    assert crossval_summary({}, "good") == {"groups_evaluated": 0}


def test_a_zoom_recipe_zooms_around_the_regions_and_names_the_unplaced(tmp_path: Path) -> None:
    """pose=zoom in leave-one-group-out: the held-out training reads the version's regions (a version
    without them is refused, as training refuses it) and warns about defect images that have none."""
    from inspectloop.domain import Box, Region

    ws, _ = line_with_sessions(tmp_path)
    zoom = TrainConfig(mode="probe", input_size=64, epochs=30, pose="zoom", probe_views=2).model_dump()
    ws.db.runs.add("run-zoom-v1", "v1", zoom, "test", str(ws.runs_dir / "z1"))
    ws.db.runs.finish("run-zoom-v1", "finished", metrics={})
    with pytest.raises(TrainingError, match="holds no region annotations"):
        crossval(ws, "session", run="run-zoom-v1")
    digests = [item.sha256 for item in load_version(ws, "v1").items if item.label == "scratch"][:12]
    ws.db.regions.add([Region(sha256=d, class_name="scratch", box=Box(x0=4, y0=4, x1=60, y1=60), annotator="ana")
                       for d in digests])
    version = create_version(ws, SplitPlan(group_by="none", val_fraction=0.25, test_fraction=0.2, seed=0))
    ws.db.runs.add("run-zoom", version.name, zoom, "test", str(ws.runs_dir / "z2"))
    ws.db.runs.finish("run-zoom", "finished", metrics={})
    warnings: list[str] = []
    result = crossval(ws, "session", run="run-zoom",
                      progress=lambda stage, info: warnings.append(info["message"]) if stage == "warning" else None)
    assert sorted(result.groups) == ["s1", "s2"]
    assert warnings == ["pose=zoom: 10 of 22 defect images have no region annotation; they are never zoomed "
                        "(the whole image stays in view)"]
    ws.close()
