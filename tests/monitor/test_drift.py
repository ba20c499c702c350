"""Per-camera drift checks, their plant-language messages, Holm control and the alert rate limit."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from inspectloop.domain import QualityStats
from inspectloop.errors import MonitorError
from inspectloop.monitor.drift import (
    AlertLimiter,
    CameraWindow,
    DriftBaseline,
    DriftSignal,
    anomaly_margins,
    check_drift,
    holm_adjust,
)

CLASSES = ("good", "scratch", "dent")


def _window(seed: int, *, brightness: float = 120.0, shift: float = 0.0, mix: tuple[float, ...] = (0.9, 0.06, 0.04),
            confidence: float = 0.9, n: int = 80, camera: str = "cam-2") -> CameraWindow:
    rng = np.random.default_rng(seed)
    stats = [QualityStats(brightness=float(rng.normal(brightness, 4)), contrast=float(rng.normal(30, 2)),
                          sharpness=float(rng.normal(200, 15)), noise=float(rng.normal(3, 0.3)),
                          clipped_fraction=float(rng.uniform(0, 0.01))) for _ in range(n)]
    labels = [str(label) for label in rng.choice(CLASSES, size=n, p=mix)]
    confidences = np.clip(rng.normal(confidence, 0.04, n), 0, 1)
    return CameraWindow.from_observations(camera, stats, rng.normal(shift, 1, (n, 16)), labels, confidences, CLASSES)


def _baseline(seed: int = 0, **changes: object) -> DriftBaseline:
    window = _window(seed, **changes)  # type: ignore[arg-type]
    return DriftBaseline.from_dict({**window.to_dict(), "model_version": "1.0.0", "recorded_at": "2025-01-01"})


def _by_signal(signals: list[DriftSignal]) -> dict[str, DriftSignal]:
    return {signal.signal: signal for signal in signals}


def test_no_change_fires_nothing() -> None:
    signals = check_drift(_baseline(), _window(1), permutations=200)
    assert len(signals) == 8
    assert not [s.message for s in signals if s.fired]
    assert _by_signal(signals)["brightness"].message.startswith("cam-2: brightness steady (")


def test_darker_images_fire_brightness_with_a_plant_message() -> None:
    signals = _by_signal(check_drift(_baseline(), _window(1, brightness=100.0), permutations=200))
    brightness = signals["brightness"]
    assert brightness.fired and brightness.effect < -3
    assert brightness.message.startswith("cam-2: brightness down 1")  # about 17%
    assert "SD, p<0.001)" in brightness.message
    assert not signals["contrast"].fired


def test_embedding_class_mix_and_confidence_shifts_fire() -> None:
    current = _window(1, shift=0.8, mix=(0.6, 0.3, 0.1), confidence=0.8)
    signals = _by_signal(check_drift(_baseline(), current, permutations=200))
    assert signals["embedding"].fired and "image content changed" in signals["embedding"].message
    assert signals["prediction"].fired and "scratch 2% -> 29%" in signals["prediction"].message
    assert signals["confidence"].fired and "model confidence down" in signals["confidence"].message


def test_a_tiny_significant_change_does_not_fire_below_the_minimum_effect() -> None:
    base, current = _baseline(n=2000), _window(1, brightness=120.6, n=2000)  # 0.15 SD: real but negligible
    signal = _by_signal(check_drift(base, current, permutations=50))["brightness"]
    assert signal.p_value < 0.01 and not signal.fired
    loose = _by_signal(check_drift(base, current, permutations=50, min_effect={"statistic": 0.1}))["brightness"]
    assert loose.fired


def test_holm_adjustment() -> None:
    assert holm_adjust([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm_adjust([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_signals_report_adjusted_and_raw_p_values() -> None:
    signals = check_drift(_baseline(), _window(1, brightness=100.0), permutations=100)
    assert all(s.p_value >= s.raw_p_value for s in signals)
    json.dumps([s.to_dict() for s in signals])


def test_baseline_round_trips_through_json() -> None:
    baseline = _baseline()
    again = DriftBaseline.from_dict(json.loads(json.dumps(baseline.to_dict())))
    assert again.model_version == "1.0.0" and again.camera == "cam-2"
    assert np.allclose(again.embeddings, baseline.embeddings)
    assert again.class_counts == baseline.class_counts
    assert np.array_equal(again.image_stats["brightness"], baseline.image_stats["brightness"])


def test_an_anomaly_score_is_read_back_exactly_from_logged_probabilities() -> None:
    raw = np.array([18.0, 20.0, 21.5, 60.0])  # threshold 20, scale 0.5: logits [0, (raw - 20) / 0.5]
    z = (raw - 20.0) / 0.5
    logged = [{"good": float(1 / (1 + np.exp(v))), "anomaly": float(1 / (1 + np.exp(-v)))} for v in z]  # softmax
    assert np.allclose(anomaly_margins(logged, "anomaly", "good"), z)
    assert np.isnan(anomaly_margins([{"good": 0.9, "scratch": 0.1}], "anomaly", "good")).all()


def test_an_anomaly_score_shift_fires_and_old_baselines_without_scores_still_load() -> None:
    rng = np.random.default_rng(0)
    baseline = DriftBaseline("cam-2", anomaly_scores=rng.normal(-2.0, 1.0, 200), model_version="a1")
    again = DriftBaseline.from_dict(json.loads(json.dumps(baseline.to_dict())))
    assert np.array_equal(again.anomaly_scores, baseline.anomaly_scores)
    older = {k: v for k, v in _baseline().to_dict().items() if k != "anomaly_scores"}
    assert DriftBaseline.from_dict(older).anomaly_scores is None
    shifted = _by_signal(check_drift(baseline, CameraWindow("cam-2", anomaly_scores=rng.normal(-1.0, 1.0, 200))))
    assert shifted["anomaly_score"].fired
    assert "anomaly score of the parts below the threshold up (effect 0.9 SD" in shifted["anomaly_score"].message
    steady = _by_signal(check_drift(baseline, CameraWindow("cam-2", anomaly_scores=rng.normal(-2.0, 1.0, 200))))
    assert not steady["anomaly_score"].fired and "below the threshold steady" in steady["anomaly_score"].message


@pytest.mark.parametrize(("current", "message"), [
    (CameraWindow("cam-3"), "baseline is for camera 'cam-2' but the window is from 'cam-3'"),
    (CameraWindow("cam-2"), "share no signal"),
    (CameraWindow("cam-2", confidences=np.full(5, 0.9)), "current window has 5 images; this test needs at least 20"),
])
def test_check_drift_refuses_bad_input(current: CameraWindow, message: str) -> None:
    with pytest.raises(MonitorError, match=message):
        check_drift(_baseline(), current)


def test_unreadable_baseline_is_a_monitor_error() -> None:
    with pytest.raises(MonitorError, match="cannot be read"):
        DriftBaseline.from_dict({"image_stats": {}})


def _signal(effect: float, fired: bool = True, signal: str = "brightness") -> DriftSignal:
    return DriftSignal("cam-2", signal, effect, "SD", 0.001, 0.001, fired, "", 0.0, 50, 50)


def test_alert_limiter_sends_once_per_period_unless_the_effect_grows() -> None:
    limiter = AlertLimiter(hours=24, growth=1.5)
    t0 = datetime(2025, 3, 1, tzinfo=UTC)
    assert limiter.allow(_signal(-2.0), t0)
    assert not limiter.allow(_signal(-2.5), t0 + timedelta(hours=1))  # grew, but less than 1.5x
    assert limiter.allow(_signal(-3.1), t0 + timedelta(hours=2))  # grew 1.55x
    assert not limiter.allow(_signal(-3.1), t0 + timedelta(hours=20))
    assert limiter.allow(_signal(-3.1), t0 + timedelta(hours=26, minutes=1))  # 24 h after the last sent
    assert limiter.allow(_signal(-1.0, signal="noise"), t0 + timedelta(hours=27))  # another signal, own budget
    assert not limiter.allow(_signal(-9.0, fired=False), t0 + timedelta(hours=27))  # not fired: never sent


def test_alert_limiter_filters_and_round_trips() -> None:
    limiter = AlertLimiter(hours=6)
    t0 = datetime(2025, 3, 1, tzinfo=UTC)
    assert len(limiter.filter([_signal(1.0), _signal(1.0, signal="noise"), _signal(1.0, fired=False)], t0)) == 2
    again = AlertLimiter.from_dict(json.loads(json.dumps(limiter.to_dict())))
    assert again == limiter
    assert not again.allow(_signal(1.2), t0 + timedelta(hours=5))
    with pytest.raises(MonitorError, match="growth >= 1"):
        AlertLimiter(growth=0.5)
