"""Metrics sliced by capture metadata (camera, line, shift, lighting, ...), and the worst slice.

A model that is fine on average can fail on one camera or one shift; slicing shows where.
Samples without a value for a field are grouped under ``"(missing)"``.

When no fields are named, a field is sliced if it is set (non-empty) on at least one sample, has
between 2 and ``MAX_SLICE_VALUES`` distinct values, and is not id-like: it must average at least two
samples per distinct value. That skips fields such as ``part_id`` or ``sha256`` that (nearly)
identify each image and would only make slices of one. Nor is a field that repeats the label (see
:func:`label_determined_fields`): when every class has one value of it (``defect_probability`` 0.333 for
every scratch), its slices are only the classes again, and its "worst slice" says nothing.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from inspectloop.errors import DatasetError
from inspectloop.evaluate.metrics import ClassificationMetrics, json_float, classification_metrics

MISSING = "(missing)"
MAX_SLICE_VALUES = 50
MIN_SAMPLES_PER_VALUE = 2.0
# A field repeats the label only when at least two classes each show it on this many samples: with one
# image of a class, any field is "one value per class" by chance.
MIN_SAMPLES_PER_LABEL = 2

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
class LabelEcho:
    """A metadata field whose value is a function of the label: each class has one value of it."""

    field: str
    values: Mapping[str, str]  # class -> its one value (``MISSING`` when the class never sets the field)

    def describe(self, shown: int = 3) -> str:
        """For people: the field and a few of its class-to-value pairs ("'x' repeats the label (every ...)")."""
        pairs = sorted(self.values.items())
        listed = ", ".join(f"every {label!r} is {value}" for label, value in pairs[:shown])
        more = f", and {len(pairs) - shown} more classes" if len(pairs) > shown else ""
        return f"{self.field!r} repeats the label ({listed}{more})"

    def to_dict(self) -> dict[str, object]:
        """JSON-safe form."""
        return {"field": self.field, "values": dict(self.values)}


@dataclass(frozen=True)
class SliceReport:
    """All slices, field by field, and the worst one.

    ``worst`` has the lowest macro recall among slices with at least ``min_count`` samples
    (ties go to the larger slice); ``None`` when no slice is that large. ``left_out`` names the fields
    not sliced because they repeat the label.
    """

    slices: tuple[Slice, ...]
    worst: Slice | None
    fields: tuple[str, ...] = ()
    min_count: int = 10
    left_out: tuple[LabelEcho, ...] = ()

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
                "slices": [s.to_dict() for s in self.slices],
                "label_determined": [echo.to_dict() for echo in self.left_out]}

    def without(self, echoes: Sequence[LabelEcho]) -> SliceReport:
        """This report less the fields of ``echoes`` (the worst slice ranked again among what is left)."""
        dropped = {echo.field for echo in echoes}
        if not dropped & set(self.fields):
            return self
        slices = tuple(s for s in self.slices if s.field not in dropped)
        known = {echo.field for echo in self.left_out}
        fields = tuple(f for f in self.fields if f not in dropped)
        return SliceReport(slices, worst_slice(slices, self.min_count), fields, self.min_count,
                           self.left_out + tuple(e for e in echoes if e.field not in known))


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
    on at least one sample, even one that repeats the label. Raises
    :class:`~inspectloop.errors.DatasetError` on mismatched input.
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
    echoes: tuple[LabelEcho, ...] = ()
    if fields is None:
        candidates = select_slice_fields(metadata)
        echoes = label_determined_fields([class_names[int(t)] for t in true], metadata, candidates)
        chosen = tuple(f for f in candidates if f not in {e.field for e in echoes})
    else:
        chosen = _check_fields(metadata, fields)
    slices = tuple(
        Slice(field, value, classification_metrics(true[index], pred[index], class_names))
        for field in chosen
        for value, index in _groups(metadata, field)
    )
    return SliceReport(slices=slices, worst=worst_slice(slices, min_count), fields=tuple(chosen),
                       min_count=min_count, left_out=echoes)


def worst_slice(slices: Sequence[Slice], min_count: int) -> Slice | None:
    """The slice with the lowest macro recall among those of at least ``min_count`` samples (ties: the larger)."""
    ranked = [s for s in slices if s.metrics.count >= min_count and not math.isnan(s.metrics.macro_recall)]
    return min(ranked, key=lambda s: (s.metrics.macro_recall, -s.metrics.count), default=None)


def label_determined_fields(labels: Sequence[Hashable | None], metadata: Metadata,
                            fields: Sequence[str] | None = None) -> tuple[LabelEcho, ...]:
    """The metadata fields that repeat the label: every class has one value of the field (``MISSING``
    counts as a value), the field has at least two values, and at least two classes show it on
    ``MIN_SAMPLES_PER_LABEL`` samples or more. Samples whose label is None are not counted.

    ``fields`` limits the check (default: every field set on some sample). Numbers compare by value
    ("0.5" and "0.50" are one value). A one-class set has no such field: its one class would need one
    value, and a field needs two.
    """
    if len(labels) != len(metadata):
        raise DatasetError(f"{len(labels)} labels but {len(metadata)} metadata entries",
                           hint="pass one label and one metadata mapping per image, in the same order")
    names = sorted({k for sample in metadata for k in sample}) if fields is None else list(fields)
    labelled = [(label, sample) for label, sample in zip(labels, metadata) if label is not None]
    counts: dict[Hashable, int] = defaultdict(int)
    for label, _ in labelled:
        counts[label] += 1
    if sum(count >= MIN_SAMPLES_PER_LABEL for count in counts.values()) < 2:
        return ()
    echoes = [echo for echo in (_label_echo(labelled, name) for name in names) if echo is not None]
    return tuple(echoes)


def _label_echo(labelled: Sequence[tuple[Hashable, Mapping[str, str | None]]], name: str) -> LabelEcho | None:
    """``name`` as a :class:`LabelEcho` when each class has one value of it and there are two values or more."""
    first: dict[Hashable, tuple[str, str]] = {}  # class -> (its value as compared, as written)
    for label, sample in labelled:
        value = _value(sample, name)
        known = first.setdefault(label, (_comparable(value), value))
        if known[1] != value and known[0] != _comparable(value):
            return None  # a class with two values: stop at the first (most fields stop within a few rows)
    if len({compared for compared, _ in first.values()}) < 2:
        return None
    return LabelEcho(name, {str(label): first[label][1] for label in sorted(first, key=str)})


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


def _comparable(value: str) -> str:
    """A value as compared for :func:`label_determined_fields`: numbers by value, text as written."""
    try:
        number = float(value)
    except ValueError:
        return value
    return repr(number) if math.isfinite(number) else value


def _value(sample: Mapping[str, str | None], field: str) -> str:
    value = sample.get(field)
    if value is None:
        return MISSING
    text = str(value).strip()
    return text if text else MISSING
