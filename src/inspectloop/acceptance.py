"""Acceptance: judge a finished run's model file against locked criteria on the frozen test set.

``accept`` runs the exported model file itself through the edge runtime (one thread) on every image
of the frozen test split of the run's dataset version, measures what the criteria limit (per-class
recall and precision, escape rate, false alerts per hour at the line rate, p95 latency, calibration
error), compares each measurement with its limit, and writes ``acceptance.json`` and a self-contained
``acceptance.html`` into the run's folder. The report is recorded in the registry against the model
version, so a passed report against the run's own criteria unlocks promotion to production.

A measurement that cannot be made (a class never predicted has no precision) fails its criterion:
acceptance never passes on a number it does not have. Counts and 95 % intervals stand beside every
rate, because a test split of a few dozen images says less than its percentages suggest.
"""

from __future__ import annotations

import json
import math
import os
import platform
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from inspectloop.criteria import AcceptanceCriteria, LockedCriteria, check_criteria_locked_before, get_criteria
from inspectloop.datasets import DatasetItem, load_version
from inspectloop.decisions.calibration import expected_calibration_error
from inspectloop.decisions.conformal import DecisionRates, rates_of_decisions
from inspectloop.decisions.line_rate import LineRateView, line_rate_view
from inspectloop.errors import AcceptanceError, DatasetError
from inspectloop.evaluate.metrics import ClassificationMetrics, classification_metrics, wilson_interval
from inspectloop.evaluate.report import _json_safe
from inspectloop.fileio import atomic_write_bytes
from inspectloop.provenance import code_version
from inspectloop.registry import ModelVersion, get_version, record_acceptance, register, verify_file
from inspectloop.runtime.decision import Decisions
from inspectloop.store import now_iso
from inspectloop.workspace import Workspace

if TYPE_CHECKING:
    from inspectloop.runtime import ModelMetadata, Prediction

REPORT_FORMAT = "inspectloop.acceptance-report"
REPORT_FORMAT_VERSION = 1
ECE_BINS = 15
FEW = 30  # below this many images a rate's interval is wide: the detail says so
_RUNS_FIX = "list runs with: inspectloop runs"


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
    probabilities (after the model file's temperature).
    """

    good_class: str | None
    metrics: ClassificationMetrics
    rates: DecisionRates
    line: LineRateView | None
    latency_ms: np.ndarray
    calibration_error: float

    @property
    def count(self) -> int:
        return self.metrics.count

    @property
    def p95_latency_ms(self) -> float:
        """Nearest-rank p95: 95 % of the images were decided within this time (the slowest under 20 images)."""
        ordered = np.sort(self.latency_ms)
        return float(ordered[max(0, math.ceil(0.95 * ordered.size) - 1)])

    def to_dict(self) -> dict[str, object]:
        """JSON-safe form; undefined values become None."""
        per_class = []
        for i, c in enumerate(self.metrics.per_class):
            correct = int(self.metrics.confusion[i, i])
            per_class.append({**c.to_dict(), "correct": correct,
                              "precision_low": wilson_interval(correct, c.predicted)[0],
                              "precision_high": wilson_interval(correct, c.predicted)[1]})
        latency = self.latency_ms
        return _json_safe({
            "count": self.count, "good_class": self.good_class, "accuracy": self.metrics.accuracy,
            "per_class": per_class, "confusion": self.metrics.to_dict()["confusion"],
            "rates": self.rates.to_dict(), "line": None if self.line is None else self.line.to_dict(),
            "latency_ms": {"p95": self.p95_latency_ms, "p50": float(np.median(latency)),
                           "max": float(latency.max()), "mean": float(latency.mean()), "count": int(latency.size)},
            "calibration_error": self.calibration_error, "calibration_bins": ECE_BINS,
        })  # type: ignore[return-value]


@dataclass(frozen=True, eq=False)
class AcceptanceReport:
    """The verdict on one run's model file against one set of locked criteria, and where it was written.

    ``record_id`` is the acceptance report's id in the registry. Only a passed report against the
    criteria the run named (``unlocks_promotion``) lets its model version go to production.
    """

    run_id: str
    variant: str
    criteria: LockedCriteria
    run_criteria_id: int | None
    model_version: ModelVersion
    dataset_version: str
    results: tuple[CriterionResult, ...]
    measurements: Measurements
    record_id: int
    json_path: Path
    html_path: Path
    document: Mapping[str, Any]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failed(self) -> tuple[CriterionResult, ...]:
        return tuple(r for r in self.results if not r.passed)

    @property
    def unlocks_promotion(self) -> bool:
        return self.passed and self.criteria.id == self.run_criteria_id


def accept(workspace: Workspace, run_id: str, *, variant: str = "fp32", criteria: str | int | None = None,
           progress: Callable[[int, int], None] | None = None) -> AcceptanceReport:
    """Judge a finished run's ``variant`` model file against ``criteria`` (default: the run's) on the frozen test set.

    Refused (typed errors, each with its fix) for an unknown or unfinished run, a run that named no
    criteria, criteria locked after the run started, a missing variant or a model file that no
    longer matches its record. A run's model without a registry version is registered as a candidate.
    """
    run = _finished_run(workspace, run_id)
    locked = _criteria(workspace, run, criteria)
    check_criteria_locked_before(run, locked)
    dataset = load_version(workspace, run["dataset_version"])
    items = dataset.split("test")
    if not items:
        raise DatasetError(f"dataset version {dataset.name} has no frozen test images",
                           "acceptance needs a test split: make a dataset version with one and train again")
    version = _model_version(workspace, run, variant)
    predictions, truth, metadata = _run_model(workspace, version, items, progress)
    measurements = measure(predictions, truth, class_names=metadata.class_names, good_class=metadata.good_class,
                           criteria=locked.criteria)
    results = judge(locked.criteria, measurements)
    out_dir = Path(run["artifacts"]) / (f"acceptance-{locked.id}" if variant == "fp32"
                                        else f"acceptance-{locked.id}-{variant}")
    document = _document(run, version, locked, dataset.name, results, measurements, out_dir)
    record_id = record_acceptance(workspace, version, locked.id, document["passed"], document)
    document = {**document, "record_id": record_id}
    _write(out_dir, document)
    return AcceptanceReport(run_id=run["id"], variant=variant, criteria=locked, run_criteria_id=run["criteria_id"],
                            model_version=version, dataset_version=dataset.name, results=results,
                            measurements=measurements, record_id=record_id, json_path=out_dir / "acceptance.json",
                            html_path=out_dir / "acceptance.html", document=document)


# -- what is judged, and with what ----------------------------------------------------------------

def _finished_run(workspace: Workspace, run_id: str) -> dict[str, Any]:
    run = workspace.db.run(run_id)
    if run is None:
        raise AcceptanceError(f"no run {run_id!r}", _RUNS_FIX)
    if run["status"] != "finished":
        raise AcceptanceError(f"run {run_id} is {run['status']}, not finished",
                              f"judge a finished run; resume an interrupted one with: inspectloop train --resume {run_id}")
    return run


def _criteria(workspace: Workspace, run: Mapping[str, Any], criteria: str | int | None) -> LockedCriteria:
    if criteria is not None:
        return get_criteria(workspace, criteria)
    if run["criteria_id"] is None:
        raise AcceptanceError(
            f"run {run['id']} named no acceptance criteria, so there is nothing fixed before training to judge it by",
            "lock criteria first (inspectloop criteria lock FILE --by NAME), then train again with "
            "inspectloop train --criteria NAME and accept that run")
    return get_criteria(workspace, run["criteria_id"])


def _model_version(workspace: Workspace, run: Mapping[str, Any], variant: str) -> ModelVersion:
    """The registry version of the run's ``variant`` model, its file checked; registered now if it has none."""
    models = [m for m in workspace.db.models(run["id"]) if m["variant"] == variant]
    if not models:
        have = sorted({m["variant"] for m in workspace.db.models(run["id"])})
        raise AcceptanceError(f"run {run['id']} has no {variant} model",
                              f"judge one of its variants: --variant {' or --variant '.join(have)}" if have
                              else "the run exported no model file; train again")
    row = workspace.db.model_version_row(model_id=models[-1]["id"])
    if row is None:
        return register(workspace, run["id"], variant=variant)  # checks the file against its record
    version = get_version(workspace, row["id"])
    verify_file(version)
    return version


def _run_model(workspace: Workspace, version: ModelVersion, items: Sequence[DatasetItem],
               progress: Callable[[int, int], None] | None) -> tuple[list[Prediction], list[str], ModelMetadata]:
    """Every test image through the runtime (one thread), after one untimed warm-up image."""
    from inspectloop.runtime import EdgeModel

    model = EdgeModel(version.path, threads=1)
    names = model.metadata.class_names
    unknown = sorted({item.label for item in items} - set(names))
    if unknown:
        raise DatasetError(f"test labels {unknown} are not classes of the model ({', '.join(names)})",
                           "judge a model trained on this dataset version's classes")
    model.predict(workspace.blobs.get(items[0].sha256), name=items[0].sha256[:12])
    predictions = []
    for n, item in enumerate(items, start=1):
        predictions.append(model.predict(workspace.blobs.get(item.sha256), name=item.sha256[:12]))
        if progress and (n % 10 == 0 or n == len(items)):
            progress(n, len(items))
    return predictions, [item.label for item in items], model.metadata


# -- measuring ------------------------------------------------------------------------------------

def measure(predictions: Sequence[Prediction], truth: Sequence[str], *, class_names: Sequence[str],
            good_class: str | None, criteria: AcceptanceCriteria) -> Measurements:
    """The measurements of runtime predictions against the true labels (class names), image by image.

    ``criteria`` supplies the line (for per-hour figures) and the escape limit (for the escape wording).
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
                        calibration_error=expected_calibration_error(probs, y, bins=ECE_BINS))


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
              f"(1 - {line.defect_rate:g} defect rate); 95% range {low:.3g} to {high:.3g} per hour "
              f"({r.good} good test parts{': few' if r.good < FEW else ''})")
    return _result(name, field, "per hour", limit, line.false_alerts_per_hour, detail)


def _latency(limit: float, m: Measurements) -> CriterionResult:
    n, latency = m.count, m.latency_ms
    note = "; with fewer than 20 images the p95 is the slowest image" if n < 20 else ""
    detail = (f"p95 of the runtime's own total time per image (decode, preprocess, infer) over {n} test images, "
              f"one thread, after one warm-up image; median {float(np.median(latency)):.3g} ms, slowest "
              f"{float(latency.max()):.3g} ms; on this machine ({platform.system()} {platform.machine()}, "
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
    number = f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return f"{number} ms" if unit == "ms" else f"{number} per hour"


# -- the report files -----------------------------------------------------------------------------

def _document(run: Mapping[str, Any], version: ModelVersion, locked: LockedCriteria, dataset: str,
              results: Sequence[CriterionResult], m: Measurements, out_dir: Path) -> dict[str, Any]:
    passed = all(r.passed for r in results)
    return _json_safe({  # type: ignore[return-value]
        "format": REPORT_FORMAT, "format_version": REPORT_FORMAT_VERSION,
        "verdict": "passed" if passed else "failed", "passed": passed,
        "failed": [r.name for r in results if not r.passed],
        "run": run["id"], "variant": version.variant, "dataset_version": dataset, "split": "test",
        "test_images": m.count,
        "model_version": {"id": version.id, "name": version.name, "stage": version.stage.value},
        "model_file": {"path": str(version.path), "sha256": version.file_sha256,
                       "temperature": version.lineage.get("temperature"),
                       "class_names": version.lineage.get("class_names"), "good_class": m.good_class},
        "criteria": {"id": locked.id, "name": locked.name, "sha256": locked.sha256,
                     "locked_at": locked.locked_at.isoformat(), "locked_by": locked.locked_by,
                     "is_the_runs_criteria": locked.id == run["criteria_id"], "run_criteria_id": run["criteria_id"],
                     "limits": locked.criteria.model_dump(mode="json")},
        "results": [r.to_dict() for r in results],
        "measurements": m.to_dict(),
        "measured_at": now_iso(), "code_version": code_version(),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
        "files": {"json": str(out_dir / "acceptance.json"), "html": str(out_dir / "acceptance.html")},
    })


def _write(out_dir: Path, document: Mapping[str, Any]) -> None:
    from inspectloop.evaluate.acceptance_report import render_acceptance_html

    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out_dir / "acceptance.json", (json.dumps(document, indent=2, allow_nan=False) + "\n").encode())
    atomic_write_bytes(out_dir / "acceptance.html", render_acceptance_html(document).encode("utf-8"))
