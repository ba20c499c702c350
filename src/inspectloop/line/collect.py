"""Collection mode: for a new line's first weeks, the station captures every part and stores a sample of
them plus every part the existing QC rejects, with full capture metadata, so that the first dataset is the
line's own. It runs alone (no model yet) or beside the production model.

A part waits in memory (at most ``buffer_parts`` of them) for as long as its QC mark may still come
(``qc.window_s``); a mark may also come first and wait as long for its part. A part leaves the buffer
stored as ``qc_reject`` when its mark matches, else stored as ``sample`` if it was sampled, else
dropped. Marks that match no part in their window are counted, never guessed at. Storing is an ingest
(:class:`~inspectloop.ingest.IngestSession`): content-addressed, so an image already stored is never
replaced (its sources gain ``<station>/<sample|qc_reject>/<part>.<camera>.<light>.ppm``; a frame the
inspection service kept first gains the collection fields it lacks, so whichever writer comes first the part
reads the same), on a writer thread so the camera never waits for the disk.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections import OrderedDict, deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from inspectloop.domain import METADATA_FIELDS, CaptureMeta
from inspectloop.errors import InspectloopError
from inspectloop.ingest import IngestSession, SourceItem
from inspectloop.line.config import CollectConfig
from inspectloop.line.parts import Part
from inspectloop.line.qc_marks import QcMark, QcSource, qc_sources
from inspectloop.workspace import Workspace

log = logging.getLogger(__name__)
SAMPLE, QC_REJECT = "sample", "qc_reject"
INGEST_SOURCE = "line collection"
PARTS_PER_INGEST = 1000  # a new ingest record every this many stored parts: a weeks-long run's reports stay small
# Parts written in one ingest step when several wait: the blob store syncs the disk once per step, which was
# half of a 1.3 MP part's 65 ms when parts were written one by one.
WRITE_BATCH = 8
_TICK_S = 0.2  # how often waiting parts and marks are aged while nothing arrives


class Sampler:
    """Which parts are stored as a sample: every ``every``-th part (the ``every``-th, ``2*every``-th, ...),
    or each part with probability ``fraction`` from a generator seeded with ``seed`` (the same run
    samples the same parts)."""

    def __init__(self, every: int | None = None, fraction: float | None = None, seed: int = 0) -> None:
        self.every, self.fraction = every, fraction
        self._random = random.Random(seed)
        self._count = 0

    def take(self) -> bool:
        """Whether the next part is sampled."""
        self._count += 1
        if self.every is not None:
            return self._count % self.every == 0
        if self.fraction is not None:
            return self._random.random() < self.fraction
        return False


@dataclass
class CollectCounts:
    """What collection did this run: parts ``captured``; stored as ``sample`` and as ``qc_reject`` (a sampled
    part the QC rejected counts once, as a QC reject); ``sample_skipped`` samples not stored because the
    disk fell behind (more than ``buffer_parts`` parts waiting to be written; QC rejects are never skipped);
    ``incomplete`` parts whose frames did not all come (not stored); QC marks received, matched, ``unmatched`` (no part in their window) and ``bad`` (naming no
    part); images ``added`` to the workspace and ``already_stored`` (the same bytes were stored before);
    ``write_ms`` the writer's busy time per stored part (encode, hash, measure, blob, rows), mean."""

    captured: int = 0
    sample: int = 0
    qc_reject: int = 0
    sample_skipped: int = 0
    incomplete: int = 0
    marks: int = 0
    matched: int = 0
    unmatched: int = 0
    bad_marks: int = 0
    added: int = 0
    already_stored: int = 0
    store_failures: int = 0
    write_ms: float = 0.0

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass
class _Waiting:
    part: Part
    at: float  # wall-clock time of its trigger, as QC marks give theirs
    sampled: bool
    mark: QcMark | None = None


class Collector:
    """Collection for one station run: ``start`` (QC sources refused at start if unreachable), ``offer`` each
    part, ``close`` (stores what still waits, closes the ingest record). Thread-safe: marks arrive on the
    QC sources' threads."""

    def __init__(self, workspace: Workspace, config: CollectConfig, *, station: str, session: str) -> None:
        self.workspace = workspace
        self.config = config
        self.station = station
        self.session = config.session or session
        self.window_s = config.qc.window_s if config.qc else 0.0
        self.counts = CollectCounts()
        self.sampler = Sampler(config.every, config.fraction, config.seed)
        self.sources: list[QcSource] = qc_sources(config.qc) if config.qc else []
        self._parts: OrderedDict[str, _Waiting] = OrderedDict()
        self._early: deque[QcMark] = deque()  # marks that came before their part, oldest first
        self._lock = threading.Lock()
        self._store: queue.Queue[tuple[_Waiting, str] | None] = queue.Queue()
        self._writer: threading.Thread | None = None
        self._ticker: threading.Thread | None = None
        self._stopping = threading.Event()
        self._ingest: IngestSession | None = None
        self._stored_in_ingest = 0
        self._written = 0
        self._write_total_ms = 0.0

    def describe(self) -> str:
        """One line: what is sampled and where QC marks come from."""
        sample = (f"1 part in {self.config.every}" if self.config.every else
                  f"{self.config.fraction:.1%} of parts (seed {self.config.seed})" if self.config.fraction else "no sample")
        marks = ", ".join(s.target for s in self.sources) or "no QC marks"
        return f"collecting into session {self.session}: {sample}; QC rejects from {marks}" + (
            f" within {self.window_s:g} s" if self.sources else "")

    def start(self) -> None:
        """Start the writer and every QC source; refuse (and stop what started) if one cannot be reached."""
        self._writer = threading.Thread(target=self._write_all, name="collect-writer", daemon=True)
        self._writer.start()
        try:
            for source in self.sources:
                source.start(self.mark, self._bad_mark)
        except BaseException:
            self.close()
            raise
        self._ticker = threading.Thread(target=self._tick, name="collect-ages", daemon=True)
        self._ticker.start()

    def offer(self, part: Part) -> None:
        """A captured part: sampled or not, it waits for a QC mark (one that came first matches at once)."""
        with self._lock:
            self.counts.captured += 1
            if part.missing or not part.frames:
                self.counts.incomplete += 1
                return
            waiting = _Waiting(part, time.time() - (time.monotonic() - part.triggered_at), self.sampler.take())
            early = next((m for m in self._early if self._matches(m, waiting)), None)
            if early is not None:
                self._early.remove(early)
                self._settle(waiting, early)
            elif self.window_s > 0:
                self._parts[part.part_id] = waiting
                while len(self._parts) > self.config.buffer_parts:  # memory bound: the oldest leaves early
                    self._leave(self._parts.popitem(last=False)[1])
            else:
                self._leave(waiting)

    def mark(self, mark: QcMark) -> None:
        """A QC reject mark: its part is stored as a QC reject, or the mark waits for its part."""
        with self._lock:
            self.counts.marks += 1
            match = next((w for w in reversed(self._parts.values()) if self._matches(mark, w)), None)
            if match is None:
                self._early.append(mark)
                return
            del self._parts[match.part.part_id]
            self._settle(match, mark)

    def close(self) -> None:
        """Store the parts still waiting (sampled ones), count the marks still waiting as unmatched, wait for
        the writer and close the ingest record (safe to call twice)."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        for source in self.sources:
            source.close()
        with self._lock:
            while self._parts:
                self._leave(self._parts.popitem(last=False)[1])
            self.counts.unmatched += len(self._early)
            for mark in self._early:
                log.warning("%s matched no part", mark.describe())
            self._early.clear()
        if self._writer is not None:
            self._store.put(None)
            self._writer.join()
            self._writer = None
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None
        self._finish_ingest()

    # -- matching and ageing --------------------------------------------------------------------------
    def _matches(self, mark: QcMark, waiting: _Waiting) -> bool:
        if abs(mark.at - waiting.at) > self.window_s:
            return False
        if mark.part_id is not None:
            return mark.part_id == waiting.part.part_id
        frames = [f for f in waiting.part.frames if mark.camera is None or f.source == mark.camera]
        return bool(frames) and frames[0].frame_counter == mark.frame_counter

    def _settle(self, waiting: _Waiting, mark: QcMark) -> None:
        self.counts.matched += 1
        waiting.mark = mark
        self._queue(waiting, QC_REJECT)

    def _leave(self, waiting: _Waiting) -> None:
        """A part whose window passed without a mark: stored if sampled, unless the writer is that far behind
        (memory stays bounded however slow the disk; a QC reject is rarer and always queued)."""
        if not waiting.sampled:
            return
        if self._store.qsize() >= self.config.buffer_parts:
            self.counts.sample_skipped += 1
            return
        self._queue(waiting, SAMPLE)

    def _queue(self, waiting: _Waiting, why: str) -> None:
        setattr(self.counts, why, getattr(self.counts, why) + 1)
        self._store.put((waiting, why))

    def _tick(self) -> None:
        while not self._stopping.wait(_TICK_S):
            self._age(time.time())

    def _age(self, now: float) -> None:
        with self._lock:
            while self._parts and now - next(iter(self._parts.values())).at > self.window_s:
                self._leave(self._parts.popitem(last=False)[1])
            while self._early and now - self._early[0].at > self.window_s:
                mark = self._early.popleft()
                self.counts.unmatched += 1
                log.warning("%s matched no part within %g s", mark.describe(), self.window_s)

    def _bad_mark(self, why: str) -> None:
        with self._lock:
            self.counts.bad_marks += 1
        log.warning("QC mark ignored: %s", why)

    # -- storing --------------------------------------------------------------------------------------
    def _write_all(self) -> None:
        while (item := self._store.get()) is not None:
            batch = [item]
            while len(batch) < WRITE_BATCH and (more := self._next_queued()) is not None:
                batch.append(more)
            started = time.perf_counter()
            try:
                self._write(batch)
            except Exception as exc:  # noqa: BLE001  (a full disk, a locked or lost database, a bug: counted and
                # logged, and the writer goes on; a writer that died would drop every later part without a count)
                with self._lock:
                    self.counts.store_failures += len(batch)
                parts = ", ".join(w.part.part_id for w, _ in batch)
                if isinstance(exc, OSError | InspectloopError):
                    log.error("parts %s not stored: %s", parts, getattr(exc, "message", None) or exc)
                else:
                    log.exception("parts %s not stored", parts)
            else:
                with self._lock:
                    self._written += len(batch)
                    self._write_total_ms += (time.perf_counter() - started) * 1000
                    self.counts.write_ms = round(self._write_total_ms / self._written, 2)

    def _next_queued(self) -> tuple[_Waiting, str] | None:
        """The next part waiting to be written, if one is queued already (the end marker is put back)."""
        try:
            item = self._store.get_nowait()
        except queue.Empty:
            return None
        if item is None:
            self._store.put(None)
        return item

    def _write(self, batch: list[tuple[_Waiting, str]]) -> None:
        """Store parts in one ingest step: one transaction and one blob sync for the lot."""
        if self._ingest is None:
            self._ingest = IngestSession(self.workspace, source=f"{INGEST_SOURCE} {self.station} {self.session}",
                                         kind="collection", complete_meta=True)
        report = self._ingest.report
        added, duplicates = report.added, len(report.duplicates)
        self._ingest.add([item for waiting, why in batch for item in self.items(waiting, why)])
        with self._lock:
            self.counts.added += report.added - added
            self.counts.already_stored += len(report.duplicates) - duplicates
        self._stored_in_ingest += len(batch)
        if self._stored_in_ingest >= PARTS_PER_INGEST:
            self._finish_ingest()

    def _finish_ingest(self) -> None:
        if self._ingest is not None:
            self._ingest.finish()
            self._ingest, self._stored_in_ingest = None, 0

    def items(self, waiting: _Waiting, why: str) -> list[SourceItem]:
        """The part's frames as ingest items, each with its capture record and why it was collected."""
        part = waiting.part
        items = []
        for frame, light in zip(part.frames, part.lights, strict=True):
            fields: dict[str, Any] = frame.fields(part_id=part.part_id, light=light, station=self.station)
            fields |= {"session": self.session, "collected": why, "sampled": str(waiting.sampled).lower()}
            if waiting.mark is not None:
                fields |= {"qc_mark_source": waiting.mark.source,
                           "qc_mark_delay_s": f"{waiting.mark.at - waiting.at:.3f}"}
            meta = CaptureMeta(**{k: fields.get(k) for k in METADATA_FIELDS},
                               extra={k: str(v) for k, v in fields.items() if k not in METADATA_FIELDS})
            # the source path names why it was collected: an image stored before (the same bytes, or a frame the
            # inspection service kept) keeps its record, and this path is added to its sources
            name = Path(f"{self.station}/{why}/{part.part_id}.{frame.source}.{light}.ppm")
            items.append(SourceItem(path=name, label=None, meta=meta, data=frame.encoded()))
        return items
