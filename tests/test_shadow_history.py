"""Shadow on history: a candidate re-scores the stored images of past production, on one process or on Ray."""

from __future__ import annotations

from datetime import timedelta

import pytest

from inspectloop.batch.engine import LocalEngine, RayEngine
from inspectloop.errors import RegistryError
from inspectloop.shadow_history import shadow_on_history, write_history_report
from tests.monitoring_helpers import NOW, log_predictions, monitored_line
from tests.ray_helpers import local_ray  # noqa: F401 (fixture)
from tests.service_helpers import Line, add_version, review_model_bytes

START, END = (NOW - timedelta(days=30)).isoformat(), (NOW + timedelta(days=1)).isoformat()


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Line:
    """30 days of production on two cameras, every other image stored, and a QC verdict on a few."""
    line = monitored_line(tmp_path_factory.mktemp("history") / "ws")
    ids = log_predictions(line, "cam-a", 40, start=NOW - timedelta(days=20), spacing=timedelta(hours=6))
    log_predictions(line, "cam-b", 40, start=NOW - timedelta(days=20), spacing=timedelta(hours=6), seed=1)
    for prediction_id in ids[:6:2]:
        line.workspace.db.predictions.add_qc(prediction_id, "scratch", "qc-1")
    return line


def test_the_production_model_re_scored_on_its_own_history_agrees_everywhere(history: Line) -> None:
    twin = add_version(history.workspace, "run-twin", history.production.path.read_bytes())
    result = shadow_on_history(history.workspace, twin.name, start=START, end=END, min_compared=10, min_qc=1)
    report = result.report
    assert result.images == 40 and report.compared == 40 and result.unreadable == {}
    assert report.label_agreement == report.decision_agreement == 1.0 and report.confusions == []
    assert report.qc_compared == 3  # the latest verdicts of the stored rows that have one
    assert report.shadow_qc_agreement == report.production_qc_agreement


def test_one_process_and_ray_give_the_same_report(history: Line, local_ray: object) -> None:
    candidate = add_version(history.workspace, "run-review", review_model_bytes())
    alone = shadow_on_history(history.workspace, candidate.name, start=START, end=END)
    with RayEngine(workers=2, chunk_size=7) as engine:
        spread = shadow_on_history(history.workspace, candidate.name, start=START, end=END, engine=engine)
    assert alone.engine["engine"] == "local" and spread.engine == {"engine": "ray", "workers": 2, "chunk_size": 7,
                                                                 "address": "local"}
    same = {k: v for k, v in alone.report.to_dict().items() if k != "created_at"}
    assert same == {k: v for k, v in spread.report.to_dict().items() if k != "created_at"}
    # the candidate sends every part to review: wherever production passed, the fate changed
    assert alone.report.decision_changes and alone.report.decision_changes[0]["shadow"] == "review"
    assert not alone.report.ready
    path = write_history_report(history.workspace, spread)
    assert path.name == f"shadow-history-{candidate.name}.json" and '"compared": 40' in path.read_text()


def test_a_missing_stored_image_is_named_not_fatal(history: Line) -> None:
    twin = add_version(history.workspace, "run-twin-2", history.production.path.read_bytes())
    rows = history.workspace.db.predictions.window(START, END, stored_only=True)
    lost = rows[0].image_sha256
    blob = history.workspace.blobs.path_for(lost)
    kept = blob.read_bytes()
    blob.unlink()
    try:
        result = shadow_on_history(history.workspace, twin.name, start=START, end=END, engine=LocalEngine())
    finally:
        blob.write_bytes(kept)
    assert result.unreadable == {lost: "image not in the blob store"} and result.report.compared == 39


def test_an_empty_period_says_what_to_do(history: Line) -> None:
    with pytest.raises(RegistryError, match="no stored production images between"):
        shadow_on_history(history.workspace, history.production.name, start="2020-01-01", end="2020-02-01")
