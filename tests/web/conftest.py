"""The review pages under test: a small app around ``inspectloop.web.pages.router``, served for real.

``web/app.py`` builds the full service; these tests need only the pages, so they mount the router on
a bare FastAPI app with the workspace in ``app.state`` (as the service does). Browser tests run it
under uvicorn on a free loopback port and drive Debian's Chromium through Playwright.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the web pages need the 'serve' extra: pip install 'inspectloop[serve]'")

from fastapi import FastAPI

from inspectloop.web.browse import router as browse_router
from inspectloop.web.pages import router
from inspectloop.workspace import Workspace, open_workspace
from tests.review_helpers import Seeded, seed

CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if Path(p).exists()),
                shutil.which("chromium"))


def pages_app(workspace: Workspace) -> FastAPI:
    """The review, dashboard and browse pages on their own, as ``web/app.py`` mounts them."""
    app = FastAPI()
    app.state.workspace = workspace
    app.include_router(router)
    app.include_router(browse_router)
    return app


@dataclass
class LiveServer:
    url: str
    seeded: Seeded


def serve(workspace: Workspace) -> tuple[str, Any, threading.Thread]:
    """Start uvicorn on a free loopback port in a thread; return its URL, server and thread."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(pages_app(workspace), log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    return f"http://127.0.0.1:{sock.getsockname()[1]}", server, thread


def live_server(tmp_path: Path, items: int) -> Iterator[LiveServer]:
    yield from serving(seed(tmp_path, items=items))


def serving(seeded: Seeded) -> Iterator[LiveServer]:
    """A live server on the seeded workspace, stopped (and both connections closed) when done."""
    workspace = open_workspace(seeded.workspace.root)  # the server's own connection, as in production
    url, server, thread = serve(workspace)
    try:
        yield LiveServer(url, seeded)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        workspace.close()
        seeded.workspace.close()


@pytest.fixture
def server40(tmp_path: Path) -> Iterator[LiveServer]:
    """A live server over a queue of 40 open items."""
    yield from live_server(tmp_path, 40)


@pytest.fixture
def server16(tmp_path: Path) -> Iterator[LiveServer]:
    yield from live_server(tmp_path, 16)


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """Headless Debian Chromium (never a downloaded browser); skips when it is not installed.

    Package scope, not session: between its calls Playwright's sync API marks its own event loop as
    running on the main thread, until it stops. Stopped when pytest leaves tests/web, so that later
    tests in the same process (``asyncio.run`` in the OPC UA tests) find no loop, whatever the order.
    """
    if CHROMIUM is None:
        pytest.skip("Chromium not found (/usr/bin/chromium); scripts/setup.sh installs it with apt-get as root")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the 'dev' extra)")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        yield launched
        launched.close()
