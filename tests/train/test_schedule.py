"""The one-cycle learning rate, by steps or by a time budget."""

from __future__ import annotations

import pytest

from inspectloop.train.schedule import END, START, OneCycle


def test_by_steps_it_warms_up_peaks_and_anneals_to_nearly_zero() -> None:
    schedule = OneCycle(peak=1.0, total_steps=100)
    rates = [schedule.rate(step, seconds=0.0) for step in range(101)]
    assert rates[0] == pytest.approx(START) and max(rates) == pytest.approx(1.0, abs=1e-3)
    assert rates.index(max(rates)) == 15 and rates[-1] == pytest.approx(END)
    assert all(a >= b for a, b in zip(rates[15:], rates[16:]))  # down only after the peak
    assert not schedule.done(99, 1e9) and schedule.done(100, 0.0)  # no budget: time does not count


def test_a_budget_that_ends_first_drives_the_schedule_to_its_end() -> None:
    schedule = OneCycle(peak=1.0, total_steps=1000, budget_seconds=60.0)
    assert schedule.progress(10, 30.0) == 0.5  # half the budget, 1% of the steps: the budget leads
    assert schedule.rate(10, 59.999) < 0.01 and schedule.done(10, 60.0)
    assert schedule.progress(900, 6.0) == 0.9  # a fast machine: the steps lead, the budget is not used up
