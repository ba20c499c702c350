"""The year simulation's strategy loop on a tiny synthetic line (no images, no backbone): labels are
counted, the quarterly cycle runs on schedule, drift alerts come from the drifting camera, all seeded."""

from __future__ import annotations

import numpy as np

from benchmarks.year_simulation import (
    CAMERAS,
    MONTHS,
    Captures,
    Head,
    LineData,
    recall_table,
    run_strategy,
)

CLASSES = ("good", "scratch", "dent")


def _line(n: int = 60, dim: int = 12) -> LineData:
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 3, (len(CLASSES), dim))

    def shots(drift: float, month: int) -> Captures:
        labels = np.arange(n) % len(CLASSES)
        features = centres[labels] + rng.normal(0, 1, (n, dim)) + drift * month * np.eye(dim)[0] * 0.6
        stats = rng.normal(100, 5, (n, 5)) + np.array([-drift * month * 4, 0, 0, 0, 0])
        return Captures(features.astype(np.float32), stats, labels, month + rng.random(n), np.arange(n))

    train_y = np.arange(240) % len(CLASSES)
    train_x = (centres[train_y] + rng.normal(0, 1, (240, dim))).astype(np.float32)
    months = {camera: [shots(1.0 if camera == "cam-1" else 0.0, m) for m in range(MONTHS + 1)] for camera in CAMERAS}
    shifts = {camera: [np.array(["day", "night"] * (n // 2)) for _ in range(MONTHS + 1)] for camera in CAMERAS}
    return LineData("synthetic", CLASSES, train_x, train_y, months, shifts, evaluate=np.arange(n) % 2 == 0)


def test_strategies_on_a_synthetic_line() -> None:
    data = _line()
    head = Head.fit(data.train_x, data.train_y, "deployed")
    month0 = recall_table(np.eye(3, dtype=np.int64) * 60, CLASSES)
    baseline = {c: {"recall": 0.99} for c in month0}
    none = run_strategy(data, "none", head, baseline, 30, seed=1)
    assert none.labels == 0 and none.cycles == [] and len(none.monthly) == MONTHS + 1
    assert none.monthly[0]["confusion"].sum() == 3 * 30  # the evaluation half of 3 cameras' captures
    quarterly = run_strategy(data, "quarterly", head, baseline, 30, seed=1)
    assert [c["month"] for c in quarterly.cycles] == [3, 6, 9, 12]
    assert quarterly.labels == 4 * 30
    drift = run_strategy(data, "drift", head, baseline, 30, seed=1)
    assert drift.alerts and {a["camera"] for a in drift.alerts} == {"cam-1"}
    assert all(c["labels"] <= 30 for c in drift.cycles)  # one camera-month's labelling half holds 30
    again = run_strategy(data, "drift", head, baseline, 30, seed=1)
    assert [c["labels"] for c in again.cycles] == [c["labels"] for c in drift.cycles]
    assert [m["model"] for m in again.monthly] == [m["model"] for m in drift.monthly]
