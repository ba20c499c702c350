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


class CuttableLink:
    """A TCP relay from 127.0.0.1:``port`` to ``upstream``: ``cut`` drops every connection and refuses new
    ones (a pulled network cable between the station and its broker), ``restore`` listens again."""

    def __init__(self, port: int, upstream: int) -> None:
        self.port, self.upstream = port, upstream
        self._listener: socket.socket | None = None
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)  # wakes the accept (closing alone leaves it listening)
            except OSError:
                pass
            listener.close()
        with self._lock:
            for sock in self._open:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
            self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream))
            with self._lock:
                self._open += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=_pump, args=(a, b), daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            try:
                sock.close()
            except OSError:
                pass


class ModbusPlc:
    """A real pymodbus TCP server standing in for a PLC: ``size`` holding registers from address 0 on device 1,
    served from its own event loop thread. ``stop`` takes it off the network and ``start`` brings it back with
    the same memory (a PLC whose network was down keeps its registers). ``writes`` records every write request
    as (address, values), in order, so a test sees each decision the PLC was sent; ``registers`` reads its memory."""

    def __init__(self, port: int, size: int = 64) -> None:
        self.port = port
        self.writes: list[tuple[int, list[int]]] = []
        self.memory = [0] * size
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server: Any = None

    def start(self) -> None:
        from pymodbus.server import ModbusTcpServer
        from pymodbus.simulator.simdata import DataType, SimData
        from pymodbus.simulator.simdevice import SimDevice

        device = SimDevice(id=1, simdata=[SimData(0, values=list(self.memory), datatype=DataType.REGISTERS)],
                           action=self._seen)

        async def serve() -> Any:
            server = ModbusTcpServer(device, address=("127.0.0.1", self.port))
            await server.listen()
            return server

        self._server = asyncio.run_coroutine_threadsafe(serve(), self._loop).result(10)

    async def _seen(self, function_code: int, start_address: int, address: int, count: int,
                    current_registers: list[int], set_values: list[int] | None) -> None:
        if set_values is not None:
            self.writes.append((address, list(set_values)))
            self.memory[address:address + len(set_values)] = [int(v) for v in set_values]

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            asyncio.run_coroutine_threadsafe(server.shutdown(), self._loop).result(10)

    def registers(self, address: int, count: int) -> list[int]:
        """The PLC's memory as its program sees it."""
        return self.memory[address:address + count]

    def close(self) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
