"""Drift monitoring in the workspace: record per-camera baselines, check production windows, raise alerts.

The workspace-bound part of :mod:`inspectloop.monitor` (the other modules are pure statistics).

The statistics are :mod:`inspectloop.monitor`'s; this module gathers their inputs from the workspace
and keeps their results. A baseline (per camera, per model version) comes by default from the model's
frozen test and calibration images (the accepted evidence), or from its first production predictions.
``monitor`` builds each camera's window from the prediction log (the image statistics the log
computed, the predicted labels and confidences, and embeddings of the production images the service
sampled; for an anomaly model, its anomaly scores in place of confidences), calls
:func:`~inspectloop.monitor.drift.check_drift`, stores every signal, sends
rate-limited alerts and can queue a few drifted images for review. Every run is recorded, including
runs that could not check anything.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from inspectloop import registry, review
from inspectloop.domain import Alert, DriftBaselineRecord, DriftCheck, LoggedPrediction, ModelVersion, QualityStats
from inspectloop.errors import MonitorError
from inspectloop.monitor.drift import (
    AlertLimiter,
    CameraWindow,
    DriftBaseline,
    DriftSignal,
    anomaly_margins,
    check_drift,
)
from inspectloop.monitor.statistics import MIN_SCALAR_SAMPLES
from inspectloop.runtime import EdgeModel
from inspectloop.runtime.metadata import ANOMALY
from inspectloop.store import Transaction, now_iso
from inspectloop.workspace import Workspace

BASELINE_SOURCES = ("test", "production")  # "test": the frozen test + calibration splits
LIMITER_KEY = "alert_limiter"
MAX_EMBEDDED = 200  # stored production images embedded per camera and window (enough for MMD, cheap on a CPU)
MIN_EMBEDDED = 10  # fewer stored images than this and the embedding signal is left out of the check
NO_CAMERA = "-"  # images recorded without a camera
MIN_BASELINE = 30  # images a camera's baseline needs for every signal (the class-mix test needs 30)


@dataclass(frozen=True)
class BaselineRecord:
    """A stored baseline: which camera and model version, from what, and how many images."""

    id: int
    camera: str
    model_version: str
    source: str
    images: int
    embedded: int


@dataclass(frozen=True)
class MonitorResult:
    """One monitor run: every signal checked, the alerts sent, the cameras left out and why."""

    run_id: int
    model_version: str
    window_start: str
    window_end: str
    signals: list[DriftSignal]
    alerts: list[str]
    skipped: dict[str, str] = field(default_factory=dict)
    review_items: list[int] = field(default_factory=list)

    @property
    def fired(self) -> list[DriftSignal]:
        return [signal for signal in self.signals if signal.fired]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"run_id": self.run_id, "model_version": self.model_version, "window_start": self.window_start,
                "window_end": self.window_end, "signals": [s.to_dict() for s in self.signals],
                "alerts": list(self.alerts), "skipped": dict(self.skipped), "review_items": list(self.review_items)}


def parse_window(text: str) -> timedelta:
    """'7d', '12h', '90m' or '2w' -> a timedelta (MonitorError otherwise)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([mhdw])\s*", text or "")
    if not match or float(match.group(1)) <= 0:
        raise MonitorError(f"cannot read the window {text!r}", "write it as a number and a unit: 90m, 12h, 7d or 2w")
    unit = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[match.group(2)]
    return timedelta(**{unit: float(match.group(1))})


# --- baselines -----------------------------------------------------------------------------------------

def record_drift_baseline(workspace: Workspace, model_version: str | None = None, *, source: str = "test",
                          cameras: Sequence[str] = (), first: int = 200) -> list[BaselineRecord]:
    """Record a drift baseline per camera for ``model_version`` (default: the production version).

    ``source="test"`` uses the version's frozen test and calibration images, grouped by the camera
    they were captured with; images without a camera serve every camera in ``cameras`` (or every
    camera the prediction log has seen). ``source="production"`` uses the version's ``first``
    production predictions on each camera.
    """
    if source not in BASELINE_SOURCES:
        raise MonitorError(f"unknown baseline source {source!r}", f"use one of: {', '.join(BASELINE_SOURCES)}")
    version = _version(workspace, model_version)
    edge = EdgeModel(version.path)
    if source == "test":
        windows = _test_windows(workspace, version, edge, cameras)
    else:
        windows = _production_windows(workspace, version, edge, cameras, first)
    records = []
    with workspace.db.transaction() as tx:
        for camera, (window, count, origin) in sorted(windows.items()):
            baseline = DriftBaseline(**vars(window), model_version=version.name, recorded_at=now_iso())
            row_id = tx.drift.add_baseline(camera=camera, model_version_id=version.id, source=origin,
                                              images=count, baseline=baseline.to_dict())
            embedded = 0 if window.embeddings is None else len(window.embeddings)
            records.append(BaselineRecord(row_id, camera, version.name, origin, count, embedded))
    return records


def _version(workspace: Workspace, name: str | None) -> ModelVersion:
    version = registry.named_or_production(workspace, name)
    if version is None:
        raise MonitorError("no model version is in production, so there is nothing to monitor",
                           "promote one (inspectloop models promote VERSION production --actor NAME) or name one")
    return version


def _test_windows(workspace: Workspace, version: ModelVersion, edge: EdgeModel,
                  cameras: Sequence[str]) -> dict[str, tuple[CameraWindow, int, str]]:
    """Each camera's own frozen test and calibration images; a camera with fewer than ``MIN_BASELINE``
    of its own gets the whole set (source ``test-all-cameras``), which is still the accepted evidence."""
    run = workspace.db.runs.get(version.run_id)
    items = [i for i in workspace.db.datasets.items(run.dataset_version) if i.split in ("test", "calib")] \
        if run else []
    if not items:
        raise MonitorError(f"model version {version.name} has no frozen test or calibration images to baseline on",
                           "record the baseline from production instead: inspectloop monitor baseline --source production")
    records = workspace.db.images.get_many([i.sha256 for i in items])
    by_camera: dict[str, list[str]] = defaultdict(list)
    for digest, record in records.items():
        by_camera[record.meta.camera or NO_CAMERA].append(digest)
    shared = by_camera.pop(NO_CAMERA, [])
    targets = list(cameras) or _seen_cameras(workspace, version) or sorted(by_camera)
    if shared and not targets:
        raise MonitorError("the test images carry no camera name and no camera is known yet",
                           "name the cameras to baseline: inspectloop monitor baseline --camera CAM1 --camera CAM2")
    if len(records) < MIN_BASELINE:
        raise MonitorError(f"model version {version.name} has {len(records)} frozen test and calibration images, "
                           f"fewer than the {MIN_BASELINE} a baseline needs",
                           "record the baseline from production instead: inspectloop monitor baseline --source "
                           "production --first 200")
    windows = {}
    for camera in targets or sorted(by_camera):
        digests, origin = by_camera.get(camera, []) + shared, "test"
        if len(digests) < MIN_BASELINE:
            digests, origin = list(records), "test-all-cameras"
        stats = [records[d].quality for d in digests if records[d].quality is not None]
        windows[camera] = (_model_window(workspace, edge, camera, digests, stats), len(digests), origin)
    return windows


def _seen_cameras(workspace: Workspace, version: ModelVersion) -> list[str]:
    return workspace.db.predictions.cameras(version.id)


def _model_window(workspace: Workspace, edge: EdgeModel, camera: str, digests: Sequence[str],
                  stats: Sequence[QualityStats]) -> CameraWindow:
    """Run the model on stored images: labels, confidences and features from the same forward pass."""
    labels, confidences, features, scores = [], [], [], []
    for digest in digests:
        prediction, vector = edge.predict_with_features(workspace.blobs.get(digest))
        labels.append(prediction.label)
        confidences.append(prediction.confidence)
        features.append(vector)
        scores.append(prediction.scores)
    embeddings = np.stack(features) if features and all(f is not None for f in features) \
        else _embed_fallback(workspace, edge, digests)
    return camera_window(edge, camera, stats, embeddings, labels, confidences, scores)


def camera_window(edge: EdgeModel, camera: str, stats: Sequence[QualityStats], embeddings: np.ndarray | None,
                  labels: Sequence[str], confidences: Sequence[float],
                  scores: Sequence[Mapping[str, float]]) -> CameraWindow:
    """One camera's window. An anomaly model's carries, instead of its confidences (the top probability of
    (P(good), P(anomaly)) says how far a score is from the threshold, not on which side), the anomaly scores
    of the parts below its threshold: whatever share of defects a window holds (a frozen test set is richer
    in them than the line; the class mix tracks that share), the good parts' scores are compared. Fewer
    than a test needs, and the signal is left out."""
    names = edge.metadata.class_names
    if edge.task != ANOMALY:
        return CameraWindow.from_observations(camera, stats, embeddings, labels, confidences, names)
    good = edge.metadata.good_class or names[0]
    margins = anomaly_margins(scores, next(name for name in names if name != good), good)
    below = margins[margins < 0]
    return CameraWindow.from_observations(camera, stats, embeddings, labels, (), names,
                                          anomaly_scores=below if len(below) >= MIN_SCALAR_SAMPLES else ())


def _embed_fallback(workspace: Workspace, edge: EdgeModel, digests: Sequence[str]) -> np.ndarray | None:
    """Features of a file exported without a ``features`` output, by exposing them (needs ``onnx``)."""
    from inspectloop.errors import MissingExtraError, ModelFileError
    from inspectloop.monitor.embeddings import EmbeddingModel

    try:
        return EmbeddingModel(edge.path).embed([workspace.blobs.get(d) for d in digests])
    except (MissingExtraError, ModelFileError):  # no embeddings: the other signals still work
        return None


def _production_windows(workspace: Workspace, version: ModelVersion, edge: EdgeModel,
                        cameras: Sequence[str], first: int) -> dict[str, tuple[CameraWindow, int, str]]:
    with workspace.db.transaction() as tx:
        targets = list(cameras) or tx.predictions.cameras(version.id)
        rows = {camera: tx.predictions.first_of(version.id, camera, first) for camera in targets}
    rows = {camera: found for camera, found in rows.items() if found}
    if not rows:
        raise MonitorError(f"model version {version.name} has no production predictions to baseline on",
                           "serve it for a while, or baseline on its test images: inspectloop monitor baseline")
    short = sorted(f"{camera} ({len(found)})" for camera, found in rows.items() if len(found) < MIN_BASELINE)
    if short:
        raise MonitorError(f"too few production predictions to baseline on: {', '.join(short)}; "
                           f"a baseline needs {MIN_BASELINE} per camera",
                           "serve the model a while longer, or baseline on its test images: inspectloop monitor "
                           "baseline")
    return {camera: (_log_window(workspace, edge, camera, found), len(found), "production")
            for camera, found in rows.items()}


# --- checks --------------------------------------------------------------------------------------------

def monitor(workspace: Workspace, *, window: timedelta = timedelta(days=7), now: datetime | None = None,
            min_predictions: int = 50, alpha: float = 0.01, alert_hours: float = 24.0,
            review_per_camera: int = 5, permutations: int = 500) -> MonitorResult:
    """Check each camera's last ``window`` of production against its baseline; store and alert.

    MonitorError (with the run recorded) when no version is in production, it has no baseline, or
    no camera logged ``min_predictions`` in the window. Cameras below that are left out and named
    in ``skipped``. Fired signals that pass the alert limiter become alerts, and up to
    ``review_per_camera`` of a drifted camera's stored images (least confident first) go to review.
    """
    end = (now or datetime.now(UTC)).astimezone(UTC)
    start_iso, end_iso = (end - window).isoformat(), end.isoformat()
    run: dict[str, Any] = {"window_start": start_iso, "window_end": end_iso}
    version = _checked(workspace, run, lambda: _version(workspace, None), "no_production")
    run["model_version_id"] = version.id
    with workspace.db.transaction() as tx:
        baselines = tx.drift.baselines(version.id)
        rows = tx.predictions.window(start_iso, end_iso, model_version_id=version.id)
    if not baselines:
        _fail(workspace, run, "no_baseline", MonitorError(
            f"model version {version.name} has no drift baseline",
            "record one with: inspectloop monitor baseline"))
    by_camera: dict[str, list[LoggedPrediction]] = defaultdict(list)
    for row in rows:
        by_camera[row.camera or NO_CAMERA].append(row)
    skipped = {camera: f"{len(by_camera.get(camera, []))} predictions in the window (need {min_predictions})"
               for camera in baselines if len(by_camera.get(camera, [])) < min_predictions}
    checked = [camera for camera in sorted(baselines) if camera not in skipped]
    if not checked:
        _fail(workspace, run, "too_few", MonitorError(
            f"too few predictions to check drift: {'; '.join(f'{c}: {r}' for c, r in sorted(skipped.items()))}",
            "use a longer window (e.g. --window 30d) or wait until more parts have been inspected"))
    return _check_cameras(workspace, version, run, baselines, by_camera, checked, skipped, end,
                          {"alpha": alpha, "alert_hours": alert_hours, "review_per_camera": review_per_camera,
                               "permutations": permutations})


def _checked(workspace: Workspace, run: dict[str, Any], step: Any, outcome: str) -> Any:
    try:
        return step()
    except MonitorError as exc:
        _fail(workspace, run, outcome, exc)


def _fail(workspace: Workspace, run: dict[str, Any], outcome: str, exc: MonitorError) -> None:
    """Record the run's outcome, then raise ``exc``."""
    workspace.db.drift.add_run({**run, "outcome": outcome, "message": str(exc)})
    raise exc


def _check_cameras(workspace: Workspace, version: ModelVersion, run: dict[str, Any],
                   baselines: dict[str, DriftBaselineRecord], by_camera: dict[str, list[LoggedPrediction]],
                   checked: list[str], skipped: dict[str, str], end: datetime, options: dict[str, Any]) -> MonitorResult:
    edge = EdgeModel(version.path)
    signals: list[DriftSignal] = []
    for camera in checked:
        baseline = DriftBaseline.from_dict(baselines[camera].baseline)
        current = _log_window(workspace, edge, camera, by_camera[camera])
        signals += check_drift(baseline, aligned(baseline, current), alpha=options["alpha"],
                               permutations=options["permutations"])
    with workspace.db.transaction() as tx:
        limiter = AlertLimiter.from_dict(tx.drift.get_state(LIMITER_KEY) or {"hours": options["alert_hours"]})
        sent = limiter.filter(signals, end)
        outcome = "alert" if sent else "ok"
        run_id = tx.drift.add_run({**run, "outcome": outcome, "message": f"{len(sent)} alerts",
                                              "summary": {"skipped": skipped, "fired": sum(s.fired for s in signals)}})
        tx.drift.add_checks([_check_row(run_id, s, run["window_end"]) for s in signals])
        for signal in sent:
            tx.drift.add_alert({"kind": "drift", "camera": signal.camera, "signal": signal.signal, "effect": signal.effect,
                                       "p_value": signal.p_value, "message": signal.message, "monitor_run_id": run_id})
        tx.drift.set_state(LIMITER_KEY, limiter.to_dict())
        drifted = sorted({s.camera for s in signals if s.fired})
        items = _enqueue_drifted(tx, version.id, by_camera, drifted, options["review_per_camera"])
    return MonitorResult(run_id, version.name, run["window_start"], run["window_end"], signals,
                         [s.message for s in sent], skipped, items)


def aligned(baseline: DriftBaseline, current: CameraWindow) -> CameraWindow:
    """``current`` without an embedding signal whose width differs from the baseline's (another backbone)."""
    if baseline.embeddings is None or current.embeddings is None or \
            baseline.embeddings.shape[1] == current.embeddings.shape[1]:
        return current
    return replace(current, embeddings=None)


def _log_window(workspace: Workspace, edge: EdgeModel, camera: str, rows: Sequence[LoggedPrediction]) -> CameraWindow:
    """A camera's window from logged predictions: stats, labels, confidences, embeddings of stored images."""
    stats = [QualityStats(**row.stats) for row in rows if row.stats]
    stored = [row.image_sha256 for row in rows if row.image_stored][-MAX_EMBEDDED:]
    embeddings = None
    if len(stored) >= MIN_EMBEDDED:
        features = [edge.predict_with_features(workspace.blobs.get(d))[1] for d in stored]
        embeddings = np.stack(features) if all(f is not None for f in features) \
            else _embed_fallback(workspace, edge, stored)
    return camera_window(edge, camera, stats, embeddings, [row.label for row in rows],
                         [row.confidence for row in rows], [row.scores for row in rows])


def _check_row(run_id: int, signal: DriftSignal, checked_at: str) -> dict[str, Any]:
    return {"monitor_run_id": run_id, "camera": signal.camera, "checked_at": checked_at, "signal": signal.signal,
                "effect": _finite(signal.effect), "effect_unit": signal.effect_unit, "p_value": signal.p_value,
                "raw_p_value": signal.raw_p_value, "fired": signal.fired, "n_baseline": signal.n_baseline,
                "n_current": signal.n_current, "message": signal.message}


def _finite(value: float) -> float:
    return float(np.nan_to_num(value, nan=0.0, posinf=1e9, neginf=-1e9))


def _enqueue_drifted(tx: Transaction, version_id: int, by_camera: dict[str, list[LoggedPrediction]],
                     cameras: Sequence[str], per_camera: int) -> list[int]:
    items = []
    for camera in cameras:
        stored = sorted((r for r in by_camera[camera] if r.image_stored), key=lambda r: r.confidence)
        for row in stored[:per_camera]:
            item = review.enqueue(tx, image_sha256=row.image_sha256, reason="drift", prediction_id=row.id,
                                  model_version_id=version_id, suggestion=row.label, scores=row.scores,
                                  details={"camera": camera}, priority=1.0 - row.confidence)
            items += [item] if item is not None else []
    return items


# --- history (dashboard) -------------------------------------------------------------------------------

def drift_history(workspace: Workspace, since: str | None = None) -> list[DriftCheck]:
    """Every stored drift signal, oldest first (for charts over time)."""
    return workspace.db.drift.history(since)


def recent_alerts(workspace: Workspace, *, since: str | None = None, kind: str | None = None,
                  limit: int = 200) -> list[Alert]:
    """Alerts sent, newest first."""
    return workspace.db.drift.alerts(since=since, kind=kind, limit=limit)
