"""Decisions to an MQTT broker (paho-mqtt, the ``line`` extra): one JSON message per part on the
configured topic, QoS 1 (the broker acknowledges each), checked connected at start."""

from __future__ import annotations

import threading
from types import ModuleType, TracebackType
from typing import Any

from inspectloop.errors import PublishError, require
from inspectloop.line.config import MqttConfig
from inspectloop.line.decision import PartDecision

QOS = 1  # at least once: a decision the broker did not acknowledge is sent again, never silently lost


def paho() -> ModuleType:
    """The ``paho.mqtt.client`` module (MissingExtraError naming the ``line`` extra when absent)."""
    return require("paho.mqtt.client", "line", package="paho-mqtt")


def make_client(client_id: str, username: str | None, password: str | None) -> Any:
    """A paho client that, once connected, reconnects by itself within 10 s of a restarted broker's return."""
    mqtt = paho()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    if username is not None:
        client.username_pw_set(username, password)
    client.reconnect_delay_set(min_delay=1, max_delay=10)
    return client


def stop_client(client: Any) -> None:
    """Disconnect and stop its network loop."""
    client.disconnect()
    client.loop_stop()


class MqttPublisher:
    """An MQTT client that publishes each part's decision. ``start`` connects (PublishError naming the
    broker and the fix if it cannot); after a broker restart it reconnects by itself (paho's loop),
    and ``publish`` waits up to ``connect_timeout_s`` for the broker's acknowledgement."""

    def __init__(self, config: MqttConfig) -> None:
        self.config = config
        self.published = 0
        self._client: Any = None
        self._connected = threading.Event()
        self._refused: str | None = None

    def __enter__(self) -> MqttPublisher:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    @property
    def broker(self) -> str:
        """host:port of the broker, for messages."""
        return f"{self.config.host}:{self.config.port}"

    @property
    def target(self) -> str:
        """Where decisions go, for messages."""
        return f"MQTT {self.broker} topic {self.config.topic}"

    def start(self) -> None:
        """Connect to the broker and start the network loop."""
        client = make_client(self.config.client_id, self.config.username, self.config.password)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        try:
            client.connect(self.config.host, self.config.port, keepalive=30)
        except OSError as exc:
            raise PublishError(f"cannot reach the MQTT broker at {self.broker}: {exc.strerror or exc}",
                               "start the broker, or fix publish.mqtt.host and port in the line config") from None
        client.loop_start()
        self._client = client
        if not self._connected.wait(self.config.connect_timeout_s) or self._refused:
            why = self._refused or f"no answer within {self.config.connect_timeout_s:g} s"
            self.close()
            raise PublishError(f"the MQTT broker at {self.broker} did not accept the connection: {why}",
                               "check publish.mqtt username, password and client_id against the broker's settings")

    def publish(self, decision: PartDecision) -> None:
        """Publish one decision and wait for the broker's acknowledgement."""
        if self._client is None:
            raise PublishError("the MQTT publisher is not started", "call start() first")
        info = self._client.publish(self.config.topic, decision.to_json(), qos=QOS)
        try:
            info.wait_for_publish(self.config.connect_timeout_s)
        except (RuntimeError, ValueError) as exc:  # paho: queue full, or disconnected with nothing queued
            raise PublishError(f"decision for part {decision.part_id} not delivered to {self.broker}: {exc}",
                               "check the broker; the publisher reconnects by itself once it is back") from None
        if not info.is_published():  # a broker that just went away is noticed here, before paho sees the drop
            raise PublishError(f"decision for part {decision.part_id} not delivered to {self.broker}: no "
                               f"acknowledgement within {self.config.connect_timeout_s:g} s",
                               "check the broker and the network; the publisher reconnects by itself once it is back")
        self.published += 1

    def close(self) -> None:
        """Disconnect (safe to call twice)."""
        client, self._client = self._client, None
        if client is not None:
            stop_client(client)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self._refused = None if not reason.is_failure else str(reason)
        self._connected.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self._connected.clear()
