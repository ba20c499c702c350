"""The fields a map's points are coloured and filtered by, column by column.

Each categorical field goes out as its distinct values plus one small integer code per point (-1: not
set), so 10,000 points with a dozen fields are about a megabyte of JSON and the page colours by any field
without another request. Two kinds of column:

- fixed for a map: the version's label and split, the image's source and capture metadata (ingest never
  changes a stored image's record, and a version never changes), written beside the map once
  (:func:`fixed_table`), so a page load reads one file instead of 10,000 records;
- live: the label the labelling policy gives each image now, and a run's prediction and correctness,
  read fresh on every load (:mod:`inspectloop.datamap.points`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from inspectloop.domain import DatasetItem, ImageRecord
from inspectloop.domain.images import METADATA_FIELDS

FIXED_FIELDS = ("label", "split", "source")
META_FIELDS = tuple(f for f in METADATA_FIELDS if f != "captured_at")
LIVE_FIELDS = ("current", "prediction", "correct")


def encode_column(values: Iterable[str | None]) -> dict[str, list[Any]]:
    """Distinct values (sorted) and one code per value into them; -1 for None."""
    listed = list(values)
    distinct = sorted({v for v in listed if v is not None})
    index = {v: i for i, v in enumerate(distinct)}
    return {"values": distinct, "codes": [-1 if v is None else index[v] for v in listed]}


def encode_table(rows: Sequence[dict[str, str | None]], first: Sequence[str]) -> dict[str, dict[str, list[Any]]]:
    """Rows of field -> value as encoded columns: ``first`` in order, then any other field by name; a field
    no row sets is left out."""
    names = [*first, *sorted({key for row in rows for key in row} - set(first))]
    return {name: encode_column(row.get(name) for row in rows) for name in names
            if any(row.get(name) is not None for row in rows)}


def fixed_rows(digests: Sequence[str], items: dict[str, DatasetItem],
               records: dict[str, ImageRecord]) -> list[dict[str, str | None]]:
    """Per image: its label and split in the version, its source, and its capture metadata."""
    rows = []
    for digest in digests:
        record = records.get(digest)
        meta = record.meta.fields() if record is not None else {}
        rows.append({"label": items[digest].label, "split": items[digest].split,
                     "source": record.source.value if record is not None else None, **meta})
    return rows


def fixed_table(version: str, features: str, method: str, digests: Sequence[str], xy: Any,
                items: dict[str, DatasetItem], records: dict[str, ImageRecord]) -> dict[str, Any]:
    """The JSON-ready part of a map that never changes: digests, x, y and the fixed fields."""
    return {"version": version, "features": features, "method": method, "count": len(digests),
            "sha256": list(digests), "x": [round(float(v), 5) for v in xy[:, 0]],
            "y": [round(float(v), 5) for v in xy[:, 1]],
            "fields": encode_table(fixed_rows(digests, items, records), (*FIXED_FIELDS, *META_FIELDS))}
