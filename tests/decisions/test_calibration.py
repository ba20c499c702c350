"""Calibration: temperature recovery, ECE by hand and on synthetic data, the diagram, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from inspectloop.decisions import (
    expected_calibration_error,
    fit_temperature,
    reliability,
    reliability_png,
    softmax,
)
from inspectloop.errors import InspectloopError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def sampled(logits: np.ndarray, temperature: float, seed: int) -> np.ndarray:
    """Labels drawn from softmax(logits / temperature): the model is right about its own uncertainty at T."""
    rng = np.random.default_rng(seed)
    p = softmax(logits, temperature)
    u = rng.random(p.shape[0])[:, None]
    return np.minimum((p.cumsum(axis=1) < u).sum(axis=1), p.shape[1] - 1)


def logits_of(n: int, k: int, seed: int, scale: float = 3.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, scale, (n, k))


def test_softmax_rows_sum_to_one_and_survive_huge_logits() -> None:
    p = softmax(np.array([[1000.0, 0.0, -1000.0], [1.0, 1.0, 1.0]]))
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    assert p[0].tolist() == [1.0, 0.0, 0.0]
    np.testing.assert_allclose(p[1], 1 / 3)
    np.testing.assert_allclose(softmax(np.array([[2.0, 0.0]]), 2.0), softmax(np.array([[1.0, 0.0]])))


@pytest.mark.parametrize("true_t", [2.5, 0.5])
def test_fit_temperature_recovers_a_known_temperature(true_t: float) -> None:
    z = logits_of(4000, 5, seed=1)
    y = sampled(z, true_t, seed=2)
    t = fit_temperature(z, y)
    assert t == pytest.approx(true_t, rel=0.08)
    assert fit_temperature(z, y) == t  # deterministic


def test_fit_temperature_stays_in_its_bounds() -> None:
    separable = np.array([[5.0, 0.0], [0.0, 5.0]] * 10)
    assert fit_temperature(separable, np.array([0, 1] * 10)) == pytest.approx(0.05, rel=1e-6)
    assert fit_temperature(np.zeros((4, 3)), np.array([0, 1, 2, 0])) == 1.0  # no information: no change
    always_wrong = np.array([[5.0, 0.0]] * 10)
    assert fit_temperature(always_wrong, np.ones(10, dtype=int)) == pytest.approx(20.0, rel=1e-6)


def test_ece_by_hand() -> None:
    # bins of width 0.1: two images at 0.85 (one right): gap |0.85 - 0.5|; two at 0.55 (both right): gap 0.45
    probs = np.array([[0.85, 0.15], [0.85, 0.15], [0.55, 0.45], [0.45, 0.55]])
    labels = np.array([0, 1, 0, 1])
    assert expected_calibration_error(probs, labels, bins=10) == pytest.approx(0.5 * 0.35 + 0.5 * 0.45)
    exact = np.array([[0.8, 0.2]] * 10)
    assert expected_calibration_error(exact, np.array([0] * 8 + [1] * 2), bins=10) == pytest.approx(0.0, abs=1e-12)


def test_ece_is_near_zero_for_calibrated_data() -> None:
    z = logits_of(20000, 4, seed=3)
    assert expected_calibration_error(softmax(z), sampled(z, 1.0, seed=4)) < 0.015


def test_ece_drops_after_temperature_scaling() -> None:
    z = logits_of(24000, 6, seed=5)
    y = sampled(z, 2.5, seed=6)  # softmax(z) is over-confident
    calibration, test = slice(0, 8000), slice(8000, None)
    t = fit_temperature(z[calibration], y[calibration])
    before = expected_calibration_error(softmax(z[test]), y[test])
    after = expected_calibration_error(softmax(z[test], t), y[test])
    assert before > 0.15
    assert after < 0.02


def test_reliability_curve_counts_and_empty_bins() -> None:
    probs = np.array([[0.95, 0.05], [0.9, 0.1], [0.3, 0.7]])
    curve = reliability(probs, np.array([0, 1, 1]), bins=5)
    assert curve.count.tolist() == [0, 0, 0, 1, 2] and curve.total == 3
    assert np.isnan(curve.confidence[0]) and np.isnan(curve.accuracy[0])
    assert curve.accuracy[4] == 0.5 and curve.confidence[4] == pytest.approx(0.925)
    document = json.loads(json.dumps(curve.to_dict(), allow_nan=False))
    assert document["accuracy"][0] is None and document["count"] == [0, 0, 0, 1, 2]
    with pytest.raises(ValueError):
        curve.count[0] = 5  # read-only


def test_reliability_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    z = logits_of(500, 3, seed=7)
    y = sampled(z, 2.0, seed=8)
    before, after = reliability(softmax(z), y), reliability(softmax(z, 2.0), y)
    data = reliability_png(before, after)
    assert data.startswith(PNG_MAGIC)
    path = tmp_path / "reliability.png"
    assert reliability_png(before, after, path) == path.read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == ["reliability.png"]


def test_import_loads_neither_matplotlib_nor_scipy() -> None:
    code = ("import sys, inspectloop.decisions; "
            "print(sorted(m for m in ('matplotlib', 'scipy', 'torch') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"


GOOD = np.array([[0.7, 0.3], [0.2, 0.8]])
BAD_INPUT = [  # (probs, labels, words in the message)
    (np.array([[0.7, 0.2], [0.2, 0.8]]), [0, 1], "sum to 0.9"),
    (np.array([[1.2, -0.2], [0.2, 0.8]]), [0, 1], "[0, 1]"),
    (np.array([[np.nan, 0.5], [0.2, 0.8]]), [0, 1], "NaN"),
    (np.array([0.7, 0.3]), [0], "shape (2,)"),
    (np.empty((0, 2)), [], "at least 1 image"),
    (GOOD, [0], "expected 2 labels"),
    (GOOD, [0, 2], "label 2 is outside"),
    (GOOD, [0.0, 1.0], "integer class indices"),
]


@pytest.mark.parametrize(("probs", "labels", "words"), BAD_INPUT)
def test_bad_input_is_a_clear_error(probs: np.ndarray, labels: list, words: str) -> None:
    with pytest.raises(InspectloopError, match=None) as info:
        expected_calibration_error(probs, np.array(labels))
    assert words in info.value.message and info.value.hint


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("inf"), float("nan")])
def test_bad_temperature(temperature: float) -> None:
    with pytest.raises(InspectloopError, match="temperature"):
        softmax(np.zeros((1, 2)), temperature)


def test_bad_logits_and_bins() -> None:
    with pytest.raises(InspectloopError, match="logits"):
        fit_temperature(np.zeros((3, 1)), np.zeros(3, dtype=int))
    with pytest.raises(InspectloopError, match="bins"):
        reliability(GOOD, np.array([0, 1]), bins=0)
