"""Evaluation: classification metrics, metadata slices and per-image outcomes (pure numpy), and ``run.py``,
which evaluates a model's predictions on a workspace's dataset split and writes the report
(``inspectloop.reports``).

Importing this package loads numpy only.
"""

from __future__ import annotations

from inspectloop.evaluate.metrics import (
    ClassificationMetrics,
    ClassMetrics,
    classification_metrics,
    wilson_interval,
)
from inspectloop.evaluate.outcomes import ImageOutcome, hardest, image_outcomes
from inspectloop.evaluate.slices import Slice, SliceReport, select_slice_fields, slice_metrics

__all__ = [
    "ClassMetrics",
    "ClassificationMetrics",
    "ImageOutcome",
    "Slice",
    "SliceReport",
    "classification_metrics",
    "hardest",
    "image_outcomes",
    "select_slice_fields",
    "slice_metrics",
    "wilson_interval",
]
