"""The temperature ships only when it helps on held-out data; a worse test ECE is never silent; the band
is fitted on held-out scores and measured on test."""

from __future__ import annotations

import numpy as np
import pytest

from inspectloop.decisions.calibration import softmax
from inspectloop.train.calibrate import (
    calibrate, fit_band, fit_confidence, fit_decisions, measure_band, measure_confidence,
)


def overconfident(rng: np.random.Generator, n: int, scale: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    """Logits of a model whose probabilities are right at temperature ``scale`` (too sharp at 1.0)."""
    labels = rng.integers(0, 3, n)
    z = rng.normal(0.0, 1.0, (n, 3))
    z[np.arange(n), labels] += 1.5
    truth = np.array([rng.choice(3, p=p) for p in softmax(z)])  # labels drawn from the honest probabilities
    return z * scale, truth


def confident_mistakes() -> tuple[np.ndarray, np.ndarray]:
    """95 right at 0.95 and 5 wrong at 0.999: the likelihood wants a softer temperature, which makes the
    right answers under-confident and the ECE far worse (0.2% -> about 17%)."""
    right = np.tile([np.log(0.95 / 0.05), 0.0], (95, 1))
    wrong = np.tile([0.0, np.log(0.999 / 0.001)], (5, 1))
    return np.concatenate([right, wrong]), np.zeros(100, dtype=np.int64)


def test_a_temperature_that_helps_on_held_out_data_ships() -> None:
    logits, labels = overconfident(np.random.default_rng(0), 600)
    fit = fit_confidence(logits, labels, source="out-of-fold scores")
    assert fit.applied and fit.temperature == fit.fitted and 3.0 < fit.temperature < 5.5
    assert fit.held_out_ece_after < fit.held_out_ece_before and fit.warnings == ()
    assert fit.source == "out-of-fold scores" and fit.images == 600


def test_a_temperature_that_makes_held_out_ece_worse_is_kept_at_one_with_a_warning() -> None:
    logits, labels = confident_mistakes()
    fit = fit_confidence(logits, labels)
    assert fit.fitted > 1.2 and not fit.applied and fit.temperature == 1.0
    assert fit.held_out_ece_after > fit.held_out_ece_before
    assert len(fit.warnings) == 1 and "was not applied" in fit.warnings[0] and "0.2%" in fit.warnings[0]
    result = measure_confidence(fit, logits, labels)
    assert result.temperature == 1.0 and result.test_ece_after == result.test_ece_before
    assert "was not applied" in result.figure.caption and result.to_dict()["temperature_applied"] is False
    assert result.to_dict()["fitted_temperature"] == pytest.approx(fit.fitted)


def test_a_worse_test_ece_is_reported_not_hidden() -> None:
    rng = np.random.default_rng(1)
    calib_logits, calib_labels = overconfident(rng, 600)
    test_logits, test_labels = overconfident(rng, 600, scale=1.0)  # the test images are not over-confident
    result = calibrate(calib_logits, calib_labels, test_logits, test_labels)
    assert result.fit is not None and result.fit.applied and result.temperature > 3.0
    assert result.test_ece_after > result.test_ece_before
    assert any("made the test set's expected calibration error worse" in w for w in result.warnings)
    assert "worse" in result.figure.caption and result.to_dict()["warnings"] == list(result.warnings)


def test_without_held_out_scores_nothing_is_calibrated() -> None:
    logits, labels = overconfident(np.random.default_rng(2), 50)
    result = calibrate(None, None, logits, labels)
    assert result.temperature == 1.0 and result.calibration_images == 0 and result.warnings == ()
    assert "No calibration split" in result.figure.caption and result.to_dict()["source"] == "none"


def test_fit_then_measure_is_fit_decisions() -> None:
    rng = np.random.default_rng(3)
    labels = np.concatenate([np.zeros(300, dtype=np.int64), rng.integers(1, 3, 300)])
    z = rng.normal(0.0, 1.0, (600, 3))
    z[np.arange(600), labels] += 3.0
    probs = softmax(z)
    names, targets = ["good", "scratch", "dent"], {"scratch": 0.95, "dent": 0.95}
    fitted = fit_band(probs[:400], labels[:400], good_index=0, alpha=0.05, confidence=0.9, targets=targets,
                      class_names=names)
    assert set(fitted.thresholds) == {"scratch", "dent"} and fitted.review["auto_above"] == fitted.band.auto_above
    measured = measure_band(fitted, probs[400:], labels[400:], names)
    direct = fit_decisions(probs[:400], labels[:400], probs[400:], labels[400:], good_index=0, alpha=0.05,
                           confidence=0.9, targets=targets, class_names=names)
    assert measured.summary == direct.summary and measured.review == direct.review
