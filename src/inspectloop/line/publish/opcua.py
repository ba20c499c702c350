"""inspectloop as an OPC UA server (asyncua, the ``line`` extra) exposing each part's result as variables
under ``Objects/<station>``: PartId, Decision, Label, FrameCounter, Confidence, Late, Suspect (a camera that
failed its health check saw the part), DecidedAt, and
Sequence, written last, which a PLC watches (or subscribes to) to know a new result is complete.

asyncua is asynchronous; the server runs on its own event loop in a background thread so the
acquisition loop can publish from plain code.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from inspectloop.errors import PublishError, require
from inspectloop.line.config import OpcUaConfig, PlcConfig
from inspectloop.line.decision import PartDecision
from inspectloop.line.opcua_link import EventLoopThread, OpcUaClientLink, asyncua, open_client_link

DECISION_CODES = {"pass": 1, "reject": 2, "review": 3}  # written to a PLC's integer decision tag
RESULT_VARIABLES = ("PartId", "Decision", "Label", "FrameCounter", "Confidence", "Late", "Suspect", "DecidedAt",
                    "Sequence")


class OpcUaResultServer:
    """An OPC UA server with one object per station holding the latest part's result (see module doc).

    ``start`` binds the endpoint (PublishError if it cannot), ``publish`` writes one result, ``close``
    stops the server. ``sequence`` counts results published. Usable as a context manager.
    """

    def __init__(self, config: OpcUaConfig) -> None:
        self.config = config
        self.sequence = 0
        self._loop: EventLoopThread | None = None
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
        return f"OPC UA {self.config.endpoint} (no encryption)"

    def start(self) -> None:
        """Bind the endpoint and expose the result variables."""
        parts = urlsplit(self.config.endpoint)
        if parts.scheme != "opc.tcp" or not parts.hostname or parts.port is None:
            raise PublishError(f"OPC UA endpoint {self.config.endpoint!r} is not opc.tcp://HOST:PORT/PATH",
                               "set publish.opcua.endpoint like opc.tcp://0.0.0.0:4840/inspectloop/")
        asyncua()
        self._loop = EventLoopThread("opcua-server")
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
        loop, server = self._loop, self._server
        self._loop = self._server = None
        if loop is None:
            return
        try:
            if server is not None:
                loop.call(server.stop())
        finally:
            loop.stop()

    def _call(self, coroutine: Any) -> Any:
        if self._loop is None:
            raise PublishError("the OPC UA server is not started", "call start() first")
        return self._loop.call(coroutine)

    async def _start(self) -> None:
        ua = require("asyncua.ua", "line", package="asyncua")
        server = asyncua().Server()
        await server.init()
        server.set_endpoint(self.config.endpoint)
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])  # plain: certificates are not set up yet
        server.set_server_name(f"inspectloop {self.config.station}")
        index = await server.register_namespace(self.config.namespace)
        station = await server.nodes.objects.add_object(index, self.config.station)
        initial: dict[str, tuple[Any, Any]] = {
            "PartId": ("", ua.VariantType.String), "Decision": ("", ua.VariantType.String),
            "Label": ("", ua.VariantType.String), "FrameCounter": (0, ua.VariantType.Int64),
            "Confidence": (0.0, ua.VariantType.Double), "Late": (False, ua.VariantType.Boolean),
            "Suspect": (False, ua.VariantType.Boolean), "DecidedAt": (datetime.fromtimestamp(0), ua.VariantType.DateTime),
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
            "Suspect": (decision.suspect, ua.VariantType.Boolean),
            "DecidedAt": (decision.decided_at, ua.VariantType.DateTime)}
        for name, (value, kind) in values.items():
            await self._nodes[name].write_value(ua.Variant(value, kind))
        self.sequence += 1
        await self._nodes["Sequence"].write_value(ua.Variant(self.sequence, ua.VariantType.Int64))


class OpcUaPlcWriter:
    """Writes each decision into a PLC's own OPC UA server (the nodes :class:`PlcConfig` names), each value
    in the node's own data type; an integer decision node gets :data:`DECISION_CODES`. ``start``
    connects and checks every node exists (PublishError naming the endpoint or node and the fix)."""

    def __init__(self, config: PlcConfig) -> None:
        self.config = config
        self.sequence = 0
        self._link: OpcUaClientLink | None = None
        self._nodes: dict[str, tuple[Any, Any]] = {}  # field -> (node, its VariantType)

    @property
    def target(self) -> str:
        """Where decisions go, for messages."""
        return f"PLC OPC UA {self.config.endpoint}"

    def start(self) -> None:
        """Connect to the PLC's server and find every configured node."""
        self._link = open_client_link(
            self.config.endpoint, self.config.timeout_s, "opcua-plc", self._find_nodes, error=PublishError,
            server="the PLC's OPC UA server", fix="check the PLC's address and port in publish.plc.endpoint, the "
            "network, and that the PLC's OPC UA server is enabled")

    def publish(self, decision: PartDecision) -> None:
        """Write one decision; ``sequence`` last."""
        if self._link is None:
            raise PublishError("the PLC writer is not started", "call start() first")
        ua = require("asyncua.ua", "line", package="asyncua")
        try:
            self._link.call(self._write(decision))
        except (ua.UaError, OSError, TimeoutError, asyncio.TimeoutError) as exc:
            raise PublishError(f"could not write part {decision.part_id}'s decision to {self.target}: "
                               f"{str(exc) or type(exc).__name__}",
                               "check the connection to the PLC and that each tag in publish.plc.nodes has a "
                               "type that holds its value (e.g. frame_counter in a UInt32 or larger)") from None

    def close(self) -> None:
        """Disconnect (safe to call twice)."""
        link, self._link = self._link, None
        if link is not None:
            link.close()

    async def _find_nodes(self, client: Any) -> None:
        ua = require("asyncua.ua", "line", package="asyncua")
        for field, node_id in self.config.nodes.items():
            try:
                node = client.get_node(node_id)
                kind = await node.read_data_type_as_variant_type()
            except (ua.UaError, ValueError) as exc:
                raise PublishError(f"the PLC's OPC UA server at {self.config.endpoint} has no node {node_id} "
                                   f"(for {field}): {exc}", f"fix publish.plc.nodes.{field}: browse the PLC's "
                                   "server (e.g. with UaExpert) for the tag's node id") from None
            self._nodes[field] = (node, kind)

    async def _write(self, decision: PartDecision) -> None:
        ua = require("asyncua.ua", "line", package="asyncua")
        sequence = self.sequence + 1  # taken only once every value is written: a failed write leaves no gap
        values = {"part_id": decision.part_id, "decision": decision.decision.value, "label": decision.label,
                  "frame_counter": decision.frame_counter, "late": decision.late, "sequence": sequence,
                  "suspect": decision.suspect,
                  "confidence": -1.0 if decision.confidence is None else decision.confidence}
        for field in sorted(self._nodes, key=lambda f: f == "sequence"):  # sequence last
            node, kind = self._nodes[field]
            value = values[field]
            if field == "decision" and kind != ua.VariantType.String:
                value = DECISION_CODES[str(value)]
            await node.write_value(ua.DataValue(ua.Variant(value, kind)))
        self.sequence = sequence
