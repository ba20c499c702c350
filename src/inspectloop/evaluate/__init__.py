"""Evaluation: classification metrics, metadata slices and report files.

Importing this package loads numpy only; matplotlib is imported when a picture is drawn.
"""

from __future__ import annotations

from inspectloop.evaluate.metrics import (
    ClassificationMetrics,
    ClassMetrics,
    classification_metrics,
    wilson_interval,
)
from inspectloop.evaluate.report import (
    EvaluationReportFiles,
    ReportFigure,
    confusion_matrix_png,
    write_evaluation_report,
)
from inspectloop.evaluate.slices import Slice, SliceReport, select_slice_fields, slice_metrics

__all__ = [
    "ClassMetrics",
    "ClassificationMetrics",
    "EvaluationReportFiles",
    "ReportFigure",
    "Slice",
    "SliceReport",
    "classification_metrics",
    "confusion_matrix_png",
    "select_slice_fields",
    "slice_metrics",
    "wilson_interval",
    "write_evaluation_report",
]
