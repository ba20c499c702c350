"""Drift over a long period: every window of months of predictions, on one process or on Ray, same answer."""

from __future__ import annotations

from datetime import timedelta

import pytest

from inspectloop.batch.engine import RayEngine
from inspectloop.errors import MonitorError
from inspectloop.monitor.history import drift_over_period, write_period_report
from inspectloop.monitor.run import record_drift_baseline
from tests.monitoring_helpers import NOW, darker, log_predictions, monitored_line
from tests.ray_helpers import local_ray  # noqa: F401 (fixture)
from tests.service_helpers import Line

WEEK = timedelta(days=7)
START = NOW - 4 * WEEK


@pytest.fixture(scope="module")
def months(tmp_path_factory: pytest.TempPathFactory) -> Line:
    """Four weeks on cam-a: two as at deployment, then the light fades to 45% for two."""
    line = monitored_line(tmp_path_factory.mktemp("months") / "ws")
    record_drift_baseline(line.workspace, cameras=["cam-a"])
    spacing = timedelta(hours=4)  # 42 a week
    for week in range(4):
        log_predictions(line, "cam-a", 60, start=START + week * WEEK, spacing=spacing * 0.65, seed=10 + week,
                        degrade=darker if week >= 2 else None)
    return line


def test_the_weeks_after_the_light_faded_fire_and_the_weeks_before_do_not(months: Line) -> None:
    result = drift_over_period(months.workspace, start=START, end=NOW, window=WEEK, permutations=200)
    assert [w.start[:10] for w in result.windows] == [(START + k * WEEK).date().isoformat() for k in range(4)]
    assert [bool(w.fired) for w in result.windows] == [False, False, True, True]
    assert all(w.embedded == 30 for w in result.windows)  # every stored image, not a sample
    assert result.images_embedded == 120
    assert {"brightness", "embedding"} <= set(result.windows[2].fired)  # the light, and what the model sees


def test_one_process_and_ray_give_the_same_windows(months: Line, local_ray: object) -> None:
    alone = drift_over_period(months.workspace, start=START, end=NOW, window=WEEK, permutations=200)
    with RayEngine(workers=2, chunk_size=16) as engine:
        spread = drift_over_period(months.workspace, start=START, end=NOW, window=WEEK, permutations=200,
                                   engine=engine)
    assert spread.engine["engine"] == "ray" and alone.windows == spread.windows
    path = write_period_report(months.workspace, spread)
    assert path.exists() and '"fired"' in path.read_text()


def test_a_period_without_enough_predictions_says_what_to_do(months: Line) -> None:
    with pytest.raises(MonitorError, match="no window .* has 500 predictions"):
        drift_over_period(months.workspace, start=START, end=NOW, window=WEEK, min_predictions=500)
    with pytest.raises(MonitorError, match="is empty"):
        drift_over_period(months.workspace, start=NOW, end=START)
