"""Real servers for the publishing tests: an amqtt MQTT broker on its own event loop thread, and free ports."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def mqtt_broker(port: int) -> Iterator[Any]:
    """An amqtt broker (MIT) listening on 127.0.0.1:``port``, anonymous clients allowed; stopped on exit."""
    from amqtt.broker import Broker

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    config = {"listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
              "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}}

    async def start() -> Any:
        broker = Broker(config)
        await broker.start()
        return broker

    broker = asyncio.run_coroutine_threadsafe(start(), loop).result(20)
    try:
        yield broker
    finally:
        asyncio.run_coroutine_threadsafe(broker.shutdown(), loop).result(20)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
