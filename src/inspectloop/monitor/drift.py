"""Per-camera drift: compare a window of production against the baseline recorded at deployment.

Four families of signal, each a two-sample test from :mod:`inspectloop.monitor.statistics`:
image statistics (brightness, contrast, sharpness, noise, clipping; KS), embeddings (MMD),
the predicted-class mix (chi-square / PSI) and the model's confidence (KS). An anomaly model's
window carries, instead of confidences, the anomaly scores of the parts below its threshold (KS):
good parts creeping towards the threshold show there before the reject rate (the class mix) moves,
and a baseline richer in defects than the line (a frozen test set) does not distort it.

Multiple testing: one camera's check runs up to eight tests at once, so the p-values are
Holm-adjusted across that camera's signals (family-wise error rate <= ``alpha`` per camera per
check). A signal fires only when its adjusted p-value is below ``alpha`` *and* its effect reaches
the minimum effect for its family, so a large window cannot alarm on a trivial change.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from inspectloop.domain import QualityStats
from inspectloop.errors import MonitorError
from inspectloop.monitor.statistics import (
    PSI_FLOOR,
    TwoSampleResult,
    counts_test,
    ks_test,
    mmd_test,
)

IMAGE_STATISTICS = ("brightness", "contrast", "sharpness", "noise", "clipped_fraction")
EMBEDDING, PREDICTION, CONFIDENCE = "embedding", "prediction", "confidence"
ANOMALY_SCORE = "anomaly_score"
# Smallest effect worth an alert, per family: SD of the baseline for scalars, MMD (kernel units)
# for embeddings, PSI for the class mix (0.1 is the usual "moderate shift" line).
DEFAULT_MIN_EFFECT: dict[str, float] = {"statistic": 0.5, EMBEDDING: 0.05, PREDICTION: 0.1, CONFIDENCE: 0.5,
                                         ANOMALY_SCORE: 0.5}
_PLAIN_NAMES = {"clipped_fraction": "clipping", "noise": "sensor noise", CONFIDENCE: "model confidence"}


def anomaly_margins(scores: Sequence[Mapping[str, float]], anomaly_class: str, good_class: str) -> np.ndarray:
    """An anomaly model's score per image, read back from its logged (P(good), P(anomaly)): the log-odds
    ``log P(anomaly) - log P(good)``, which is exactly (score - threshold) / scale, so the score's
    distribution (and its shift in standard deviations) is recovered without storing the raw score.
    Positive: above the anomaly threshold. An image without both probabilities gives nan (skipped)."""
    tiny = np.finfo(np.float64).tiny
    margins = [math.log(max(row[anomaly_class], tiny)) - math.log(max(row[good_class], tiny))
               if anomaly_class in row and good_class in row else math.nan for row in scores]
    return np.asarray(margins, dtype=np.float64)


@dataclass(frozen=True)
class CameraWindow:
    """What one camera produced over a window: per-image statistics, embeddings, predictions.

    ``image_stats`` maps a statistic name to one value per image; ``embeddings`` is (N, D) or None;
    ``class_counts`` maps class name to predictions; ``confidences`` the top-class probabilities;
    ``anomaly_scores`` an anomaly model's scores of the parts below its threshold (:func:`anomaly_margins`),
    None for a classifier.
    Any part may be empty: only signals present on both sides are compared.
    """

    camera: str
    image_stats: Mapping[str, np.ndarray] = field(default_factory=dict)
    embeddings: np.ndarray | None = None
    class_counts: Mapping[str, int] = field(default_factory=dict)
    confidences: np.ndarray | None = None
    anomaly_scores: np.ndarray | None = None

    @classmethod
    def from_observations(cls, camera: str, stats: Sequence[QualityStats] = (),
                          embeddings: np.ndarray | None = None, labels: Sequence[str] = (),
                          confidences: Sequence[float] = (), class_names: Sequence[str] = (),
                          anomaly_scores: Sequence[float] | np.ndarray = ()) -> CameraWindow:
        """Gather per-image records (quality stats, predicted labels, confidences, anomaly scores) into one
        window."""
        image_stats = {name: np.array([getattr(s, name) for s in stats], dtype=np.float64)
                       for name in IMAGE_STATISTICS} if stats else {}
        counts = {name: 0 for name in class_names}
        for label in labels:
            counts[label] = counts.get(label, 0) + 1
        return cls(camera, image_stats, None if embeddings is None else np.asarray(embeddings, dtype=np.float32),
                   counts, np.asarray(confidences, dtype=np.float64) if len(confidences) else None,
                   np.asarray(anomaly_scores, dtype=np.float64) if len(anomaly_scores) else None)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; embeddings as base64 float32 (about 4 bytes a number, not 20 as text)."""
        return {"camera": self.camera,
                "image_stats": {name: np.asarray(v, dtype=np.float64).tolist() for name, v in self.image_stats.items()},
                "embeddings": _encode_matrix(self.embeddings),
                "class_counts": {name: int(v) for name, v in self.class_counts.items()},
                "confidences": None if self.confidences is None else np.asarray(self.confidences).tolist(),
                "anomaly_scores": None if self.anomaly_scores is None else np.asarray(self.anomaly_scores).tolist()}

    @classmethod
    def _fields_from_dict(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        try:
            return {"camera": str(data["camera"]),
                    "image_stats": {k: np.asarray(v, dtype=np.float64) for k, v in data.get("image_stats", {}).items()},
                    "embeddings": _decode_matrix(data.get("embeddings")),
                    "class_counts": {k: int(v) for k, v in data.get("class_counts", {}).items()},
                    "confidences": None if data.get("confidences") is None
                    else np.asarray(data["confidences"], dtype=np.float64),
                    "anomaly_scores": None if data.get("anomaly_scores") is None  # absent from older baselines
                    else np.asarray(data["anomaly_scores"], dtype=np.float64)}
        except (KeyError, TypeError, ValueError) as exc:
            raise MonitorError(f"a stored drift window or baseline cannot be read ({exc!r})",
                               "record the baseline again with the current inspectloop version") from exc

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CameraWindow:
        """Inverse of :meth:`to_dict`."""
        return cls(**cls._fields_from_dict(data))


@dataclass(frozen=True)
class DriftBaseline(CameraWindow):
    """A camera's window recorded when a model version was deployed: what 'normal' looks like."""

    model_version: str = ""
    recorded_at: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (see :meth:`CameraWindow.to_dict`) with the model version and time."""
        return {**super().to_dict(), "model_version": self.model_version, "recorded_at": self.recorded_at}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriftBaseline:
        """Inverse of :meth:`to_dict`."""
        return cls(**cls._fields_from_dict(data), model_version=str(data.get("model_version", "")),
                   recorded_at=str(data.get("recorded_at", "")))


@dataclass(frozen=True)
class DriftSignal:
    """One signal's verdict for one camera. ``p_value`` is Holm-adjusted within the camera's check."""

    camera: str
    signal: str
    effect: float
    effect_unit: str
    p_value: float
    raw_p_value: float
    fired: bool
    message: str
    statistic: float
    n_baseline: int
    n_current: int

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict of every field."""
        return asdict(self)


def check_drift(baseline: DriftBaseline, current: CameraWindow, *, alpha: float = 0.01,
                min_effect: Mapping[str, float] | None = None, permutations: int = 500,
                seed: int = 0) -> list[DriftSignal]:
    """Test every signal present in both ``baseline`` and ``current``; one :class:`DriftSignal` each.

    ``min_effect`` overrides :data:`DEFAULT_MIN_EFFECT` per family (``"statistic"``, ``"embedding"``,
    ``"prediction"``, ``"confidence"``). ``permutations`` is raised where needed so that a permutation
    p-value can reach ``alpha`` after the Holm adjustment (3200 for 8 signals at 0.01). MonitorError for another camera, no common signal, or a
    window too small for its test.
    """
    if not 0.0 < alpha < 1.0:
        raise MonitorError(f"alpha must lie strictly between 0 and 1, got {alpha}", "use e.g. 0.01")
    if baseline.camera != current.camera:
        raise MonitorError(f"the baseline is for camera {baseline.camera!r} but the window is from {current.camera!r}",
                           "compare each camera with its own baseline")
    limits = {**DEFAULT_MIN_EFFECT, **(min_effect or {})}
    family_size = _count_signals(baseline, current)
    if family_size == 0:
        raise MonitorError(f"{current.camera}: the baseline and the window share no signal to compare",
                           "record the baseline with image statistics, embeddings or predictions, and log the same")
    # a permutation p-value is at least 1 / (permutations + 1); after Holm's factor it must still be able
    # to fall well below alpha, or a permutation test could never fire
    permutations = max(permutations, math.ceil(4 * family_size / alpha))
    results = _run_tests(baseline, current, permutations, seed)
    adjusted = holm_adjust([result.p_value for _, result in results])
    return [_signal(current.camera, family, result, p, alpha, limits[family], baseline, current)
            for (family, result), p in zip(results, adjusted)]


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values (controls the family-wise error rate; valid under any dependence)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def _count_signals(baseline: DriftBaseline, current: CameraWindow) -> int:
    stats = len([n for n in baseline.image_stats if n in current.image_stats])
    return stats + sum([baseline.embeddings is not None and current.embeddings is not None,
                        bool(baseline.class_counts) and bool(current.class_counts),
                        baseline.confidences is not None and current.confidences is not None,
                        baseline.anomaly_scores is not None and current.anomaly_scores is not None])


def _run_tests(baseline: DriftBaseline, current: CameraWindow, permutations: int,
               seed: int) -> list[tuple[str, TwoSampleResult]]:
    results: list[tuple[str, TwoSampleResult]] = []
    for name in [n for n in baseline.image_stats if n in current.image_stats]:
        results.append(("statistic", ks_test(baseline.image_stats[name], current.image_stats[name], measured=name)))
    if baseline.embeddings is not None and current.embeddings is not None:
        results.append((EMBEDDING, mmd_test(baseline.embeddings, current.embeddings,
                                            permutations=permutations, seed=seed)))
    if baseline.class_counts and current.class_counts:
        names = sorted(set(baseline.class_counts) | set(current.class_counts))
        results.append((PREDICTION, counts_test([baseline.class_counts.get(n, 0) for n in names],
                                                 [current.class_counts.get(n, 0) for n in names],
                                                 permutations=permutations, seed=seed)))
    if baseline.confidences is not None and current.confidences is not None:
        results.append((CONFIDENCE, ks_test(baseline.confidences, current.confidences, measured=CONFIDENCE)))
    if baseline.anomaly_scores is not None and current.anomaly_scores is not None:
        results.append((ANOMALY_SCORE, ks_test(baseline.anomaly_scores, current.anomaly_scores,
                                               measured=ANOMALY_SCORE)))
    return results


def _signal(camera: str, family: str, result: TwoSampleResult, p_value: float, alpha: float, min_effect: float,
            baseline: DriftBaseline, current: CameraWindow) -> DriftSignal:
    fired = p_value < alpha and abs(result.effect) >= min_effect
    message = f"{camera}: {_describe(family, result, p_value, fired, baseline, current)}"
    return DriftSignal(camera, result.measured, result.effect, result.effect_unit, p_value, result.p_value, fired,
                       message, result.statistic, result.n_baseline, result.n_current)


def _describe(family: str, result: TwoSampleResult, p_value: float, fired: bool, baseline: DriftBaseline,
              current: CameraWindow) -> str:
    """Plant language: what changed, by how much, and the evidence (e.g. 'brightness down 18% (...)')."""
    evidence = f"p{_format_p(p_value)}"  # the adjusted p-value: the one the decision used
    if family == PREDICTION:
        change = _class_mix_change(baseline.class_counts, current.class_counts)
        verb = "changed" if fired else "steady"
        return f"predicted-class mix {verb}{change} (PSI {result.effect:.2f}, {evidence})"
    if family == EMBEDDING:
        verb = "changed" if fired else "steady"
        return f"image content {verb} (embedding MMD {result.effect:.3f}, {evidence})"
    if family == ANOMALY_SCORE:
        verb = ("up" if result.effect > 0 else "down") if fired else "steady"
        return f"anomaly score of the parts below the threshold {verb} (effect {abs(result.effect):.1f} SD, {evidence})"
    name = _PLAIN_NAMES.get(result.measured, result.measured)
    samples_b = baseline.confidences if family == CONFIDENCE else baseline.image_stats[result.measured]
    samples_c = current.confidences if family == CONFIDENCE else current.image_stats[result.measured]
    direction = _direction(float(np.mean(samples_b)), float(np.mean(samples_c)), fired)
    return f"{name} {direction} (effect {abs(result.effect):.1f} SD, {evidence})"


def _direction(before: float, after: float, fired: bool) -> str:
    if before != 0.0 and math.isfinite(before):
        change = f"{abs(after - before) / abs(before):.0%}"
    else:
        change = f"by {abs(after - before):.3g}"
    if not fired:
        return f"steady ({'+' if after >= before else '-'}{change.removeprefix('by ')})"
    return f"{'up' if after > before else 'down'} {change}"


def _class_mix_change(before: Mapping[str, int], after: Mapping[str, int]) -> str:
    """The class contributing most to the PSI, as ': scratch 4% -> 12%'.

    PSI weighs relative change, so a defect class going 4% -> 12% outranks the good class going 92% -> 84%.
    """
    total_b, total_a = sum(before.values()) or 1, sum(after.values()) or 1

    def contribution(name: str) -> float:
        p = max(before.get(name, 0) / total_b, PSI_FLOOR)
        q = max(after.get(name, 0) / total_a, PSI_FLOOR)
        return (q - p) * math.log(q / p)

    name = max(sorted(set(before) | set(after)), key=contribution)
    return f": {name} {before.get(name, 0) / total_b:.0%} -> {after.get(name, 0) / total_a:.0%}"


def _format_p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"={p:.2g}"


def _encode_matrix(matrix: np.ndarray | None) -> dict[str, Any] | None:
    if matrix is None:
        return None
    array = np.ascontiguousarray(matrix, dtype="<f4")
    return {"dtype": "float32", "shape": list(array.shape), "base64": base64.b64encode(array.tobytes()).decode()}


def _decode_matrix(data: Mapping[str, Any] | None) -> np.ndarray | None:
    if data is None:
        return None
    raw = base64.b64decode(data["base64"])
    return np.frombuffer(raw, dtype="<f4").reshape(tuple(data["shape"])).astype(np.float32)


# --- alert rate limiting --------------------------------------------------------------------------------

@dataclass
class AlertLimiter:
    """At most one alert per (camera, signal) every ``hours``, unless the effect grows by ``growth``x.

    Pure: the caller passes ``now``; the state (last alert time and effect per pair) round-trips
    through :meth:`to_dict` so a monitor run can resume it.
    """

    hours: float = 24.0
    growth: float = 1.5
    last: dict[tuple[str, str], tuple[datetime, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.hours < 0 or self.growth < 1.0:
            raise MonitorError(f"alert limiter needs hours >= 0 and growth >= 1, got {self.hours} and {self.growth}",
                               "e.g. hours=24, growth=1.5")

    def allow(self, signal: DriftSignal, now: datetime) -> bool:
        """True when ``signal`` fired and should be sent now; records it as sent."""
        if not signal.fired:
            return False
        key = (signal.camera, signal.signal)
        previous = self.last.get(key)
        if previous is not None:
            sent_at, effect = previous
            quiet = now - sent_at < timedelta(hours=self.hours)
            grown = abs(signal.effect) >= self.growth * abs(effect)
            if quiet and not grown:
                return False
        self.last[key] = (now, signal.effect)
        return True

    def filter(self, signals: Sequence[DriftSignal], now: datetime) -> list[DriftSignal]:
        """The fired signals that may be sent now (each one then counts as sent)."""
        return [signal for signal in signals if self.allow(signal, now)]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the settings and state."""
        return {"hours": self.hours, "growth": self.growth,
                "last": [[camera, signal, at.isoformat(), effect] for (camera, signal), (at, effect) in self.last.items()]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AlertLimiter:
        """Inverse of :meth:`to_dict`."""
        last = {(str(c), str(s)): (datetime.fromisoformat(at), float(e)) for c, s, at, e in data.get("last", [])}
        return cls(float(data.get("hours", 24.0)), float(data.get("growth", 1.5)), last)
