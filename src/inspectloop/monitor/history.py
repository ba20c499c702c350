"""Drift over a long period: every window of months of predictions checked against each camera's baseline.

``inspectloop monitor`` checks the last window and samples at most a few hundred images to embed. Looking
back over months (when did this camera start to drift? was last spring's lighting change visible?)
means embedding every stored image of the period and testing window after window: that heavy part
runs on :mod:`inspectloop.batch` (this process, or Ray). Each window is built and tested exactly as
``monitor`` does (:func:`~inspectloop.monitor.run.camera_window`, :func:`~inspectloop.monitor.drift.check_drift`),
so the two agree on a window they both see. Nothing is stored or alerted: this reads history, it
does not re-live it. The result goes to the reports folder as JSON.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from inspectloop import registry
from inspectloop.batch.engine import Engine, LocalEngine
from inspectloop.batch.tasks import CheckWindows, EmbedImages
from inspectloop.domain import LoggedPrediction, QualityStats
from inspectloop.errors import MonitorError
from inspectloop.monitor.drift import CameraWindow, DriftBaseline
from inspectloop.monitor.run import MIN_EMBEDDED, NO_CAMERA, aligned, camera_window
from inspectloop.runtime import EdgeModel
from inspectloop.store import atomic_write_text
from inspectloop.workspace import Workspace


@dataclass(frozen=True)
class WindowDrift:
    """One camera's window of the period: what it held and what the tests found (or why none ran)."""

    camera: str
    start: str
    end: str
    predictions: int
    embedded: int  # stored images whose embeddings entered the test
    fired: list[str]  # signals that fired
    signals: list[dict[str, Any]]
    skipped: str | None  # why this window was not tested


@dataclass
class PeriodDrift:
    model_version: str
    start: str
    end: str
    window_days: float
    windows: list[WindowDrift]
    images_embedded: int
    engine: dict[str, Any]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "seconds": round(self.seconds, 3)}


def drift_over_period(workspace: Workspace, *, start: datetime, end: datetime, window: timedelta = timedelta(days=7),
                      version: str | None = None, engine: Engine | None = None, min_predictions: int = 50,
                      alpha: float = 0.01, permutations: int = 500) -> PeriodDrift:
    """Check every ``window`` of [start, end) on every camera with a baseline; MonitorError when nothing can be."""
    started = time.perf_counter()
    start, end = _utc(start), _utc(end)
    if end <= start or window <= timedelta(0):
        raise MonitorError(f"the period {start.isoformat()} to {end.isoformat()} in windows of {window} is empty",
                           "give a start before the end and a positive window (e.g. --window 7d)")
    chosen = registry.named_or_production(workspace, version)
    if chosen is None:
        raise MonitorError("no model version is in production and none was named",
                           "name the version whose predictions to look back on: --version NAME")
    baselines = {camera: DriftBaseline.from_dict(record.baseline)
                 for camera, record in workspace.db.drift.baselines(chosen.id).items()}
    if not baselines:
        raise MonitorError(f"model version {chosen.name} has no drift baseline", "record one with: inspectloop "
                           "monitor baseline --version " + chosen.name)
    rows = workspace.db.predictions.window(start.isoformat(), end.isoformat(), model_version_id=chosen.id)
    engine = engine or LocalEngine()
    registry.verify_file(chosen, workspace)
    model = chosen.path.read_bytes()
    stored = sorted({row.image_sha256 for row in rows if row.image_stored})
    vectors = dict(zip(stored, engine.map(EmbedImages(model, workspace.blobs), stored)))
    edge = EdgeModel(chosen.path)
    bins = _binned(rows, start, window)
    pairs, shells = [], []
    for (camera, index), found in sorted(bins.items()):
        low, high = start + index * window, min(start + (index + 1) * window, end)
        shell = (camera, low.isoformat(), high.isoformat(), len(found))
        if camera not in baselines:
            shells.append((*shell, 0, "no baseline for this camera"))
        elif len(found) < min_predictions:
            shells.append((*shell, 0, f"{len(found)} predictions (need {min_predictions})"))
        else:
            current = aligned(baselines[camera], _window(edge, camera, found, vectors))
            pairs.append((baselines[camera], current))
            embedded = 0 if current.embeddings is None else len(current.embeddings)
            shells.append((*shell, embedded, None))
    if not pairs:
        raise MonitorError(f"no window between {start.isoformat()} and {end.isoformat()} has {min_predictions} "
                           "predictions on a camera with a baseline", "use a longer --window or a longer period")
    checked = iter(engine.map(CheckWindows(alpha, permutations), pairs))
    windows = [_result(shell, None if shell[5] else next(checked)) for shell in shells]
    return PeriodDrift(chosen.name, start.isoformat(), end.isoformat(), window / timedelta(days=1), windows,
                       len(stored), engine.describe(), time.perf_counter() - started)


def write_period_report(workspace: Workspace, result: PeriodDrift) -> Path:
    """Write the result as JSON under the workspace's reports folder; return the path."""
    name = f"drift-history-{result.model_version}-{result.start[:10]}-{result.end[:10]}.json"
    path = workspace.reports_dir / name
    atomic_write_text(path, json.dumps(result.to_dict(), indent=2, default=str) + "\n")
    return path


def _utc(moment: datetime) -> datetime:
    """A time without a zone is UTC (the prediction log's)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _binned(rows: Sequence[LoggedPrediction], start: datetime, window: timedelta
            ) -> dict[tuple[str, int], list[LoggedPrediction]]:
    """Rows by (camera, window index from ``start``)."""
    bins: dict[tuple[str, int], list[LoggedPrediction]] = defaultdict(list)
    for row in rows:
        index = (datetime.fromisoformat(row.received_at) - start) // window
        bins[(row.camera or NO_CAMERA, index)].append(row)
    return bins


def _window(edge: EdgeModel, camera: str, rows: Sequence[LoggedPrediction],
            vectors: dict[str, np.ndarray | None]) -> CameraWindow:
    """A window as ``monitor`` builds it, with the embeddings of every stored image in it (not a sample)."""
    stats = [QualityStats(**row.stats) for row in rows if row.stats]
    features = [vectors[row.image_sha256] for row in rows if row.image_stored]
    usable = len(features) >= MIN_EMBEDDED and all(f is not None for f in features)
    embeddings = np.stack(features) if usable else None  # type: ignore[arg-type]
    return camera_window(edge, camera, stats, embeddings, [row.label for row in rows],
                         [row.confidence for row in rows], [row.scores for row in rows])


def _result(shell: tuple[Any, ...], checked: Any) -> WindowDrift:
    camera, low, high, count, embedded, skipped = shell
    if isinstance(checked, str):  # the tests themselves refused the window
        skipped, checked = checked, None
    signals = [signal.to_dict() for signal in checked or []]
    fired = [signal.signal for signal in checked or [] if signal.fired]
    return WindowDrift(camera, low, high, count, embedded, fired, signals, skipped)
