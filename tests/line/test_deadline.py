"""The per-part deadline: late or failed answers become the configured fail-safe, counted."""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from inspectloop.line.deadline import FAIL_SAFE_LABEL, DeadlineGate
from inspectloop.line.decision import PartDecision
from inspectloop.runtime.decision import Decision


def _answer(delay_s: float, fail: bool = False) -> PartDecision:
    time.sleep(delay_s)
    if fail:
        raise RuntimeError("inference crashed")
    return PartDecision(part_id="p", decision=Decision.PASS, label="good", frame_counter=1)


@pytest.mark.parametrize("fail_safe", [Decision.REJECT, Decision.REVIEW])
def test_late_and_failed_parts_get_the_fail_safe_and_are_counted(fail_safe: Decision) -> None:
    # a deadline generous enough that the quick answer is settled in time even on a loaded machine
    gate = DeadlineGate(deadline_ms=400, fail_safe=fail_safe)
    with ThreadPoolExecutor(3) as pool:
        started = time.monotonic()
        futures: list[Future[PartDecision]] = [pool.submit(_answer, 0.0), pool.submit(_answer, 1.5),
                                               pool.submit(_answer, 0.0, True)]
        results = [gate.settle(f, part_id=f"p{i}", frame_counter=i, triggered_at=started)
                   for i, f in enumerate(futures)]
        waited = time.monotonic() - started
    assert waited < 1.4  # the gate answered at the deadline, not when the slow part finished
    assert results[0].decision is Decision.PASS and not results[0].late
    for late in results[1:]:
        assert (late.decision, late.label, late.late) == (fail_safe, FAIL_SAFE_LABEL, True)
    assert [r.part_id for r in results[1:]] == ["p1", "p2"]
    counts = gate.counts
    assert (counts.on_time, counts.late, counts.failed, counts.fail_safe) == (1, 1, 1, 2)


def test_an_answer_after_the_deadline_already_passed_is_late() -> None:
    gate = DeadlineGate(deadline_ms=10)
    done: Future[PartDecision] = Future()
    done.set_result(_answer(0.0))
    assert not gate.settle(done, part_id="p", frame_counter=1, triggered_at=time.monotonic()).late
    assert gate.settle(Future(), part_id="p", frame_counter=1, triggered_at=time.monotonic() - 1).late
    # ready long ago but settled only now (a decider that fell behind): the line has moved on, fail-safe
    assert gate.settle(done, part_id="p", frame_counter=1, triggered_at=time.monotonic() - 1).late
    assert gate.counts.late == 2


@pytest.mark.parametrize(("deadline_ms", "fail_safe", "says"), [
    (0, Decision.REJECT, "deadline_ms must be positive"),
    (100, Decision.PASS, "never passes"),
])
def test_bad_gate_settings_are_refused(deadline_ms: float, fail_safe: Decision, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        DeadlineGate(deadline_ms, fail_safe)
