"""The decision outbox: journaled durably, delivered in order per publisher, kept while a publisher is down
and across restarts. The publisher here is an in-memory line controller that can be switched off."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from inspectloop.errors import PublishError
from inspectloop.line import outbox
from inspectloop.line.decision import PartDecision
from inspectloop.line.outbox import DecisionJournal, Delivery


class SwitchableLine:
    """A publisher whose target can be down (publish and start fail) or up."""

    target = "test line"

    def __init__(self) -> None:
        self.up = threading.Event()
        self.up.set()
        self.received: list[str] = []

    def start(self) -> None:
        if not self.up.is_set():
            raise PublishError("the line is down", "bring it back")

    def publish(self, decision: PartDecision) -> None:
        if not self.up.is_set():
            raise PublishError("the line is down", "bring it back")
        self.received.append(decision.part_id)

    def close(self) -> None:
        pass


def _decision(n: int) -> PartDecision:
    return PartDecision(part_id=f"P-{n}", decision="pass", label="good", frame_counter=n)


def _journal(folder: Path, *parts: int) -> DecisionJournal:
    journal = DecisionJournal(folder)
    journal.open()
    for n in parts:
        journal.append(_decision(n))
    return journal


def test_positions_and_entries_survive_a_restart(tmp_path: Path) -> None:
    journal = _journal(tmp_path)
    journal.track("plc")
    for n in (1, 2, 3):
        journal.append(_decision(n), reason="late" if n == 2 else "model", requests=(f"P-{n}.top.0",))
    journal.delivered("plc", 1)
    journal.close()
    again = _journal(tmp_path)
    assert again.last_seq == 3 and again.waiting("plc") == 2
    assert [(e.seq, e.decision.part_id, e.reason, e.requests) for e in again.after(1)] == [
        (2, "P-2", "late", ("P-2.top.0",)), (3, "P-3", "model", ("P-3.top.0",))]
    again.track("mqtt")  # a publisher configured later starts at the end: it is not sent old decisions
    assert again.waiting("mqtt") == 0 and again.append(_decision(4)).seq == 4


def test_a_line_torn_by_a_crash_is_cut_and_the_next_append_is_whole(tmp_path: Path) -> None:
    """The torn line stayed, and the next append was glued onto it: unreadable at the next start."""
    _journal(tmp_path, 1, 2).close()
    with (tmp_path / outbox.JOURNAL_FILE).open("a") as handle:
        handle.write('{"seq":3,"decision":{"part_')
    journal = _journal(tmp_path, 3)
    journal.close()
    assert [e.decision.part_id for e in _journal(tmp_path).after(0)] == ["P-1", "P-2", "P-3"]


def test_entries_beyond_the_memory_tail_are_read_from_the_file(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outbox, "TAIL", 3)
    journal = _journal(tmp_path, *range(1, 11))
    assert [e.seq for e in journal.after(2, most=4)] == [3, 4, 5, 6]
    assert [e.seq for e in journal.after(8)] == [9, 10] and journal.after(10) == []


def test_a_long_journal_is_closed_in_segments_and_read_across_them(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outbox, "SEGMENT_BYTES", 600)  # about two entries per file
    monkeypatch.setattr(outbox, "TAIL", 2)
    journal = _journal(tmp_path, *range(1, 8))
    journal.track("plc")
    journal.close()
    segments = sorted(p.name for p in tmp_path.glob("decisions.*-*.jsonl"))
    assert len(segments) >= 2 and segments[0].startswith("decisions.000000000001-")
    again = _journal(tmp_path, 8)  # a restart continues the numbering, without reading the closed files
    assert again.last_seq == 8 and [e.seq for e in again.after(0)] == list(range(1, 9))
    assert [e.seq for e in again.after(3, most=2)] == [4, 5]


def test_a_publisher_that_is_down_gets_every_decision_in_order_once_back(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outbox, "RETRY_S", (0.01,))
    journal = _journal(tmp_path)
    line = SwitchableLine()
    delivery = Delivery(line, journal)
    delivery.start()
    for n in range(1, 4):
        journal.append(_decision(n))
        delivery.notify()
    assert delivery.drain(5)
    line.up.clear()
    for n in range(4, 9):
        journal.append(_decision(n))
        delivery.notify()
    assert not delivery.drain(0.2) and delivery.down == "the line is down" and journal.waiting(line.target) == 5
    line.up.set()
    assert delivery.drain(5) and delivery.down is None
    delivery.stop()
    assert line.received == [f"P-{n}" for n in range(1, 9)] and delivery.failures > 0


def test_what_a_stopped_station_could_not_deliver_goes_out_first_at_the_next_start(tmp_path: Path) -> None:
    line = SwitchableLine()
    line.up.clear()
    journal = _journal(tmp_path)
    first = Delivery(line, journal)
    first.start()
    for n in (1, 2):
        journal.append(_decision(n))
        first.notify()
    first.stop()
    journal.close()
    line.up.set()
    journal = _journal(tmp_path)
    second = Delivery(line, journal)
    second.start()
    journal.append(_decision(3))
    second.notify()
    assert second.drain(5)
    second.stop()
    assert line.received == ["P-1", "P-2", "P-3"]
