"""Stratified sampling of production for re-annotation: allocation, determinism, coverage, errors."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pytest

from inspectloop.recalibration import RecalibrationError, allocate, stratified_sample


def _records(counts: dict[tuple[str, str, str], int]) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for (label, camera, shift), n in counts.items():
        start = len(out)
        out.extend({"id": start + k, "label": label, "camera": camera, "shift": shift} for k in range(n))
    return out


@pytest.mark.parametrize(("counts", "size", "expected"), [
    ([50, 30, 20], 10, [5, 3, 2]),           # exactly proportional
    ([97, 2, 1], 10, [8, 1, 1]),              # the rare strata get one each, the rest proportional
    ([5, 0, 5], 4, [2, 0, 2]),                # an empty stratum gets nothing
    ([3, 1, 1, 1], 2, [1, 0, 0, 0] and [1, 1, 0, 0]),  # too few for one each: biggest first, then order
    ([2, 100], 80, [2, 78]),                  # largest remainder: 1.57 -> 2, 78.4 -> 78
    ([1, 3, 40], 30, [1, 2, 27]),            # one reserved, 29 shared 2.02 / 26.98
    ([4, 4], 100, [4, 4]),                    # size above the total: everything
    ([1, 1, 1], 3, [1, 1, 1]),
])
def test_allocate(counts: list[int], size: int, expected: list[int]) -> None:
    assert allocate(counts, size) == expected


def test_allocate_always_sums_to_size_and_respects_capacity() -> None:
    counts = [13, 1, 7, 0, 250, 3, 3, 40]
    for size in range(1, sum(counts) + 1):
        quotas = allocate(counts, size)
        assert sum(quotas) == size
        assert all(0 <= q <= c for q, c in zip(quotas, counts))
        if size >= 7:  # seven non-empty strata
            assert all(q >= 1 for q, c in zip(quotas, counts) if c)


def test_sample_is_deterministic_stratified_and_in_input_order() -> None:
    records = _records({("good", "cam-1", "day"): 300, ("good", "cam-2", "night"): 100,
                        ("scratch", "cam-1", "day"): 6, ("dent", "cam-2", "day"): 2})
    first = stratified_sample(records, size=40, seed=3)
    assert first == stratified_sample(records, size=40, seed=3)
    assert first != stratified_sample(records, size=40, seed=4)
    assert [r["id"] for r in first] == sorted(r["id"] for r in first)
    strata = Counter((r["label"], r["camera"], r["shift"]) for r in first)
    assert strata == {("good", "cam-1", "day"): 29, ("good", "cam-2", "night"): 9,  # 38 x (3/4, 1/4), tie -> first
                      ("scratch", "cam-1", "day"): 1, ("dent", "cam-2", "day"): 1}


def test_sample_accepts_objects_custom_keys_and_none() -> None:
    @dataclass
    class Prediction:
        label: str
        camera: str | None

    records = [Prediction("good", "a")] * 10 + [Prediction("bad", None)] * 2
    picked = stratified_sample(records, keys=("label", "camera"), size=3, seed=0)
    assert Counter(p.label for p in picked) == {"good": 2, "bad": 1}


def test_sample_larger_than_input_returns_everything() -> None:
    records = _records({("good", "c", "s"): 3})
    assert stratified_sample(records, size=10) == records


@pytest.mark.parametrize(("records", "size", "message"), [
    ([], 5, "no production records"),
    ([{"label": "a", "camera": "c", "shift": "s"}], 0, "positive whole number"),
    ([{"label": "a", "camera": "c", "shift": "s"}], -2, "positive whole number"),
    ([{"label": "a", "camera": "c", "shift": "s"}], 1.5, "positive whole number"),
    ([{"label": "a", "camera": "c"}], 1, "no 'shift' field"),
])
def test_sample_errors(records: list[dict[str, str]], size: int, message: str) -> None:
    with pytest.raises(RecalibrationError, match=message):
        stratified_sample(records, size=size)
