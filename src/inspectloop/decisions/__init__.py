"""Fitting the decisions: calibrated probabilities, per-class operating points, and the review band
with a certified escape rate, and the rates they give on a labelled set.

The rule that applies them is the runtime's (:mod:`inspectloop.runtime.decision`: ``Decision``,
``DecisionPolicy``); this package fits its settings and counts what it does. Importing it loads
neither matplotlib nor scipy (matplotlib is imported when the reliability diagram is drawn). See
:mod:`inspectloop.decisions.conformal` for the guarantee.
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
    DecisionRates,
    ReviewBand,
    band_policy,
    clopper_pearson,
    decision_rates,
    fit_review_band,
    min_calibration_size,
    rates_of_decisions,
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
    "DecisionRates",
    "LineRateView",
    "OperatingPoint",
    "ReliabilityCurve",
    "ReviewBand",
    "band_policy",
    "clopper_pearson",
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
]
