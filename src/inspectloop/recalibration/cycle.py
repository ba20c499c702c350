"""The recalibration cycle: re-annotate a sample of recent production, compare, retrain only on evidence.

Stage 1 (:func:`recalibrate`): a sample of the production model's predictions with stored images in
the window, stratified by predicted class, camera and shift; a random subset goes to the review queue
(reason "recalibration"); the cycle waits for labels. Stage 2 (:func:`continue_cycle`, run by
``recalibrate --continue`` or by the next ``recalibrate`` once every item is decided): per-class recall
and precision of the production model on the re-annotated sample against the accepted baseline, with
Wilson intervals. Whether to retrain follows the cycle's policy, ``retrain_on``: "drop" (the default
for manual and calendar cycles) retrains only when a class dropped more than the trigger; "drift" (the
default for cycles a drift alert opened) also retrains when a drift alert opened the cycle and at least
``MIN_DRIFT_LABELS`` images were labelled, so the model learns the drifted appearance before recall
falls (the labels are already paid for). Either way: a new dataset version (parent + the newly
labelled images; nothing dropped, the frozen test set carried over), a training run with the same
configuration and criteria, acceptance against those locked criteria, and, if it passes, the shadow
stage; the report says why it retrained. Production is only ever reached through the registry's
normal gate, by a person.
An anomaly model's cycle compares good vs anomaly (a reviewer's defect class counts as "anomaly": the
model names none), and its retraining refits the memory bank on the new version's good training
images, the original ones and the newly labelled ones.
Every cycle, whatever its outcome, is a row and a report (JSON + HTML).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from inspectloop import registry, review
from inspectloop.anomaly.threshold import as_anomaly_labels
from inspectloop.domain import CycleRecord, LoggedPrediction, ModelVersion
from inspectloop.errors import InspectloopError
from inspectloop.recalibration.comparison import (
    DEFAULT_TRIGGER,
    MIN_DRIFT_LABELS,
    RETRAIN_POLICIES,
    compare_to_baseline,
    default_retrain_on,
    retrain_reason,
)
from inspectloop.errors import RecalibrationError
from inspectloop.recalibration.sampling import stratified_sample
from inspectloop.reports.recalibration import render_recalibration_html
from inspectloop.runtime.metadata import ANOMALY
from inspectloop.store import atomic_write_text, now_iso
from inspectloop.workspace import Workspace

AWAITING, DONE = "awaiting_labels", "done"
TRIGGER_SOURCES = ("manual", "calendar", "drift")
QUARTER_DAYS = 91
REVIEWER_SOURCE = "recalibration"


@dataclass(frozen=True)
class Cycle:
    """A recalibration cycle as stored: where it stands, what it found and where its report is."""

    id: int
    status: str
    outcome: str | None
    trigger_source: str
    model_version_id: int | None
    window_start: str
    window_end: str
    params: Mapping[str, Any]
    sample: Mapping[str, Any]
    result: Mapping[str, Any]
    message: str | None
    report_path: str | None

    @classmethod
    def from_record(cls, row: CycleRecord) -> Cycle:
        return cls(row.id, row.status, row.outcome, row.trigger_source, row.model_version_id, row.window_start,
                   row.window_end, row.params, row.sample, row.result, row.message, row.report_path)


@dataclass(frozen=True)
class Due:
    """Whether a cycle is called for now, and why (``source``: calendar, drift or None)."""

    due: bool
    source: str | None
    reason: str
    alerts: list[str] = field(default_factory=list)


Trainer = Callable[..., Any]  # inspectloop.train.run.train's signature


# --- stage 1 -------------------------------------------------------------------------------------------

def recalibrate(workspace: Workspace, *, window_days: float = 90, sample_size: int = 200,
                review_fraction: float = 1.0, trigger: float = DEFAULT_TRIGGER, trigger_source: str = "manual",
                retrain_on: str | None = None, now: datetime | None = None, seed: int = 0,
                adapt_first: bool = False) -> Cycle:
    """Start a cycle over the last ``window_days`` of the production model's predictions.

    ``adapt_first``: adapt-then-label (:mod:`inspectloop.recalibration.adapt_first`): each camera with a drift
    alert in the window gets an adapted candidate at once (judged, shadowed if it passes); labels confirm it.

    ``retrain_on`` ("drop" or "drift"; default by ``trigger_source``, see the module doc) is recorded
    with the cycle and decides, once the labels are in, whether it retrains.

    If an earlier cycle waits for labels that are now all given, that cycle is continued instead;
    if its labels are still being given, RecalibrationError says how many remain. A window without
    predictions (with stored images) is recorded as outcome "no_predictions" and raised.
    """
    _check_options(sample_size, review_fraction, trigger, trigger_source, retrain_on)
    waiting = _waiting_cycle(workspace)
    if waiting is not None:
        return _continue_if_ready(workspace, waiting)
    end = (now or datetime.now(UTC)).astimezone(UTC)
    start = end - timedelta(days=window_days)
    version = registry.production_model(workspace)
    row = {"trigger_source": trigger_source, "model_version_id": version.id if version else None,
               "window_start": start.isoformat(), "window_end": end.isoformat(),
               "params": {"window_days": window_days, "sample_size": sample_size, "review_fraction": review_fraction,
                       "trigger": trigger, "seed": seed,
                       "retrain_on": retrain_on or default_retrain_on(trigger_source), "adapt_first": adapt_first}}
    if version is None:
        _refuse(workspace, row, "no_production", RecalibrationError(
            "no model version is in production, so there is nothing to recalibrate",
            "promote one first: inspectloop models promote VERSION production --actor NAME"))
    rows = workspace.db.predictions.window(row["window_start"], row["window_end"], model_version_id=version.id,
                                           stored_only=True)
    if not rows:
        _refuse(workspace, row, "no_predictions", RecalibrationError(
            f"no predictions of {version.name} with stored images between {start:%Y-%m-%d} and {end:%Y-%m-%d}",
            "widen the window (--window-days), or serve with a sample rate above 0 so images are kept"))
    cycle = _open_cycle(workspace, row, version, rows, sample_size, review_fraction, seed)
    if adapt_first:
        from inspectloop.recalibration.adapt_first import adapt_drifted

        adapted = adapt_drifted(workspace, version, window_start=cycle.window_start, window_end=cycle.window_end,
                                cycle_id=cycle.id)
        workspace.db.recalibration.update(cycle.id, {"sample": {**cycle.sample, "adaptations": adapted}})
        cycle = _report(workspace, cycle.id)
    return cycle


def _check_options(sample_size: int, review_fraction: float, trigger: float, trigger_source: str,
                   retrain_on: str | None = None) -> None:
    if sample_size < 1:
        raise RecalibrationError(f"the sample size must be at least 1, got {sample_size}", "e.g. --sample-size 200")
    if not 0.0 < review_fraction <= 1.0:
        raise RecalibrationError(f"the review fraction must be in (0, 1], got {review_fraction}",
                                 "e.g. --review-fraction 0.5")
    if not 0.0 < trigger < 1.0:
        raise RecalibrationError(f"the trigger must be a recall drop between 0 and 1, got {trigger}",
                                 "e.g. --trigger 0.03 for 3 points")
    if trigger_source not in TRIGGER_SOURCES:
        raise RecalibrationError(f"unknown trigger source {trigger_source!r}", f"use {', '.join(TRIGGER_SOURCES)}")
    if retrain_on is not None and retrain_on not in RETRAIN_POLICIES:
        raise RecalibrationError(f"unknown retraining policy {retrain_on!r}",
                                 f"use {' or '.join(RETRAIN_POLICIES)} (default: drift for drift-triggered cycles, "
                                 "else drop)")


def _open_cycle(workspace: Workspace, row: dict[str, Any], version: ModelVersion,
                rows: list[LoggedPrediction], sample_size: int, review_fraction: float, seed: int) -> Cycle:
    sample = stratified_sample(rows, size=sample_size, seed=seed)
    chosen = random.Random(seed).sample(sample, max(1, round(review_fraction * len(sample))))
    with workspace.db.transaction() as tx:
        cycle_id = tx.recalibration.add({**row, "status": AWAITING})
        items = []
        for prediction in sorted(chosen, key=lambda r: r.id):
            item = review.enqueue(tx, image_sha256=prediction.image_sha256, reason="recalibration",
                                  prediction_id=prediction.id, model_version_id=version.id,
                                  details={"cycle": cycle_id, "camera": prediction.camera,
                                           "shift": prediction.shift})
            items += [item] if item is not None else []  # an image already waiting is not asked twice
        sampled = {"predictions": [r.id for r in sample], "review_items": items, "in_window": len(rows)}
        tx.recalibration.update(cycle_id, {"sample": sampled, "message": (
            f"{len(items)} images wait for review; then run: inspectloop recalibrate --continue {cycle_id}")})
    return _report(workspace, cycle_id)


def _refuse(workspace: Workspace, row: dict[str, Any], outcome: str, exc: InspectloopError) -> None:
    cycle_id = workspace.db.recalibration.add({**row, "status": DONE, "outcome": outcome, "message": str(exc)})
    _report(workspace, cycle_id)
    raise exc


# --- stage 2 -------------------------------------------------------------------------------------------

def continue_cycle(workspace: Workspace, cycle_id: int, *, actor: str = "recalibration",
                   trainer: Trainer | None = None, retrain_on: str | None = None) -> Cycle:
    """Compare the cycle's labelled sample with the accepted baseline and act on it (see the module doc).

    ``retrain_on`` overrides the policy recorded when the cycle started (itself defaulting by trigger
    source). RecalibrationError while review items are open, or for a cycle that is already done.
    """
    current = get_cycle(workspace, cycle_id)
    _check_options(1, 1.0, DEFAULT_TRIGGER, current.trigger_source, retrain_on)
    if current.status != AWAITING:
        raise RecalibrationError(f"recalibration cycle {cycle_id} is already done ({current.outcome})",
                                 "start a new one with: inspectloop recalibrate")
    labelled, still_open = _labels(workspace, current)
    if still_open:
        raise RecalibrationError(
            f"cycle {cycle_id}: {still_open} of {still_open + len(labelled)} sampled images still wait for review",
            f"review them at /review, then run: inspectloop recalibrate --continue {cycle_id}")
    if not labelled:
        return _finish(workspace, cycle_id, "no_labels", {}, "every sampled image was skipped; nothing to compare")
    version = registry.get_version(workspace, int(current.model_version_id))  # type: ignore[arg-type]
    truth = [lab for lab, _ in labelled]
    if _is_anomaly(workspace, version):  # reviewers name defect classes; the model says good or anomaly
        truth = as_anomaly_labels(truth, str(version.lineage.get("good_class")))
    comparison = compare_to_baseline(accepted_baseline(workspace, version), truth,
                                     [pred for _, pred in labelled], version.lineage.get("class_names") or
                                     _class_names(workspace, version), float(current.params["trigger"]))
    policy = str(retrain_on or current.params.get("retrain_on") or default_retrain_on(current.trigger_source))
    why = retrain_reason(comparison, trigger_source=current.trigger_source, retrain_on=policy)
    result: dict[str, Any] = {"comparison": comparison.to_dict(), "model_version": version.name,
                              "retrain_on": policy, "retrain": why is not None, "retrain_reason": why}
    if current.sample.get("adaptations"):  # adapt-then-label: the labels confirm (or not) each adapted candidate
        from inspectloop.recalibration.adapt_first import confirm_adapted, decided_images

        result["adaptations"] = confirm_adapted(workspace, current.sample["adaptations"],
                                                decided_images(workspace, current.sample))
    if why is None:
        short = (f"; the drift policy needs at least {MIN_DRIFT_LABELS} labelled images, got {comparison.labels}"
                 if policy == "drift" and current.trigger_source == "drift" else "")
        return _finish(workspace, cycle_id, "no_drop", result,
                       f"no class lost more than {100 * comparison.trigger:.0f} points of recall{short}; "
                       "nothing to retrain")
    return _retrain(workspace, current, version, result, actor, trainer)


def _labels(workspace: Workspace, cycle: Cycle) -> tuple[list[tuple[str, str]], int]:
    """(reviewer's label, model's label) per decided item, and how many items are still open."""
    with workspace.db.transaction() as tx:
        items = tx.review.get_many(list(cycle.sample.get("review_items", [])))
        predictions = {r.id: r for r in tx.predictions.window(cycle.window_start, cycle.window_end,
                                                              model_version_id=cycle.model_version_id)}
    labelled = [(item.decided_label, predictions[item.prediction_id].label) for item in items
                if item.status == "done" and item.prediction_id in predictions]
    return labelled, sum(item.status == "open" for item in items)


def accepted_baseline(workspace: Workspace, version: ModelVersion) -> dict[str, dict[str, Any]]:
    """Per-class recall, precision and support the version was accepted with (its latest passed report),
    else its run's test metrics."""
    reports = [r for r in workspace.db.criteria.reports(version.id) if r.passed]
    if reports:
        per_class = reports[-1].report["measurements"]["per_class"]
        return {c["name"]: {"recall": c["recall"], "precision": c["precision"], "support": c.get("support")}
                for c in per_class}
    run = workspace.db.runs.get(version.run_id)
    per_class = (((run.metrics if run else None) or {}).get("test") or {}).get("per_class") or {}
    if not per_class:
        raise RecalibrationError(f"{version.name} has neither a passed acceptance report nor test metrics",
                                 f"accept it first: inspectloop accept {version.run_id}")
    if isinstance(per_class, list):
        return {c["name"]: c for c in per_class}
    return {name: dict(values) for name, values in per_class.items()}


def _is_anomaly(workspace: Workspace, version: ModelVersion) -> bool:
    run = workspace.db.runs.get(version.run_id)
    return run is not None and run.config.get("task") == ANOMALY


def _class_names(workspace: Workspace, version: ModelVersion) -> list[str]:
    from inspectloop.runtime import EdgeModel

    # metadata only: no backend to compile
    return list(EdgeModel(version.path, backend="onnxruntime").metadata.class_names)


def _retrain(workspace: Workspace, cycle: Cycle, version: ModelVersion, result: dict[str, Any],
             actor: str, trainer: Trainer | None) -> Cycle:
    from inspectloop.accept.run import accept
    from inspectloop.datasets import SplitPlan, create_version, load_version
    from inspectloop.train.config import TrainConfig

    why = f"retrained ({result['retrain_reason']}): "
    run = workspace.db.runs.get(version.run_id)
    if run is None or run.criteria_id is None:
        return _finish(workspace, cycle.id, "no_criteria", result,
                       f"retraining called for ({result['retrain_reason']}), but {version.name}'s run names no "
                       "locked criteria, so a retrained model could not be judged; lock criteria and train with "
                       "--criteria")
    try:
        parent = load_version(workspace, run.dataset_version)
        plan = SplitPlan(**{k: (tuple(v) if k == "test_values" else v) for k, v in parent.params.items()
                            if k in SplitPlan.__dataclass_fields__})
        dataset = create_version(workspace, plan, parent=parent.name)
        result["dataset_version"] = {"name": dataset.name, "parent": parent.name,
                                     "added": len(dataset.items) - len(parent.items)}
        trained = (trainer or _train)(workspace, TrainConfig(**run.config), dataset=dataset.name,
                                      criteria=str(run.criteria_id))
        result["run"] = trained.run_id
        report = accept(workspace, trained.run_id)
    except InspectloopError as exc:
        return _finish(workspace, cycle.id, "failed_training", result,
                       f"retraining ({result['retrain_reason']}) failed: {exc}")
    result["acceptance"] = {"passed": report.passed, "failed": [r.name for r in report.failed],
                            "report": str(report.json_path), "model_version": report.model_version.name}
    if not report.unlocks_promotion:
        return _finish(workspace, cycle.id, "failed_acceptance", result,
                       f"{why}the retrained model {report.model_version.name} failed acceptance "
                       f"({', '.join(r.name for r in report.failed) or 'criteria mismatch'}); "
                       f"{version.name} stays in production")
    shadow = registry.promote(workspace, report.model_version, registry.Stage.shadow, actor=actor,
                              reason=f"recalibration cycle {cycle.id}")
    return _finish(workspace, cycle.id, "shadow", result,
                   f"{why}{shadow.name} passed acceptance and runs in shadow; after its shadow report, promote it with: "
                   f"inspectloop models promote {shadow.name} production --actor NAME")


def _train(workspace: Workspace, config: Any, *, dataset: str, criteria: str) -> Any:
    from inspectloop.train.run import train

    return train(workspace, config, dataset=dataset, criteria=criteria)


def _finish(workspace: Workspace, cycle_id: int, outcome: str, result: dict[str, Any], message: str) -> Cycle:
    workspace.db.recalibration.update(cycle_id, {"status": DONE, "outcome": outcome, "result": result, "message": message})
    return _report(workspace, cycle_id)


def _waiting_cycle(workspace: Workspace) -> Cycle | None:
    rows = [r for r in workspace.db.recalibration.list() if r.status == AWAITING]
    return Cycle.from_record(rows[0]) if rows else None


def _continue_if_ready(workspace: Workspace, waiting: Cycle) -> Cycle:
    _, still_open = _labels(workspace, waiting)
    if still_open:
        raise RecalibrationError(f"recalibration cycle {waiting.id} still waits for {still_open} review decisions",
                                 "review them at /review; the next inspectloop recalibrate continues it")
    return continue_cycle(workspace, waiting.id)


# --- on a schedule -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ScheduledRun:
    """What one scheduled call did: ``action`` is continued, started, waiting or nothing."""

    action: str
    reason: str
    cycle: Cycle | None = None


def run_scheduled(workspace: Workspace, *, period_days: float = QUARTER_DAYS, now: datetime | None = None,
                  **options: Any) -> ScheduledRun:
    """One call of a scheduler (cron, a systemd timer): continue the waiting cycle once its labels are in,
    else start a cycle when :func:`due` says a calendar period has passed or a drift alert fired (its
    source recorded as the trigger), else nothing. ``options`` go to :func:`recalibrate`. Waiting for
    reviewers is not an error here: the next call continues the cycle."""
    waiting = _waiting_cycle(workspace)
    if waiting is not None:
        _, still_open = _labels(workspace, waiting)
        if still_open:
            return ScheduledRun("waiting", f"cycle {waiting.id} waits for {still_open} review decisions", waiting)
        return ScheduledRun("continued", f"cycle {waiting.id}'s labels are in", continue_cycle(workspace, waiting.id))
    verdict = due(workspace, now=now, period_days=period_days)
    if not verdict.due:
        return ScheduledRun("nothing", verdict.reason)
    cycle = recalibrate(workspace, trigger_source=verdict.source or "calendar", now=now, **options)
    return ScheduledRun("started", verdict.reason, cycle)


# --- queries -------------------------------------------------------------------------------------------

def get_cycle(workspace: Workspace, cycle_id: int) -> Cycle:
    row = workspace.db.recalibration.get(cycle_id)
    if row is None:
        raise RecalibrationError(f"no recalibration cycle {cycle_id}", "list them with: inspectloop recalibrate status")
    return Cycle.from_record(row)


def list_cycles(workspace: Workspace, limit: int = 20) -> list[Cycle]:
    """Cycles, newest first."""
    return [Cycle.from_record(r) for r in workspace.db.recalibration.list(limit)]


def due(workspace: Workspace, *, now: datetime | None = None, period_days: float = QUARTER_DAYS) -> Due:
    """Whether a cycle is due: a drift alert since the last cycle, or ``period_days`` since it (or deployment)."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    cycles = [c for c in list_cycles(workspace, limit=200) if c.outcome not in ("no_production",)]
    last = cycles[0].window_end if cycles else None
    alerts = workspace.db.drift.alerts(since=last, kind="drift")
    if alerts:
        return Due(True, "drift", f"{len(alerts)} drift alerts since the last cycle", [a.message for a in alerts])
    since = last or _deployed_at(workspace)
    if since is None:
        return Due(False, None, "no model version is in production")
    age = now - datetime.fromisoformat(since)
    if age >= timedelta(days=period_days):
        return Due(True, "calendar", f"{age.days} days since the last cycle (every {period_days:.0f} days)")
    return Due(False, None, f"next calendar cycle in {(timedelta(days=period_days) - age).days} days; no drift alerts")


def _deployed_at(workspace: Workspace) -> str | None:
    version = registry.production_model(workspace)
    if version is None:
        return None
    events = [e for e in registry.history(workspace, version) if e.to_stage == registry.Stage.production]
    return events[-1].at if events else version.created_at


# --- the report ----------------------------------------------------------------------------------------

def _report(workspace: Workspace, cycle_id: int) -> Cycle:
    """Write the cycle's JSON and HTML report and record where it is; return the cycle."""
    cycle = get_cycle(workspace, cycle_id)
    folder = workspace.reports_dir / "recalibration"
    document = {"cycle": cycle.id, "status": cycle.status, "outcome": cycle.outcome,
                "trigger_source": cycle.trigger_source, "model_version_id": cycle.model_version_id,
                "window": [cycle.window_start, cycle.window_end], "params": dict(cycle.params),
                "sample": dict(cycle.sample), "result": dict(cycle.result), "message": cycle.message,
                "written_at": now_iso()}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"cycle-{cycle.id}.json"
    atomic_write_text(path, json.dumps(document, indent=2, default=str) + "\n")
    atomic_write_text(path.with_suffix(".html"), render_recalibration_html(document))
    workspace.db.recalibration.update(cycle.id, {"report_path": str(path)})
    return get_cycle(workspace, cycle.id)


def cycle_summary(cycles: Sequence[Cycle]) -> list[dict[str, Any]]:
    """One JSON-ready line per cycle (for ``recalibrate status --json``)."""
    return [{"id": c.id, "status": c.status, "outcome": c.outcome, "trigger": c.trigger_source,
             "retrain_on": c.params.get("retrain_on"), "retrain_reason": c.result.get("retrain_reason"),
             "window": [c.window_start, c.window_end], "message": c.message, "report": c.report_path}
            for c in cycles]


def report_path(cycle: Cycle) -> Path | None:
    return Path(cycle.report_path) if cycle.report_path else None
