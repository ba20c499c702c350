"""``inspectloop run``: one long-running process per station. Each part is acquired from the station's
cameras and video sources, decided by the production model within its deadline, published to the line
(OPC UA, PLC, MQTT) and logged durably.

Deciding goes through the inspection service (:class:`~inspectloop.serve.service.InspectionService`):
the same production model with its signature checks and decision policy, the same durable prediction
log (one row per frame, request id ``<part id>.<source>.<light>``), shadow model, drift statistics,
review queue, suspect cameras and reload on promotion as ``inspectloop serve``. A part's decision is the
worst of its frames (:func:`~inspectloop.line.capture_sets.decide_set`).

Three threads carry a part: acquisition (this one) takes the frames and hands the part to a worker
for inference; the decider settles parts in trigger order, each by its deadline (else the configured
fail-safe, never a pass: :class:`~inspectloop.line.deadline.DeadlineGate`), appends the decision to the
station's durable journal and wakes the publishers' delivery threads (:mod:`~inspectloop.line.outbox`),
which deliver in order and keep what a target did not acknowledge until it is back. Parts are bounded:
a part arriving while ``in_flight`` parts are still being inspected is not inspected (it is *dropped*:
the fail-safe goes out for it, counted).
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import queue
import re
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from PIL import Image

from inspectloop.domain import LoggedPrediction
from inspectloop.errors import AcquisitionError, InspectloopError, LineConfigError
from inspectloop.line.acquire.frame import FRAME_FORMAT, Frame
from inspectloop.line.capture_sets import decide_set
from inspectloop.line.collect import Collector
from inspectloop.line.config import CollectConfig, LineConfig
from inspectloop.line.deadline import FAIL_SAFE_LABEL, DeadlineGate
from inspectloop.line.decision import PartDecision
from inspectloop.line.outbox import DecisionJournal, Delivery, Entry
from inspectloop.line.parts import Part, PartSource, part_sources
from inspectloop.line.station import publishers
from inspectloop.line.status import STATION_DIR, STATUS_FILE
from inspectloop.runtime import Prediction
from inspectloop.runtime.images import MAX_PIXELS
from inspectloop.serve.service import InspectionService, ServiceConfig, decode_request
from inspectloop.workspace import Workspace

log = logging.getLogger(__name__)
STATION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")  # it names a folder
STATUS_EVERY_S = 2.0
LATENCY_WINDOW = 100_000  # latency percentiles are over the last this many parts: a month-long run stays small
CAMERA_FIX = "check the camera's cable, power and trigger, then start the station again"
JOURNAL_FIX = ("free disk space or fix the station folder's permissions, then start the station again (what is in "
               "the journal is sent then)")


@dataclass(frozen=True)
class RunOptions:
    """How long and how fast a station runs, and whether it collects. ``collect`` None collects when the line
    config has a ``collect`` section, True insists on it, False does not collect; ``collect_only`` runs
    without a model (collection only: nothing decided or published). ``parts`` / ``seconds`` bound the run
    (None: until stopped);
    ``rate_hz`` paces software triggers (None: back to back); ``in_flight`` parts at most are inspected at
    once (more are dropped: fail-safe, counted); after ``max_missed`` parts in a row whose frames did not
    come, the station stops (a camera that stopped delivering); ``drain_s`` is how long a stopping
    station waits for publishers to acknowledge the last decisions (the rest stay in the outbox)."""

    station: str = "station1"
    parts: int | None = None
    collect: bool | None = None
    collect_only: bool = False
    seconds: float | None = None
    rate_hz: float | None = None
    in_flight: int = 4
    max_missed: int = 3
    drain_s: float = 10.0

    def __post_init__(self) -> None:
        checks = [(STATION_NAME.fullmatch(self.station) is not None,
                   f"station name {self.station!r} is not 1-64 letters, digits, '.', '_' or '-'"),
                  (self.parts is None or self.parts >= 1, f"--parts must be at least 1, got {self.parts}"),
                  (self.seconds is None or self.seconds > 0, f"--seconds must be positive, got {self.seconds}"),
                  (self.rate_hz is None or self.rate_hz > 0, f"--rate must be positive, got {self.rate_hz}"),
                  (self.in_flight >= 1, f"in_flight must be at least 1, got {self.in_flight}"),
                  (self.max_missed >= 1, f"max_missed must be at least 1, got {self.max_missed}"),
                  (self.drain_s >= 0, f"drain_s must not be negative, got {self.drain_s}")]
        for ok, message in checks:
            if not ok:
                raise LineConfigError(message, "e.g. inspectloop run --parts 100 --rate 5")
        if self.collect_only and self.collect is False:
            raise LineConfigError("--collect-only and --no-collect contradict each other", "give one of them")


@dataclass(frozen=True)
class PartReport:
    """What happened to one part: its journal entry (decision, reason, request ids) and how long from
    its trigger until its decision was journaled, in ms."""

    entry: Entry
    decided_ms: float

    def line(self) -> str:
        """One log line: part, decision, class, confidence, why, frames, latency."""
        d = self.entry.decision
        confidence = "" if d.confidence is None else f" {d.confidence:.3f}"
        why = "" if self.entry.reason == "model" else f" ({self.entry.reason})"
        return (f"{d.part_id} {d.decision.value} {d.label}{confidence}{why} frames={d.frames} "
                f"counter={d.frame_counter} {self.decided_ms:.1f} ms")


@dataclass(frozen=True)
class RunSummary:
    """A run's counts and latencies: decisions by kind, fail-safes by reason, trigger-to-published latency
    (p50/p95 over the last ``LATENCY_WINDOW`` parts every publisher acknowledged, in ms), undelivered decisions left in the outbox,
    and why the run ended (``fault`` set when it ended on a fault, e.g. a camera that stopped delivering)."""

    parts: int
    passed: int
    rejected: int
    reviewed: int
    late: int
    failed: int
    dropped: int
    no_frame: int
    lost_frames: int
    undelivered: dict[str, int]
    publish_failures: dict[str, int]
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    seconds: float
    ended: str
    fault: str | None = None
    fault_fix: str | None = None
    collection: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (written to ``last-run.json`` in the station folder)."""
        return dataclasses.asdict(self)

    def lines(self) -> list[str]:
        """The summary as a few lines for people."""
        rate = self.parts / self.seconds if self.seconds else 0.0
        latency = ("n/a" if self.latency_p50_ms is None
                   else f"p50 {self.latency_p50_ms:.1f} ms, p95 {self.latency_p95_ms:.1f} ms")
        waiting = ", ".join(f"{n} for {t}" for t, n in self.undelivered.items() if n) or "none"
        failures = ", ".join(f"{n} to {t}" for t, n in self.publish_failures.items() if n) or "none"
        collected = [] if self.collection is None else [_collection_line(self.collection)]
        if self.collection is not None and self.parts == 0:  # collection only: nothing was decided
            captured = self.collection["captured"]
            rate = captured / self.seconds if self.seconds else 0.0
            return [f"{captured} part(s) captured in {self.seconds:.1f} s ({rate:.1f}/s), no model: collection only",
                    *collected, f"{self.lost_frames} frame(s) lost to reconnects", f"ended: {self.ended}"]
        return [f"{self.parts} part(s) in {self.seconds:.1f} s ({rate:.1f}/s): {self.passed} pass, "
                f"{self.rejected} reject, {self.reviewed} review", *collected,
                f"fail-safe: {self.late} deadline miss(es), {self.failed} failed, {self.dropped} dropped, "
                f"{self.no_frame} without frames; {self.lost_frames} frame(s) lost to reconnects",
                f"trigger to published: {latency}; failed deliveries (retried): {failures}; undelivered (kept in "
                f"the outbox): {waiting}",
                f"ended: {self.ended}"]


def _collection_line(counts: dict[str, float]) -> str:
    failed = f", {counts['store_failures']} not stored (disk)" if counts["store_failures"] else ""
    failed += f", {counts['sample_skipped']} sample(s) skipped (disk behind)" if counts["sample_skipped"] else ""
    return (f"collected: {counts['captured']} captured, {counts['sample']} stored as sample, {counts['qc_reject']} "
            f"stored as QC reject ({counts['added']} new image(s), {counts['already_stored']} already stored{failed}); "
            f"QC marks: {counts['marks']} received, {counts['unmatched']} unmatched, {counts['bad_marks']} unreadable; "
            f"{counts['write_ms']:.0f} ms to store a part")


class PartDropped(Exception):
    """A part that arrived while ``in_flight`` parts were still being inspected (not inspected)."""


@dataclass
class _Counts:
    decisions: dict[str, int] = field(default_factory=lambda: {"pass": 0, "reject": 0, "review": 0})
    reasons: dict[str, int] = field(default_factory=lambda: {"late": 0, "failed": 0, "dropped": 0, "no_frame": 0})
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))


class Station:
    """One station's loop. ``start`` opens everything (refusing at start, with the reason and the fix, a
    missing model, an absent camera, a pixel format the model cannot use, an unreachable publisher);
    ``run`` inspects parts until the options' bound, ``stop`` (thread- and signal-safe) or a fault;
    ``close`` finishes in-flight parts, flushes the prediction log and the outbox. A context manager."""

    def __init__(self, workspace: Workspace, line: LineConfig, options: RunOptions | None = None,
                 service: ServiceConfig | None = None) -> None:
        self.workspace = workspace
        self.line = line
        self.options = options or RunOptions()
        self.folder = workspace.root / STATION_DIR / self.options.station
        self.service_config = _station_service(service or ServiceConfig(), part_sources(line))
        self.gate = DeadlineGate(line.publish.deadline_ms, line.publish.fail_safe)
        self.journal = DecisionJournal(self.folder)
        self.service: InspectionService | None = None
        self.collector: Collector | None = None
        self.parts: PartSource | None = None
        self.deliveries: list[Delivery] = []
        self._stop = threading.Event()
        self._counts = _Counts()
        self._lock = threading.Lock()
        self._pending: dict[int, tuple[float, int]] = {}  # seq -> (trigger time, publishers still to ack)
        self._executor: ThreadPoolExecutor | None = None
        self._fault: str | None = None  # set by the decider when decisions cannot be journaled
        self._drained = False
        self._last_status = 0.0
        self._collect = _collect_config(line, self.options)

    def __enter__(self) -> Station:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Load the model (unless collecting only), open the sources, the collection's QC sources, the
        publishers and the outbox; refuse at start if any cannot."""
        try:
            colour_mode = None
            if not self.options.collect_only:
                self.service = InspectionService(self.workspace, self.service_config)
                warm_up(self.service)
                colour_mode = self.service.production.model.metadata.colour_mode
            # part ids name prediction-log rows (request ids): a restart, even within the second, must not reuse one
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")[:-3]
            self.parts = PartSource(self.line, colour_mode=colour_mode, prefix=f"{self.options.station}-{stamp}",
                                    rate_hz=self.options.rate_hz)
            self.parts.open()
            if self._collect is not None:
                self.collector = Collector(self.workspace, self._collect, station=self.options.station,
                                           session=f"{self.options.station}-{stamp[:15]}")
                self.collector.start()
            self.journal.open()
            for publisher in publishers(self.line.publish) if self.service is not None else ():
                publisher.start()
                self.deliveries.append(Delivery(publisher, self.journal, self._delivered))
            if self.service is not None:
                self.service.start()
            for delivery in self.deliveries:
                delivery.start()
        except BaseException:
            self.close()
            raise
        self._executor = ThreadPoolExecutor(self.options.in_flight, thread_name_prefix="inspect")

    def describe(self) -> str:
        """One line: the model, the sources, the publishers, the deadline and fail-safe."""
        model = self.service.production.name if self.service else "no model"
        sources = ", ".join(self.parts.sources) if self.parts else "no source"
        collecting = f"; {self.collector.describe()}" if self.collector else ""
        if self.service is None:
            return f"station {self.options.station}: {model} (collection only) on {sources}{collecting}"
        targets = ", ".join(d.target for d in self.deliveries) or "no publisher"
        publish = self.line.publish
        return (f"station {self.options.station}: {model} on {sources} -> {targets}; deadline "
                f"{publish.deadline_ms:g} ms, fail-safe {publish.fail_safe.value}{collecting}")

    def signature_warning(self) -> str | None:
        """The production model's signature warning (None when its origin was verified)."""
        return self.service.production.model.signature.warning() if self.service else None

    def stop(self) -> None:
        """Ask the loop to finish the part in hand and end (safe from a signal handler or another thread)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """Whether the station was asked to stop (or its time bound passed)."""
        return self._stop.is_set()

    def run(self, on_part: Callable[[PartReport], None] | None = None) -> RunSummary:
        """Inspect parts until the bound, a stop or a fault; ``on_part`` hears each decided part (in order)."""
        if self.parts is None or self._executor is None:
            raise LineConfigError("the station is not started", "call Station.start() first")
        parts, executor, started = self.parts, self._executor, time.monotonic()
        settle: queue.Queue[tuple[Part, Future[PartDecision]] | None] = queue.Queue()
        decider = threading.Thread(target=self._decide_all, args=(settle, on_part), name="decider", daemon=True)
        decider.start()
        # a bound in seconds must end the run even while a hardware-triggered line stands still
        timer = threading.Timer(self.options.seconds, self._stop.set) if self.options.seconds else None
        if timer is not None:
            timer.daemon = True
            timer.start()
        try:
            ended, fault = self._acquire_all(parts, executor, settle, started)
        finally:
            if timer is not None:
                timer.cancel()
        settle.put(None)
        decider.join()
        if self._fault is not None:
            ended, fault = "decision journal fault", (self._fault, JOURNAL_FIX)
        self._drain()
        self._drained = True  # close() need not wait for the publishers a second time
        return self._summary(time.monotonic() - started, ended, fault)

    def close(self) -> None:
        """Finish in-flight inspections, flush the prediction log, wait ``drain_s`` for the publishers,
        close everything; what a publisher did not acknowledge stays in the outbox for the next start."""
        if self.parts is not None:
            self.parts.close()
        if self.collector is not None:
            self.collector.close()  # what still waits for its QC mark is stored if sampled
        if self._executor is not None:
            self._executor.shutdown(wait=True)  # late parts' inferences finish and are logged
            self._executor = None
        if self.service is not None and self.service.log is not None:
            self.service.stop()
        if not self._drained:
            self._drain()
        for delivery in self.deliveries:
            delivery.stop()
        self.deliveries.clear()
        self.journal.close()

    def _drain(self) -> None:
        """Wait up to ``drain_s`` for every publisher to acknowledge every decision; say what is left."""
        end = time.monotonic() + self.options.drain_s
        for delivery in self.deliveries:
            if not delivery.drain(max(end - time.monotonic(), 0.0)):
                log.warning("%s: %d decision(s) kept in the outbox, sent when it is back (%s)", delivery.target,
                            self.journal.waiting(delivery.target), delivery.down or "no acknowledgement yet")

    # -- acquisition ----------------------------------------------------------------------------------
    def _acquire_all(self, parts: PartSource, executor: ThreadPoolExecutor, settle: queue.Queue[Any],
                     started: float) -> tuple[str, tuple[str, str] | None]:
        """Acquire parts and hand each to a worker; why it ended, and the fault and its fix if it was one."""
        slots = threading.BoundedSemaphore(self.options.in_flight)
        missed = 0
        while True:
            if self.options.seconds is not None and time.monotonic() - started >= self.options.seconds:
                return f"{self.options.seconds:g} s done", None
            if self._stop.is_set():
                return "stopped", None
            if self.options.parts is not None and parts.count >= self.options.parts:
                return f"{self.options.parts} part(s) done", None
            part = parts.next_part(self._stop)
            if part is None:
                if parts.ended:
                    return parts.ended, None
                continue  # stopped, or the time bound passed: said above
            if self.collector is not None:
                self.collector.offer(part)
            if self.service is not None:
                settle.put((part, self._inspect_later(executor, part, slots)))
            else:
                self._maybe_write_status()
            missed = missed + 1 if part.missing else 0
            if missed >= self.options.max_missed:
                return "camera fault", (f"{missed} parts in a row came without their frames, last: {part.missing}",
                                        CAMERA_FIX)

    def _inspect_later(self, executor: ThreadPoolExecutor, part: Part,
                       slots: threading.BoundedSemaphore) -> Future[PartDecision]:
        """The part's decision to come: inspected by a worker, or failed at once (no frames, or dropped)."""
        if part.missing:
            return _failed(AcquisitionError(part.missing))
        if not slots.acquire(blocking=False):
            return _failed(PartDropped(part.part_id))
        future = executor.submit(self._inspect, part)
        future.add_done_callback(lambda _: slots.release())
        return future

    def _inspect(self, part: Part) -> PartDecision:
        """Every frame through the service (predicted, logged durably), then the part's worst decision."""
        service = self.service
        if service is None:
            raise LineConfigError("the station is not started", "call Station.start() first")
        answers = [service.submit(frame.encoded(), frame.fields(part_id=part.part_id, light=light,
                                                                 station=self.options.station),
                                       request_id=request_id(part, frame, light), source="line")
                   for frame, light in zip(part.frames, part.lights, strict=True)]
        logged = [answer.result() for answer in answers]
        decision = decide_set(part.part_id, part.frames, [as_prediction(row) for row in logged])
        return dataclasses.replace(decision, suspect=any(row.suspect for row in logged))

    # -- deciding and publishing ----------------------------------------------------------------------
    def _decide_all(self, settle: queue.Queue[Any], on_part: Callable[[PartReport], None] | None) -> None:
        while (item := settle.get()) is not None:
            if self._fault is not None:
                continue  # the journal failed: nothing more can be published durably
            try:
                self._decide(*item, on_part=on_part)
            except (OSError, InspectloopError) as exc:  # a full or failing disk: stop, never publish unlogged
                self._fault = f"cannot record decisions durably: {getattr(exc, 'message', None) or exc}"
                self._stop.set()
                continue
            self._maybe_write_status()

    def _decide(self, part: Part, future: Future[PartDecision], *,
                on_part: Callable[[PartReport], None] | None) -> None:
        """Settle one part by its deadline, journal its decision and wake the publishers."""
        counter = part.frames[0].frame_counter if part.frames else 0
        decision = self.gate.settle(future, part_id=part.part_id, frame_counter=counter,
                                    triggered_at=part.triggered_at, frames=len(part.frames))
        reason = _reason(decision, future)
        if reason != "model" and self._suspect(part):  # a fail-safe too says the camera is in doubt
            decision = dataclasses.replace(decision, suspect=True)
        requests = () if reason in ("dropped", "no_frame") else tuple(
            request_id(part, f, light) for f, light in zip(part.frames, part.lights, strict=True))
        entry = self._journal(decision, reason, requests, part.triggered_at)
        if on_part is not None:
            on_part(PartReport(entry, (time.monotonic() - part.triggered_at) * 1000))

    def _suspect(self, part: Part) -> bool:
        """Whether a camera of the part failed its latest health check (as the service last read it)."""
        failing = self.service.suspect_cameras if self.service is not None else {}
        sources = [f.source for f in part.frames] or (self.parts.sources if self.parts else [])
        return any(source in failing for source in sources)

    def _journal(self, decision: PartDecision, reason: str, requests: tuple[str, ...], triggered_at: float) -> Entry:
        with self._lock:  # a fast publisher may acknowledge before this thread records what it waits for
            entry = self.journal.append(decision, reason=reason, requests=requests)
            self._counts.decisions[decision.decision.value] += 1
            if reason != "model":
                self._counts.reasons[reason] += 1
            if self.deliveries:
                self._pending[entry.seq] = (triggered_at, len(self.deliveries))
                if len(self._pending) > LATENCY_WINDOW:  # a publisher down for days: forget the oldest times
                    del self._pending[next(iter(self._pending))]
            else:
                self._counts.latencies_ms.append((time.monotonic() - triggered_at) * 1000)
        for delivery in self.deliveries:
            delivery.notify()
        return entry

    def _delivered(self, target: str, entry: Entry) -> None:
        with self._lock:
            pending = self._pending.get(entry.seq)
            if pending is None:  # left by an earlier run
                return
            triggered_at, left = pending
            if left > 1:
                self._pending[entry.seq] = (triggered_at, left - 1)
                return
            del self._pending[entry.seq]
            self._counts.latencies_ms.append((time.monotonic() - triggered_at) * 1000)

    # -- reporting ------------------------------------------------------------------------------------
    def _summary(self, seconds: float, ended: str, fault: tuple[str, str] | None) -> RunSummary:
        with self._lock:
            counts = self._counts
            latencies = np.asarray(counts.latencies_ms) if counts.latencies_ms else None
        summary = RunSummary(
            parts=sum(counts.decisions.values()), passed=counts.decisions["pass"],
            rejected=counts.decisions["reject"], reviewed=counts.decisions["review"], **counts.reasons,
            lost_frames=self.parts.lost_frames() if self.parts else 0,
            undelivered={d.target: self.journal.waiting(d.target) for d in self.deliveries},
            publish_failures={d.target: d.failures for d in self.deliveries},
            latency_p50_ms=None if latencies is None else round(float(np.percentile(latencies, 50)), 2),
            latency_p95_ms=None if latencies is None else round(float(np.percentile(latencies, 95)), 2),
            seconds=round(seconds, 3), ended=ended, fault=fault[0] if fault else None,
            fault_fix=fault[1] if fault else None)
        if self.collector is not None:  # the parts still waiting for a QC mark are stored now, then counted
            self.collector.close()
            summary = dataclasses.replace(summary, collection=self.collector.counts.to_dict())
            self._write_status()
        self._write_json("last-run.json", summary.to_dict())
        return summary

    def _maybe_write_status(self) -> None:
        if time.monotonic() - self._last_status > STATUS_EVERY_S:
            self._last_status = time.monotonic()
            self._write_status()

    def _write_status(self) -> None:
        """The station's live counters for the dashboard (``status.json`` in the station folder)."""
        with self._lock:
            status = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "decisions": dict(self._counts.decisions),
                      "fail_safe": dict(self._counts.reasons),
                      "publishers": {d.target: {"down": d.down, "waiting": self.journal.waiting(d.target)}
                                     for d in self.deliveries}}
        if self.collector is not None:
            status["collection"] = self.collector.counts.to_dict()
        self._write_json(STATUS_FILE, status)

    def _write_json(self, name: str, content: dict[str, Any]) -> None:
        tmp = self.folder / f"{name}.tmp"
        tmp.write_text(json.dumps(content, indent=1))
        tmp.replace(self.folder / name)


def run_station(workspace: Workspace, line: LineConfig, options: RunOptions | None = None,
                service: ServiceConfig | None = None, *, on_start: Callable[[Station], None] | None = None,
                on_part: Callable[[PartReport], None] | None = None) -> RunSummary:
    """Start a station, run it until its bound, SIGTERM/SIGINT or a fault, and close it cleanly.
    ``on_start`` hears the started station (its model, sources, publishers); ``on_part`` each part."""
    with Station(workspace, line, options, service) as station, _stopping_on_signals(station):
        if on_start is not None:
            on_start(station)
        return station.run(on_part)


@contextmanager
def _stopping_on_signals(station: Station) -> Iterator[None]:
    """SIGTERM and SIGINT end the run cleanly (the part in hand is finished, the outbox flushed); a second
    one while it is stopping interrupts at once (KeyboardInterrupt)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(*_: object) -> None:
        if station.stopping:
            raise KeyboardInterrupt
        station.stop()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def warm_up(service: InspectionService) -> None:
    """A blank frame through the frame path (encode, decode) and each loaded model, so that the first part
    does not pay for first runs: on this machine the first part took 0.1-0.5 s, later ones 20 ms."""
    for served in (service.production, service.shadow):
        if served is not None:
            meta = served.model.metadata
            blank = Image.new(meta.colour_mode, (meta.input_size, meta.input_size))
            buffer = io.BytesIO()
            blank.save(buffer, format=FRAME_FORMAT)
            served.model.predict(decode_request(buffer.getvalue()).image)


def _collect_config(line: LineConfig, options: RunOptions) -> CollectConfig | None:
    """The collection this run does: the line config's, unless ``--no-collect``; refused when asked for
    (``--collect``, ``--collect-only``) and the line config has none."""
    wanted = options.collect_only or options.collect
    if wanted and line.collect is None:
        raise LineConfigError("collection mode was asked for but the line config has no collect section",
                              "add one to line.yaml, e.g. collect: {fraction: 0.05, qc: {mqtt: {host: plc-broker, "
                              "topic: qc/reject}}}")
    return None if options.collect is False else line.collect


def _station_service(config: ServiceConfig, sources: list[str]) -> ServiceConfig:
    """The service settings for a station: its sources are known cameras; frames are its own (not uploads),
    so the upload and frame-size limits are the decoder's own (a 12 MP frame is normal on a line)."""
    limits: dict[str, Any] = {"cameras": tuple(dict.fromkeys((*config.cameras, *sources)))}
    if config.max_pixels is None:
        limits |= {"max_pixels": MAX_PIXELS, "decode_pixels": config.decode_pixels or MAX_PIXELS}
    limits["max_upload_mb"] = max(config.max_upload_mb, MAX_PIXELS * 4 / 1024 / 1024)
    return dataclasses.replace(config, **limits)


def request_id(part: Part, frame: Frame, light: int) -> str:
    """The prediction log's request id of one frame of a part."""
    return f"{part.part_id}.{frame.source}.{light}"


def as_prediction(logged: LoggedPrediction) -> Prediction:
    """A logged prediction as the runtime's type (what a capture set's decision reads)."""
    return Prediction(label=logged.label, confidence=logged.confidence, scores=logged.scores,
                      decision=logged.decision, latency_ms=logged.latency_ms)


def _failed(exc: Exception) -> Future[PartDecision]:
    future: Future[PartDecision] = Future()
    future.set_exception(exc)
    return future


def _reason(decision: PartDecision, future: Future[PartDecision]) -> str:
    """Why a part got its decision: ``model``, or the fail-safe's reason."""
    if not (decision.late and decision.label == FAIL_SAFE_LABEL):
        return "model"
    if not future.done() or future.cancelled():
        return "late"
    error = future.exception()
    if isinstance(error, PartDropped):
        return "dropped"
    if isinstance(error, AcquisitionError):
        return "no_frame"
    return "failed" if error is not None else "late"
