"""Metrics sliced by capture metadata (camera, line, shift, lighting, ...), and the worst slice.

A model that is fine on average can fail on one camera or one shift; slicing shows where.
Samples without a value for a field are grouped under ``"(missing)"``.

When no fields are named, a field is sliced if it is set (non-empty) on at least one sample, has
between 2 and ``MAX_SLICE_VALUES`` distinct values, and is not id-like: it must average at least two
samples per distinct value. That skips fields such as ``part_id`` or ``sha256`` that (nearly)
identify each image and would only make slices of one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from inspectloop.errors import DatasetError
from inspectloop.evaluate.metrics import ClassificationMetrics, json_float, classification_metrics

MISSING = "(missing)"
MAX_SLICE_VALUES = 50
MIN_SAMPLES_PER_VALUE = 2.0

Metadata = Sequence[Mapping[str, str | None]]


@dataclass(frozen=True)
class Slice:
    """The samples whose metadata ``field`` equals ``value`` and their metrics."""

    field: str
    value: str
    metrics: ClassificationMetrics

    def to_dict(self) -> dict[str, object]:
        """JSON-safe form."""
        return {"field": self.field, "value": self.value, "count": self.metrics.count,
                "metrics": self.metrics.to_dict()}


@dataclass(frozen=True)
class SliceReport:
    """All slices, field by field, and the worst one.

    ``worst`` has the lowest macro recall among slices with at least ``min_count`` samples
    (ties go to the larger slice); ``None`` when no slice is that large.
    """

    slices: tuple[Slice, ...]
    worst: Slice | None
    fields: tuple[str, ...] = ()
    min_count: int = 10

    def for_field(self, field: str) -> tuple[Slice, ...]:
        """The slices of one field, in report order."""
        return tuple(s for s in self.slices if s.field == field)

    def to_dict(self) -> dict[str, object]:
        """JSON-safe form."""
        worst = None
        if self.worst is not None:
            worst = {"field": self.worst.field, "value": self.worst.value, "count": self.worst.metrics.count,
                     "macro_recall": json_float(self.worst.metrics.macro_recall)}
        return {"fields": list(self.fields), "min_count": self.min_count, "worst": worst,
                "slices": [s.to_dict() for s in self.slices]}


def slice_metrics(
    y_true: Sequence[int],
    y_pred: Sequence[int],
    class_names: Sequence[str],
    metadata: Metadata,
    fields: Sequence[str] | None = None,
    min_count: int = 10,
) -> SliceReport:
    """Metrics for every value of every chosen metadata field, and the worst slice.

    ``metadata`` holds one mapping per sample, in the order of ``y_true``. ``fields=None`` picks the
    fields by the rule in the module docstring; named fields are sliced as given, but each must be set
    on at least one sample. Raises :class:`~inspectloop.errors.DatasetError` on mismatched input.
    """
    overall = classification_metrics(y_true, y_pred, class_names)  # validates the labels once
    true, pred = np.asarray(y_true), np.asarray(y_pred)
    if len(metadata) != overall.count:
        raise DatasetError(
            f"metadata has {len(metadata)} entries but there are {len(true)} labels",
            hint="pass one metadata mapping per test image, in the same order as the labels",
        )
    if any(not isinstance(sample, Mapping) for sample in metadata):
        raise DatasetError("every metadata entry must be a mapping of field to value",
                           hint="use {} for a sample without metadata")
    if min_count < 1:
        raise DatasetError(f"min_count must be at least 1, got {min_count}", hint="use e.g. 10")
    chosen = select_slice_fields(metadata) if fields is None else _check_fields(metadata, fields)
    slices = tuple(
        Slice(field, value, classification_metrics(true[index], pred[index], class_names))
        for field in chosen
        for value, index in _groups(metadata, field)
    )
    ranked = [s for s in slices if s.metrics.count >= min_count and not math.isnan(s.metrics.macro_recall)]
    worst = min(ranked, key=lambda s: (s.metrics.macro_recall, -s.metrics.count), default=None)
    return SliceReport(slices=slices, worst=worst, fields=tuple(chosen), min_count=min_count)


def select_slice_fields(metadata: Metadata, max_values: int = MAX_SLICE_VALUES) -> tuple[str, ...]:
    """The fields worth slicing by (rule in the module docstring), in alphabetical order."""
    names = sorted({key for sample in metadata for key in sample})
    return tuple(name for name in names if _sliceable(metadata, name, max_values))


def _sliceable(metadata: Metadata, field: str, max_values: int) -> bool:
    present = [v for v in (_value(sample, field) for sample in metadata) if v != MISSING]
    distinct = len(set(present))
    return 2 <= distinct <= max_values and len(present) >= MIN_SAMPLES_PER_VALUE * distinct


def _check_fields(metadata: Metadata, fields: Sequence[str]) -> tuple[str, ...]:
    known = sorted({key for sample in metadata for key in sample if _value(sample, key) != MISSING})
    for field in fields:
        if field not in known:
            raise DatasetError(
                f"metadata field '{field}' is not set on any test sample",
                hint=f"known fields: {', '.join(known) or 'none'}",
            )
    return tuple(dict.fromkeys(fields))


def _groups(metadata: Metadata, field: str) -> list[tuple[str, np.ndarray]]:
    """(value, sample indices) per value, sorted by value with ``(missing)`` last."""
    values = [_value(sample, field) for sample in metadata]
    order = sorted(set(values), key=lambda v: (v == MISSING, v))
    return [(v, np.flatnonzero([x == v for x in values])) for v in order]


def _value(sample: Mapping[str, str | None], field: str) -> str:
    value = sample.get(field)
    if value is None:
        return MISSING
    text = str(value).strip()
    return text if text else MISSING
