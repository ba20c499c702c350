"""The line-rate view: a band's measured rates as false alerts per hour, escapes per day and reviews per hour.

The rates come from :func:`~inspectloop.decisions.conformal.decision_rates` on the frozen test set,
taken separately for good and defective parts, so the test set's own defect share does not leak into
the line figures: the line's ``defect_rate`` re-weights them. The 95 % intervals of the escape and
false-reject rates carry over as ranges. Without a good class the model only sorts defective parts,
so the figures cover the ``parts_per_hour * defect_rate`` defective parts per hour and there are no
false alerts to count.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from inspectloop.decisions.conformal import DecisionRates
from inspectloop.errors import InspectloopError
from inspectloop.evaluate.metrics import json_float


@dataclass(frozen=True)
class LineRateView:
    """Expected counts on the line for one band; undefined figures (no such test parts) are ``nan``."""

    parts_per_hour: float
    defect_rate: float
    hours_per_day: float
    good_per_hour: float
    defective_per_hour: float
    false_alerts_per_hour: float
    false_alerts_per_hour_ci: tuple[float, float]
    escapes_per_day: float
    escapes_per_day_ci: tuple[float, float]
    reviews_per_hour: float
    automated_per_hour: float
    note: str

    def to_dict(self) -> dict[str, object]:
        """JSON-safe form; ``nan`` becomes ``None``."""
        out: dict[str, object] = {}
        for key in self.__dataclass_fields__:
            value = getattr(self, key)
            out[key] = [json_float(v) for v in value] if isinstance(value, tuple) else \
                json_float(value) if isinstance(value, float) else value
        return out


def line_rate_view(
    rates: DecisionRates, parts_per_hour: float, defect_rate: float, hours_per_day: float = 24.0
) -> LineRateView:
    """Translate ``rates`` to a line running ``parts_per_hour`` with a share ``defect_rate`` of defective parts.

    False alerts are good parts auto-rejected; escapes are as ``rates`` defines them; reviews are parts
    sent to a human. Raises :class:`~inspectloop.errors.InspectloopError` for a non-positive line rate,
    a defect rate outside [0, 1] or hours per day outside (0, 24].
    """
    pph = _check_number(parts_per_hour, "parts_per_hour", lambda v: v > 0.0, "a positive number",
                        "the line's throughput in parts per hour, e.g. 3600")
    d = _check_number(defect_rate, "defect_rate", lambda v: 0.0 <= v <= 1.0, "a share in [0, 1]",
                      "the share of defective parts, e.g. 0.01 for 1 %")
    hours = _check_number(hours_per_day, "hours_per_day", lambda v: 0.0 < v <= 24.0, "in (0, 24]",
                          "the hours the line runs per day, e.g. 16 for two shifts")
    defective = pph * d
    good = pph * (1.0 - d) if rates.has_good_class else 0.0
    escapes_day = _scale(defective * hours, rates.escape_rate, rates.escape_ci)
    false_alerts = _scale(good, rates.false_reject_rate, rates.false_reject_ci) if rates.has_good_class \
        else (math.nan, (math.nan, math.nan))
    reviews = _times(defective, rates.defective_review_rate) + _times(good, rates.good_review_rate)
    return LineRateView(
        parts_per_hour=pph,
        defect_rate=d,
        hours_per_day=hours,
        good_per_hour=good,
        defective_per_hour=defective,
        false_alerts_per_hour=false_alerts[0],
        false_alerts_per_hour_ci=false_alerts[1],
        escapes_per_day=escapes_day[0],
        escapes_per_day_ci=escapes_day[1],
        reviews_per_hour=reviews,
        automated_per_hour=defective + good - reviews,
        note=_note(rates, pph),
    )


def _scale(volume: float, rate: float, ci: tuple[float, float]) -> tuple[float, tuple[float, float]]:
    return _times(volume, rate), (_times(volume, ci[0]), _times(volume, ci[1]))


def _times(volume: float, rate: float) -> float:
    """``volume * rate``, where no volume makes an undefined rate irrelevant (0, not nan)."""
    return 0.0 if volume == 0.0 else volume * rate


def _note(rates: DecisionRates, pph: float) -> str:
    parts = ["Rates measured on the test set, per good and per defective part, re-weighted by the line's defect rate;"
             " the ranges carry the 95% intervals of the escape and false-reject rates."]
    if not rates.has_good_class:
        parts.append(f"Without a good class the model only sorts defective parts: the figures cover "
                     f"defect_rate x {pph:g} parts per hour, and there are no false alerts.")
    if rates.defective < 30:
        parts.append(f"Only {rates.defective} defective test parts: the escape figures are rough.")
    return " ".join(parts)


def _check_number(value: float, name: str, valid: Callable[[float], bool], span: str, hint: str) -> float:
    number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not number or not math.isfinite(float(value)) or not valid(float(value)):
        raise InspectloopError(f"{name} must be {span}, got {value!r}", hint=hint)
    return float(value)
