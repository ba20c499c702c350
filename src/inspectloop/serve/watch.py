"""Folder-watch mode: cameras drop image files into a folder; each is predicted, logged and moved aside.

A file is taken once its size and modification time held still over one poll (a camera still
writing it is left alone), and never while it ends in ``.tmp``/``.part`` or starts with a dot.
Metadata comes from a sidecar ``NAME.json`` (or ``NAME.EXT.json``) and, for a file in a sub-folder,
camera = the sub-folder's name. Done files move to ``DIR/processed/``, unusable ones to
``DIR/rejected/`` with a ``.why.txt``: camera data is never deleted. The request id is derived from
the file's path and bytes, so a file re-read after a crash is logged once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path

from inspectloop.errors import RequestError
from inspectloop.serve.service import InspectionService

log = logging.getLogger(__name__)
PARTIAL_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload")
DONE, REJECTED = "processed", "rejected"


class FolderWatcher:
    """Polls ``folder`` every ``poll_seconds`` in a background thread (or call ``scan`` yourself)."""

    def __init__(self, service: InspectionService, folder: Path, *, poll_seconds: float = 0.5) -> None:
        self.service = service
        self.folder = Path(folder)
        self.poll_seconds = poll_seconds
        self._seen: dict[Path, tuple[int, int]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.folder.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="folder-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.scan()
            except Exception:  # the watcher must outlive one bad poll (a vanished file, a full disk)
                log.exception("folder watch poll failed")

    def scan(self) -> list[tuple[Path, str]]:
        """Process every file that held still since the last scan; return (file, "processed" | "rejected")."""
        done = []
        sizes = {path: _signature(path) for path in self._candidates()}
        for path, signature in sizes.items():
            if signature is not None and signature[0] > 0 and self._seen.get(path) == signature:
                done.append((path, self._process(path)))
        self._seen = {p: s for p, s in sizes.items() if s is not None and p.exists()}
        return done

    def _candidates(self) -> list[Path]:
        found = []
        for path in sorted(self.folder.rglob("*")):
            relative = path.relative_to(self.folder)
            if (not path.is_file() or relative.parts[0] in (DONE, REJECTED)
                    or any(part.startswith(".") for part in relative.parts)
                    or path.suffix.lower() in PARTIAL_SUFFIXES or path.suffix.lower() == ".json"):
                continue
            found.append(path)
        return found

    def _process(self, path: Path) -> str:
        relative = path.relative_to(self.folder)
        sidecar = _sidecar(path)
        try:
            data = path.read_bytes()
            fields = _fields(relative, sidecar)
            request_id = "watch-" + hashlib.sha256(f"{relative.as_posix()}\0".encode() + data).hexdigest()[:40]
            self.service.submit(data, fields, request_id=request_id, source="watch").result(timeout=60)
        except RequestError as exc:
            _move(path, sidecar, self.folder / REJECTED / relative)
            why = self.folder / REJECTED / relative.with_name(relative.name + ".why.txt")
            why.write_text(f"{exc.message}\nfix: {exc.hint or '-'}\n")
            log.warning("rejected %s: %s", relative, exc.message)
            return REJECTED
        _move(path, sidecar, self.folder / DONE / relative)
        return DONE


def _signature(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


def _sidecar(path: Path) -> Path | None:
    for candidate in (path.with_name(path.name + ".json"), path.with_suffix(".json")):
        if candidate.is_file():
            return candidate
    return None


def _fields(relative: Path, sidecar: Path | None) -> dict[str, str | None]:
    fields: dict[str, str | None] = {}
    if len(relative.parts) > 1:
        fields["camera"] = relative.parts[0]
    if sidecar is not None:
        try:
            data = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RequestError(f"sidecar {sidecar.name} is not valid JSON ({exc})",
                               "write the metadata as a JSON object, e.g. {\"camera\": \"cam1\"}") from None
        if not isinstance(data, dict):
            raise RequestError(f"sidecar {sidecar.name} is not a JSON object", "write {\"camera\": \"cam1\", ...}")
        fields.update({str(k): None if v is None else str(v) for k, v in data.items()})
    return fields


def _move(path: Path, sidecar: Path | None, target: Path) -> None:
    """Move a file (and its sidecar) to ``target``, never over an existing file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    final = target
    number = 1
    while final.exists():
        final = target.with_name(f"{target.stem}.{number}{target.suffix}")
        number += 1
    os.replace(path, final)
    if sidecar is not None and sidecar.exists():
        os.replace(sidecar, final.with_name(final.name + ".json"))
