"""Measuring and judging, pure: runtime predictions and true labels in, one result per criterion out.

``measure`` turns a model's predictions on the frozen test set into what criteria limit (per-class
recall and precision, escape rate, review rate, false alerts per hour at the line rate, p95 latency,
calibration error); ``judge`` compares each with its limit. Nothing here reads a workspace:
:mod:`inspectloop.accept.run` runs the model file and writes the report.

A measurement that cannot be made (a class never predicted has no precision) fails its criterion:
acceptance never passes on a number it does not have. Counts and 95 % intervals stand beside every
rate, because a test split of a few dozen images says less than its percentages suggest.
"""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from inspectloop.accept.criteria import AcceptanceCriteria
from inspectloop.decisions.calibration import expected_calibration_error
from inspectloop.decisions.conformal import DecisionRates, clopper_pearson, rates_of_decisions
from inspectloop.decisions.line_rate import LineRateView, line_rate_view
from inspectloop.errors import DatasetError
from inspectloop.evaluate.metrics import ClassificationMetrics, classification_metrics, wilson_interval
from inspectloop.fileio import json_safe
from inspectloop.reports.html import number_text
from inspectloop.runtime.decision import Decisions

if TYPE_CHECKING:
    from inspectloop.runtime import Prediction

ECE_BINS = 15
FEW = 30  # below this many images a rate's interval is wide: the detail says so


@dataclass(frozen=True)
class CriterionResult:
    """One limit of the criteria against what was measured; ``measured`` is None when it cannot be measured.

    ``field`` is the limit's path in the criteria YAML (``classes.scratch.min_recall``); ``unit`` is
    ``share``, ``per hour`` or ``ms``. A ``min_`` limit passes when measured >= limit, a ``max_`` one
    when measured <= limit; an unmeasurable value fails, and ``detail`` says why.
    """

    name: str
    limit: float
    measured: float | None
    passed: bool
    detail: str
    field: str
    unit: str

    @property
    def bound(self) -> str:
        """``min`` or ``max``: which side of the limit passes."""
        return "min" if self.field.rsplit(".", 1)[-1].startswith("min_") else "max"

    @property
    def limit_text(self) -> str:
        return f"{'≥' if self.bound == 'min' else '≤'} {_value_text(self.limit, self.unit)}"

    @property
    def measured_text(self) -> str:
        return "undefined" if self.measured is None else _value_text(self.measured, self.unit)

    def to_dict(self) -> dict[str, object]:
        """JSON-safe form, with the limit and measurement also as display text."""
        return {"name": self.name, "field": self.field, "unit": self.unit, "bound": self.bound,
                "limit": self.limit, "measured": self.measured, "passed": self.passed, "detail": self.detail,
                "limit_text": self.limit_text, "measured_text": self.measured_text}


@dataclass(frozen=True, eq=False)
class Measurements:
    """What a model did on the frozen test set, through the runtime: the numbers criteria are judged by.

    ``rates`` counts the runtime's decisions (escapes, false rejects, reviews); ``line`` turns them into
    per-hour figures at the criteria's line (None without a line); ``latency_ms`` is each image's
    ``latency_ms["total"]`` (read-only); ``calibration_error`` is the top-label ECE of the runtime's
    probabilities (after the model file's temperature). ``defect_detections``: an anomaly model's test
    images of each defect class as (called anomaly, count): it names no defect class, so a criterion's
    recall of one is the share of its images it calls anomaly (empty for a classifier).
    """

    good_class: str | None
    metrics: ClassificationMetrics
    rates: DecisionRates
    line: LineRateView | None
    latency_ms: np.ndarray
    calibration_error: float
    defect_detections: Mapping[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return self.metrics.count

    @property
    def p95_latency_ms(self) -> float:
        """Nearest-rank p95: 95 % of the images were decided within this time (the slowest under 20 images)."""
        ordered = np.sort(self.latency_ms)
        return float(ordered[max(0, math.ceil(0.95 * ordered.size) - 1)])

    @property
    def review_ci(self) -> tuple[float, float]:
        """95 % Clopper-Pearson interval of the share of test parts sent to review."""
        return clopper_pearson(self.rates.reviews, self.rates.count)

    @property
    def automates_nothing(self) -> bool:
        """Every test part went to a human: escape and false-alert figures then say nothing about the model."""
        return self.rates.reviews == self.rates.count

    def to_dict(self) -> dict[str, object]:
        """JSON-safe form; undefined values become None."""
        per_class = []
        for i, c in enumerate(self.metrics.per_class):
            correct = int(self.metrics.confusion[i, i])
            per_class.append({**c.to_dict(), "correct": correct,
                              "precision_low": wilson_interval(correct, c.predicted)[0],
                              "precision_high": wilson_interval(correct, c.predicted)[1]})
        latency = self.latency_ms
        return json_safe({
            "count": self.count, "good_class": self.good_class, "accuracy": self.metrics.accuracy,
            "per_class": per_class, "confusion": self.metrics.to_dict()["confusion"],
            "rates": self.rates.to_dict(), "line": None if self.line is None else self.line.to_dict(),
            "review": {"rate": self.rates.review_rate, "reviews": self.rates.reviews, "count": self.rates.count,
                       "ci": list(self.review_ci), "method": "Clopper-Pearson",
                       "automates_nothing": self.automates_nothing},
            "latency_ms": {"p95": self.p95_latency_ms, "p50": float(np.median(latency)),
                           "max": float(latency.max()), "mean": float(latency.mean()), "count": int(latency.size)},
            "calibration_error": self.calibration_error, "calibration_bins": ECE_BINS,
            **({"defect_detections": {name: {"called_anomaly": hits, "count": n}
                                      for name, (hits, n) in self.defect_detections.items()}}
               if self.defect_detections else {}),
        })  # type: ignore[return-value]


# -- measuring ------------------------------------------------------------------------------------

def measure(predictions: Sequence[Prediction], truth: Sequence[str], *, class_names: Sequence[str],
            good_class: str | None, criteria: AcceptanceCriteria,
            defect_labels: Sequence[str] | None = None) -> Measurements:
    """The measurements of runtime predictions against the true labels (class names), image by image.

    ``criteria`` supplies the line (for per-hour figures) and the escape limit (for the escape wording).
    ``defect_labels`` (an anomaly model's, whose ``truth`` is good vs anomaly): each image's own class,
    for ``Measurements.defect_detections``.
    """
    names = list(class_names)
    if len(predictions) != len(truth) or not predictions:
        raise DatasetError(f"{len(predictions)} predictions for {len(truth)} labelled images",
                           "measure one prediction per test image")
    y = np.array([names.index(label) for label in truth], dtype=np.int64)
    predicted = np.array([names.index(p.label) for p in predictions], dtype=np.int64)
    decisions = Decisions(predicted, np.array([p.decision for p in predictions]))
    good_index = None if good_class is None else names.index(good_class)
    rates = rates_of_decisions(decisions, y, num_classes=len(names), good_index=good_index,
                               alpha=criteria.max_escape_rate)
    line = None if criteria.line is None else line_rate_view(rates, criteria.line.parts_per_hour,
                                                             criteria.line.defect_rate)
    probs = np.array([[p.scores[name] for name in names] for p in predictions], dtype=np.float64)
    latency = np.array([p.latency_ms["total"] for p in predictions], dtype=np.float64)
    latency.setflags(write=False)
    return Measurements(good_class=good_class, metrics=classification_metrics(y, predicted, names), rates=rates,
                        line=line, latency_ms=latency,
                        calibration_error=expected_calibration_error(probs, y, bins=ECE_BINS),
                        defect_detections=_detections(defect_labels, predictions, good_class))


def _detections(labels: Sequence[str] | None, predictions: Sequence[Prediction],
                good_class: str | None) -> dict[str, tuple[int, int]]:
    """Per defect class of ``labels``: (images not called ``good_class``, images)."""
    found: dict[str, tuple[int, int]] = {}
    for label, prediction in zip(labels or (), predictions):
        if label != good_class:
            hits, count = found.get(label, (0, 0))
            found[label] = (hits + (prediction.label != good_class), count + 1)
    return found


# -- judging --------------------------------------------------------------------------------------

def judge(criteria: AcceptanceCriteria, m: Measurements) -> tuple[CriterionResult, ...]:
    """One result per limit the criteria set, in the order of the criteria file's fields."""
    results = []
    for name, limits in criteria.classes.items():
        if limits.min_recall is not None:
            results.append(_recall(name, limits.min_recall, m))
        if limits.min_precision is not None:
            results.append(_precision(name, limits.min_precision, m))
    if criteria.max_escape_rate is not None:
        results.append(_escape(criteria.max_escape_rate, m))
    if criteria.max_review_rate is not None:
        results.append(_review(criteria.max_review_rate, m))
    if criteria.max_false_alerts_per_hour is not None:
        results.append(_false_alerts(criteria.max_false_alerts_per_hour, m))
    if criteria.max_p95_latency_ms is not None:
        results.append(_latency(criteria.max_p95_latency_ms, m))
    if criteria.max_calibration_error is not None:
        results.append(_calibration(criteria.max_calibration_error, m))
    return tuple(results)


def _result(name: str, field: str, unit: str, limit: float, measured: float, detail: str) -> CriterionResult:
    defined = not math.isnan(measured)
    value = float(measured) if defined else None
    passed = defined and (measured >= limit if field.rsplit(".", 1)[-1].startswith("min_") else measured <= limit)
    return CriterionResult(name, float(limit), value, bool(passed), detail, field, unit)


def _class_index(name: str, m: Measurements) -> int | None:
    names = m.metrics.class_names
    return names.index(name) if name in names else None


def _not_a_model_class(name: str, field: str, limit: float, m: Measurements, what: str) -> CriterionResult:
    return _result(f"{name}: {what}", field, "share", limit, math.nan,
                   f"undefined: {name!r} is not one of the model's classes ({', '.join(m.metrics.class_names)})")


def _recall(name: str, limit: float, m: Measurements) -> CriterionResult:
    field = f"classes.{name}.min_recall"
    i = _class_index(name, m)
    if i is None and name in m.defect_detections:
        hits, count = m.defect_detections[name]
        detail = (f"{hits} of {count} {name} test images called anomaly (an anomaly model names no defect class); "
                  f"{_interval(count, wilson_interval(hits, count))}")
        return _result(f"{name}: recall", field, "share", limit, hits / count, detail)
    if i is None:
        return _not_a_model_class(name, field, limit, m, "recall")
    c, hits = m.metrics.per_class[i], int(m.metrics.confusion[i, i])
    if c.support == 0:
        detail = f"undefined: the frozen test split has no images of {name}, so its recall cannot be measured"
    else:
        detail = f"{hits} of {c.support} {name} test images called {name}; {_interval(c.support, (c.recall_low, c.recall_high))}"
    return _result(f"{name}: recall", field, "share", limit, c.recall, detail)


def _precision(name: str, limit: float, m: Measurements) -> CriterionResult:
    field = f"classes.{name}.min_precision"
    i = _class_index(name, m)
    if i is None:
        return _not_a_model_class(name, field, limit, m, "precision")
    c, hits = m.metrics.per_class[i], int(m.metrics.confusion[i, i])
    if c.predicted == 0:
        detail = f"undefined: the model called no test image {name}, so its precision cannot be measured"
    else:
        detail = (f"{hits} of the {c.predicted} test images called {name} are {name}; "
                  f"{_interval(c.predicted, wilson_interval(hits, c.predicted))}")
    return _result(f"{name}: precision", field, "share", limit, c.precision, detail)


def _escape(limit: float, m: Measurements) -> CriterionResult:
    r = m.rates
    if r.defective == 0:
        detail = "undefined: the frozen test split has no defective parts, so no escape can be counted"
    elif r.has_good_class:
        detail = (f"{r.escapes} of {r.defective} defective test parts passed as {m.good_class}; "
                  f"{_interval(r.defective, r.escape_ci, 'Clopper-Pearson')}")
    else:
        detail = (f"{r.escapes} of {r.defective} test parts automatically assigned a wrong class (the model has "
                  f"no good class: every part is defective, and an escape is a wrong class); "
                  f"{_interval(r.defective, r.escape_ci, 'Clopper-Pearson')}")
    return _result("escape rate", "max_escape_rate", "share", limit, r.escape_rate, detail)


def _review(limit: float, m: Measurements) -> CriterionResult:
    r = m.rates
    split = f" ({r.defective_reviews} defective, {r.good_reviews} good)" if r.has_good_class else ""
    detail = (f"{r.reviews} of {r.count} test parts sent to review{split}; "
              f"{_interval(r.count, m.review_ci, 'Clopper-Pearson')}")
    if m.line is not None and r.has_good_class and r.good and r.defective:
        share = m.line.reviews_per_hour / m.line.parts_per_hour
        detail += f"; at the line's {m.line.defect_rate:g} defect rate about {_share(share)} of parts"
    return _result("review rate", "max_review_rate", "share", limit, r.review_rate, detail)


def review_summary(m: Measurements) -> str:
    """The review rate in one plain sentence, judged or not: a model that automates nothing must not read as a pass."""
    r = m.rates
    low, high = m.review_ci
    text = (f"{r.reviews} of {r.count} test parts ({_share(r.review_rate)}; 95% interval {_share(low)}-{_share(high)}) "
            f"went to review, {_share(r.automation_rate)} were decided automatically")
    if m.automates_nothing:
        text += ("; the model automates nothing: a human decides every part, so no escape or false alert can be "
                 "counted against it")
    return text


def _false_alerts(limit: float, m: Measurements) -> CriterionResult:
    r, line = m.rates, m.line
    field, name = "max_false_alerts_per_hour", "false alerts per hour"
    if line is None:  # the criteria validator requires a line with this limit
        return _result(name, field, "per hour", limit, math.nan, "undefined: the criteria give no line rate")
    if not r.has_good_class:
        return _result(name, field, "per hour", limit, math.nan,
                       "undefined: the model has no good class, so it passes no part and every good part would be "
                       "an alert; drop this limit for a sorting model, or define a good class and train again")
    if r.good == 0:
        return _result(name, field, "per hour", limit, math.nan,
                       "undefined: the frozen test split has no good parts, so no false reject can be counted")
    low, high = line.false_alerts_per_hour_ci
    detail = (f"{r.false_rejects} of {r.good} good test parts rejected x {line.parts_per_hour:g} parts per hour x "
              f"(1 - {line.defect_rate:g} defect rate); 95% range {number_text(low, 3)} to {number_text(high, 3)} per hour "
              f"({r.good} good test parts{': few' if r.good < FEW else ''})")
    return _result(name, field, "per hour", limit, line.false_alerts_per_hour, detail)


def _latency(limit: float, m: Measurements) -> CriterionResult:
    n, latency = m.count, m.latency_ms
    note = "; with fewer than 20 images the p95 is the slowest image" if n < 20 else ""
    detail = (f"p95 of the runtime's own total time per image (decode, preprocess, infer) over {n} test images, "
              f"one thread, after one warm-up image; median {number_text(float(np.median(latency)), 3)} ms, slowest "
              f"{number_text(float(latency.max()), 3)} ms; on this machine ({platform.system()} {platform.machine()}, "
              f"{os.cpu_count()} CPUs){note}")
    return _result("p95 latency", "max_p95_latency_ms", "ms", limit, m.p95_latency_ms, detail)


def _calibration(limit: float, m: Measurements) -> CriterionResult:
    n = m.count
    detail = (f"top-label expected calibration error of the runtime's probabilities (the model file's temperature "
              f"applied) over {n} test images in {ECE_BINS} confidence bins"
              + (f"; {n} images: a rough estimate" if n < 100 else ""))
    return _result("calibration error", "max_calibration_error", "share", limit, m.calibration_error, detail)


def _interval(n: int, ci: tuple[float, float], method: str = "Wilson") -> str:
    few = ": few, read the interval" if n < FEW else ""
    return f"{n} test images{few}: 95% {method} interval {_share(ci[0])}-{_share(ci[1])}"


def _share(value: float) -> str:
    return f"{100.0 * value:.3g}%"


def _value_text(value: float, unit: str) -> str:
    if unit == "share":
        return f"{100.0 * value:.4g}%"  # 4 digits: 99.95 % must not read as 100 %
    number = number_text(value, 3)
    return f"{number} ms" if unit == "ms" else f"{number} per hour"
