"""The per-part deadline: a part whose answer is not ready in time gets the configured fail-safe (reject
or review), never a pass, and is counted. So is a part whose inference failed."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from inspectloop.line.decision import PartDecision
from inspectloop.runtime.decision import Decision

FAIL_SAFE_LABEL = "fail_safe"


@dataclass(frozen=True)
class DeadlineCounts:
    """Parts decided in time, parts given the fail-safe for lateness, and parts whose inference failed."""

    on_time: int
    late: int
    failed: int

    @property
    def fail_safe(self) -> int:
        """Parts that got the fail-safe, for whatever reason."""
        return self.late + self.failed


class DeadlineGate:
    """Waits for each part's answer until its deadline (``deadline_ms`` after its trigger), else answers
    ``fail_safe`` (reject or review). Thread-safe; ``counts`` says what happened so far."""

    def __init__(self, deadline_ms: float, fail_safe: Decision = Decision.REJECT) -> None:
        if not deadline_ms > 0:
            raise ValueError(f"deadline_ms must be positive, got {deadline_ms!r}")
        fail_safe = Decision(fail_safe)
        if fail_safe is Decision.PASS:
            raise ValueError("the fail-safe must be reject or review: a part nobody judged never passes")
        self.deadline_ms = deadline_ms
        self.fail_safe = fail_safe
        self._lock = threading.Lock()
        self._on_time = self._late = self._failed = 0

    @property
    def counts(self) -> DeadlineCounts:
        """How many parts were decided in time, late, or failed."""
        with self._lock:
            return DeadlineCounts(self._on_time, self._late, self._failed)

    def settle(self, answer: Future[PartDecision], *, part_id: str, frame_counter: int, triggered_at: float,
               frames: int = 1) -> PartDecision:
        """The answer if it is ready and settled by ``triggered_at`` (a ``time.monotonic()`` reading) + the
        deadline; otherwise (or if it raised) the fail-safe for ``part_id``, marked ``late``. An answer that
        was ready in time but is settled after the deadline is late too: the PLC could not have had it."""
        due = triggered_at + self.deadline_ms / 1000
        try:
            decision = answer.result(timeout=max(due - time.monotonic(), 0.0))
        except FutureTimeout:
            answer.cancel()
            return self._fail_safe(part_id, frame_counter, frames, late=True)
        except Exception:  # noqa: BLE001 (a failed inference must still give the part an answer: the fail-safe)
            return self._fail_safe(part_id, frame_counter, frames, late=False)
        if time.monotonic() > due:  # ready, but settled after the deadline (a slow decider): the line has moved on
            return self._fail_safe(part_id, frame_counter, frames, late=True)
        with self._lock:
            self._on_time += 1
        return decision

    def _fail_safe(self, part_id: str, frame_counter: int, frames: int, *, late: bool) -> PartDecision:
        with self._lock:
            if late:
                self._late += 1
            else:
                self._failed += 1
        return PartDecision(part_id=part_id, decision=self.fail_safe, label=FAIL_SAFE_LABEL,
                            frame_counter=frame_counter, frames=frames, late=True)
