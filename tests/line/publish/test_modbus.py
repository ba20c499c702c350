"""Decisions into a PLC's holding registers over Modbus TCP: a real pymodbus TCP server stands in for the PLC
(started by the test, stopped and restarted for the outage), and the outbox delivers through it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from inspectloop.errors import LineConfigError, PublishError

pytest.importorskip("pymodbus", reason="pymodbus (the 'line' extra) is not installed: pip install 'inspectloop[line]'")

from inspectloop.line.config import ModbusConfig, parse_line_config  # noqa: E402
from inspectloop.line.decision import PartDecision  # noqa: E402
from inspectloop.line.outbox import DecisionJournal, Delivery  # noqa: E402
from inspectloop.line.publish.modbus import NO_CLASS, ModbusPlcWriter, ascii_registers  # noqa: E402
from inspectloop.runtime.decision import Decision  # noqa: E402
from tests.line.brokers import ModbusPlc, free_port  # noqa: E402

# The PLC program's data block: decision 0, class 1, late 2, frame counter 3-4, part id 10-13, sequence 20.
MAP = {"decision": 0, "class_index": 1, "late": 2, "frame_counter": 3, "part_id": 10, "sequence": 20}


@pytest.fixture
def plc() -> Iterator[ModbusPlc]:
    server = ModbusPlc(free_port())
    server.start()
    yield server
    server.close()


def _config(port: int, **changes: object) -> ModbusConfig:
    fields: dict[str, object] = {"host": "127.0.0.1", "port": port, "registers": MAP, "part_id_registers": 4,
                                 "timeout_s": 1.0}
    return ModbusConfig.model_validate({**fields, **changes})


def _decision(part: str, decision: Decision = Decision.REJECT, counter: int = 7, **extra: object) -> PartDecision:
    return PartDecision(part_id=part, decision=decision, label="scratch", frame_counter=counter,
                        **{"class_index": 2, **extra})  # type: ignore[arg-type]


def _text(words: list[int]) -> str:
    return b"".join(w.to_bytes(2, "big") for w in words).rstrip(b"\0").decode("ascii")


def _sent(plc: ModbusPlc) -> list[tuple[int, str]]:
    """(sequence, part id) of every decision the PLC was sent, in order: the part id registers as they stood
    when the sequence register was written (sequence last, so they belong to it)."""
    seen, part = [], ""
    for address, values in plc.writes:
        if address <= MAP["part_id"] < address + len(values):
            part = _text(values[MAP["part_id"] - address:MAP["part_id"] - address + 4])
        if address == MAP["sequence"]:
            seen.append((values[0], part))
    return seen


def test_a_decision_lands_in_the_plcs_registers_as_mapped(plc: ModbusPlc) -> None:
    with ModbusPlcWriter(_config(plc.port)) as writer:
        writer.publish(_decision("A-17", counter=70000 + 2**32))  # a counter past 32 bits wraps, as a PLC's does
        writer.publish(_decision("B-200", Decision.REVIEW, counter=9, class_index=None, late=True))
    assert plc.registers(0, 5) == [3, NO_CLASS, 1, 0, 9]
    assert _text(plc.registers(10, 4)) == "B-200"
    assert plc.registers(20, 1) == [2]
    first = plc.writes[0]
    assert first == (0, [2, 2, 0, 70000 >> 16, 70000 & 0xFFFF])  # fields in one request per run of registers
    assert plc.writes[-1] == (20, [2])  # sequence last


def test_the_sequence_continues_from_what_the_plc_holds(plc: ModbusPlc) -> None:
    """A station restart must not look like a gap (or a reset) to the PLC program."""
    with ModbusPlcWriter(_config(plc.port)) as writer:
        writer.publish(_decision("A-1"))
    with ModbusPlcWriter(_config(plc.port)) as writer:
        writer.publish(_decision("A-2"))
    assert [seq for seq, _ in _sent(plc)] == [1, 2]


def test_long_part_ids_keep_their_last_characters() -> None:
    assert ascii_registers("LOT42-000123", 4) == ascii_registers("2-000123", 4)
    assert ascii_registers("ab", 2) == [0x6162, 0]


def test_overlapping_registers_are_refused_naming_both() -> None:
    with pytest.raises(LineConfigError) as caught:
        parse_line_config({"publish": {"modbus": {"host": "plc", "registers": {"frame_counter": 3, "part_id": 4}}}})
    assert "registers.frame_counter uses 3..4, which overlaps registers.part_id at 4" in caught.value.message


def test_an_unreachable_plc_is_refused_at_start_in_one_line_with_the_fix() -> None:
    port = free_port()  # nothing listens there
    started = time.monotonic()
    with pytest.raises(PublishError) as caught:
        ModbusPlcWriter(_config(port)).start()
    assert caught.value.message == (f"cannot reach the PLC's Modbus TCP server at 127.0.0.1:{port} (device 1): "
                                    "Connection refused")
    assert caught.value.hint == ("check publish.modbus.host and port, the network, and that the PLC's Modbus TCP "
                                 "server is enabled")
    assert time.monotonic() - started < 5


def test_a_register_the_plc_does_not_have_is_refused_at_start_naming_it(plc: ModbusPlc) -> None:
    with pytest.raises(PublishError) as caught:
        ModbusPlcWriter(_config(plc.port, registers={**MAP, "sequence": 900})).start()
    assert "refused reading holding register 900 (publish.modbus.registers.sequence)" in caught.value.message
    assert "illegal data address" in caught.value.message
    assert "fix publish.modbus.registers.sequence" in (caught.value.hint or "")


def test_plc_down_and_back_loses_no_decision_and_leaves_no_gap(plc: ModbusPlc, tmp_path: Path) -> None:
    """Decisions made while the PLC is off the network wait in the outbox and reach it, in order, once it
    is back; the PLC sees sequence 1, 2, 3, ... with no number skipped or used twice."""
    journal = DecisionJournal(tmp_path)
    journal.open()
    writer = ModbusPlcWriter(_config(plc.port))
    writer.start()
    delivery = Delivery(writer, journal)
    delivery.start()
    try:
        for n in range(1, 4):
            journal.append(_decision(f"P-{n}"))
            delivery.notify()
        assert delivery.drain(10)
        plc.stop()
        for n in range(4, 9):
            journal.append(_decision(f"P-{n}"))  # acknowledged by the journal (synced) while the PLC is away
            delivery.notify()
        time.sleep(1.5)
        assert journal.waiting(delivery.target) == 5 and delivery.down is not None
        assert "could not write part P-4's decision" in delivery.down or "cannot reach" in delivery.down
        plc.start()
        assert delivery.drain(20), f"still waiting after the PLC came back: {delivery.down}"
    finally:
        delivery.stop()
        journal.close()
    assert _sent(plc) == [(n, f"P-{n}") for n in range(1, 9)]
