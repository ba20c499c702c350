"""Drift monitoring in the workspace: baselines, per-camera checks, stored signals, alerts, drift review."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from inspectloop.monitor import run as monitoring
from inspectloop.errors import MonitorError
from inspectloop.review import backlog
from tests.anomaly_helpers import anomaly_line, softer
from tests.monitoring_helpers import (
    CAMERAS,
    NOW,
    darker,
    log_predictions,
    monitored_line,
)

pytest.importorskip("onnx")  # the tiny CNN has no features output: embeddings come from graph surgery


@pytest.fixture()
def line(tmp_path: Path):
    line = monitored_line(tmp_path / "ws")
    yield line
    line.workspace.close()


def test_a_baseline_per_camera_from_the_frozen_test_split(line) -> None:
    records = monitoring.record_drift_baseline(line.workspace)
    assert [(r.camera, r.source, r.images) for r in records] == [(c, "test", 36) for c in CAMERAS]
    assert all(r.embedded == 36 and r.model_version == line.production.name for r in records)


def test_no_baseline_is_a_clear_error_and_is_recorded(line) -> None:
    with pytest.raises(MonitorError, match="no drift baseline") as caught:
        monitoring.monitor(line.workspace, now=NOW)
    assert caught.value.hint == "record one with: inspectloop monitor baseline"
    assert [r.outcome for r in line.workspace.db.drift.runs()] == ["no_baseline"]


def test_too_few_predictions_names_the_cameras(line) -> None:
    monitoring.record_drift_baseline(line.workspace)
    log_predictions(line, "cam-a", 5, start=NOW - timedelta(hours=2))
    with pytest.raises(MonitorError, match="too few predictions.*cam-a: 5 predictions"):
        monitoring.monitor(line.workspace, now=NOW, min_predictions=20)
    assert line.workspace.db.drift.runs()[0].outcome == "too_few"


def test_a_darkened_camera_drifts_and_a_steady_one_does_not(line) -> None:
    monitoring.record_drift_baseline(line.workspace)
    start = NOW - timedelta(hours=6)
    log_predictions(line, "cam-a", 60, start=start, seed=7)
    log_predictions(line, "cam-b", 60, start=start, seed=8, degrade=darker)
    result = monitoring.monitor(line.workspace, now=NOW, min_predictions=20, window=timedelta(days=1))
    fired = {(s.camera, s.signal) for s in result.fired}
    assert ("cam-b", "brightness") in fired and not any(camera == "cam-a" for camera, _ in fired)
    assert {s.signal for s in result.signals if s.camera == "cam-a"} >= {"brightness", "embedding", "prediction",
                                                                       "confidence"}
    assert any("cam-b: brightness down" in message for message in result.alerts)
    assert result.review_items and backlog(line.workspace).open_by_reason.get("drift") == len(result.review_items)
    history = monitoring.drift_history(line.workspace)
    assert len(history) == len(result.signals) and all(h.checked_at == result.window_end for h in history)
    again = monitoring.monitor(line.workspace, now=NOW + timedelta(hours=1), min_predictions=20,
                               window=timedelta(days=1))
    assert again.fired and not again.alerts  # rate-limited: the same alert is not sent again within a day
    assert len(monitoring.recent_alerts(line.workspace, kind="drift")) == len(result.alerts)


def test_a_baseline_from_first_production_predictions(line) -> None:
    log_predictions(line, "cam-a", 40, start=NOW - timedelta(days=10))
    records = monitoring.record_drift_baseline(line.workspace, source="production", first=30)
    assert [(r.camera, r.source, r.images, r.embedded) for r in records] == [("cam-a", "production", 30, 15)]


def test_a_baseline_too_small_for_every_signal_is_refused_when_recorded(line) -> None:
    log_predictions(line, "cam-a", 20, start=NOW - timedelta(days=10))
    with pytest.raises(MonitorError, match=r"too few production predictions to baseline on: cam-a \(20\)"):
        monitoring.record_drift_baseline(line.workspace, source="production", first=200)


@pytest.mark.parametrize(("text", "expected"), [("7d", timedelta(days=7)), ("12h", timedelta(hours=12)),
                                                ("2w", timedelta(weeks=2)), ("90m", timedelta(minutes=90))])
def test_parse_window(text: str, expected: timedelta) -> None:
    assert monitoring.parse_window(text) == expected


def test_a_bad_window_says_how_to_write_one() -> None:
    with pytest.raises(MonitorError, match="cannot read the window"):
        monitoring.parse_window("seven days")


def test_an_anomaly_models_score_drifts_on_a_camera_out_of_focus(tmp_path: Path) -> None:
    """An anomaly model's window carries the anomaly scores of the parts below its threshold (read back from
    the logged probabilities): a test-set baseline, a third of it defects, does not move them on a steady
    line of good parts; a camera out of focus moves them up, and its embeddings (the model's patch features,
    averaged per image) with them."""
    line = anomaly_line(tmp_path / "ws")
    tested = monitoring.record_drift_baseline(line.workspace)
    assert [(r.camera, r.images, r.embedded) for r in tested] == [(c, 36, 36) for c in CAMERAS]
    passing = ("good", "dark")  # the model forgives exposure: both are good parts to it
    for seed, camera in enumerate(CAMERAS):
        log_predictions(line, camera, 40, start=NOW - timedelta(days=10), seed=seed, labels=passing)
    start = NOW - timedelta(hours=6)
    log_predictions(line, "cam-a", 60, start=start, seed=7, labels=passing)
    log_predictions(line, "cam-b", 60, start=start, seed=8, labels=passing, degrade=softer)
    window = {"now": NOW, "min_predictions": 20, "window": timedelta(days=1)}
    against_test = {(s.camera, s.signal): s for s in monitoring.monitor(line.workspace, **window).signals}
    assert against_test[("cam-a", "prediction")].fired  # fewer anomalies than the test set: the class mix says so
    assert not against_test[("cam-a", "anomaly_score")].fired  # the good parts' scores did not move
    monitoring.record_drift_baseline(line.workspace, source="production", first=40)
    result = monitoring.monitor(line.workspace, **window)
    checked = {(s.camera, s.signal): s for s in result.signals}
    assert checked[("cam-b", "anomaly_score")].fired and checked[("cam-b", "anomaly_score")].effect > 0
    assert not checked[("cam-a", "anomaly_score")].fired and not any(s.camera == "cam-a" for s in result.fired)
    assert ("cam-a", "confidence") not in checked  # the score replaces an anomaly model's confidence
    assert checked[("cam-b", "anomaly_score")].message.startswith("cam-b: anomaly score of the parts below the "
                                                                  "threshold up")
    # the model's averaged patch features are its embedding: the blur changes them, the steady camera's stay
    assert checked[("cam-b", "embedding")].fired and not checked[("cam-a", "embedding")].fired
    assert checked[("cam-b", "embedding")].message.startswith("cam-b: image content changed (embedding MMD")
    line.workspace.close()
