"""QC reject marks from an OPC UA tag (OpcUaQcSource) against a real asyncua server: a new tag value is a
mark; an unreachable server or an unknown tag is refused at start, in one line with the fix."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from inspectloop.errors import QcSourceError

pytest.importorskip("asyncua", reason="asyncua (the 'line' extra) is not installed: pip install 'inspectloop[line]'")

from asyncua import Client  # noqa: E402

from inspectloop.line.config import QcOpcUaConfig  # noqa: E402
from inspectloop.line.decision import PartDecision  # noqa: E402
from inspectloop.line.qc_marks import OpcUaQcSource, QcMark  # noqa: E402
from inspectloop.runtime.decision import Decision  # noqa: E402
from tests.line.brokers import free_port  # noqa: E402


async def _sequence_node_id(endpoint: str) -> str:
    """The Sequence tag's node id, found by browsing as an engineer would (UaExpert)."""
    async with Client(url=endpoint, timeout=10) as client:
        index = await client.get_namespace_index("urn:inspectloop:line")
        node = await client.nodes.objects.get_child([f"{index}:station3", f"{index}:Sequence"])
        return str(node.nodeid.to_string())


def test_each_new_tag_value_is_a_mark_and_the_value_at_start_is_not(opcua_server: Any) -> None:
    node = asyncio.run(_sequence_node_id(opcua_server.config.endpoint))
    source = OpcUaQcSource(QcOpcUaConfig(endpoint=opcua_server.config.endpoint, node=node, camera="top"))
    marks: list[QcMark] = []
    bad: list[str] = []
    arrived = threading.Event()

    def on_mark(mark: QcMark) -> None:
        marks.append(mark)
        arrived.set()

    source.start(on_mark, bad.append)
    try:
        opcua_server.publish(PartDecision(part_id="A-2", decision=Decision.REJECT, label="scratch", frame_counter=2))
        assert arrived.wait(10), "no mark within 10 s of the tag changing"
    finally:
        source.close()
    assert bad == []
    assert [(m.frame_counter, m.camera, m.source) for m in marks] == [
        (opcua_server.sequence, "top", f"OPC UA {opcua_server.config.endpoint} tag {node}")]


def test_an_unreachable_qc_server_is_refused_at_start_with_the_fix() -> None:
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}/qc/"  # nothing listens there
    source = OpcUaQcSource(QcOpcUaConfig(endpoint=endpoint, node="ns=2;s=QC.Rejected", timeout_s=2))
    with pytest.raises(QcSourceError) as caught:
        source.start(lambda mark: None, lambda why: None)
    assert caught.value.message.startswith(f"cannot reach the QC's OPC UA server at {endpoint}: ")
    assert caught.value.hint == ("check collect.qc.opcua.endpoint (address and port), the network, and that the "
                                 "server is running")


def test_an_unknown_tag_is_refused_at_start_naming_it(opcua_server: Any) -> None:
    source = OpcUaQcSource(QcOpcUaConfig(endpoint=opcua_server.config.endpoint, node="ns=2;s=QC.Nope"))
    with pytest.raises(QcSourceError) as caught:
        source.start(lambda mark: None, lambda why: None)
    assert "has no tag ns=2;s=QC.Nope" in caught.value.message
    assert "collect.qc.opcua.node" in (caught.value.hint or "")
