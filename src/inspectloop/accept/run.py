"""Acceptance of a run: judge a finished run's model file against locked criteria on the frozen test set.

``accept`` runs the exported model file itself through the edge runtime (one thread) on every image
of the frozen test split of the run's dataset version, measures and judges it
(:mod:`inspectloop.accept.judge`), and writes ``acceptance.json`` and a self-contained
``acceptance.html`` into the run's folder. The report is recorded in the registry against the model
version, so a passed report against the run's own criteria unlocks promotion to production.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inspectloop.accept.criteria import LockedCriteria, check_criteria_locked_before, get_criteria
from inspectloop.accept.judge import CriterionResult, Measurements, judge, measure, review_summary
from inspectloop.anomaly.threshold import as_anomaly_labels
from inspectloop.datasets import load_version
from inspectloop.domain import DatasetItem, ModelVersion, TrainingRun
from inspectloop.errors import AcceptanceError, DatasetError
from inspectloop.fileio import atomic_write_bytes, json_safe
from inspectloop.provenance import code_version
from inspectloop.registry import get_version, record_acceptance, register, verify_file
from inspectloop.runtime.metadata import ANOMALY
from inspectloop.store import now_iso
from inspectloop.workspace import Workspace

if TYPE_CHECKING:
    from inspectloop.runtime import ModelMetadata, Prediction

REPORT_FORMAT = "inspectloop.acceptance-report"
REPORT_FORMAT_VERSION = 1
_RUNS_FIX = "list runs with: inspectloop runs"


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
    dataset = load_version(workspace, run.dataset_version)
    items = dataset.split("test")
    if not items:
        raise DatasetError(f"dataset version {dataset.name} has no frozen test images",
                           "acceptance needs a test split: make a dataset version with one and train again")
    version = _model_version(workspace, run, variant)
    predictions, truth, metadata = _run_model(workspace, version, items, progress)
    measurements = measure(predictions, truth, class_names=metadata.class_names, good_class=metadata.good_class,
                           criteria=locked.criteria,
                           defect_labels=[item.label for item in items] if metadata.task == ANOMALY else None)
    results = judge(locked.criteria, measurements)
    out_dir = Path(run.artifacts) / (f"acceptance-{locked.id}" if variant == "fp32"
                                        else f"acceptance-{locked.id}-{variant}")
    document = _document(run, version, locked, dataset.name, results, measurements, out_dir)
    record_id = record_acceptance(workspace, version, locked.id, document["passed"], document)
    document = {**document, "record_id": record_id}
    _write(out_dir, document)
    return AcceptanceReport(run_id=run.id, variant=variant, criteria=locked, run_criteria_id=run.criteria_id,
                            model_version=version, dataset_version=dataset.name, results=results,
                            measurements=measurements, record_id=record_id, json_path=out_dir / "acceptance.json",
                            html_path=out_dir / "acceptance.html", document=document)


# -- what is judged, and with what ----------------------------------------------------------------

def _finished_run(workspace: Workspace, run_id: str) -> TrainingRun:
    run = workspace.db.runs.get(run_id)
    if run is None:
        raise AcceptanceError(f"no run {run_id!r}", _RUNS_FIX)
    if run.status != "finished":
        raise AcceptanceError(f"run {run_id} is {run.status}, not finished",
                              f"judge a finished run; resume an interrupted one with: inspectloop train --resume {run_id}")
    return run


def _criteria(workspace: Workspace, run: TrainingRun, criteria: str | int | None) -> LockedCriteria:
    if criteria is not None:
        return get_criteria(workspace, criteria)
    if run.criteria_id is None:
        raise AcceptanceError(
            f"run {run.id} named no acceptance criteria, so there is nothing fixed before training to judge it by",
            "lock criteria first (inspectloop criteria lock FILE --by NAME), then train again with "
            "inspectloop train --criteria NAME and accept that run")
    return get_criteria(workspace, run.criteria_id)


def _model_version(workspace: Workspace, run: TrainingRun, variant: str) -> ModelVersion:
    """The registry version of the run's ``variant`` model, its file checked; registered now if it has none."""
    models = [m for m in workspace.db.runs.models(run.id) if m.variant == variant]
    if not models:
        have = sorted({m.variant for m in workspace.db.runs.models(run.id)})
        raise AcceptanceError(f"run {run.id} has no {variant} model",
                              f"judge one of its variants: --variant {' or --variant '.join(have)}" if have
                              else "the run exported no model file; train again")
    row = workspace.db.registry.find(model_id=models[-1].id)
    if row is None:
        return register(workspace, run.id, variant=variant)  # checks the file against its record
    version = get_version(workspace, row.id)
    verify_file(version, workspace)
    return version


def _run_model(workspace: Workspace, version: ModelVersion, items: Sequence[DatasetItem],
               progress: Callable[[int, int], None] | None) -> tuple[list[Prediction], list[str], ModelMetadata]:
    """Every test image through the runtime (one thread), after one untimed warm-up image."""
    from inspectloop.runtime import EdgeModel

    model = EdgeModel(version.path, threads=1)
    names = model.metadata.class_names
    truth = [item.label for item in items]
    if model.task == ANOMALY:  # judged as good vs anomaly: it names no defect class
        truth = as_anomaly_labels(truth, str(model.metadata.good_class))
    unknown = sorted(set(truth) - set(names))
    if unknown:
        raise DatasetError(f"test labels {unknown} are not classes of the model ({', '.join(names)})",
                           "judge a model trained on this dataset version's classes")
    model.predict(workspace.blobs.get(items[0].sha256), name=items[0].sha256[:12])
    predictions = []
    for n, item in enumerate(items, start=1):
        predictions.append(model.predict(workspace.blobs.get(item.sha256), name=item.sha256[:12]))
        if progress and (n % 10 == 0 or n == len(items)):
            progress(n, len(items))
    return predictions, truth, model.metadata


# -- the report files -----------------------------------------------------------------------------

def _document(run: TrainingRun, version: ModelVersion, locked: LockedCriteria, dataset: str,
              results: Sequence[CriterionResult], m: Measurements, out_dir: Path) -> dict[str, Any]:
    passed = all(r.passed for r in results)
    return json_safe({  # type: ignore[return-value]
        "format": REPORT_FORMAT, "format_version": REPORT_FORMAT_VERSION,
        "verdict": "passed" if passed else "failed", "passed": passed,
        "failed": [r.name for r in results if not r.passed],
        "run": run.id, "variant": version.variant, "dataset_version": dataset, "split": "test",
        "test_images": m.count,
        "model_version": {"id": version.id, "name": version.name, "stage": version.stage.value},
        "model_file": {"path": str(version.path), "sha256": version.file_sha256,
                       "temperature": version.lineage.get("temperature"),
                       "class_names": version.lineage.get("class_names"), "good_class": m.good_class},
        "criteria": {"id": locked.id, "name": locked.name, "sha256": locked.sha256,
                     "locked_at": locked.locked_at.isoformat(), "locked_by": locked.locked_by,
                     "is_the_runs_criteria": locked.id == run.criteria_id, "run_criteria_id": run.criteria_id,
                     "limits": locked.criteria.model_dump(mode="json")},
        "results": [r.to_dict() for r in results],
        "review_summary": review_summary(m),
        "measurements": m.to_dict(),
        "measured_at": now_iso(), "code_version": code_version(),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
        "files": {"json": str(out_dir / "acceptance.json"), "html": str(out_dir / "acceptance.html")},
    })


def _write(out_dir: Path, document: Mapping[str, Any]) -> None:
    from inspectloop.reports.acceptance import render_acceptance_html

    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out_dir / "acceptance.json", (json.dumps(document, indent=2, allow_nan=False) + "\n").encode())
    atomic_write_bytes(out_dir / "acceptance.html", render_acceptance_html(document).encode("utf-8"))
