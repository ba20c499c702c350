"""The shared OPC UA client link, against a real asyncua server (inspectloop's own result server, the
``opcua_server`` fixture): connect-and-setup, refusal in the caller's own words, nothing left behind."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from inspectloop.errors import InspectloopError, PublishError, QcSourceError

pytest.importorskip("asyncua", reason="asyncua (the 'line' extra) is not installed: pip install 'inspectloop[line]'")

from inspectloop.line.opcua_link import open_client_link  # noqa: E402
from tests.line.brokers import free_port  # noqa: E402


async def _sequence(client: Any) -> int:
    index = await client.get_namespace_index("urn:inspectloop:line")
    node = await client.nodes.objects.get_child([f"{index}:station3", f"{index}:Sequence"])
    return int(await node.read_value())


def _threads(name: str) -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == name]


def test_setup_runs_on_the_connected_client_and_close_leaves_nothing(opcua_server: Any) -> None:
    seen: list[int] = []

    async def setup(client: Any) -> None:
        seen.append(await _sequence(client))

    link = open_client_link(opcua_server.config.endpoint, 5, "link-ok", setup, error=QcSourceError,
                            server="the test server", fix="start it")
    try:
        assert _threads("link-ok")
        assert link.call(_sequence(link.client)) == 1
    finally:
        link.close()
    link.close()  # twice is safe
    assert seen == [1]
    assert not _threads("link-ok")
    with pytest.raises(QcSourceError, match="is closed"):  # the link's own error type, not always PublishError
        link.call(_sequence(None))


@pytest.mark.parametrize(("error", "server", "fix"), [
    (PublishError, "the PLC's OPC UA server", "check publish.plc.endpoint"),
    (QcSourceError, "the QC's OPC UA server", "check collect.qc.opcua.endpoint"),
])
def test_an_unreachable_server_is_refused_in_the_callers_own_words(error: type[InspectloopError], server: str,
                                                                   fix: str) -> None:
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}/nobody/"  # nothing listens there

    async def never(client: Any) -> None:
        raise AssertionError("setup ran without a server")

    with pytest.raises(InspectloopError) as caught:
        open_client_link(endpoint, 2, "link-unreachable", never, error=error, server=server, fix=fix)
    assert caught.type is error
    prefix = f"cannot reach {server} at {endpoint}: "
    assert caught.value.message.startswith(prefix) and len(caught.value.message) > len(prefix)  # says why
    assert caught.value.hint == fix
    assert caught.value.__cause__ is None and caught.value.__suppress_context__  # one line, no chained traceback
    assert not _threads("link-unreachable")


def test_a_setup_error_passes_through_unchanged_and_the_link_is_closed(opcua_server: Any) -> None:
    async def setup(client: Any) -> None:
        raise QcSourceError("no tag ns=2;s=Nope", "fix the tag")

    with pytest.raises(QcSourceError, match="no tag ns=2;s=Nope"):
        open_client_link(opcua_server.config.endpoint, 5, "link-setup", setup, error=PublishError,
                         server="the test server", fix="start it")
    assert not _threads("link-setup")


def test_it_works_from_code_that_already_runs_an_event_loop(opcua_server: Any) -> None:
    """A notebook cell or an async web handler calls the plain API with a loop running on its thread
    (``asyncio.run`` would refuse there): the link's loop is on a thread of its own."""
    async def handler() -> int:
        assert asyncio.get_running_loop()
        link = open_client_link(opcua_server.config.endpoint, 5, "link-in-loop", _nothing, error=PublishError,
                                server="the test server", fix="start it")
        try:
            return int(link.call(_sequence(link.client)))
        finally:
            link.close()

    assert asyncio.run(handler()) == 1


async def _nothing(client: Any) -> None:
    return None
