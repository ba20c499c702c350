"""Monitoring records: drift baselines and checks, alerts, camera health, recalibration cycles."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DriftBaselineRecord:
    """What "normal" looked like for one camera when a model version was deployed."""

    id: int
    camera: str
    model_version_id: int
    source: str  # test | calib | production
    images: int
    baseline: dict[str, Any]  # DriftBaseline.to_dict
    recorded_at: str


@dataclass(frozen=True)
class MonitorRun:
    """One ``inspectloop monitor`` run and how it ended (ok | alert | no_baseline | too_few | no_production)."""

    id: int
    started_at: str
    window_start: str
    window_end: str
    model_version_id: int | None
    outcome: str
    message: str | None
    summary: dict[str, Any]


@dataclass(frozen=True)
class DriftCheck:
    """One signal of one camera's check: a point of the history the dashboard charts."""

    id: int
    monitor_run_id: int
    camera: str
    checked_at: str  # the window's end
    signal: str
    effect: float
    effect_unit: str
    p_value: float
    raw_p_value: float
    fired: bool
    n_baseline: int
    n_current: int
    message: str


@dataclass(frozen=True)
class Alert:
    """An alert sent (after rate limiting), in plant language."""

    id: int
    kind: str  # drift | camera
    camera: str
    signal: str
    effect: float | None
    p_value: float | None
    message: str
    monitor_run_id: int | None
    created_at: str


@dataclass(frozen=True)
class CameraBaselineRecord:
    """A camera's stored health baseline (flat field, slanted edge, lighting)."""

    id: int
    camera: str
    baseline: dict[str, Any]  # camera.health.CameraBaseline.to_dict
    flat_sha256: str | None
    edge_sha256: str | None
    recorded_at: str


@dataclass(frozen=True)
class CameraCheckRecord:
    """A stored camera health check."""

    id: int
    camera: str
    baseline_id: int | None
    status: str  # pass | warn | fail | error
    report: dict[str, Any]
    marked_suspect: int
    checked_at: str


@dataclass(frozen=True)
class CycleRecord:
    """A stored recalibration cycle."""

    id: int
    status: str  # awaiting_labels | done
    outcome: str | None
    trigger_source: str  # manual | calendar | drift
    model_version_id: int | None
    window_start: str
    window_end: str
    params: dict[str, Any]
    sample: dict[str, Any]
    result: dict[str, Any]
    message: str | None
    report_path: str | None
    created_at: str
    updated_at: str
