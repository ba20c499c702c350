"""asyncua from plain code: an event loop on its own thread (:class:`EventLoopThread`), a client to someone
else's OPC UA server on it (:class:`OpcUaClientLink`), and :func:`open_client_link`, which connects one or
refuses in one line with the caller's own error type and fix (the PLC writer's PublishError, the QC
source's QcSourceError).

The loop lives on its own thread, so these work whether or not the calling thread already runs a loop
(a notebook, an async web handler, Playwright's sync API).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from types import ModuleType
from typing import Any

from inspectloop.errors import InspectloopError, PublishError, require

DEFAULT_TIMEOUT_S = 15.0  # asyncua builds its standard address space at start: about a second on a slow core
Setup = Callable[[Any], Awaitable[None]]


def asyncua() -> ModuleType:
    """The ``asyncua`` module (MissingExtraError naming the ``line`` extra when absent)."""
    return require("asyncua", "line")


class EventLoopThread:
    """An asyncio event loop on a daemon thread, so plain code can run asyncua's coroutines."""

    def __init__(self, name: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def call(self, coroutine: Any, timeout_s: float = DEFAULT_TIMEOUT_S) -> Any:
        """Run ``coroutine`` on the loop and wait for its result."""
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(timeout_s)

    def stop(self) -> None:
        """Stop the loop and its thread."""
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(DEFAULT_TIMEOUT_S)
        self._loop.close()


class OpcUaClientLink:
    """An asyncua client to someone else's server (a PLC's, the QC's), on its own event loop thread:
    ``connect`` (then runs ``setup`` with the connected client), ``call`` coroutines, ``close``.
    ``error`` is the type ``call`` raises once the link is closed."""

    def __init__(self, endpoint: str, timeout_s: float, name: str,
                 error: type[InspectloopError] = PublishError) -> None:
        self.endpoint, self.timeout_s, self.error = endpoint, timeout_s, error
        self.client: Any = None
        self._loop: EventLoopThread | None = EventLoopThread(name)

    def connect(self, setup: Setup) -> None:
        """Connect and run ``setup(client)``; OSError or TimeoutError when the server cannot be reached."""
        async def connect() -> None:
            client = asyncua().Client(url=self.endpoint, timeout=self.timeout_s)
            await client.connect()
            self.client = client
            await setup(client)

        self.call(connect(), self.timeout_s * 3)

    def call(self, coroutine: Any, timeout_s: float | None = None) -> Any:
        """Run ``coroutine`` on the link's loop and wait for its result."""
        if self._loop is None:
            coroutine.close()  # never scheduled: close it rather than leave a "never awaited" warning
            raise self.error(f"the link to {self.endpoint} is closed", "start it again")
        return self._loop.call(coroutine, timeout_s or self.timeout_s)

    def close(self) -> None:
        """Disconnect and stop the loop (safe to call twice)."""
        loop, client = self._loop, self.client
        self._loop = self.client = None
        if loop is None:
            return
        try:
            if client is not None:
                loop.call(client.disconnect(), self.timeout_s)
        except (OSError, TimeoutError, asyncio.TimeoutError):
            pass  # the connection is already gone: nothing left to release
        finally:
            loop.stop()


def open_client_link(endpoint: str, timeout_s: float, name: str, setup: Setup, *,
                     error: type[InspectloopError], server: str, fix: str) -> OpcUaClientLink:
    """A link to ``endpoint`` that is connected and has run ``setup(client)``.

    An unreachable server raises ``error("cannot reach <server> at <endpoint>: <why>", fix)``; ``server``
    names it for a plant engineer ("the PLC's OPC UA server"). Whatever fails (``setup``'s own errors pass
    through unchanged), the link is closed first, so no thread or connection is left behind.
    """
    asyncua()  # a missing extra is named before any thread starts
    link = OpcUaClientLink(endpoint, timeout_s, name, error)
    try:
        link.connect(setup)
    except (OSError, TimeoutError, asyncio.TimeoutError) as exc:
        link.close()
        raise error(f"cannot reach {server} at {endpoint}: "
                    f"{getattr(exc, 'strerror', None) or type(exc).__name__}", fix) from None
    except BaseException:
        link.close()
        raise
    return link
