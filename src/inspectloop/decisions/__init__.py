"""Decisions: calibrated probabilities, per-class operating points, and pass / reject / review
with a certified escape rate.

Pure numpy: importing this package loads neither matplotlib nor scipy (matplotlib is imported when
the reliability diagram is drawn). See :mod:`inspectloop.decisions.conformal` for the guarantee.
"""

from __future__ import annotations

from inspectloop.decisions.calibration import (
    ReliabilityCurve,
    expected_calibration_error,
    fit_temperature,
    reliability,
    reliability_png,
    softmax,
)
from inspectloop.decisions.conformal import (
    PASS,
    REJECT,
    REVIEW,
    DecisionRates,
    Decisions,
    ReviewBand,
    clopper_pearson,
    decide,
    decision_rates,
    fit_review_band,
    min_calibration_size,
    rates_of_decisions,
    threshold_array,
)
from inspectloop.decisions.line_rate import LineRateView, line_rate_view
from inspectloop.decisions.operating_points import (
    DEFAULT_RECALL_BY_SEVERITY,
    OperatingPoint,
    examples_needed,
    operating_point,
    operating_point_at,
    target_recalls,
)

__all__ = [
    "DEFAULT_RECALL_BY_SEVERITY",
    "PASS",
    "REJECT",
    "REVIEW",
    "DecisionRates",
    "Decisions",
    "LineRateView",
    "OperatingPoint",
    "ReliabilityCurve",
    "ReviewBand",
    "clopper_pearson",
    "decide",
    "decision_rates",
    "examples_needed",
    "expected_calibration_error",
    "fit_review_band",
    "fit_temperature",
    "line_rate_view",
    "min_calibration_size",
    "operating_point",
    "operating_point_at",
    "rates_of_decisions",
    "reliability",
    "reliability_png",
    "softmax",
    "target_recalls",
    "threshold_array",
]
