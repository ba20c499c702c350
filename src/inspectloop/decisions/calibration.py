"""Confidence calibration: temperature scaling, expected calibration error and a reliability diagram.

Temperature scaling divides a model's logits by one number ``T`` fitted on a calibration split that
training never saw: ``T > 1`` softens an over-confident model, ``T < 1`` sharpens a timid one. It never
changes which class wins, so accuracy is untouched; only the probabilities become honest.

ECE here is the *top-label* expected calibration error over equal-width confidence bins
``(0, 1/B], (1/B, 2/B], ..., ((B-1)/B, 1]``: the count-weighted mean gap between the mean confidence
of a bin and the share of its images that were right.

matplotlib is imported only when a picture is drawn (``pip install 'inspectloop[app]'``).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from inspectloop.decisions.inputs import check_labels, check_logits, check_probs
from inspectloop.errors import InspectloopError, require
from inspectloop.evaluate.metrics import json_float
from inspectloop.fileio import atomic_write_bytes

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

MIN_TEMPERATURE = 0.05
MAX_TEMPERATURE = 20.0
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


@dataclass(frozen=True, eq=False)
class ReliabilityCurve:
    """Per-bin mean confidence, accuracy and count of a set of predictions (top label).

    ``edges`` has ``bins + 1`` entries; ``confidence`` and ``accuracy`` are ``nan`` for empty bins.
    The arrays are read-only.
    """

    edges: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    count: np.ndarray
    ece: float

    @property
    def total(self) -> int:
        """Number of predictions the curve was computed from."""
        return int(self.count.sum())

    def to_dict(self) -> dict[str, object]:
        """JSON-safe form; empty bins have ``None`` confidence and accuracy."""
        return {
            "ece": float(self.ece),
            "total": self.total,
            "edges": [float(e) for e in self.edges],
            "confidence": [json_float(float(v)) for v in self.confidence],
            "accuracy": [json_float(float(v)) for v in self.accuracy],
            "count": [int(c) for c in self.count],
        }


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Class probabilities ``softmax(logits / temperature)``, row by row (numerically stable)."""
    z = check_logits(logits) / _check_temperature(temperature)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature in [0.05, 20] that minimises the negative log-likelihood of ``labels``.

    Fit it on the calibration split, never on training or test images. The NLL is convex in 1/T, so a
    golden-section search over log T finds the optimum deterministically; logits that carry no
    information (every row constant) give 1.0.
    """
    z = check_logits(logits)
    y = check_labels(labels, z.shape[0], z.shape[1])
    if float(np.ptp(z, axis=1).max()) == 0.0:
        return 1.0
    true_logit = z[np.arange(z.shape[0]), y]
    low, high = math.log(MIN_TEMPERATURE), math.log(MAX_TEMPERATURE)
    a, b = high - _GOLDEN * (high - low), low + _GOLDEN * (high - low)
    fa, fb = _nll(z, true_logit, a), _nll(z, true_logit, b)
    while high - low > 1e-9:
        if fa <= fb:
            high, b, fb = b, a, fa
            a = high - _GOLDEN * (high - low)
            fa = _nll(z, true_logit, a)
        else:
            low, a, fa = a, b, fb
            b = low + _GOLDEN * (high - low)
            fb = _nll(z, true_logit, b)
    return float(min(MAX_TEMPERATURE, max(MIN_TEMPERATURE, math.exp((low + high) / 2.0))))


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Top-label expected calibration error (0 = perfectly calibrated) over equal-width bins."""
    return reliability(probs, labels, bins).ece


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> ReliabilityCurve:
    """Per-bin mean confidence, accuracy and count of the top-label predictions, and their ECE."""
    p = check_probs(probs)
    y = check_labels(labels, p.shape[0], p.shape[1])
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise InspectloopError(f"bins must be a positive whole number, got {bins!r}", hint="15 is usual")
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(float)
    index = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(index, weights=confidence, minlength=bins) / count
        accuracy = np.bincount(index, weights=correct, minlength=bins) / count
    gaps = np.where(count > 0, np.abs(np.nan_to_num(mean_conf) - np.nan_to_num(accuracy)), 0.0)
    ece = float((gaps * count).sum() / count.sum())
    arrays = (np.linspace(0.0, 1.0, bins + 1), mean_conf, accuracy, count.astype(np.int64))
    for array in arrays:
        array.setflags(write=False)
    return ReliabilityCurve(*arrays, ece=ece)


def reliability_png(before: ReliabilityCurve, after: ReliabilityCurve, path: Path | None = None) -> bytes:
    """Reliability diagram of ``before`` and ``after`` calibration as PNG bytes (also written to ``path``).

    The top panel plots accuracy against mean confidence per bin for both curves, with the diagonal of
    perfect calibration; the bottom panel shows how many images fall in each confidence bin.
    """
    figure = _reliability_figure(before, after)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=144, bbox_inches="tight", facecolor="white")
    data = buffer.getvalue()
    if path is not None:
        atomic_write_bytes(Path(path), data)
    return data


def _nll(z: np.ndarray, true_logit: np.ndarray, log_temperature: float) -> float:
    """Mean negative log-likelihood of the labels at temperature ``exp(log_temperature)``."""
    scaled = z / math.exp(log_temperature)
    top = scaled.max(axis=1)
    log_norm = top + np.log(np.exp(scaled - top[:, None]).sum(axis=1))
    return float(np.mean(log_norm - true_logit / math.exp(log_temperature)))


# --- the picture --------------------------------------------------------------------------------


def _reliability_figure(before: ReliabilityCurve, after: ReliabilityCurve) -> Figure:
    figure = require("matplotlib.figure", "app").Figure(figsize=(5.6, 6.4), layout="constrained")
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    top.plot([0, 1], [0, 1], color="#9aa5b1", linestyle="--", linewidth=1, label="perfect calibration")
    for curve, colour, name in ((before, "#d64545", "before"), (after, "#2680c2", "after")):
        shown = curve.count > 0
        top.plot(curve.confidence[shown], curve.accuracy[shown], marker="o", markersize=4, color=colour,
                 linewidth=1.5, label=f"{name} calibration (ECE {curve.ece:.1%})")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1.02)
    top.set_ylabel("accuracy in bin")
    top.set_title(f"Reliability diagram ({after.total} images)", fontsize=11)
    top.legend(loc="upper left", fontsize=8, frameon=False)
    top.grid(color="#eeeeee", linewidth=0.8)
    _count_panel(bottom, before, after)
    return figure


def _count_panel(axes: Axes, before: ReliabilityCurve, after: ReliabilityCurve) -> None:
    width = float(after.edges[1] - after.edges[0])
    centres = after.edges[:-1] + width / 2.0
    axes.bar(centres - width / 4.0, before.count, width=width / 2.0, color="#d64545", alpha=0.8)
    axes.bar(centres + width / 4.0, after.count, width=width / 2.0, color="#2680c2", alpha=0.8)
    axes.set_xlabel("top-class confidence")
    axes.set_ylabel("images")
    axes.xaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
    for spine in ("top", "right"):
        axes.spines[spine].set_visible(False)


# --- input checks shared by the decisions modules -------------------------------------------------


def _check_temperature(temperature: float) -> float:
    if not isinstance(temperature, (int, float, np.floating)) or not 0.0 < float(temperature) < math.inf:
        raise InspectloopError(f"temperature must be a positive number, got {temperature!r}",
                               hint="use fit_temperature() on the calibration split, or 1.0 for none")
    return float(temperature)
