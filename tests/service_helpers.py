"""A workspace on the line: the tiny CNN registered and in production, a reviewer and an admin, test images."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inspectloop.domain import ModelVersion
from inspectloop.people import add_user
from inspectloop.registry import promote, register
from inspectloop.runtime import EdgeModel
from inspectloop.workspace import Workspace
from tests.registry_helpers import add_run_with_model, seeded_workspace
from tests.test_export import export_tiny, synthetic_image

# A review band so wide that every image goes to review: the shadow disagrees with production on each one.
ALWAYS_REVIEW = {"auto_above": 0.9999999, "reject_below": None, "alpha": 0.01, "confidence": 0.9,
                 "certifiable": False, "guarantee": "test band"}


@dataclass
class Line:
    workspace: Workspace
    production: ModelVersion
    reviewer: str  # tokens
    admin: str

    def auth(self, role: str = "reviewer") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.reviewer if role == 'reviewer' else self.admin}"}


@functools.cache
def review_model_bytes() -> bytes:
    """The tiny CNN with a review band that sends every image to review."""
    with tempfile.TemporaryDirectory() as folder:
        return export_tiny(Path(folder) / "review.onnx", review=ALWAYS_REVIEW).path.read_bytes()


def line_workspace(root: Path, database: str | None = None) -> Line:
    """Workspace with version 1 (the tiny CNN) in production and users rita (reviewer) and adam (admin)."""
    workspace = seeded_workspace(root, database)
    add_run_with_model(workspace, "run-a")
    version = promote(workspace, register(workspace, "run-a"), "production", actor="ana", reason="test",
                      override=True)
    return Line(workspace, version, add_user(workspace, "rita", "reviewer"), add_user(workspace, "adam", "admin"))


def add_version(workspace: Workspace, run_id: str, data: bytes) -> ModelVersion:
    """Record a finished run whose model file holds ``data`` and register it as a candidate."""
    run_dir = workspace.runs_dir / run_id
    run_dir.mkdir(parents=True)
    path = run_dir / "model.onnx"
    path.write_bytes(data)
    workspace.db.runs.add(run_id, "v1", {"mode": "probe"}, "0.1.0+gtest", str(run_dir))
    metadata = EdgeModel(path).metadata
    workspace.db.runs.add_model(run_id, "fp32", str(path), hashlib.sha256(data).hexdigest(), metadata.weights_sha256,
                           json.loads(metadata.to_json()))
    workspace.db.runs.finish(run_id, "finished", metrics={"test": {}})
    return register(workspace, run_id)


def image_bytes(label: str = "good", seed: int = 0, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    synthetic_image(label, seed).save(buffer, format=fmt)
    return buffer.getvalue()


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def free_port() -> int:
    """A TCP port on localhost nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_service(ws: Path, port: int, log: Path, *extra: str, verify: Any = True) -> subprocess.Popen[bytes]:
    """``inspectloop serve`` in a subprocess (a real uvicorn), once its health answers; output goes to ``log``.

    With ``--tls-cert`` among ``extra`` it is asked over https, trusting ``verify`` (an SSL context or bool)."""
    import httpx

    command = [sys.executable, "-c", "from inspectloop.cli import main; main()", "serve", "-w", str(ws),
               "--port", str(port), "--sample-rate", "0.2", *extra]
    process = subprocess.Popen(command, stdout=log.open("ab"), stderr=subprocess.STDOUT,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    scheme = "https" if "--tls-cert" in extra else "http"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{scheme}://127.0.0.1:{port}/v1/health", timeout=1, verify=verify).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.2)
        if process.poll() is not None:
            raise AssertionError(f"serve exited: {log.read_text()}")
    raise AssertionError("serve did not start")
