"""Evaluate predictions on a workspace's dataset split: per-class metrics, slices by capture metadata,
per-image outcomes and the report (the workspace-bound part of ``inspectloop.evaluate``).

Used by training runs (on the frozen test set) and by ``inspectloop evaluate`` on an exported model
file, which scores exactly what will ship.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inspectloop.datasets import load_version
from inspectloop.domain import DatasetItem
from inspectloop.errors import DatasetError
from inspectloop.fileio import atomic_write_bytes
from inspectloop.grades import class_grades
from inspectloop.evaluate.graded import GradedEvaluation, graded_evaluation
from inspectloop.evaluate.metrics import ClassificationMetrics, classification_metrics, json_float
from inspectloop.evaluate.outcomes import ImageOutcome, image_outcomes
from inspectloop.evaluate.slices import SliceReport, slice_metrics
from inspectloop.reports.evaluation import (
    EvaluationReportFiles,
    HeatmapLoader,
    evaluation_title,
    write_evaluation_report,
)
from inspectloop.reports.graded import graded_figures
from inspectloop.reports.html import ReportFigure
from inspectloop.workspace import Workspace


@dataclass(frozen=True)
class EvaluationResult:
    """The figures of one evaluation, each image's outcome, and where the report files are."""

    metrics: ClassificationMetrics
    slices: SliceReport
    files: EvaluationReportFiles
    outcomes: tuple[ImageOutcome, ...] = ()
    graded: GradedEvaluation | None = None  # graded classes: curves, roll-ups, wrong grades by steps

    def summary(self) -> dict[str, Any]:
        worst = self.slices.worst
        return {
            "macro_recall": self.metrics.macro_recall, "macro_precision": self.metrics.macro_precision,
            "macro_f1": self.metrics.macro_f1, "accuracy": self.metrics.accuracy, "count": self.metrics.count,
            "per_class": {m.name: {"precision": json_float(m.precision), "recall": json_float(m.recall),
                                   "f1": json_float(m.f1), "support": m.support} for m in self.metrics.per_class},
            "worst_slice": None if worst is None else {
                "field": worst.field, "value": worst.value, "macro_recall": worst.metrics.macro_recall,
                "count": worst.metrics.count},
            "report": str(self.files.html),
            **({"graded": self.graded.brief()} if self.graded is not None else {}),
        }


def evaluate_predictions(workspace: Workspace, items: Sequence[DatasetItem], class_names: Sequence[str],
                         predicted: np.ndarray, out_dir: Path, *, title: str, context: Mapping[str, object],
                         figures: Sequence[ReportFigure] = (), scores: np.ndarray | None = None,
                         heatmaps: HeatmapLoader | None = None) -> EvaluationResult:
    """Score ``predicted`` class indices against the items' labels and write the report to ``out_dir``.

    ``scores`` (optional, one row of class probabilities per item) lets each image's outcome carry its
    probabilities and margin, so the report can rank close calls as well as mistakes. ``heatmaps`` (an
    anomaly model's, by image digest) are blended into the hardest images' thumbnails.
    """
    index = {name: i for i, name in enumerate(class_names)}
    unknown = sorted({item.label for item in items if item.label not in index})
    if unknown:
        raise DatasetError(f"labels {unknown} are not classes of the model ({', '.join(class_names)})",
                           "evaluate on a dataset version with the model's classes, or retrain")
    truth = [index[item.label] for item in items]
    records = workspace.db.images.get_many([item.sha256 for item in items])
    metadata = [records[item.sha256].meta.fields() for item in items]
    chosen = [int(p) for p in predicted]
    metrics = classification_metrics(truth, chosen, class_names)
    slices = slice_metrics(truth, chosen, class_names, metadata)
    outcomes = image_outcomes([item.sha256 for item in items], truth, chosen, class_names, scores=scores,
                              metadata=metadata)
    graded = None if scores is None else evaluate_grades(workspace, truth, scores, chosen, class_names, out_dir)
    if graded is not None:
        figures = [*figures, *graded_figures(graded)]
    files = write_evaluation_report(out_dir, title=title, metrics=metrics, slices=slices, context=context,
                                    figures=figures, outcomes=outcomes, images=workspace.blobs.get, heatmaps=heatmaps)
    return EvaluationResult(metrics, slices, files, outcomes, graded)


def evaluate_grades(workspace: Workspace, truth: Sequence[int], scores: np.ndarray, predicted: Sequence[int],
                    class_names: Sequence[str], out_dir: Path) -> GradedEvaluation | None:
    """The graded part of an evaluation (None without graded classes), its curves written to ``graded.json``."""
    classes = workspace.db.labels.classes()
    good = next((i for i, name in enumerate(class_names) if name in classes and classes[name].is_good), None)
    graded = graded_evaluation(truth, scores, predicted, class_names, class_grades(classes, class_names), good)
    if graded is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(Path(out_dir) / "graded.json", json.dumps(graded.to_dict(), indent=1).encode("utf-8"))
    return graded


def evaluate_model_file(workspace: Workspace, model_path: Path, *, dataset: str = "latest", split: str = "test",
                        out_dir: Path | None = None,
                        progress: Callable[[int, int], None] | None = None) -> EvaluationResult:
    """Run an exported model file through the edge runtime on a split and report the results."""
    from inspectloop.runtime import EdgeModel

    model = EdgeModel(model_path)
    version = load_version(workspace, dataset)
    items = version.split(split)
    if not items:
        raise DatasetError(f"dataset version {version.name} has no {split!r} images", "choose train, val or test")
    names = list(model.metadata.class_names)
    predicted, scores = [], []
    for n, item in enumerate(items, start=1):
        prediction = model.predict(workspace.blobs.get(item.sha256), name=item.sha256[:12])
        predicted.append(names.index(prediction.label))
        scores.append([prediction.scores[name] for name in names])
        if progress and (n % 25 == 0 or n == len(items)):
            progress(n, len(items))
    target = out_dir or workspace.reports_dir / f"eval-{Path(model_path).stem}-{version.name}-{split}"
    context = {"model": str(model_path), "model_version": model.metadata.model_version,
               "dataset_version": version.name, "split": split}
    heatmaps = None if model.task != "anomaly" else lambda digest: model.heatmap(workspace.blobs.get(digest))
    return evaluate_predictions(workspace, items, names, np.array(predicted), target,
                                title=evaluation_title(model.metadata.model_version, Path(model_path).name,
                                                       version.name, split), context=context,
                                scores=np.array(scores), heatmaps=heatmaps)
