"""The sections of ``benchmarks.scale`` that start real servers: PostgreSQL under a fleet of services, S3 ingest.

Section ``postgresql``: an embedded PostgreSQL server (pgserver's binaries, fsync on as in production) holds
one workspace database; ``--services`` ``inspectloop serve`` processes (the tiny test CNN in production, so
the CPU goes to the service path, not to inference) share it. Client threads play cameras: an open-loop
schedule of ``--rate`` requests a second for ``--seconds``, each with a unique request id, sent to the
services in turn; on a connection error (or a 5xx) the camera resends the same request to the next service.
Half way through, one service gets ``kill -9`` (at the first moment after that with a request in flight
on it). Then the log is read back: acknowledged predictions lost
(answered 200 but not in the log), request ids logged twice, answers whose prediction id is not the
logged one. The same run, same offered load, on an SQLite workspace gives the latency to compare
(SQLite in WAL mode takes one writer at a time, but several processes may queue for it: the run says
whether 4 processes worked there). Latency is from the scheduled send to the final answer, retries included.

Section ``s3``: the same NEU JPEGs ingested into a workspace whose blobs are on local disk and into one whose
blobs are in a bucket on moto's S3 server (its own process, on loopback, as a real store would be), both with
the SQLite database, alternately, ``--repeats`` times; images/s each (median) and the ratio.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from benchmarks.common import CITATIONS, neu_items, percentiles
from inspectloop.ingest import ingest
from inspectloop.store import schema as s
from inspectloop.workspace import init_workspace, open_workspace


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


# --- PostgreSQL: a fleet of services, one killed ---------------------------------------------------------------

def databases(args: argparse.Namespace) -> dict[str, Any]:
    """At each offered load: the fleet run on PostgreSQL, then on SQLite."""
    before = loadavg()
    runs = [at_rate(rate, args) for rate in args.rate]
    return {"services": args.services, "seconds": args.seconds,
            "kill": f"kill -9 of one service {args.seconds / 2:g} s into the load, with a request in flight on it",
            "model": "the tiny test CNN (tests.registry_helpers.tiny_model_bytes), 1 onnxruntime thread per service",
            "images": "synthetic 80x80 PNGs (tests.service_helpers.image_bytes), multipart POST /v1/inspect",
            "client": "open-loop schedule, unique X-Request-ID each; on a connection error or 5xx the same request "
                      "goes to the next service (a camera with a fail-over list); latency from the scheduled send "
                      "to the final answer, retries included; the load generator shares the 2 cores",
            "postgresql_server": "pgserver's embedded PostgreSQL, fsync on",
            "runs": runs, "goal": {"lost": 0, "duplicated": 0},
            "loadavg_before": before, "loadavg_after": loadavg()}


def at_rate(rate: float, args: argparse.Namespace) -> dict[str, Any]:
    from tests.postgres_helpers import embedded_postgres, new_postgres_database

    with embedded_postgres(fsync=True) as server:
        postgresql = fleet_run("postgresql", new_postgres_database(server), rate, args)
    sqlite = fleet_run("sqlite", None, rate, args)
    p95 = {when: {"postgresql": postgresql["latency_ms"][when]["p95"], "sqlite": sqlite["latency_ms"][when]["p95"]}
           for when in ("before_kill", "all")}
    for figures in p95.values():
        figures["ratio_postgresql_to_sqlite"] = round(figures["postgresql"] / figures["sqlite"], 2)
    return {"offered_rps": rate, "postgresql": postgresql, "sqlite": sqlite, "p95_ms": p95}


def fleet_run(database: str, url: str | None, rate: float, args: argparse.Namespace) -> dict[str, Any]:
    """Start the services on a fresh workspace, run the load with the kill, and read the log back."""
    from tests.service_helpers import image_bytes, line_workspace

    with tempfile.TemporaryDirectory(prefix="inspectloop-fleet-") as folder:
        line = line_workspace(Path(folder) / "ws", url)
        line.workspace.close()
        ports = free_ports(args.services)
        started = time.perf_counter()
        with serving(line.workspace.root, ports, Path(folder)) as services:
            start_seconds = time.perf_counter() - started
            images = [image_bytes(("good", "scratch", "dark")[i % 3], i) for i in range(30)]
            fleet = Fleet(ports, line.auth(), images, prefix=database)
            for number in range(len(ports)):  # each service answers once before the clock starts
                fleet.send(number, warm_up=True)
            fleet.run(rate, args.seconds, kill=(services[0], args.seconds / 2))
        logs = "".join((Path(folder) / f"serve-{port}.log").read_text(errors="replace") for port in ports)
        logged, twice = logged_requests(line.workspace.root, database)
    answers = fleet.answers
    lost = [rid for rid in answers if rid not in logged]
    mismatched = [rid for rid, answer in answers.items() if rid in logged and logged[rid] != answer["prediction_id"]]
    print(f"{database} at {rate:g} req/s: {len(answers)} acknowledged of {fleet.scheduled}, lost {len(lost)}, "
          f"logged twice {len(twice)}, other prediction id {len(mismatched)}; "
          f"p95 {percentiles(fleet.latencies())['p95']} ms", flush=True)
    return {"database": database, "services_started": len(ports), "start_seconds": round(start_seconds, 1),
            "scheduled": fleet.scheduled, "acknowledged": len(answers), "achieved_rps": round(fleet.achieved_rps, 1),
            "unanswered": fleet.scheduled - len(answers),
            "answered_as_replayed": sum(bool(a["replayed"]) for a in answers.values()),
            "lost": len(lost), "duplicated": len(twice), "prediction_id_mismatch": len(mismatched),
            "logged_rows": len(logged),
            "logged_but_unacknowledged": len([rid for rid in logged if rid not in answers and "-warm-" not in rid]),
            "retries": dict(fleet.retries), "killed_at_s": fleet.killed_at,
            "in_flight_on_killed_service": fleet.in_flight_at_kill,
            "latency_ms": {"all": percentiles(fleet.latencies()),
                           "before_kill": percentiles(fleet.latencies(before_kill=True)),
                           "from_kill": percentiles(fleet.latencies(before_kill=False))},
            "database_lock_errors_in_service_logs": logs.count("database is locked")}


@contextmanager
def serving(root: Path, ports: list[int], logs: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``inspectloop serve`` on each port (1 inference thread each); stopped on exit, whatever happened."""
    from tests.service_helpers import start_service

    services: list[subprocess.Popen[bytes]] = []
    try:
        for port in ports:
            services.append(start_service(root, port, logs / f"serve-{port}.log", "--set", "threads=1"))
        yield services
    finally:
        for service in services:
            if service.poll() is None:
                service.send_signal(signal.SIGTERM)
        for service in services:
            service.wait(30)


def logged_requests(root: Path, database: str) -> tuple[dict[str, int], list[str]]:
    """The prediction log read back: prediction id by request id, and the request ids logged more than once."""
    with open_workspace(root) as ws, ws.db.engine.connect() as conn:
        assert ws.db.engine.dialect.name == database
        logged = dict(conn.execute(select(s.predictions.c.request_id, s.predictions.c.id)).all())
        twice = conn.execute(select(s.predictions.c.request_id).group_by(s.predictions.c.request_id)
                             .having(func.count() > 1)).scalars().all()
    return logged, list(twice)


class Fleet:
    """Cameras posting to several services on an open-loop schedule, failing over to the next on errors."""

    def __init__(self, ports: list[int], auth: dict[str, str], images: list[bytes], prefix: str) -> None:
        self.urls = [f"http://127.0.0.1:{port}/v1/inspect" for port in ports]
        self.auth, self.images, self.prefix = auth, images, prefix
        self.client = httpx.Client(limits=httpx.Limits(max_connections=64, max_keepalive_connections=64))
        self.answers: dict[str, dict[str, Any]] = {}
        self.timings: list[tuple[float, float]] = []  # (scheduled offset s, latency ms)
        self.retries: Counter[str] = Counter()
        self.scheduled = 0
        self.killed_at: float | None = None
        self.in_flight: Counter[str] = Counter()  # requests sent and not yet answered, per service
        self.in_flight_at_kill = 0
        self.achieved_rps = 0.0
        self.lock = threading.Lock()

    def _flying(self, url: str, change: int) -> None:
        with self.lock:
            self.in_flight[url] += change

    def send(self, number: int, *, warm_up: bool = False, give_up_s: float = 30.0) -> float | None:
        """Send request ``number`` to its service, then to the next ones until answered; its latency in ms."""
        request_id = f"{self.prefix}-warm-{number}" if warm_up else f"{self.prefix}-{number:06}"
        started, attempt = time.perf_counter(), 0
        while time.perf_counter() - started < give_up_s:
            url = self.urls[(number + attempt) % len(self.urls)]
            attempt += 1
            self._flying(url, +1)
            try:
                response = self.client.post(url, headers={**self.auth, "X-Request-ID": request_id}, timeout=10,
                                            files={"image": ("p.png", self.images[number % len(self.images)])},
                                            data={"camera": f"cam{number % 10}"})
            except httpx.TransportError as exc:
                self.retries[type(exc).__name__] += 1
                continue
            finally:
                self._flying(url, -1)
            if response.status_code == 200:
                if not warm_up:
                    self.answers[request_id] = response.json()
                return (time.perf_counter() - started) * 1000
            self.retries[f"HTTP {response.status_code}"] += 1
            if response.status_code < 500:
                raise SystemExit(f"the service refused a request: {response.status_code} {response.text[:300]}")
            time.sleep(0.05)
        return None

    def run(self, rate: float, seconds: float, kill: tuple[subprocess.Popen[bytes], float]) -> None:
        """The schedule; after ``kill[1]`` s, once a request is in flight on the first service, kill -9 it."""
        self.scheduled = count = int(rate * seconds)
        victim, kill_after = kill
        start = time.perf_counter() + 0.2

        def killer() -> None:
            time.sleep(max(0.0, start + kill_after - time.perf_counter()))
            deadline = time.perf_counter() + 2.0
            while not self.in_flight[self.urls[0]] and time.perf_counter() < deadline:
                time.sleep(0.0005)
            self.in_flight_at_kill = self.in_flight[self.urls[0]]
            victim.send_signal(signal.SIGKILL)  # mid-load: a request is being read, predicted or committed there
            self.killed_at = round(time.perf_counter() - start, 2)

        def one(number: int) -> None:
            scheduled = start + number / rate
            time.sleep(max(0.0, scheduled - time.perf_counter()))
            lateness = (time.perf_counter() - scheduled) * 1000  # the client's own delay counts against the run
            latency = self.send(number)
            if latency is not None:
                self.timings.append((number / rate, lateness + latency))

        threading.Thread(target=killer, daemon=True).start()
        with ThreadPoolExecutor(64) as pool:
            list(pool.map(one, range(count)))
        self.achieved_rps = len(self.answers) / (time.perf_counter() - start)

    def latencies(self, before_kill: bool | None = None) -> list[float]:
        cut = self.killed_at if self.killed_at is not None else float("inf")
        return [ms for at, ms in self.timings if before_kill is None or (at < cut) is before_kill]


def free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports on loopback (held open together, so none is handed out twice)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


# --- S3: ingest into a bucket against local disk ---------------------------------------------------------------

def object_storage(args: argparse.Namespace) -> dict[str, Any]:
    before = loadavg()
    items = neu_items()
    items = items[:: max(1, len(items) // args.s3_images)][: args.s3_images]  # every class, evenly
    rates: dict[str, list[float]] = {"local_disk": [], "s3": []}
    with moto_server() as options, tempfile.TemporaryDirectory(prefix="inspectloop-s3-") as folder:
        import s3fs  # type: ignore[import-untyped]

        for repeat in range(args.repeats):
            for kind in rates:
                blobs = None
                if kind == "s3":
                    bucket = f"bench-{repeat}"
                    s3fs.S3FileSystem(**options).mkdir(bucket)
                    blobs = f"s3://{bucket}/blobs"
                with init_workspace(Path(folder) / f"{kind}-{repeat}", blobs=blobs,
                                    blob_options=options if blobs else None) as workspace:
                    report = ingest(workspace, items, source="neu_det")
                assert report.added == len(items), report
                rates[kind].append(len(items) / report.seconds)
                print(f"{kind}: {rates[kind][-1]:.1f} images/s", flush=True)
    disk, s3 = (statistics.median(rates[kind]) for kind in rates)
    return {"images": len(items), "dataset": "neu_det (every class, evenly)", "citation": CITATIONS["neu_det"],
            "repeats": args.repeats, "database": "SQLite in the workspace (both)",
            "s3_server": "moto server mode (python -m moto.server), its own process on loopback",
            "ingest": "inspectloop.ingest.ingest: decode, SHA-256, quality statistics, blobs, rows",
            "local_disk_images_per_s": round(disk, 1), "s3_images_per_s": round(s3, 1),
            "all_images_per_s": {kind: [round(r, 1) for r in values] for kind, values in rates.items()},
            "ratio_s3_to_disk": round(s3 / disk, 2), "loadavg_before": before, "loadavg_after": loadavg()}


@contextmanager
def moto_server() -> Iterator[dict[str, str]]:
    """moto's S3 server as a process of its own (in this one it would share the interpreter with the ingest);
    yields the fsspec options that reach it."""
    port = free_ports(1)[0]
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"})
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("moto's S3 server did not start (pip install 'moto[server]')") from None
                time.sleep(0.2)
        yield {"endpoint_url": f"http://127.0.0.1:{port}", "key": "testing", "secret": "testing"}
    finally:
        process.terminate()
        process.wait(10)
