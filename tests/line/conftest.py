"""Line tests: pylon's camera emulation (two emulated cameras, no hardware), read when pylon first loads; a
real OPC UA server for the client tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

os.environ.setdefault("PYLON_CAMEMU", "2")


@pytest.fixture(scope="module")
def opcua_server() -> Iterator[Any]:
    """inspectloop's own OPC UA result server (real asyncua) on a free loopback port, station ``station3``,
    one result published (Sequence 1): a real server for the OPC UA client tests to connect to."""
    pytest.importorskip("asyncua", reason="asyncua (the 'line' extra) is not installed: pip install 'inspectloop[line]'")
    from inspectloop.line.config import OpcUaConfig
    from inspectloop.line.decision import PartDecision
    from inspectloop.line.publish.opcua import OpcUaResultServer
    from inspectloop.runtime.decision import Decision
    from tests.line.brokers import free_port

    endpoint = f"opc.tcp://127.0.0.1:{free_port()}/inspectloop/"
    with OpcUaResultServer(OpcUaConfig(endpoint=endpoint, station="station3")) as server:
        server.publish(PartDecision(part_id="A-1", decision=Decision.PASS, label="good", frame_counter=1))
        yield server
