"""inspectloop as an OPC UA server (asyncua, the ``line`` extra) exposing each part's result as variables
under ``Objects/<station>``: PartId, Decision, Label, FrameCounter, Confidence, Late, DecidedAt, and
Sequence, written last, which a PLC watches (or subscribes to) to know a new result is complete.

asyncua is asynchronous; the server runs on its own event loop in a background thread so the
acquisition loop can publish from plain code.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from datetime import datetime
from types import ModuleType, TracebackType
from typing import Any
from urllib.parse import urlsplit

from inspectloop.errors import PublishError, require
from inspectloop.line.config import OpcUaConfig
from inspectloop.line.decision import PartDecision

RESULT_VARIABLES = ("PartId", "Decision", "Label", "FrameCounter", "Confidence", "Late", "DecidedAt", "Sequence")
_TIMEOUT_S = 15.0  # asyncua builds its standard address space at start: about a second on a slow core


def asyncua() -> ModuleType:
    """The ``asyncua`` module (MissingExtraError naming the ``line`` extra when absent)."""
    return require("asyncua", "line")


class OpcUaResultServer:
    """An OPC UA server with one object per station holding the latest part's result (see module doc).

    ``start`` binds the endpoint (PublishError if it cannot), ``publish`` writes one result, ``close``
    stops the server. ``sequence`` counts results published. Usable as a context manager.
    """

    def __init__(self, config: OpcUaConfig) -> None:
        self.config = config
        self.sequence = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: Any = None
        self._nodes: dict[str, Any] = {}

    def __enter__(self) -> OpcUaResultServer:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    @property
    def target(self) -> str:
        """Where the results are served, for messages."""
        return f"OPC UA {self.config.endpoint}"

    def start(self) -> None:
        """Bind the endpoint and expose the result variables."""
        parts = urlsplit(self.config.endpoint)
        if parts.scheme != "opc.tcp" or not parts.hostname or parts.port is None:
            raise PublishError(f"OPC UA endpoint {self.config.endpoint!r} is not opc.tcp://HOST:PORT/PATH",
                               "set publish.opcua.endpoint like opc.tcp://0.0.0.0:4840/inspectloop/")
        asyncua()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="opcua-server", daemon=True)
        self._thread.start()
        try:
            self._call(self._start())
        except OSError as exc:
            self.close()
            raise PublishError(f"cannot serve OPC UA at {self.config.endpoint}: {exc.strerror or exc}",
                               "use a free port and an address of this machine (0.0.0.0 for all) in "
                               "publish.opcua.endpoint") from None
        except BaseException:
            self.close()
            raise

    def publish(self, decision: PartDecision) -> None:
        """Write one part's result; Sequence last, so a reader that sees it change sees the whole result."""
        if self._server is None:
            raise PublishError("the OPC UA server is not started", "call start() first")
        self._call(self._write(decision))

    def close(self) -> None:
        """Stop the server and its thread (safe to call twice)."""
        loop, thread, server = self._loop, self._thread, self._server
        self._loop = self._thread = self._server = None
        if loop is None:
            return
        if server is not None:
            asyncio.run_coroutine_threadsafe(server.stop(), loop).result(_TIMEOUT_S)
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(_TIMEOUT_S)
        loop.close()

    def _call(self, coroutine: Any) -> Any:
        if self._loop is None:
            raise PublishError("the OPC UA server is not started", "call start() first")
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(_TIMEOUT_S)

    async def _start(self) -> None:
        ua = require("asyncua.ua", "line", package="asyncua")
        server = asyncua().Server()
        await server.init()
        server.set_endpoint(self.config.endpoint)
        server.set_server_name(f"inspectloop {self.config.station}")
        index = await server.register_namespace(self.config.namespace)
        station = await server.nodes.objects.add_object(index, self.config.station)
        initial: dict[str, tuple[Any, Any]] = {
            "PartId": ("", ua.VariantType.String), "Decision": ("", ua.VariantType.String),
            "Label": ("", ua.VariantType.String), "FrameCounter": (0, ua.VariantType.Int64),
            "Confidence": (0.0, ua.VariantType.Double), "Late": (False, ua.VariantType.Boolean),
            "DecidedAt": (datetime.fromtimestamp(0), ua.VariantType.DateTime),
            "Sequence": (0, ua.VariantType.Int64)}
        for name in RESULT_VARIABLES:
            value, kind = initial[name]
            self._nodes[name] = await station.add_variable(index, name, value, varianttype=kind)
        await server.start()
        self._server = server

    async def _write(self, decision: PartDecision) -> None:
        ua = require("asyncua.ua", "line", package="asyncua")
        values: dict[str, tuple[Any, Any]] = {
            "PartId": (decision.part_id, ua.VariantType.String),
            "Decision": (decision.decision.value, ua.VariantType.String),
            "Label": (decision.label, ua.VariantType.String),
            "FrameCounter": (decision.frame_counter, ua.VariantType.Int64),
            "Confidence": (-1.0 if decision.confidence is None else decision.confidence, ua.VariantType.Double),
            "Late": (decision.late, ua.VariantType.Boolean),
            "DecidedAt": (decision.decided_at, ua.VariantType.DateTime)}
        for name, (value, kind) in values.items():
            await self._nodes[name].write_value(ua.Variant(value, kind))
        self.sequence += 1
        await self._nodes["Sequence"].write_value(ua.Variant(self.sequence, ua.VariantType.Int64))
