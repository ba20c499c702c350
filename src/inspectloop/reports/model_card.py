"""The model card: one self-contained HTML page per model version, for the quality engineer who signs it off.

It gathers what the workspace already holds about a version: the registry (stage and its history, the
model file and its hash, lineage), the run's evaluation (per-class figures, confusion matrix, slices,
calibration, the review band and its test-set rates) and the acceptance reports against it, and adds
the line-rate view and a plain-language summary computed from the same numbers. Like the evaluation
report it has no scripts and no external resources: pictures are embedded as data URIs. Nothing is
re-measured; a figure the run did not record is said to be missing.

Two steps: :func:`gather_model_card` reads the workspace (registry, run folder, blob store) into a
:class:`ModelCardInputs`; :func:`render_model_card` turns that into the page without touching the
workspace. :func:`write_model_card` does both and writes the file.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from inspectloop.accept.criteria import LockedCriteria, get_criteria
from inspectloop.decisions.conformal import DecisionRates, rates_of_decisions
from inspectloop.decisions.coverage import CONDITION_FIELDS, Coverage, assess_coverage
from inspectloop.decisions.line_rate import LineRateView, line_rate_view
from inspectloop.domain import AcceptanceRecord, ModelVersion, StageEvent, TrainingRun
from inspectloop.errors import InspectloopError
from inspectloop.evaluate.crossval import stored_crossvals
from inspectloop.evaluate.metrics import ClassificationMetrics, classification_metrics
from inspectloop.evaluate.outcomes import ImageOutcome, hardest
from inspectloop.evaluate.slices import LabelEcho, Slice, SliceReport, label_determined_fields
from inspectloop.fileio import atomic_write_bytes
from inspectloop.reports.evaluation import (
    confusion_image,
    hardest_images_section,
    headline_figures,
    per_class_table,
    slice_sections,
    worst_callout,
)
from inspectloop.reports.acceptance import verdict_callout
from inspectloop.reports.graded import graded_table
from inspectloop.reports.shift import adaptation_section, crossval_section
from inspectloop.reports.html import (
    DASH,
    context_table,
    count_text,
    escape,
    interval,
    number_text,
    of_text,
    page,
    percent_text,
)
from inspectloop.registry import get_version, history
from inspectloop.runtime.decision import Decision, Decisions
from inspectloop.workspace import Workspace

_CARD_CSS = """
.badge.stage { background: #3e4c59; }
.plain { font-size: 1.05rem; max-width: 60rem; }
code { font-size: .85rem; word-break: break-all; }
img.confusion { max-width: min(100%, 42rem); }
"""
_RELIABILITY = re.compile(r'<h2>Calibration \(test set\)</h2>.*?<img [^>]*src="(data:image/png;base64,[A-Za-z0-9+/=]+)"',
                          re.DOTALL)


@dataclass(frozen=True)
class RunRecord:
    """What the card reads of the version's training run."""

    row: TrainingRun
    folder: Path
    metrics: Mapping[str, Any]  # the run's metrics (test summary, calibration, decisions, ...)
    report: Mapping[str, Any] | None  # report/metrics.json: full metrics, slices and per-image outcomes
    confusion_png: bytes | None
    reliability_uri: str | None


class Line(NamedTuple):
    """The line the card scales its rates to, and where that line came from."""

    parts_per_hour: float
    defect_rate: float
    source: str


@dataclass(frozen=True)
class ModelCardInputs:
    """Everything a model card shows, as :func:`gather_model_card` read it from the workspace.

    ``split_counts`` is None when the dataset version is not in the workspace; ``acceptance`` holds the
    latest acceptance report against each set of criteria, by criteria id; ``images`` the files of the
    test images the card shows, by SHA-256 (an image missing from the blob store is simply absent), and
    ``heatmaps`` an anomaly model's heatmaps of those images (empty for a classifier).
    """

    version: ModelVersion
    history: tuple[StageEvent, ...]
    run: RunRecord
    criteria: LockedCriteria | None
    line: Line | None
    split_counts: Mapping[str, int] | None
    acceptance: Mapping[int, AcceptanceRecord]
    outcomes: tuple[ImageOutcome, ...]
    images: Mapping[str, bytes]
    heatmaps: Mapping[str, np.ndarray] = field(default_factory=dict)
    crossval: tuple[Mapping[str, Any], ...] = ()  # leave-one-group-out results stored with the run
    coverage: Coverage | None = None  # where the band's guarantee holds (None: no band)


def write_model_card(workspace: Workspace, version: str | int | ModelVersion, *, parts_per_hour: float | None = None,
                     defect_rate: float | None = None, out: Path | None = None) -> Path:
    """Write the model card of ``version`` (name or id) and return its path.

    Default path: ``runs/<run>/model-card-<version>.html``. The line-rate view uses ``parts_per_hour``
    and ``defect_rate`` when both are given, else the line of the run's criteria, else it is left out.
    """
    card = gather_model_card(workspace, version, parts_per_hour=parts_per_hour, defect_rate=defect_rate)
    path = Path(out) if out is not None else card.run.folder / f"model-card-{card.version.name}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, render_model_card(card).encode("utf-8"))
    return path


def render_model_card(card: ModelCardInputs) -> str:
    """The card's self-contained HTML page (see :func:`write_model_card`)."""
    version, run, line = card.version, card.run, card.line
    metrics = _test_metrics(run, version)
    rates, rates_source = _rates(run, version, metrics)
    view = None if line is None or rates is None else line_rate_view(rates, line.parts_per_hour, line.defect_rate)
    title = f"Model card: {version.name}"
    return page(title, [
        f"<h1>{escape(title)}</h1>",
        f'<section id="verdict">\n<h2>Verdict</h2>\n{_verdict(version, card.acceptance, rates, rates_source)}\n'
        "</section>",
        "<h2>This version</h2>",
        _header(version, card.history),
        "<h2>What this means</h2>",
        _plain(version, metrics, rates, rates_source, view, line),
        "<h2>Lineage</h2>",
        _lineage(card),
        *_anomaly(run),
        *adaptation_section(run.metrics.get("adaptation")),
        "<h2>Test results</h2>",
        _test_section(metrics),
        *_graded(run),
        _slices(run, metrics, card.outcomes),
        crossval_section(card.crossval),
        _hardest(card),
        "<h2>Calibration</h2>",
        _calibration(run),
        "<h2>Operating points and decisions</h2>",
        _decisions(version, run, rates, rates_source, card.criteria),
        _coverage_section(card.coverage, run),
        "<h2>At line rate</h2>",
        _line_section(view, line, rates_source),
        "<h2>Acceptance</h2>",
        _acceptance(version, card.acceptance),
    ], css=_CARD_CSS)


# -- gathering (reads the workspace) --------------------------------------------------------------

def gather_model_card(workspace: Workspace, version: str | int | ModelVersion, *,
                      parts_per_hour: float | None = None, defect_rate: float | None = None) -> ModelCardInputs:
    """Read what the workspace holds about ``version`` for its card (see :func:`write_model_card`)."""
    chosen = get_version(workspace, version)
    run = _read_run(workspace, chosen)
    criteria = None if chosen.criteria_id is None else get_criteria(workspace, chosen.criteria_id)
    outcomes = tuple(ImageOutcome.from_dict(o) for o in (run.report or {}).get("outcomes") or ())
    dataset = chosen.lineage.get("dataset_version") or run.row.dataset_version
    images = _images(workspace, [o.sha256 for o in hardest(outcomes)])
    crossvals = tuple(stored_crossvals(run.folder))
    return ModelCardInputs(
        version=chosen, history=tuple(history(workspace, chosen)), run=run, criteria=criteria,
        line=_line(parts_per_hour, defect_rate, criteria), split_counts=_split_counts(workspace, dataset),
        acceptance=_latest_acceptance(workspace, chosen), outcomes=outcomes, images=images,
        heatmaps=_heatmaps(chosen, run, images), crossval=crossvals,
        coverage=_coverage(workspace, chosen, run, dataset, crossvals))


def _coverage(workspace: Workspace, version: ModelVersion, run: RunRecord, dataset: str | None,
              crossvals: Sequence[Mapping[str, Any]]) -> Coverage | None:
    """The band's calibration conditions (the calib split, or train + calib for a cross-fitted band) against
    the prediction log of this version, with the alerts on its cameras since it was registered."""
    if not (run.metrics.get("decisions") or {}).get("band") or not dataset:
        return None
    splits = ("train", "calib") if (run.row.config or {}).get("band_fit") == "crossfit" else ("calib",)
    digests = [i.sha256 for i in workspace.db.datasets.items(dataset) if i.split in splits]
    metas = [record.meta for record in workspace.db.images.get_many(digests).values()]
    calibrated = {name: [getattr(meta, name) for meta in metas] for name in CONDITION_FIELDS}
    on_line = workspace.db.predictions.conditions(version.id, CONDITION_FIELDS)
    cameras = set(on_line.get("camera") or ())
    alerts = [a for a in workspace.db.drift.alerts(since=version.created_at) if a.camera in cameras]
    return assess_coverage(calibrated, on_line, alerts, crossvals)


def _read_run(workspace: Workspace, version: ModelVersion) -> RunRecord:
    row = workspace.db.runs.get(version.run_id)
    if row is None:
        raise InspectloopError(f"run {version.run_id} of {version.name} is missing from the workspace",
                               "list runs with: inspectloop runs")
    folder = Path(row.artifacts)
    report_dir = folder / "report"
    report = _json_or_none(report_dir / "metrics.json")
    png = (report_dir / "confusion_matrix.png").read_bytes() if (report_dir / "confusion_matrix.png").is_file() else None
    report_page = (report_dir / "report.html").read_text("utf-8") if (report_dir / "report.html").is_file() else ""
    match = _RELIABILITY.search(report_page)
    return RunRecord(row, folder, row.metrics or {}, report, png, match.group(1) if match else None)


def _json_or_none(path: Path) -> Mapping[str, Any] | None:
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None


def _split_counts(workspace: Workspace, dataset: str | None) -> dict[str, int] | None:
    if not dataset or workspace.db.datasets.get(dataset) is None:
        return None
    counts: dict[str, int] = {}
    for item in workspace.db.datasets.items(dataset):
        counts[item.split] = counts.get(item.split, 0) + 1
    return counts


def _latest_acceptance(workspace: Workspace, version: ModelVersion) -> dict[int, AcceptanceRecord]:
    latest: dict[int, AcceptanceRecord] = {}
    for report in workspace.db.criteria.reports(version.id):
        latest[report.criteria_id] = report
    return latest


def _images(workspace: Workspace, digests: Sequence[str]) -> dict[str, bytes]:
    """The files of the images the card shows; one gone from the blob store is left out (the card says so)."""
    found: dict[str, bytes] = {}
    for digest in digests:
        try:
            found[digest] = workspace.blobs.get(digest)
        except OSError:
            continue
    return found


def _heatmaps(version: ModelVersion, run: RunRecord, images: Mapping[str, bytes]) -> dict[str, np.ndarray]:
    """An anomaly model's heatmaps of the images the card shows, from its own model file (none for a
    classifier, or when the file or an image cannot be used: the card then shows plain thumbnails)."""
    if run.metrics.get("task") != "anomaly" or not images:
        return {}
    from inspectloop.runtime import EdgeModel

    try:
        model = EdgeModel(version.path)
    except InspectloopError:
        return {}
    found = {}
    for digest, data in images.items():
        try:
            found[digest] = model.heatmap(data)
        except InspectloopError:
            continue
    return found


# -- reading the run's records (no workspace) -----------------------------------------------------

def _test_metrics(run: RunRecord, version: ModelVersion) -> ClassificationMetrics | None:
    """The test metrics, rebuilt exactly from the stored confusion matrix (None when the run kept none)."""
    stored = (run.report or {}).get("metrics")
    return None if not stored else _from_confusion(stored["confusion"], stored["class_names"])


def _from_confusion(confusion: Sequence[Sequence[int]], names: Sequence[str]) -> ClassificationMetrics:
    counts = np.asarray(confusion, dtype=np.int64)
    truth, predicted = np.nonzero(counts)
    repeats = counts[truth, predicted]
    return classification_metrics(np.repeat(truth, repeats), np.repeat(predicted, repeats), list(names))


def _slice_report(stored: Mapping[str, Any], outcomes: Sequence[ImageOutcome]) -> SliceReport:
    """The stored slices, less any field that repeats the label: a report written before such fields were
    left out may hold one, found again from its per-image outcomes."""
    slices = tuple(Slice(s["field"], s["value"], _from_confusion(s["metrics"]["confusion"], s["metrics"]["class_names"]))
                   for s in stored["slices"])
    worst_key = stored.get("worst") or {}
    worst = next((s for s in slices if (s.field, s.value) == (worst_key.get("field"), worst_key.get("value"))), None)
    left_out = tuple(LabelEcho(e["field"], e["values"]) for e in stored.get("label_determined") or ())
    report = SliceReport(slices, worst, tuple(stored.get("fields", ())), int(stored.get("min_count", 10)), left_out)
    echoes = label_determined_fields([o.true for o in outcomes], [o.meta for o in outcomes], report.fields)
    return report.without(echoes)


def _rates(run: RunRecord, version: ModelVersion, metrics: ClassificationMetrics | None) -> tuple[DecisionRates | None, str]:
    """The test-set decision rates: the review band's when the run has one, else counted from the confusion matrix."""
    stored = (run.metrics.get("decisions") or {}).get("test")
    if stored:
        fields = {k: stored[k] for k in DecisionRates.__dataclass_fields__}
        fields["alpha"] = math.nan if fields["alpha"] is None else fields["alpha"]
        for key in ("escape_ci", "false_reject_ci"):
            fields[key] = tuple(math.nan if v is None else v for v in fields[key])
        return DecisionRates(**fields), "band"
    if metrics is None:
        return None, "none"
    names = list(metrics.class_names)
    good = version.lineage.get("good_class")
    good_index = names.index(good) if good in names else None
    truth, predicted = np.nonzero(metrics.confusion)
    repeats = metrics.confusion[truth, predicted]
    y, p = np.repeat(truth, repeats), np.repeat(predicted, repeats)
    decisions = np.where(p == good_index, Decision.PASS, Decision.REJECT)  # no band: top-1 decides
    return rates_of_decisions(Decisions(p, decisions), y, num_classes=len(names), good_index=good_index), "top1"


def _line(parts_per_hour: float | None, defect_rate: float | None, criteria: LockedCriteria | None) -> Line | None:
    if (parts_per_hour is None) != (defect_rate is None):
        raise InspectloopError("the line-rate view needs both the parts per hour and the defect rate",
                               "give both --parts-per-hour N and --defect-rate R (e.g. 3600 and 0.01)")
    if parts_per_hour is not None and defect_rate is not None:
        return Line(float(parts_per_hour), float(defect_rate), "given for this card")
    if criteria is not None and criteria.criteria.line is not None:
        line = criteria.criteria.line
        return Line(float(line.parts_per_hour), float(line.defect_rate), f"the line of criteria {criteria.label}")
    return None


# -- sections -------------------------------------------------------------------------------------

def _header(version: ModelVersion, events: Sequence[StageEvent]) -> str:
    facts = {"version": f"{version.name} (#{version.id})", "stage": version.stage.value,
             "registered": version.created_at, "run": f"{version.run_id} ({version.variant})",
             "model file": str(version.path), "model file sha256": version.file_sha256}
    parts = [context_table(facts)]
    if events:
        rows = "".join(
            f"<tr><td>{escape(ev.at)}</td><td>{escape(ev.action)}</td><td>{escape(ev.from_stage.value)} &rarr; "
            f"{escape(ev.to_stage.value)}</td><td>{escape(ev.actor)}</td><td>{escape(ev.reason or DASH)}</td>"
            f"<td>{_evidence(ev)}</td></tr>" for ev in events)
        head = "<tr><th>When</th><th>Action</th><th>Stage</th><th>Who</th><th>Why</th><th>Evidence</th></tr>"
        parts.append(f'<h3>Stage history</h3><div class="scroll"><table>{head}{rows}</table></div>')
    else:
        parts.append(f'<p class="muted">Stage history: registered as {version.stage.value}; no stage change since.</p>')
    return "\n".join(parts)


def _evidence(event: StageEvent) -> str:
    if event.override:
        return "override (no passed acceptance report)"
    return f"acceptance report #{event.acceptance_report_id}" if event.acceptance_report_id else DASH


def _lineage(card: ModelCardInputs) -> str:
    version, run, criteria = card.version, card.run, card.criteria
    lineage = version.lineage
    dataset = lineage.get("dataset_version") or run.row.dataset_version
    facts: dict[str, object] = {"dataset version": f"{dataset} ({_splits_text(card.split_counts)})"}
    facts["acceptance criteria"] = ("none: the run named no criteria, so no acceptance report can unlock production"
                                    if criteria is None else
                                    f"{criteria.label}, locked {criteria.locked_at.isoformat()} by {criteria.locked_by}")
    if criteria is not None:
        facts["criteria sha256"] = criteria.sha256
    facts["code version"] = lineage.get("code_version") or run.row.code_version
    facts["classes"] = ", ".join(lineage.get("class_names") or ()) + (
        f" (pass class: {lineage['good_class']})" if lineage.get("good_class") else " (no pass class)")
    facts["training config"] = run.row.config or {}
    facts["best epoch"] = run.metrics.get("best_epoch", DASH)
    facts["weights sha256"] = lineage.get("weights_sha256") or DASH
    facts["signature"] = (f"signed by this workspace's key {lineage['signed_by']} (checked at registration and "
                          "at every load)" if lineage.get("signed_by") else
                          "unsigned: exported before models were signed; only its sha256 record protects it")
    return context_table(facts)


def _splits_text(counts: Mapping[str, int] | None) -> str:
    if counts is None:
        return "not found in this workspace"
    if not counts:
        return "no images"
    order = ["train", "val", "calib", "test"]
    ranked = sorted(counts, key=lambda s: (order.index(s) if s in order else len(order), s))
    return ", ".join(f"{counts[s]:,} {s}" for s in ranked)


def _test_section(metrics: ClassificationMetrics | None) -> str:
    if metrics is None:
        return '<p class="callout quiet">The run kept no evaluation report (report/metrics.json), so no test figures.</p>'
    return "\n".join([headline_figures(metrics), "<h3>Per class</h3>", per_class_table(metrics)])


def _graded(run: RunRecord) -> list[str]:
    """Graded classes: AUROC, average precision and the decision's operating point per class and roll-up."""
    graded = (run.metrics.get("test") or {}).get("graded")
    if not graded:
        return []
    return ["<h3>Graded defects</h3>", '<p class="muted">Each defect class against the good class, and each '
            '"defective at grade >= g" roll-up against everything below it; the report holds the curves.</p>',
            graded_table(graded)]


def _confusion(run: RunRecord) -> str:
    if run.confusion_png is None:
        return '<p class="muted">The run\'s confusion matrix picture (report/confusion_matrix.png) is missing.</p>'
    return confusion_image(run.confusion_png)


def _slices(run: RunRecord, metrics: ClassificationMetrics | None, outcomes: Sequence[ImageOutcome]) -> str:
    parts = ["<h3>Confusion matrix</h3>", _confusion(run)]
    stored = (run.report or {}).get("slices")
    if metrics is not None and stored:
        report = _slice_report(stored, outcomes)
        parts += [worst_callout(report), slice_sections(metrics, report)]
    return "\n".join(parts)


def _hardest(card: ModelCardInputs) -> str:
    if card.outcomes:
        return hardest_images_section(card.outcomes, card.images.__getitem__, level=3,
                                      heatmaps=card.heatmaps.get if card.heatmaps else None)
    if card.run.report is None:
        return ""  # the test section already says the run kept no report
    return ('<h3>Misclassified and borderline images</h3><p class="muted">The run\'s evaluation kept no '
            "per-image outcomes (its report/metrics.json predates them), so no images can be shown.</p>")


def _calibration(run: RunRecord) -> str:
    c = run.metrics.get("calibration")
    if not c:
        return '<p class="muted">The run recorded no calibration.</p>'
    facts = {"temperature": f"{c['temperature']:.3f}" + (" (at its bound)" if c.get("temperature_at_bound") else ""),
             "calibration images": c.get("calibration_images", DASH),
             "expected calibration error on test": f"{percent_text(c['test_ece_before'])} before, "
                                                   f"{percent_text(c['test_ece_after'])} after the temperature"}
    parts = [context_table(facts)]
    if not c.get("calibration_images"):
        parts.append('<p class="callout quiet">No calibration split: the confidences are uncalibrated '
                     "(temperature 1).</p>")
    if run.reliability_uri:
        parts.append(f'<img class="confusion" src="{run.reliability_uri}" '
                     'alt="Reliability diagram: predicted confidence against observed accuracy">')
    else:
        parts.append('<p class="muted">The reliability diagram is not available (the run\'s report has none).</p>')
    return "\n".join(parts)


def _anomaly(run: RunRecord) -> list[str]:
    """An anomaly model's own section: what it learned from, how well its score ranks, what is certified."""
    if run.metrics.get("task") != "anomaly":
        return []
    ranking, threshold, fit = run.metrics["ranking"], run.metrics["threshold"], run.metrics["fit"]
    claim = ("Its escape rate is certified on labelled defects (see the decisions below)."
             if run.metrics["review"].get("certifiable") else
             "No escape-rate claim is made: the model learned from good parts only, and how many defects it lets "
             "through can only be counted on labelled defects. The test-set escapes below are a measurement, not "
             "a guarantee; label defects through review to certify one.")
    facts = {"learned from": f"{count_text(fit['good_images'])} good images only "
                             f"(memory bank of {count_text(fit['bank_rows'])} patches"
                             + (f"; updated from run {fit['updated_from']}" if fit.get("updated_from") else "") + ")",
             "image AUROC (test)": number_text(ranking.get("auroc"), 3),
             "defect recall at 1% false positives (test)": percent_text(ranking.get("recall_at_1pct_fpr")),
             "anomaly threshold": number_text(threshold["threshold"], 4)}
    return ["<h2>Anomaly model</h2>",
            f'<p class="callout {"pass" if threshold["certified"] else "quiet"}">{escape(threshold["statement"])}</p>',
            f'<p class="callout quiet">{escape(claim)}</p>', context_table(facts)]


def _decisions(version: ModelVersion, run: RunRecord, rates: DecisionRates | None, source: str,
               criteria: LockedCriteria | None) -> str:
    parts = [_thresholds(version, run)]
    band = (run.metrics.get("decisions") or {}).get("band")
    if band is None:
        parts.append('<p class="callout quiet">No calibration split: two-way decisions. Every part is passed or '
                     "rejected on the model's top class; nothing goes to review, and no escape rate is certified.</p>")
    else:
        limits = {f"pass when {band.get('score', 'P(good)')} above": number_text(band["auto_above"], 4),
                  "reject when P(good) below": number_text(band.get("reject_below"), 4),
                  "escape rate target": f"{percent_text(band['alpha'])} " + (
                      "on average over calibration draws (marginal)" if band.get("guarantee_kind") == "marginal"
                      else f"at {percent_text(band['confidence'])} confidence"),
                  "calibration parts": f"{count_text(band.get('calibration_defects'))} defective, "
                                       f"{count_text(band.get('calibration_good'))} good",
                  "settings from": _settings_sources(version, run, criteria)}
        parts += [f'<p class="callout {"pass" if band.get("certifiable") else "quiet"}">{escape(band["guarantee"])}</p>',
                  context_table(limits)]
    if rates is not None:
        parts += [f"<h3>On the frozen test set ({'the review band' if source == 'band' else 'top class, no review'})</h3>",
                  _rates_table(rates)]
    parts.append(_novelty(run))
    return "\n".join(parts)


def _coverage_section(coverage: Coverage | None, run: RunRecord) -> str:
    if coverage is None:
        return ""
    band = (run.metrics.get("decisions") or {}).get("band") or {}
    calibrated = {name: ", ".join(values) if values else "not recorded"
                  for name, values in coverage.calibrated.items()}
    return "\n".join(['<h3 id="coverage">Where the guarantee holds</h3>',
                      f'<p class="callout{" pass" if coverage.holds else ""}">'
                      f"{escape(coverage.statement(band.get('alpha')))}</p>",
                      "<p>Conditions of the images the band was calibrated on:</p>",
                      context_table(calibrated)])


def _novelty(run: RunRecord) -> str:
    """The classifier's novelty guard: how it was set, and the share of test images it sent to review."""
    guard = run.metrics.get("novelty")
    if run.metrics.get("task") == "anomaly":
        return ""
    if not guard:
        return ('<h3>Novelty guard</h3><p class="callout quiet">This model has no novelty guard: a defect type it '
                "was never shown is decided as whichever known class it looks like most (often good). Retrain with "
                "this inspectloop (and a good class) to add one.</p>")
    test = guard.get("test") or {}
    sent = test.get("sent_to_review")
    headline = (f"novel: {percent_text(sent)} of test images sent to review" if sent is not None
                else "not measured on a test set")
    held_out = count_text(guard["held_out_images"])
    certified = (f"set on {held_out} held-out images of known classes ({guard['source']}): a new "
                 f"image of a known class goes over it with probability at most {percent_text(guard['rate'])}"
                 if guard.get("certified") else
                 "no held-out images to set it on, so it never fires" if not guard["held_out_images"] else
                 f"set on only {held_out} held-out images ({guard['source']}), too few to guarantee "
                 f"{percent_text(guard['rate'])}: it is their largest score")
    facts = {"what it does": "a part the classifier would pass, but whose image lies farther from every training "
                             "image than the threshold, goes to review instead (a reject is never changed)",
             "on the test set": headline + (f" ({percent_text(test.get('over_threshold'))} over the threshold, "
                                            "passes or not)" if sent is not None else ""),
             "threshold": f"{number_text(guard['threshold'], 4)}, {certified}",
             "bank": f"{count_text(guard['bank_size'])} embeddings of "
                     f"{count_text(guard.get('training_images', guard['bank_size']))} training images, "
                     f"{guard['k']} nearest averaged"}
    per_class = test.get("per_class_sent_to_review") or {}
    if per_class:
        facts["sent to review, by true class"] = ", ".join(f"{name} {percent_text(share)}"
                                                          for name, share in per_class.items())
    return f'<h3>Novelty guard</h3><p class="callout quiet">{escape(headline)}.</p>' + context_table(facts)


def _settings_sources(version: ModelVersion, run: RunRecord, criteria: LockedCriteria | None) -> str:
    """Where the band's and operating points' settings came from: the run's config, or the criteria it named."""
    from inspectloop.train.config import TrainConfig, decision_settings

    good = version.lineage.get("good_class")
    defects = [name for name in version.lineage.get("class_names") or () if name != good]
    config = TrainConfig.model_validate(run.row.config)
    return decision_settings(config, None if criteria is None else criteria.criteria, defects).describe()


def _thresholds(version: ModelVersion, run: RunRecord) -> str:
    thresholds = version.lineage.get("thresholds") or {}
    if not thresholds:
        return '<p class="muted">No per-class thresholds in the model file: the top class decides.</p>'
    points = (run.metrics.get("decisions") or {}).get("operating_points") or {}
    if not points:
        rows = "".join(f"<tr><td>{escape(k)}</td><td>{number_text(float(v), 3)}</td></tr>" for k, v in thresholds.items())
        return ('<h3>Per-class thresholds in the model file</h3><table><tr><th>Class</th><th>Threshold</th></tr>'
                f'{rows}</table>')
    head = ("<tr><th>Class</th><th>Target recall</th><th>Threshold</th><th>Calibration recall</th>"
            "<th>Calibration precision</th><th>Test recall</th><th>Test precision</th></tr>")
    rows, notes = [], []
    for name, point in points.items():
        calib, test = point["calibration"], point["test"]
        rows.append(f"<tr><td>{escape(name)}</td><td>{percent_text(calib['target_recall'])}</td>"
                    f"<td>{number_text(calib['threshold'], 3)}</td>"
                    f"<td>{percent_text(calib['recall'])} {interval(*calib['recall_ci'])} "
                    f"of {count_text(calib['positives'])}</td>"
                    f"<td>{percent_text(calib['precision'])} {interval(*calib['precision_ci'])}</td>"
                    f"<td>{percent_text(test['recall'])} {interval(*test['recall_ci'])} "
                    f"of {count_text(test['positives'])}</td>"
                    f"<td>{percent_text(test['precision'])} {interval(*test['precision_ci'])}</td></tr>")
        if calib.get("note"):
            notes.append(f"<li><b>{escape(name)}</b>: {escape(calib['note'])}</li>")
    intro = ('<p>A defect class is flagged when its probability reaches its threshold, chosen on the calibration '
             "split as the highest one that meets the class's target recall (the fewest false alarms). A flagged "
             "part is never passed automatically: with a review band it goes to review instead; without one it "
             "is rejected as that class. Intervals are 95% Wilson intervals; the counts are small, so read "
             "them.</p>")
    note_list = f'<ul class="muted">{"".join(notes)}</ul>' if notes else ""
    return f"<h3>Per-class operating points</h3>{intro}<table>{head}{''.join(rows)}</table>{note_list}"


def _rates_table(r: DecisionRates) -> str:
    rows = [("Escapes (defective passed)" if r.has_good_class else "Escapes (wrong class)",
             of_text(r.escapes, r.defective), percent_text(r.escape_rate), interval(*r.escape_ci)),
            ("False rejects (good rejected)", of_text(r.false_rejects, r.good), percent_text(r.false_reject_rate),
             interval(*r.false_reject_ci)),
            ("Sent to review", of_text(r.reviews, r.count), percent_text(r.review_rate), DASH),
            ("Automated", of_text(r.count - r.reviews, r.count), percent_text(r.automation_rate), DASH)]
    head = "<tr><th>Figure</th><th>Parts</th><th>Rate</th><th>95% interval</th></tr>"
    body = "".join(f"<tr><td>{a}</td><td>{b}</td><td>{c}</td><td>{d}</td></tr>" for a, b, c, d in rows)
    return f'<div class="scroll"><table>{head}{body}</table></div>'


def _line_section(view: LineRateView | None, line: Line | None, source: str) -> str:
    if line is None:
        return ('<p class="muted">No line given: the run named no criteria with a line. Make the card with '
                "--parts-per-hour N --defect-rate R to see false alerts per hour and escapes per day.</p>")
    if view is None:
        return '<p class="muted">No test-set decision rates to scale to the line.</p>'
    basis = ("the review band's test-set rates" if source == "band"
             else "the test confusion matrix, the pass class counted as pass and every other class as reject")
    facts = {"line": f"{number_text(view.parts_per_hour, 3)} parts per hour, {percent_text(view.defect_rate)} defective "
                     f"({line.source})",
             "false alerts per hour": _count_range(view.false_alerts_per_hour, view.false_alerts_per_hour_ci),
             "escapes per day (24 h)": _count_range(view.escapes_per_day, view.escapes_per_day_ci),
             "reviews per hour": number_text(view.reviews_per_hour),
             "decided automatically per hour": number_text(view.automated_per_hour, 3),
             "computed from": basis}
    return context_table(facts) + f'\n<p class="muted">{escape(view.note)}</p>'


def _acceptance(version: ModelVersion, latest: Mapping[int, AcceptanceRecord]) -> str:
    if not latest:
        return (f'<p class="callout quiet">No acceptance report for {escape(version.name)} yet: judge it with '
                f"inspectloop accept {escape(version.run_id)}.</p>")
    rows = []
    for criteria_id, report in latest.items():
        document = report.report or {}
        criteria = document.get("criteria") or {}
        badge = '<span class="badge pass">PASSED</span>' if report.passed else '<span class="badge">FAILED</span>'
        own = " (the run's own)" if criteria_id == version.criteria_id else ""
        failed = ", ".join(document.get("failed") or []) or DASH
        rows.append(f"<tr><td>#{criteria_id} {escape(str(criteria.get('name', '')))}{own}</td><td>{badge}</td>"
                    f"<td>{escape(failed)}</td><td>#{report.id}</td><td>{escape(str(document.get('measured_at', DASH)))}</td></tr>")
    head = "<tr><th>Criteria</th><th>Verdict</th><th>Failed criteria</th><th>Report</th><th>Measured</th></tr>"
    return (f'<div class="scroll"><table>{head}{"".join(rows)}</table></div>'
            '<p class="muted">The latest report against each set of criteria; the full report is '
            "acceptance.html in the run's acceptance folder.</p>")


# -- the verdict ----------------------------------------------------------------------------------

def _verdict(version: ModelVersion, latest: Mapping[int, AcceptanceRecord], rates: DecisionRates | None,
             source: str) -> str:
    """What a reader must see first: PASSED or FAILED against the run's own criteria (or why it is not
    judged), the failed criteria, and how many parts the model decides itself and how many go to review."""
    own = None if version.criteria_id is None else latest.get(version.criteria_id)
    if own is None:
        why = ("its run named no acceptance criteria, so no report can unlock production" if version.criteria_id is None
               else f"no acceptance report against its criteria #{version.criteria_id} yet: judge it with "
                    f"inspectloop accept {version.run_id}")
        parts = [f'<p class="callout quiet verdict"><span class="badge none">NOT JUDGED</span> {escape(why)}.</p>']
        measured = _rates_of(rates, source)
    else:
        document = {"passed": own.passed, **(own.report or {})}
        criteria = (own.report or {}).get("criteria") or {}
        parts = [verdict_callout(document),
                 f'<p class="muted">Against criteria #{own.criteria_id} {escape(str(criteria.get("name", "")))} '
                 f"(acceptance report #{own.id}, measured {escape(str((own.report or {}).get('measured_at', DASH)))})"
                 + ("" if own.passed else "; it stays out of production until a run passes, or a named person "
                    "overrides with a reason") + ".</p>"]
        measured = _acceptance_rates(own.report or {}) or _rates_of(rates, source)
    if measured is not None:
        parts.append(measured)
    return "\n".join(parts)


def _acceptance_rates(document: Mapping[str, Any]) -> str | None:
    """The automation and review rates the acceptance measured on the model file itself (None: not kept)."""
    rates = (document.get("measurements") or {}).get("rates")
    if not rates:
        return None
    return _rate_figures(rates["automation_rate"], rates["review_rate"], rates["count"], rates["reviews"],
                         "measured by the acceptance, the model file through the edge runtime on the frozen test set")


def _rates_of(rates: DecisionRates | None, source: str) -> str | None:
    if rates is None:
        return None
    where = ("the review band on the frozen test set" if source == "band"
             else "top-class decisions on the frozen test set (no review band)")
    return _rate_figures(rates.automation_rate, rates.review_rate, rates.count, rates.reviews, where)


def _rate_figures(automation: float | None, review: float | None, count: int, reviews: int, where: str) -> str:
    figures = [("Decided automatically", percent_text(automation), f"{of_text(count - reviews, count)} parts"),
               ("Sent to review", percent_text(review), f"{of_text(reviews, count)} parts")]
    cells = "".join(f'<div class="figure"><div class="label">{label}</div><div class="value">{value}</div>'
                    f'<div class="label">{detail}</div></div>' for label, value, detail in figures)
    return f'<div class="figures">{cells}</div><p class="muted">Rates: {escape(where)}.</p>'


# -- plain language -------------------------------------------------------------------------------

def _plain(version: ModelVersion, metrics: ClassificationMetrics | None, rates: DecisionRates | None, source: str,
           view: LineRateView | None, line: Line | None) -> str:
    if metrics is None or rates is None:
        return '<p class="plain">The run kept no test evaluation, so this card cannot say how the model does.</p>'
    sentences = [f"On {count_text(metrics.count)} frozen test images it never saw in training:"]
    good = version.lineage.get("good_class")
    if rates.has_good_class:
        sentences.append(f"of {count_text(rates.defective)} defective test parts, {_none_or(rates.escapes)} "
                         f"passed as {good}"
                         + (f" ({percent_text(rates.escape_rate)})" if rates.escapes else "") + ";")
        sentences.append(f"{_none_or(rates.false_rejects, 'none')} of {count_text(rates.good)} good parts "
                         + ("was" if rates.false_rejects == 1 else "were")
                         + f" rejected ({percent_text(rates.false_reject_rate)})"
                         + (f"; {count_text(rates.reviews)} parts ({percent_text(rates.review_rate)}) were sent to a "
                            "person for review." if rates.reviews else "."))
    else:
        sentences.append(f"the model has no pass class; {of_text(rates.escapes, rates.defective)} parts were assigned a "
                         f"wrong class ({percent_text(rates.escape_rate)}).")
    weakest = min((c for c in metrics.per_class if c.support), key=lambda c: c.recall, default=None)
    if weakest is not None:
        i = metrics.class_names.index(weakest.name)
        sentences.append(f"The weakest class is {weakest.name}: {of_text(int(metrics.confusion[i, i]), weakest.support)} "
                         f"classified correctly ({percent_text(weakest.recall)}).")
    if view is not None:
        sentences.append(f"At {number_text(view.parts_per_hour, 3)} parts per hour with {percent_text(view.defect_rate)} defective, expect "
                         f"about {number_text(view.false_alerts_per_hour)} false alerts per hour and "
                         f"{number_text(view.escapes_per_day)} escapes per day (up to {number_text(view.escapes_per_day_ci[1])} at 95% confidence).")
    if rates.count < 100:
        sentences.append(f"With only {count_text(rates.count)} test images these figures are rough; read the intervals "
                         "below.")
    if source == "top1":
        sentences.append("These are top-class decisions; the model file has no review band.")
    return f'<p class="plain">{escape(" ".join(sentences))}</p>'


def _none_or(count: int, zero: str = "none") -> str:
    return zero if count == 0 else f"{count:,}"


def _count_range(value: float, ci: tuple[float, float]) -> str:
    if math.isnan(value):
        return "not defined (no good parts to count)"
    return f"{number_text(value)} (95% range {number_text(ci[0])} to {number_text(ci[1])})"
