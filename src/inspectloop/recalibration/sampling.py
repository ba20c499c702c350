"""A stratified sample of production records for re-annotation.

Records are grouped into strata by ``keys`` (predicted label, camera, shift by default). Each
stratum gets a share of ``size`` proportional to its count (largest remainders), but every
non-empty stratum gets at least one record when ``size`` allows, so a rare class on a quiet camera
is still looked at. Within a stratum the records are drawn at random with ``seed``; the same
records, keys, size and seed always give the same sample.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

from inspectloop.errors import RecalibrationError

R = TypeVar("R")
DEFAULT_KEYS = ("label", "camera", "shift")


def stratified_sample(records: Sequence[R], keys: Sequence[str] = DEFAULT_KEYS, *, size: int,
                      seed: int = 0) -> list[R]:
    """``size`` records drawn stratified by ``keys``; returned in their original order.

    A record is a mapping or an object with those attributes; a missing value (``None``) forms its
    own stratum. With ``size >= len(records)`` every record is returned. RecalibrationError for an
    empty input, ``size <= 0``, no keys, or a record that lacks a key.
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size <= 0:
        raise RecalibrationError(f"the sample size must be a positive whole number, got {size!r}",
                                 "ask for at least one image, e.g. size=200")
    if len(records) == 0:
        raise RecalibrationError("there are no production records to sample from",
                                 "widen the window or check that predictions are being logged")
    if not keys:
        raise RecalibrationError("no stratification keys given", f"use e.g. keys={DEFAULT_KEYS}")
    strata: dict[tuple[str, ...], list[int]] = {}
    for index, record in enumerate(records):
        strata.setdefault(tuple(_value(record, key, index) for key in keys), []).append(index)
    if size >= len(records):
        return list(records)
    order = sorted(strata)  # deterministic regardless of record order within the input
    quotas = allocate([len(strata[key]) for key in order], int(size))
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for key, quota in zip(order, quotas):
        members = strata[key]
        if quota:
            chosen.extend(int(i) for i in rng.choice(members, size=quota, replace=False))
    return [records[i] for i in sorted(chosen)]


def allocate(counts: Sequence[int], size: int) -> list[int]:
    """Per-stratum quotas summing to ``min(size, sum(counts))``: proportional by largest remainder,
    at least one per non-empty stratum when ``size`` is at least the number of non-empty strata
    (otherwise the largest strata, first in order on ties, get one each), never above a stratum's count.
    Ties go to the earlier stratum.
    """
    counts_arr = np.asarray(counts, dtype=np.int64)
    if counts_arr.ndim != 1 or np.any(counts_arr < 0):
        raise RecalibrationError(f"stratum counts must be non-negative whole numbers, got {list(counts)!r}",
                                 "count the records in each stratum")
    total = int(counts_arr.sum())
    size = min(int(size), total)
    quotas = np.zeros(len(counts_arr), dtype=np.int64)
    nonempty = np.flatnonzero(counts_arr > 0)
    if size <= 0:
        return quotas.tolist()
    if size < len(nonempty):  # not enough for one each: the biggest strata first (stable on ties)
        biggest = sorted(nonempty, key=lambda i: (-counts_arr[i], i))[:size]
        quotas[biggest] = 1
        return quotas.tolist()
    # strata whose proportional share is under one get exactly one; the rest share what is left
    forced = np.zeros(len(counts_arr), dtype=bool)
    while True:
        free = (counts_arr > 0) & ~forced
        ideal = np.where(free, (size - forced.sum()) * counts_arr / max(int(counts_arr[free].sum()), 1), 0.0)
        newly = free & (ideal < 1.0)
        if not newly.any():
            break
        forced |= newly
    quotas = np.minimum(np.where(forced, 1, np.floor(ideal)), counts_arr).astype(np.int64)
    while quotas.sum() < size:  # largest remainders first (earlier stratum on ties), among strata with room
        short = np.where(free & (quotas < counts_arr), ideal - quotas, -np.inf)
        quotas[int(np.argmax(short))] += 1
    return quotas.tolist()


def _value(record: Any, key: str, index: int) -> str:
    if isinstance(record, Mapping):
        if key not in record:
            raise RecalibrationError(f"record {index} has no {key!r} field to stratify by",
                                     f"give every record a {key!r} (None is allowed) or stratify by other keys")
        value = record[key]
    elif hasattr(record, key):
        value = getattr(record, key)
    else:
        raise RecalibrationError(f"record {index} has no {key!r} attribute to stratify by",
                                 f"give every record a {key!r} (None is allowed) or stratify by other keys")
    return "" if value is None else str(value)
