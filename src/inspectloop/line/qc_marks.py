"""The existing QC's reject marks, as collection mode hears them: one :class:`QcMark` per rejected part,
from an MQTT message (paho-mqtt) or a new value of an OPC UA tag (asyncua subscription), both in the
``line`` extra. Each source is started once (``start``): an unreachable broker or endpoint, or an
unknown tag, is refused then with the reason and the fix (QcSourceError), never later in the run.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from inspectloop.errors import QcSourceError, require
from inspectloop.line.config import QcConfig, QcMqttConfig, QcOpcUaConfig
from inspectloop.line.opcua_link import OpcUaClientLink, open_client_link
from inspectloop.line.publish.mqtt import make_client, stop_client

MARK_FIX = ('send JSON such as {"part_id": "station1-...-000042"} or {"frame_counter": 42, "camera": "top"}, '
            "or the bare id or counter")


@dataclass(frozen=True)
class QcMark:
    """One part the existing QC rejected, named by the station's ``part_id`` or by a camera's
    ``frame_counter`` (``camera`` None: the part's first frame); ``at`` is when (``time.time()``), the
    mark's own time when it gave one, else when it was received; ``source`` where it came from."""

    part_id: str | None
    frame_counter: int | None
    at: float
    source: str
    camera: str | None = None

    def describe(self) -> str:
        """The mark in words, for logs and the summary."""
        what = f"part {self.part_id}" if self.part_id else f"frame {self.frame_counter}" + (
            f" of {self.camera}" if self.camera else "")
        return f"QC reject of {what} from {self.source}"


def parse_mark(payload: bytes | str | int, source: str, *, received: float | None = None,
               match: str | None = None, camera: str | None = None) -> QcMark:
    """A mark from a message or tag value: a JSON object (``part_id``, ``frame_counter``, ``camera``, ``at``)
    or a bare value (an integer is a frame counter, text a part id; ``match`` forces one). ValueError if
    it names no part."""
    received = time.time() if received is None else received
    value: Any = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            value = value.strip()
    if isinstance(value, dict):
        part_id = value.get("part_id")
        counter = value.get("frame_counter")
        at = _timestamp(value.get("at"), received)
        camera = value.get("camera") or camera
    else:
        as_counter = match == "frame_counter" or (match is None and _integer(value))
        part_id, counter, at = (None, value, received) if as_counter else (value, None, received)
    if counter is not None and not _integer(counter):
        raise ValueError(f"frame_counter {counter!r} is not a whole number")
    if not part_id and counter is None:
        raise ValueError(f"the QC message {str(payload)[:80]!r} names no part")
    return QcMark(None if part_id is None else str(part_id), None if counter is None else int(counter), at, source,
                  None if camera is None else str(camera))


def _integer(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, str) and value.isdigit()


def _timestamp(value: Any, default: float) -> float:
    if value is None:
        return default
    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        raise ValueError(f"at {value!r} is not an ISO 8601 time") from None


OnMark = Callable[[QcMark], None]
OnBadMark = Callable[[str], None]


class QcSource(Protocol):
    """Where reject marks come from: ``start`` (refusing an unreachable source), then marks until ``close``."""

    @property
    def target(self) -> str: ...

    def start(self, on_mark: OnMark, on_bad: OnBadMark) -> None: ...

    def close(self) -> None: ...


def qc_sources(config: QcConfig) -> list[QcSource]:
    """The sources ``config`` names (not started)."""
    sources: list[QcSource] = []
    if config.mqtt is not None:
        sources.append(MqttQcSource(config.mqtt))
    if config.opcua is not None:
        sources.append(OpcUaQcSource(config.opcua))
    return sources


class MqttQcSource:
    """Subscribes to the QC's reject topic (QoS 1); paho reconnects by itself after a broker restart and
    subscribes again."""

    def __init__(self, config: QcMqttConfig) -> None:
        self.config = config
        self._client: Any = None
        self._subscribed = threading.Event()
        self._refused: str | None = None

    @property
    def target(self) -> str:
        return f"MQTT {self.config.host}:{self.config.port} topic {self.config.topic}"

    def start(self, on_mark: OnMark, on_bad: OnBadMark) -> None:
        """Connect, subscribe and wait for the broker to confirm (QcSourceError naming the fix if it does not)."""
        client = make_client(self.config.client_id, self.config.username, self.config.password)
        client.on_connect = self._on_connect
        client.on_subscribe = lambda *_: self._subscribed.set()
        client.on_message = lambda _c, _u, message: _deliver(message.payload, self.target, on_mark, on_bad)
        try:
            client.connect(self.config.host, self.config.port, keepalive=30)
        except OSError as exc:
            raise QcSourceError(f"cannot reach the QC's MQTT broker at {self.config.host}:{self.config.port}: "
                                f"{exc.strerror or exc}", "start the broker, or fix collect.qc.mqtt.host and port "
                                "in the line config") from None
        client.loop_start()
        self._client = client
        if not self._subscribed.wait(self.config.connect_timeout_s) or self._refused:
            why = self._refused or f"no subscription within {self.config.connect_timeout_s:g} s"
            self.close()
            raise QcSourceError(f"the QC's MQTT broker at {self.config.host}:{self.config.port} did not accept "
                                f"the subscription to {self.config.topic}: {why}",
                                "check collect.qc.mqtt username, password, client_id and topic against the broker")

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            stop_client(client)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            self._refused = str(reason)
            self._subscribed.set()
            return
        client.subscribe(self.config.topic, qos=1)  # again after every reconnect


class OpcUaQcSource:
    """Subscribes to one tag on the QC's (or the PLC's) OPC UA server; each new value is a reject mark (the
    value already there at start is not: it is an earlier reject)."""

    def __init__(self, config: QcOpcUaConfig) -> None:
        self.config = config
        self._link: OpcUaClientLink | None = None

    @property
    def target(self) -> str:
        return f"OPC UA {self.config.endpoint} tag {self.config.node}"

    def start(self, on_mark: OnMark, on_bad: OnBadMark) -> None:
        """Connect, find the tag and subscribe to it (QcSourceError naming the endpoint or tag and the fix)."""
        self._link = open_client_link(
            self.config.endpoint, self.config.timeout_s, "opcua-qc",
            lambda client: self._subscribe(client, on_mark, on_bad), error=QcSourceError,
            server="the QC's OPC UA server", fix="check collect.qc.opcua.endpoint (address and port), the network, "
            "and that the server is running")

    def close(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            link.close()

    async def _subscribe(self, client: Any, on_mark: OnMark, on_bad: OnBadMark) -> None:
        ua = require("asyncua.ua", "line", package="asyncua")
        try:
            node = client.get_node(self.config.node)
            await node.read_value()
        except (ua.UaError, ValueError) as exc:
            raise QcSourceError(f"the QC's OPC UA server at {self.config.endpoint} has no tag {self.config.node}: "
                                f"{exc}", "fix collect.qc.opcua.node: browse the server (e.g. with UaExpert) for "
                                "the reject tag's node id") from None
        handler = _TagHandler(self, on_mark, on_bad)
        subscription = await client.create_subscription(50, handler)
        # a queue on the server: two rejects within one publishing interval are two marks, not one
        await subscription.subscribe_data_change(node, queuesize=100)


class _TagHandler:
    """asyncua's data-change callback: skips the first notification (the tag's value at subscribe)."""

    def __init__(self, source: OpcUaQcSource, on_mark: OnMark, on_bad: OnBadMark) -> None:
        self.source, self.on_mark, self.on_bad = source, on_mark, on_bad
        self._first = True

    def datachange_notification(self, node: Any, value: Any, data: Any) -> None:
        if self._first:
            self._first = False
            return
        config = self.source.config
        try:
            mark = parse_mark(value if isinstance(value, int | str) else str(value), self.source.target,
                              match=config.match, camera=config.camera)
        except ValueError as exc:
            self.on_bad(f"{self.source.target}: {exc}")
            return
        self.on_mark(mark)


def _deliver(payload: bytes, target: str, on_mark: OnMark, on_bad: OnBadMark) -> None:
    try:
        mark = parse_mark(payload, target)
    except ValueError as exc:
        on_bad(f"{target}: {exc}; {MARK_FIX}")
        return
    on_mark(mark)
