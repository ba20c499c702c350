"""The station's durable decision outbox: every decision published to the line is first appended (and
synced) to an on-disk journal, then delivered to each publisher in journal order by its own thread.

A publisher that fails (broker down, PLC unreachable) is restarted with a growing pause, and its
decisions wait in the journal meanwhile; once it is back they go out in order, oldest first, and the
ones still waiting when the station stops go out at the next start. Delivery is at least once: a
decision whose acknowledgement was lost is sent again (the part id tells the receiver it is a repeat).

On disk, in the station's folder: ``decisions.jsonl`` (one JSON line per decision: ``seq``, the
published decision, why it was given, the prediction-log request ids of its frames), closed past
``SEGMENT_BYTES`` as ``decisions.<first seq>-<last seq>.jsonl`` (kept: archive or delete them as the
site's records policy says), and ``outbox.json`` (the last ``seq``, and per publisher the last ``seq``
it acknowledged). The journal is also the station's record of what the line was told.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from inspectloop.errors import InspectloopError, PublishError
from inspectloop.line.decision import PartDecision
from inspectloop.line.publish import Publisher

log = logging.getLogger(__name__)
JOURNAL_FILE = "decisions.jsonl"
STATE_FILE = "outbox.json"
TAIL = 4096  # journal entries kept in memory; a publisher further behind reads the files
SEGMENT_BYTES = 64 * 1024 * 1024  # past this size the journal file is closed as decisions.<first>-<last>.jsonl
RETRY_S = (0.2, 0.5, 1.0, 2.0, 5.0)  # pauses between restarts of a failed publisher


@dataclass(frozen=True)
class Entry:
    """One journal line: the decision as published, its place in order, why it was given (``model``,
    ``late``, ``failed``, ``dropped``, ``no_frame``) and the request ids of its frames' logged predictions."""

    seq: int
    decision: PartDecision
    reason: str = "model"
    requests: tuple[str, ...] = ()

    def to_json(self) -> str:
        return json.dumps({"seq": self.seq, "decision": self.decision.to_dict(), "reason": self.reason,
                           "requests": list(self.requests)}, separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> Entry:
        raw = json.loads(line)
        fields = dict(raw["decision"])
        fields["decided_at"] = datetime.fromisoformat(fields["decided_at"])
        return cls(int(raw["seq"]), PartDecision(**fields), raw.get("reason", "model"), tuple(raw.get("requests", ())))


class DecisionJournal:
    """The append-only, synced journal of published decisions and each publisher's delivered position.

    ``append`` returns once the line is on disk (one fsync: a decision the line may act on survives a
    power cut); ``delivered`` moves a publisher's position without a sync, since losing it only means
    sending a few decisions again. Thread-safe.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / JOURNAL_FILE
        self._lock = threading.Lock()
        self._tail: deque[Entry] = deque(maxlen=TAIL)
        self._delivered: dict[str, int] = {}
        self.last_seq = 0
        self._file: Any = None
        self._first_seq = 1  # of the current file

    def open(self) -> None:
        """Create the folder or read what an earlier run left: the last seq and each publisher's position."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            _cut_torn_line(self.path)
            state = json.loads((self.folder / STATE_FILE).read_text()) if (self.folder / STATE_FILE).exists() else {}
            self._delivered = {str(k): int(v) for k, v in state.get("delivered", {}).items()}
            closed = [last for _, last in map(_segment_range, self._segments())]
            self.last_seq = max([int(state.get("last_seq", 0)), *closed])
            self._first_seq = max(closed, default=0) + 1
            for entry in self._read_file(self.path, 0):  # closed segments all come before it
                self.last_seq = max(self.last_seq, entry.seq)
                self._tail.append(entry)
            self._file = self.path.open("a", encoding="utf-8")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise PublishError(f"cannot open the decision outbox in {self.folder}: {exc}",
                               "check the folder's permissions and free space; a damaged outbox.json can be "
                               "deleted (publishers then start after the last journaled decision)") from None

    def close(self) -> None:
        """Close the journal file (positions are already written)."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def track(self, target: str) -> None:
        """Start tracking ``target``: a publisher seen for the first time starts at the end of the journal
        (it is not sent decisions made before it was configured)."""
        with self._lock:
            if target not in self._delivered:
                self._delivered[target] = self.last_seq
                self._save()

    def append(self, decision: PartDecision, *, reason: str = "model", requests: tuple[str, ...] = ()) -> Entry:
        """Give ``decision`` the next seq and write it durably."""
        with self._lock:
            if self._file is None:
                raise PublishError("the decision outbox is not open", "call open() first")
            entry = Entry(self.last_seq + 1, decision, reason, requests)
            self._file.write(entry.to_json() + "\n")
            self._file.flush()
            os.fsync(self._file.fileno())
            self.last_seq = entry.seq
            self._tail.append(entry)
            if self._file.tell() >= SEGMENT_BYTES:
                self._rotate()
            return entry

    def position(self, target: str) -> int:
        """The last seq ``target`` acknowledged."""
        with self._lock:
            return self._delivered.get(target, self.last_seq)

    def waiting(self, target: str) -> int:
        """How many decisions ``target`` has not acknowledged yet."""
        with self._lock:
            return self.last_seq - self._delivered.get(target, self.last_seq)

    def after(self, seq: int, most: int = 256) -> list[Entry]:
        """Up to ``most`` consecutive entries after ``seq``, in order (from memory, or from the files when
        older); never one past a gap, so a file closed while being read cannot make a publisher skip any."""
        with self._lock:
            if seq >= self.last_seq:
                return []
            if self._tail and self._tail[0].seq <= seq + 1:
                return [e for e in self._tail if e.seq > seq][:most]
        found: list[Entry] = []
        for entry in self._read(seq):
            if entry.seq != seq + len(found) + 1 or len(found) == most:
                break
            found.append(entry)
        return found

    def delivered(self, target: str, seq: int) -> None:
        """Record that ``target`` acknowledged every entry up to ``seq``."""
        with self._lock:
            self._delivered[target] = max(seq, self._delivered.get(target, 0))
            self._save()

    def _save(self) -> None:
        # Written by rename so it is whole or the previous one; not synced (a lost update re-sends, see class doc).
        tmp = self.folder / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps({"last_seq": self.last_seq, "delivered": self._delivered}))
        os.replace(tmp, self.folder / STATE_FILE)

    def _rotate(self) -> None:
        """Close the current file as ``decisions.<first>-<last>.jsonl`` and begin a new one (under the lock)."""
        self._file.close()
        os.replace(self.path, self.folder / f"decisions.{self._first_seq:012d}-{self.last_seq:012d}.jsonl")
        self._save()  # last_seq, so a start never has to read the closed files
        self._file = self.path.open("a", encoding="utf-8")
        self._first_seq = self.last_seq + 1

    def _segments(self) -> list[Path]:
        """The closed journal files, oldest first (zero-padded names sort by seq)."""
        return sorted(self.folder.glob("decisions.*-*.jsonl"))

    def _read(self, after: int) -> Iterator[Entry]:
        for path in self._segments():
            if _segment_range(path)[1] > after:
                yield from self._read_file(path, after)
        yield from self._read_file(self.path, after)

    @staticmethod
    def _read_file(path: Path, after: int) -> Iterator[Entry]:
        if not path.exists():
            return
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                if not line.endswith("\n"):
                    break  # being written right now (or torn by a crash; open() cuts that)
                entry = Entry.from_json(line)
                if entry.seq > after:
                    yield entry


def _segment_range(path: Path) -> tuple[int, int]:
    first, last = path.name.split(".")[1].split("-")
    return int(first), int(last)


class Delivery:
    """Delivers the journal to one publisher, in order, on its own thread; restarts the publisher after a
    failure and keeps trying (decisions wait in the journal). ``on_delivered(entry)`` is called after each
    acknowledgement; ``down`` says why the publisher is failing (None while it works)."""

    def __init__(self, publisher: Publisher, journal: DecisionJournal,
                 on_delivered: Callable[[str, Entry], None] | None = None) -> None:
        self.publisher = publisher
        self.journal = journal
        self.target = publisher.target
        self.on_delivered = on_delivered
        self.down: str | None = None
        self.failures = 0  # failed attempts, whole run
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Track the target in the journal and start the delivery thread (the publisher is already started)."""
        self.journal.track(self.target)
        self._thread = threading.Thread(target=self._run, name=f"deliver {self.target}", daemon=True)
        self._thread.start()
        self._wake.set()  # decisions an earlier run left go out first

    def notify(self) -> None:
        """A new entry is in the journal."""
        self._wake.set()

    def drain(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for every journal entry to be acknowledged; True if they were."""
        end = time.monotonic() + timeout_s
        while self.journal.waiting(self.target) > 0:
            if time.monotonic() >= end:
                return False
            self._wake.set()
            time.sleep(0.02)
        return True

    def stop(self) -> None:
        """Stop the thread (what is not delivered stays in the journal) and close the publisher."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
        try:
            self.publisher.close()
        except Exception:  # noqa: BLE001 (a publisher that is down may fail to close; nothing is lost)
            log.debug("closing %s failed", self.target, exc_info=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            while not self._stop.is_set():
                batch = self.journal.after(self.journal.position(self.target))
                if not batch:
                    break
                if not self._send(batch) and not self._restart_until_up():
                    return

    def _send(self, batch: list[Entry]) -> bool:
        for entry in batch:
            try:
                self.publisher.publish(entry.decision)
            except Exception as exc:  # noqa: BLE001 (any failure: the decision stays in the journal, retried)
                self._failed(exc)
                return False
            self.journal.delivered(self.target, entry.seq)
            if self.down is not None:
                log.warning("%s is back: delivering the %d waiting decision(s) in order", self.target,
                            self.journal.waiting(self.target) + 1)
                self.down = None
            if self.on_delivered is not None:
                self.on_delivered(self.target, entry)
        return True

    def _restart_until_up(self) -> bool:
        """Restart the publisher after growing pauses until it starts; False if stopped first."""
        for attempt in itertools.count():
            if self._stop.wait(RETRY_S[min(attempt, len(RETRY_S) - 1)]):
                return False
            try:
                self.publisher.close()
            except Exception:  # noqa: BLE001 (the old connection is broken; a new one is made below)
                log.debug("closing %s failed", self.target, exc_info=True)
            try:
                self.publisher.start()
            except Exception as exc:  # noqa: BLE001 (still down: try again after the next pause)
                self._failed(exc)
                continue
            return True
        return False

    def _failed(self, exc: Exception) -> None:
        self.failures += 1
        why = exc.message if isinstance(exc, InspectloopError) else f"{type(exc).__name__}: {exc}"
        if self.down is None:
            log.warning("%s is failing (%s); %d decision(s) kept in the outbox, retried in order", self.target,
                        why, self.journal.waiting(self.target))
        self.down = why


def _cut_torn_line(path: Path) -> None:
    """Remove a last line a crash cut mid-write (never synced, so never published): the next append would
    otherwise glue onto it."""
    if not path.exists():
        return
    with path.open("rb+") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size == 0:
            return
        handle.seek(max(size - 65536, 0))
        tail = handle.read()
        if tail.endswith(b"\n"):
            return
        keep = size - len(tail) + tail.rfind(b"\n") + 1 if b"\n" in tail else 0
        handle.truncate(keep)
        handle.flush()
        os.fsync(handle.fileno())
