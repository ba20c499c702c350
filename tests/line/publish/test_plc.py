"""Writing decisions into a PLC's own OPC UA server: a real asyncua server stands in for the PLC, with
the integer and string tags a PLC program would declare."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from inspectloop.errors import PublishError

pytest.importorskip("asyncua", reason="asyncua (the 'line' extra) is not installed: pip install 'inspectloop[line]'")

from asyncua import Server, ua  # noqa: E402

from inspectloop.line.config import PlcConfig  # noqa: E402
from inspectloop.line.decision import PartDecision  # noqa: E402
from inspectloop.line.publish.opcua import DECISION_CODES, EventLoopThread, OpcUaPlcWriter  # noqa: E402
from inspectloop.runtime.decision import Decision  # noqa: E402
from tests.line.brokers import free_port  # noqa: E402

TAGS = {"Decision": ua.VariantType.Int16, "PartId": ua.VariantType.String, "FrameCounter": ua.VariantType.UInt32,
        "Sequence": ua.VariantType.UInt16}


class FakePlc:
    """An OPC UA server with writable tags under ns=2;s=Inspection.<Tag>, as a PLC's data block exposes."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.loop = EventLoopThread("plc")
        self.nodes: dict[str, Any] = {}
        self.server = self.loop.call(self._start())

    async def _start(self) -> Server:
        server = Server()
        await server.init()
        server.set_endpoint(self.endpoint)
        index = await server.register_namespace("urn:plc")
        block = await server.nodes.objects.add_object(index, "Inspection")
        for name, kind in TAGS.items():
            node = await block.add_variable(ua.NodeId(f"Inspection.{name}", index), name,
                                            ua.Variant(0 if kind != ua.VariantType.String else "", kind))
            await node.set_writable()
            self.nodes[name] = node
        await server.start()
        return server

    def read(self) -> dict[str, object]:
        async def values() -> dict[str, object]:
            return {name: await node.read_value() for name, node in self.nodes.items()}
        return self.loop.call(values())

    def stop(self) -> None:
        self.loop.call(self.server.stop())
        self.loop.stop()


@pytest.fixture(scope="module")
def plc() -> Iterator[FakePlc]:
    fake = FakePlc(f"opc.tcp://127.0.0.1:{free_port()}/plc/")
    yield fake
    fake.stop()


def _config(endpoint: str, **nodes: str) -> PlcConfig:
    tags = nodes or {"decision": "ns=2;s=Inspection.Decision", "part_id": "ns=2;s=Inspection.PartId",
                     "frame_counter": "ns=2;s=Inspection.FrameCounter", "sequence": "ns=2;s=Inspection.Sequence"}
    return PlcConfig(endpoint=endpoint, nodes=tags, timeout_s=2)


def test_decisions_land_in_the_plcs_tags_in_their_own_types(plc: FakePlc) -> None:
    writer = OpcUaPlcWriter(_config(plc.endpoint))
    writer.start()
    try:
        writer.publish(PartDecision(part_id="A-17", decision=Decision.REJECT, label="scratch", frame_counter=42))
        first = plc.read()
        writer.publish(PartDecision(part_id="A-18", decision=Decision.REVIEW, label="fail_safe", frame_counter=43,
                                    late=True))
        second = plc.read()
    finally:
        writer.close()
    assert first == {"Decision": DECISION_CODES["reject"], "PartId": "A-17", "FrameCounter": 42, "Sequence": 1}
    assert second == {"Decision": DECISION_CODES["review"], "PartId": "A-18", "FrameCounter": 43, "Sequence": 2}


def test_an_unreachable_plc_is_refused_at_start_with_the_fix() -> None:
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}/plc/"  # nothing listens there
    with pytest.raises(PublishError) as caught:
        OpcUaPlcWriter(_config(endpoint)).start()
    assert f"cannot reach the PLC's OPC UA server at {endpoint}" in caught.value.message
    assert "publish.plc.endpoint" in (caught.value.hint or "")


def test_an_unknown_tag_is_refused_at_start_naming_it(plc: FakePlc) -> None:
    with pytest.raises(PublishError) as caught:
        OpcUaPlcWriter(_config(plc.endpoint, decision="ns=2;s=Inspection.Verdict")).start()
    assert "has no node ns=2;s=Inspection.Verdict (for decision)" in caught.value.message
    assert "publish.plc.nodes.decision" in (caught.value.hint or "")


def test_a_failed_write_leaves_no_gap_in_the_sequence(plc: FakePlc) -> None:
    """The PLC program counts on ``sequence`` rising by one per result: a decision whose write failed
    must not use up a number (a gap reads as a lost part)."""
    writer = OpcUaPlcWriter(_config(plc.endpoint))
    writer.start()
    try:
        writer.publish(PartDecision(part_id="A-20", decision=Decision.PASS, label="good", frame_counter=1))
        too_big = PartDecision(part_id="A-21", decision=Decision.PASS, label="good", frame_counter=2**40)
        with pytest.raises(PublishError, match="could not write part A-21"):  # a frame counter the PLC's UInt32 tag cannot hold: the write fails
            writer.publish(too_big)
        writer.publish(PartDecision(part_id="A-22", decision=Decision.PASS, label="good", frame_counter=3))
        after = plc.read()
    finally:
        writer.close()
    assert after["PartId"] == "A-22" and after["Sequence"] == 2
