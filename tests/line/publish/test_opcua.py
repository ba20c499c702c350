"""OPC UA publishing: inspectloop's real asyncua server read by a real asyncua client (as a PLC would)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from inspectloop.errors import PublishError

pytest.importorskip("asyncua", reason="asyncua (the 'line' extra) is not installed: pip install 'inspectloop[line]'")

from asyncua import Client  # noqa: E402

from inspectloop.line.config import OpcUaConfig  # noqa: E402
from inspectloop.line.decision import PartDecision  # noqa: E402
from inspectloop.line.publish.opcua import RESULT_VARIABLES, OpcUaResultServer  # noqa: E402
from inspectloop.runtime.decision import Decision  # noqa: E402
from tests.line.brokers import free_port  # noqa: E402

NAMESPACE = "urn:inspectloop:line"


async def _read(endpoint: str, station: str) -> dict[str, object]:
    async with Client(url=endpoint, timeout=10) as client:
        index = await client.get_namespace_index(NAMESPACE)
        values = {}
        for name in RESULT_VARIABLES:
            node = await client.nodes.objects.get_child([f"{index}:{station}", f"{index}:{name}"])
            values[name] = await node.read_value()
        return values


def test_a_plc_client_reads_each_published_result() -> None:
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}/inspectloop/"
    with OpcUaResultServer(OpcUaConfig(endpoint=endpoint, station="station7")) as server:
        server.publish(PartDecision(part_id="A-17", decision=Decision.REJECT, label="scratch", frame_counter=42,
                                    confidence=0.97))
        first = asyncio.run(_read(endpoint, "station7"))
        server.publish(PartDecision(part_id="A-18", decision=Decision.PASS, label="good", frame_counter=43))
        second = asyncio.run(_read(endpoint, "station7"))
    assert {k: first[k] for k in ("PartId", "Decision", "Label", "FrameCounter", "Late", "Sequence")} == {
        "PartId": "A-17", "Decision": "reject", "Label": "scratch", "FrameCounter": 42, "Late": False, "Sequence": 1}
    assert first["Confidence"] == pytest.approx(0.97)
    assert (second["PartId"], second["Decision"], second["Sequence"], second["Confidence"]) == ("A-18", "pass", 2, -1.0)


def test_an_endpoint_in_use_is_refused_at_start_with_the_fix() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        endpoint = f"opc.tcp://127.0.0.1:{taken.getsockname()[1]}/inspectloop/"
        with pytest.raises(PublishError) as caught:
            OpcUaResultServer(OpcUaConfig(endpoint=endpoint)).start()
    assert f"cannot serve OPC UA at {endpoint}" in caught.value.message
    assert "free port" in (caught.value.hint or "")


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:4840/", "opc.tcp://127.0.0.1/inspectloop/"])
def test_a_malformed_endpoint_is_refused(endpoint: str) -> None:
    with pytest.raises(PublishError, match="is not opc.tcp://HOST:PORT/PATH"):
        OpcUaResultServer(OpcUaConfig(endpoint=endpoint)).start()
