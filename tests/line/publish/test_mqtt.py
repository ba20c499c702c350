"""MQTT publishing against a real broker (amqtt, started in-process) and a real subscriber (paho)."""

from __future__ import annotations

import json
import queue
import time

import pytest

from inspectloop.errors import PublishError

pytest.importorskip("paho.mqtt.client", reason="paho-mqtt (the 'line' extra) is not installed")
pytest.importorskip("amqtt.broker", reason="amqtt (the dev extra's test broker) is not installed")

import paho.mqtt.client as mqtt  # noqa: E402

from inspectloop.line.config import MqttConfig  # noqa: E402
from inspectloop.line.decision import PartDecision  # noqa: E402
from inspectloop.line.publish.mqtt import MqttPublisher  # noqa: E402
from inspectloop.runtime.decision import Decision  # noqa: E402
from tests.line.brokers import free_port, mqtt_broker  # noqa: E402

TOPIC = "plant/line3/station1/decision"


def _subscriber(port: int, received: queue.Queue[dict[str, object]]) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="plc")
    subscribed = queue.Queue[bool]()
    client.on_message = lambda c, u, message: received.put(json.loads(message.payload))
    client.on_subscribe = lambda *args: subscribed.put(True)
    client.on_connect = lambda c, *args: c.subscribe(TOPIC, qos=1)
    client.connect("127.0.0.1", port)
    client.loop_start()
    subscribed.get(timeout=10)
    return client


def test_decisions_reach_a_subscriber_through_a_real_broker() -> None:
    port = free_port()
    received: queue.Queue[dict[str, object]] = queue.Queue()
    with mqtt_broker(port):
        plc = _subscriber(port, received)
        try:
            with MqttPublisher(MqttConfig(host="127.0.0.1", port=port, topic=TOPIC)) as publisher:
                publisher.publish(PartDecision(part_id="A-17", decision=Decision.REJECT, label="scratch",
                                               frame_counter=42, confidence=0.97, source="top", frames=2))
                publisher.publish(PartDecision(part_id="A-18", decision=Decision.REVIEW, label="fail_safe",
                                               frame_counter=44, late=True))
                assert publisher.published == 2
            first, second = received.get(timeout=10), received.get(timeout=10)
        finally:
            plc.loop_stop()
            plc.disconnect()
    assert {k: first[k] for k in ("part_id", "decision", "label", "frame_counter", "frames", "late")} == {
        "part_id": "A-17", "decision": "reject", "label": "scratch", "frame_counter": 42, "frames": 2, "late": False}
    assert (second["part_id"], second["decision"], second["late"]) == ("A-18", "review", True)


def test_broker_down_is_refused_per_part_and_back_is_found_again() -> None:
    port = free_port()
    decision = PartDecision(part_id="A-1", decision=Decision.PASS, label="good", frame_counter=1)
    with mqtt_broker(port):
        publisher = MqttPublisher(MqttConfig(host="127.0.0.1", port=port, connect_timeout_s=2))
        publisher.start()
        publisher.publish(decision)
    try:
        with pytest.raises(PublishError) as caught:
            publisher.publish(decision)  # broker down: this part's message is refused, not silently dropped
        assert "not delivered" in caught.value.message and "reconnects" in (caught.value.hint or "")
        with mqtt_broker(port):
            deadline = time.monotonic() + 15
            while True:
                try:
                    publisher.publish(decision)
                    break
                except PublishError:
                    assert time.monotonic() < deadline, "the publisher did not reconnect to the restarted broker"
                    time.sleep(0.2)
            # Disconnect before this broker stops: amqtt's shutdown can wait out a client that reconnected to it
            publisher.close()
        assert publisher.published == 2
    finally:
        publisher.close()


def test_an_unreachable_broker_is_refused_at_start_with_the_fix() -> None:
    port = free_port()  # nothing listens there
    started = time.monotonic()
    with pytest.raises(PublishError) as caught:
        MqttPublisher(MqttConfig(host="127.0.0.1", port=port, connect_timeout_s=2)).start()
    assert f"cannot reach the MQTT broker at 127.0.0.1:{port}" in caught.value.message
    assert "start the broker" in (caught.value.hint or "")
    assert time.monotonic() - started < 5


def test_publishing_before_start_is_refused() -> None:
    with pytest.raises(PublishError, match="not started"):
        MqttPublisher(MqttConfig()).publish(PartDecision(part_id="p", decision=Decision.PASS, label="good",
                                                         frame_counter=1))
