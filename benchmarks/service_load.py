"""Inspection-service throughput and latency on loopback, against the bare runtime, for the NEU model.

    python -m benchmarks.service_load [--model MODEL.onnx] [--seconds 20] [--clients 8]

1. bare runtime: ``EdgeModel.predict`` on the same JPEG bytes in this process, one thread (batch 1);
2. the real service (``inspectloop serve`` as a subprocess, uvicorn, durable group-committed log with
   ``synchronous=FULL``, 5 % of images kept) on 127.0.0.1, driven by a keep-alive httpx load generator;
3. saturation: ``--clients`` closed-loop clients for ``--seconds``: requests per second;
4. half load: an open-loop fixed arrival schedule at 50 % of that rate for ``--seconds``; latency is from
   the scheduled send time to the answer (so client-side lateness counts against the service).
The load generator shares the 2 cores with the service, as a camera PC's client would not: the figures
are a conservative bound.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import RESULTS, percentiles, write_result
from benchmarks.edge_latency import test_images
from inspectloop.people import add_user
from inspectloop.runtime import EdgeModel
from inspectloop.workspace import init_workspace


def neu_model() -> Path:
    """The NEU benchmark's main fp32 model (benchmarks.neu writes it)."""
    result = RESULTS / "neu.json"
    if result.exists():
        for run in json.loads(result.read_text())["runs"]:
            if "fp32" in run["models"] and Path(run["models"]["fp32"]).exists():
                return Path(run["models"]["fp32"])
    raise SystemExit("no NEU model: run python -m benchmarks.neu first, or pass --model")


def bare(model_path: Path, images: list[bytes], iterations: int) -> dict[str, float]:
    model = EdgeModel(model_path, threads=1)
    samples = []
    for i in range(iterations + 20):
        start = time.perf_counter()
        model.predict(images[i % len(images)])
        if i >= 20:
            samples.append((time.perf_counter() - start) * 1000)
    return percentiles(samples)


def start_service(workspace: Path, model: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-c", "from inspectloop.cli import main; main()", "serve", "-w", str(workspace),
               "--model", str(model), "--port", str(port), "--sample-rate", "0.05", "--set", "threads=1"]
    process = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"service did not start: {log.read_text()[-2000:]}")


class Load:
    """Keep-alive clients posting NEU images with unique request ids."""

    def __init__(self, port: int, token: str, images: list[bytes]) -> None:
        self.url = f"http://127.0.0.1:{port}/v1/inspect"
        self.headers = {"Authorization": f"Bearer {token}"}
        self.images = images
        self.client = httpx.Client(limits=httpx.Limits(max_connections=64, max_keepalive_connections=64))
        self.counter = 0
        self.lock = threading.Lock()
        self.errors = 0

    def send(self) -> bool:
        with self.lock:
            self.counter += 1
            number = self.counter
        response = self.client.post(self.url, headers={**self.headers, "X-Request-ID": f"bench-{number}"},
                                    files={"image": ("p.jpg", self.images[number % len(self.images)], "image/jpeg")},
                                    data={"camera": "cam1"}, timeout=30)
        if response.status_code != 200:
            self.errors += 1
        return response.status_code == 200

    def saturate(self, clients: int, seconds: float) -> float:
        done = [0] * clients
        deadline = time.perf_counter() + seconds

        def worker(index: int) -> None:
            while time.perf_counter() < deadline:
                done[index] += self.send()

        start = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(worker, range(clients)))
        return sum(done) / (time.perf_counter() - start)

    def open_loop(self, rate: float, seconds: float) -> list[float]:
        """Send at fixed times ``i / rate``; latency from the scheduled time to the answer (ms)."""
        count = int(rate * seconds)
        latencies: list[float] = []
        start = time.perf_counter() + 0.2

        def one(i: int) -> None:
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            self.send()
            latencies.append((time.perf_counter() - scheduled) * 1000)

        with ThreadPoolExecutor(32) as pool:
            list(pool.map(one, range(count)))
        return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    model = args.model or neu_model()
    images = test_images(100)
    load_before = os.getloadavg()
    bare_before = bare(model, images, 300)
    service = measure(model, images, args)
    bare_after = bare(model, images, 300)
    # the bare runtime's p95 before and after the service run, averaged: the machine drifts between them
    bare_p95 = round((bare_before["p95"] + bare_after["p95"]) / 2, 3)
    ratio = round(service["half_load_latency_ms"]["p95"] / bare_p95, 3)
    half = service["half_load_latency_ms"]
    print(f"saturation {service['saturation_rps']:.1f} req/s; half load p50 {half['p50']} p95 {half['p95']} "
          f"p99 {half['p99']} ms; bare p95 {bare_p95} ms; ratio {ratio}; errors {service['errors']}")
    write_result("service_load", {
        "model": str(model), "clients": args.clients, "seconds": args.seconds, "cpu_count": os.cpu_count(),
        "images": "100 NEU 200x200 JPEGs held in memory, multipart POST /v1/inspect with a bearer token",
        "service": "inspectloop serve (uvicorn, 1 process, 2 inference slots, 1 thread per inference), "
                   "group-committed SQLite log with synchronous=FULL, sample rate 0.05",
        **service, "bare_runtime_ms": {"before": bare_before, "after": bare_after}, "bare_p95_ms": bare_p95,
        "ratio_p95_half_load_to_bare": ratio, "goal": {"ratio_p95": "<= 2.0"},
        "load_average_1m": {"before": round(load_before[0], 2), "after": round(os.getloadavg()[0], 2)},
        "note": "the machine is shared: a load average above 2 means other programs took CPU from both runs"})


def measure(model: Path, images: list[bytes], args: argparse.Namespace) -> dict[str, Any]:
    """Saturation, then half load, against a fresh service in a fresh workspace."""
    with tempfile.TemporaryDirectory() as folder:
        workspace = init_workspace(Path(folder) / "ws", name="bench")
        token = add_user(workspace, "bench", "reviewer")
        workspace.close()
        port = _free_port()
        service = start_service(Path(folder) / "ws", model, port, Path(folder) / "serve.log")
        try:
            load = Load(port, token, images)
            load.saturate(2, 3.0)  # warm-up
            saturation = load.saturate(args.clients, args.seconds)
            half = load.open_loop(saturation / 2, args.seconds)
        finally:
            service.send_signal(signal.SIGTERM)
            service.wait(30)
    return {"saturation_rps": round(saturation, 2), "half_load_rps": round(saturation / 2, 2),
            "half_load_latency_ms": percentiles(half), "errors": load.errors}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


if __name__ == "__main__":
    main()
