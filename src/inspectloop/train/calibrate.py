"""Confidence calibration of a trained classifier: temperature scaling on the calibration split.

The temperature is fitted on images no training step saw (the dataset version's ``calib`` split);
expected calibration error (ECE) is then measured on the frozen test set before and after.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from inspectloop.decisions.calibration import (
    MAX_TEMPERATURE, MIN_TEMPERATURE, expected_calibration_error, fit_temperature, reliability, reliability_png,
    softmax,
)
from inspectloop.decisions.conformal import decision_rates, fit_review_band
from inspectloop.decisions.operating_points import OperatingPoint, operating_point, operating_point_at
from inspectloop.reports.html import ReportFigure
from inspectloop.runtime.decision import threshold_array


@dataclass(frozen=True)
class CalibrationResult:
    temperature: float
    calibration_images: int
    test_ece_before: float
    test_ece_after: float
    figure: ReportFigure

    @property
    def at_bound(self) -> bool:
        """The fit hit a bound: typically the calibration images were all separated with margin."""
        return _at_bound(self.temperature)

    def to_dict(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "temperature_at_bound": self.at_bound,
                "calibration_images": self.calibration_images,
                "test_ece_before": self.test_ece_before, "test_ece_after": self.test_ece_after}


def calibrate(calib_logits: np.ndarray | None, calib_labels: np.ndarray | None,
              test_logits: np.ndarray, test_labels: np.ndarray) -> CalibrationResult:
    """Fit the temperature on the calibration split (1.0 without one) and measure ECE on test."""
    has_split = calib_logits is not None and calib_labels is not None and len(calib_labels) > 0
    temperature = fit_temperature(calib_logits, calib_labels) if has_split else 1.0  # type: ignore[arg-type]
    before, after = softmax(test_logits, 1.0), softmax(test_logits, temperature)
    curve_before, curve_after = reliability(before, test_labels), reliability(after, test_labels)
    caption = (f"Temperature {temperature:.3f}, fitted on {len(calib_labels)} calibration images no training step "
               f"saw. Expected calibration error on the test set: {curve_before.ece:.1%} before, "
               f"{curve_after.ece:.1%} after."
               + (" The temperature sits at its bound: the calibration images were all classified with a wide "
                  "margin, so the fit cannot tell how much sharper is right." if _at_bound(temperature)
                  else "") if has_split else
               "No calibration split in this dataset version, so confidences are uncalibrated "
               "(make one with: inspectloop dataset create --calib 0.2).")
    figure = ReportFigure("Calibration (test set)", reliability_png(curve_before, curve_after),
                          "Reliability diagram: predicted confidence against observed accuracy", caption)
    return CalibrationResult(temperature, len(calib_labels) if has_split else 0,  # type: ignore[arg-type]
                             expected_calibration_error(before, test_labels),
                             expected_calibration_error(after, test_labels), figure)


def _at_bound(temperature: float) -> bool:
    return any(math.isclose(temperature, bound, rel_tol=1e-6) for bound in (MIN_TEMPERATURE, MAX_TEMPERATURE))


@dataclass(frozen=True)
class DecisionBand:
    """The review band and operating points for the model file, and what they did on the frozen test set."""

    review: dict[str, Any]  # the model file's ``review`` field
    thresholds: dict[str, float]  # the model file's ``thresholds`` field: per defect class
    summary: dict[str, Any]  # band, operating points and test-set rates, for the run's metrics


def fit_decisions(calib_probs: np.ndarray, calib_labels: np.ndarray, test_probs: np.ndarray,
                  test_labels: np.ndarray, *, good_index: int | None, alpha: float,
                  confidence: float, guarantee: str = "pac", targets: Mapping[str, float] | None = None,
                  class_names: Sequence[str] = ()) -> DecisionBand:
    """Fit the pass / reject / review band and the per-class operating points on the calibration
    split; measure both on the test set.

    ``targets`` are target recalls by defect class name (see ``decisions.target_recalls``); a class
    without calibration images gets no threshold, and the summary says so.
    """
    band = fit_review_band(calib_probs, calib_labels, good_index=good_index, alpha=alpha, confidence=confidence,
                           guarantee=guarantee)
    review = {"auto_above": band.auto_above, "reject_below": band.reject_below, "alpha": band.alpha,
              "confidence": band.confidence, "certifiable": band.certifiable, "guarantee": band.guarantee}
    points, skipped = _operating_points(calib_probs, calib_labels, targets or {}, list(class_names))
    thresholds = {name: point.threshold for name, point in points.items()}
    array = threshold_array(list(class_names), thresholds)
    rates = decision_rates(test_probs, test_labels, band, array)
    test_points = {name: _test_point(test_probs, test_labels, point) for name, point in points.items()}
    summary = {"band": band.to_dict(), "test": rates.to_dict(),
               "operating_points": {name: {"calibration": point.to_dict(), "test": test_points[name]}
                                    for name, point in points.items()},
               "operating_points_skipped": skipped}
    return DecisionBand(review, thresholds, summary)


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
