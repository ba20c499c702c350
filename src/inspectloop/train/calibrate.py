"""Confidence calibration and decisions of a trained classifier, fitted on held-out scores.

Held-out scores are the calibration split's (a split no training step saw), or, cross-fitted, the
out-of-fold scores of the whole labelled pool (see :mod:`inspectloop.decisions.crossfit`). Fitting
(:func:`fit_confidence`, :func:`fit_band`) reads only those; measuring (:func:`measure_confidence`,
:func:`measure_band`) reads the frozen test set and changes nothing that ships.

The temperature is applied only when it lowers the expected calibration error (ECE) on held-out data
it was not fitted on (5-fold cross-validation of the fit over the held-out scores): a temperature that
minimises the log-likelihood can still make the ECE worse, and then 1.0 is kept and a warning says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inspectloop.decisions.calibration import (
    MAX_TEMPERATURE, MIN_TEMPERATURE, expected_calibration_error, fit_temperature, reliability, reliability_png,
    softmax,
)
from inspectloop.decisions.conformal import ReviewBand, decision_rates, fit_review_band
from inspectloop.decisions.operating_points import OperatingPoint, operating_point, operating_point_at
from inspectloop.reports.html import ReportFigure
from inspectloop.runtime.decision import threshold_array

CHECK_FOLDS = 5  # cross-validation folds of the temperature check


@dataclass(frozen=True)
class ConfidenceFit:
    """The temperature a run ships, fitted on held-out scores, and whether it helped there.

    ``fitted`` is the likelihood-optimal temperature; ``temperature`` is what ships: ``fitted`` when
    its cross-validated held-out ECE (``held_out_ece_after``) is below the ECE at 1.0
    (``held_out_ece_before``), else 1.0. ``source`` names the held-out scores ("calibration split",
    "out-of-fold scores", or "none").
    """

    temperature: float
    fitted: float
    applied: bool
    source: str
    images: int
    held_out_ece_before: float | None
    held_out_ece_after: float | None
    warnings: tuple[str, ...] = ()

    @property
    def at_bound(self) -> bool:
        """The fit hit a bound: typically the held-out images were all separated with margin."""
        return _at_bound(self.fitted)


@dataclass(frozen=True)
class CalibrationResult:
    """A temperature and what it does on the frozen test set (ECE before and after, the reliability diagram)."""

    temperature: float
    calibration_images: int
    test_ece_before: float
    test_ece_after: float
    figure: ReportFigure
    fit: ConfidenceFit | None = None
    warnings: tuple[str, ...] = field(default=())

    @property
    def at_bound(self) -> bool:
        """The fit hit a bound: typically the calibration images were all separated with margin."""
        return _at_bound(self.fit.fitted if self.fit else self.temperature)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form, for the run's metrics."""
        fit = self.fit
        return {"temperature": self.temperature, "temperature_at_bound": self.at_bound,
                "calibration_images": self.calibration_images,
                "test_ece_before": self.test_ece_before, "test_ece_after": self.test_ece_after,
                "fitted_temperature": fit.fitted if fit else self.temperature,
                "temperature_applied": fit.applied if fit else self.calibration_images > 0,
                "source": fit.source if fit else "calibration split",
                "held_out_ece_before": fit.held_out_ece_before if fit else None,
                "held_out_ece_after": fit.held_out_ece_after if fit else None,
                "warnings": list(self.warnings)}


def fit_confidence(logits: np.ndarray | None, labels: np.ndarray | None, *,
                   source: str = "calibration split") -> ConfidenceFit:
    """Fit the temperature on held-out ``logits`` (1.0 without any) and keep it only if it helps there."""
    if logits is None or labels is None or len(labels) == 0:
        return ConfidenceFit(1.0, 1.0, False, "none", 0, None, None)
    fitted = fit_temperature(logits, labels)
    before = expected_calibration_error(softmax(logits, 1.0), labels)
    after = expected_calibration_error(_cross_validated_probs(logits, labels), labels)
    if after < before:
        return ConfidenceFit(fitted, fitted, True, source, len(labels), before, after)
    warning = (f"Temperature {fitted:.3f} (fitted on the {len(labels)} images of the {source}) was not applied: "
               f"on held-out {source} images it would move the expected calibration error from {before:.1%} to "
               f"{after:.1%}, no better than leaving the confidences alone (temperature 1.0).")
    return ConfidenceFit(1.0, fitted, False, source, len(labels), before, after, (warning,))


def measure_confidence(fit: ConfidenceFit, test_logits: np.ndarray, test_labels: np.ndarray) -> CalibrationResult:
    """ECE on the frozen test set before (temperature 1.0) and after ``fit``, with the reliability diagram.

    Measuring never changes the temperature (the test set does not steer what ships); when the shipped
    temperature makes the test ECE worse, the result carries a warning that says so.
    """
    before, after = softmax(test_logits, 1.0), softmax(test_logits, fit.temperature)
    curve_before, curve_after = reliability(before, test_labels), reliability(after, test_labels)
    warnings = list(fit.warnings)
    if fit.applied and curve_after.ece > curve_before.ece:
        warnings.append(f"Calibration made the test set's expected calibration error worse ({curve_before.ece:.1%} "
                        f"-> {curve_after.ece:.1%}): the test images are not like the {fit.source} (a shift, or "
                        f"too few held-out images to fit on).")
    figure = ReportFigure("Calibration (test set)", reliability_png(curve_before, curve_after),
                          "Reliability diagram: predicted confidence against observed accuracy",
                          " ".join([_caption(fit, curve_before.ece, curve_after.ece), *warnings]))
    return CalibrationResult(fit.temperature, fit.images, curve_before.ece, curve_after.ece, figure, fit,
                             tuple(warnings))


def calibrate(calib_logits: np.ndarray | None, calib_labels: np.ndarray | None,
              test_logits: np.ndarray, test_labels: np.ndarray) -> CalibrationResult:
    """Fit the temperature on the calibration split (1.0 without one) and measure ECE on test."""
    return measure_confidence(fit_confidence(calib_logits, calib_labels), test_logits, test_labels)


def _caption(fit: ConfidenceFit, before: float, after: float) -> str:
    if fit.images == 0:
        return ("No calibration split in this dataset version, so confidences are uncalibrated "
                "(make one with: inspectloop dataset create --calib 0.2, or train with band_fit=crossfit).")
    shipped = (f"Temperature {fit.temperature:.3f}, fitted on {fit.images} images of the {fit.source} (no model "
               f"scored an image it trained on)." if fit.applied else "Temperature 1.0 (see the warning).")
    bound = (" The fitted temperature sits at its bound: the held-out images were all classified with a wide "
             "margin, so the fit cannot tell how much sharper is right." if fit.at_bound else "")
    return f"{shipped} Expected calibration error on the test set: {before:.1%} before, {after:.1%} after.{bound}"


def _cross_validated_probs(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Probabilities of each held-out image at a temperature fitted without it (interleaved folds by class)."""
    z, y = np.asarray(logits, dtype=np.float64), np.asarray(labels)
    parts = min(CHECK_FOLDS, len(y))
    order = np.argsort(y, kind="stable")
    part = np.empty(len(y), dtype=np.int64)
    part[order] = np.arange(len(y)) % parts  # every part sees every class
    probs = softmax(z, 1.0)
    for k in range(parts):
        rest = part != k
        if rest.any() and (part == k).any():
            probs[part == k] = softmax(z[part == k], fit_temperature(z[rest], y[rest]))
    return probs


def _at_bound(temperature: float) -> bool:
    return any(math.isclose(temperature, bound, rel_tol=1e-6) for bound in (MIN_TEMPERATURE, MAX_TEMPERATURE))


@dataclass(frozen=True)
class FittedBand:
    """The review band and per-class operating points fitted on held-out probabilities (nothing measured yet)."""

    band: ReviewBand
    points: dict[str, OperatingPoint]
    skipped: dict[str, str]

    @property
    def review(self) -> dict[str, Any]:
        """The model file's ``review`` field."""
        b = self.band
        return {"auto_above": b.auto_above, "reject_below": b.reject_below, "alpha": b.alpha,
                "confidence": b.confidence, "certifiable": b.certifiable, "guarantee": b.guarantee}

    @property
    def thresholds(self) -> dict[str, float]:
        """The model file's ``thresholds`` field: per defect class."""
        return {name: point.threshold for name, point in self.points.items()}


@dataclass(frozen=True)
class DecisionBand:
    """The review band and operating points for the model file, and what they did on the frozen test set."""

    review: dict[str, Any]  # the model file's ``review`` field
    thresholds: dict[str, float]  # the model file's ``thresholds`` field: per defect class
    summary: dict[str, Any]  # band, operating points and test-set rates, for the run's metrics


def fit_band(probs: np.ndarray, labels: np.ndarray, *, good_index: int | None, alpha: float, confidence: float,
             guarantee: str = "pac", folds: int | None = None, targets: Mapping[str, float] | None = None,
             class_names: Sequence[str] = ()) -> FittedBand:
    """Fit the pass / reject / review band and the per-class operating points on held-out probabilities.

    ``targets`` are target recalls by defect class name (see ``decisions.target_recalls``); a class
    without held-out images gets no threshold, and ``skipped`` says so. ``folds`` goes with
    ``guarantee="crossfit"`` (out-of-fold probabilities).
    """
    band = fit_review_band(probs, labels, good_index=good_index, alpha=alpha, confidence=confidence,
                           guarantee=guarantee, folds=folds)
    points, skipped = _operating_points(probs, labels, targets or {}, list(class_names))
    return FittedBand(band, points, skipped)


def measure_band(fitted: FittedBand, test_probs: np.ndarray, test_labels: np.ndarray,
                 class_names: Sequence[str] = ()) -> DecisionBand:
    """What the fitted band and operating points do on the frozen test set."""
    thresholds = fitted.thresholds
    rates = decision_rates(test_probs, test_labels, fitted.band, threshold_array(list(class_names), thresholds))
    summary = {"band": fitted.band.to_dict(), "test": rates.to_dict(),
               "operating_points": {name: {"calibration": point.to_dict(),
                                           "test": _test_point(test_probs, test_labels, point)}
                                    for name, point in fitted.points.items()},
               "operating_points_skipped": fitted.skipped}
    return DecisionBand(fitted.review, thresholds, summary)


def fit_decisions(calib_probs: np.ndarray, calib_labels: np.ndarray, test_probs: np.ndarray,
                  test_labels: np.ndarray, *, good_index: int | None, alpha: float,
                  confidence: float, guarantee: str = "pac", targets: Mapping[str, float] | None = None,
                  class_names: Sequence[str] = ()) -> DecisionBand:
    """Fit the band and operating points on the calibration split (:func:`fit_band`); measure both on
    the test set (:func:`measure_band`)."""
    fitted = fit_band(calib_probs, calib_labels, good_index=good_index, alpha=alpha, confidence=confidence,
                      guarantee=guarantee, targets=targets, class_names=class_names)
    return measure_band(fitted, test_probs, test_labels, class_names)


def _operating_points(probs: np.ndarray, labels: np.ndarray, targets: Mapping[str, float],
                      names: list[str]) -> tuple[dict[str, OperatingPoint], dict[str, str]]:
    points, skipped = {}, {}
    for name, target in targets.items():
        index = names.index(name)
        if not (labels == index).any():
            skipped[name] = "no calibration images of this class, so no threshold: the band alone decides it"
            continue
        points[name] = operating_point(probs, labels, index, target)
    return points, skipped


def _test_point(probs: np.ndarray, labels: np.ndarray, point: OperatingPoint) -> dict[str, Any]:
    """What one class's threshold achieves on the test set (recall and precision with Wilson intervals)."""
    return operating_point_at(probs, labels, point.class_index, point.threshold, point.target_recall).to_dict()
