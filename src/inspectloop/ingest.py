"""Ingest camera images: from a folder-per-class tree or a CSV manifest with capture metadata.

Each image is decoded (so corrupt files are caught here, not during training), measured, stored once
under its SHA-256 and recorded with its metadata and label. Bad files are reported with their path
and skipped; they never abort the batch. Blobs are written atomically before the rows that name them,
and rows commit in small transactions, so a crash leaves no half-written image or row.
"""

from __future__ import annotations

import csv
import time
import fnmatch
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from inspectloop.domain import (
    CLASS_NAME, METADATA_FIELDS, Annotation, CaptureMeta, ClassDefinition, ImageRecord, ImageSource, Severity,
    looks_good,
)
from inspectloop.errors import ImageError, IngestError
from inspectloop.quality import quality_stats
from inspectloop.runtime.images import Decoded, decode_image, is_grey_content
from inspectloop.store import Transaction, sha256_bytes
from inspectloop.workspace import Workspace

CHUNK = 64
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class SourceItem:
    """One file to ingest, with what the source says about it."""

    path: Path
    label: str | None
    meta: CaptureMeta


@dataclass
class IngestReport:
    source: str
    added: int = 0
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (path, sha256 already stored)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    warnings: list[tuple[str, str]] = field(default_factory=list)  # (path, what the decoder lost or guessed)
    reoriented: list[tuple[str, int]] = field(default_factory=list)  # (path, EXIF orientation applied)
    annotations_added: int = 0
    classes_created: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def seen(self) -> int:
        return self.added + len(self.duplicates) + len(self.skipped)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "added": self.added, "duplicates": len(self.duplicates),
                "skipped": len(self.skipped), "annotations_added": self.annotations_added,
                "classes_created": self.classes_created, "seconds": round(self.seconds, 3),
                "skipped_files": [{"path": p, "reason": r} for p, r in self.skipped],
                "duplicate_files": [{"path": p, "sha256": d} for p, d in self.duplicates],
                "warnings": [{"path": p, "warning": w} for p, w in self.warnings],
                "reoriented_files": [{"path": p, "exif_orientation": o} for p, o in self.reoriented]}


def scan_folder(root: Path, *, exclude: Iterable[str] = ()) -> list[SourceItem]:
    """A folder-per-class tree: ``root/<class>/...``; files directly in ``root`` are unlabelled.

    ``exclude`` holds glob patterns on the path relative to ``root`` (e.g. ``*/masks/*``).
    """
    root = Path(root)
    if not root.is_dir():
        raise IngestError(f"{root} is not a folder", "point ingest at the folder that holds one sub-folder per class")
    patterns = list(exclude)
    items = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not _hidden(p, root)):
        relative = path.relative_to(root).as_posix()
        if any(fnmatch.fnmatch(relative, pattern) for pattern in patterns):
            continue
        label = path.relative_to(root).parts[0] if len(path.relative_to(root).parts) > 1 else None
        items.append(SourceItem(path=path, label=label, meta=CaptureMeta()))
    if not items:
        raise IngestError(f"no files found in {root}" + (" (after --exclude)" if patterns else ""),
                          "put images in one sub-folder per class, e.g. good/ and scratch/")
    return items


def scan_manifest(manifest: Path) -> tuple[list[SourceItem], list[tuple[str, str]]]:
    """A CSV with a ``path`` column (relative to the CSV's folder), optional ``label`` and metadata columns.

    Known columns: camera, line, shift, lighting, part_id, session, captured_at (ISO 8601); any other
    column is kept as free-form metadata. Returns the items and the rows refused, with reasons.
    """
    try:
        with open(manifest, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise IngestError(f"cannot read manifest {manifest}: {exc}", "give a UTF-8 CSV file with a header row") from exc
    if "path" not in columns:
        raise IngestError(f"manifest {manifest} has no 'path' column (columns: {', '.join(columns) or 'none'})",
                          "add a header row with at least 'path' (and usually 'label')")
    if not rows:
        raise IngestError(f"manifest {manifest} has a header but no rows", "add one row per image")
    items, refused = [], []
    for number, row in enumerate(rows, start=2):
        try:
            items.append(_manifest_item(manifest.parent, row))
        except (ValueError, ValidationError) as exc:
            refused.append((f"{manifest}:{number}", f"bad row: {_first_error(exc)}"))
    return items, refused


def _manifest_item(base: Path, row: dict[str, str | None]) -> SourceItem:
    clean = {(k or "").strip(): (v or "").strip() for k, v in row.items() if k is not None}
    if not clean.get("path"):
        raise ValueError("empty 'path'")
    known = {name: clean.get(name) or None for name in METADATA_FIELDS}
    if known["captured_at"]:
        known["captured_at"] = datetime.fromisoformat(known["captured_at"])  # type: ignore[assignment]
    extra = {k: v for k, v in clean.items() if k not in {*METADATA_FIELDS, "path", "label"} and v}
    path = Path(clean["path"])
    return SourceItem(path=path if path.is_absolute() else base / path, label=clean.get("label") or None,
                      meta=CaptureMeta(**known, extra=extra))


def ingest(workspace: Workspace, items: list[SourceItem], *, source: str, kind: str = "folder",
           annotator: str = "import", create_classes: bool = True, refused: Iterable[tuple[str, str]] = (),
           progress: Progress | None = None) -> IngestReport:
    """Store ``items`` in the workspace and return what happened to each file."""
    started = time.perf_counter()
    report = IngestReport(source=source, skipped=list(refused))
    known_classes = set(workspace.db.labels.classes())
    ingest_id = workspace.db.images.begin_ingest(source, kind)
    seen: dict[str, str] = {}  # digest -> first path, within this batch and from the store
    for done, chunk in _chunks(items):
        _ingest_chunk(workspace, chunk, ingest_id, report, seen, known_classes,
                      annotator=annotator, create_classes=create_classes)
        if progress:
            progress(done, len(items))
    report.seconds = time.perf_counter() - started
    workspace.db.images.finish_ingest(ingest_id, report.to_dict())
    return report


def _chunks(items: list[SourceItem]) -> Iterator[tuple[int, list[SourceItem]]]:
    for start in range(0, len(items), CHUNK):
        chunk = items[start:start + CHUNK]
        yield start + len(chunk), chunk


@dataclass
class _Prepared:
    item: SourceItem
    digest: str
    record: ImageRecord | None  # None when the bytes are already stored


def _ingest_chunk(workspace: Workspace, chunk: list[SourceItem], ingest_id: int, report: IngestReport,
                  seen: dict[str, str], known_classes: set[str], *, annotator: str, create_classes: bool) -> None:
    prepared = _prepare(workspace, chunk, report, seen, known_classes, create_classes)
    with workspace.db.transaction() as tx:
        for label in sorted({e.item.label for e in prepared if e.item.label} - known_classes):
            tx.labels.upsert_class(_default_class(label))
            known_classes.add(label)
            report.classes_created.append(label)
        new_records = [e.record for e in prepared if e.record is not None]
        tx.images.add(new_records, ingest_id)
        tx.images.add_sources([(e.digest, str(e.item.path)) for e in prepared], ingest_id)
        annotations = _new_annotations(tx, prepared, annotator)
        tx.labels.add_annotations(annotations)
    report.added += len(new_records)
    report.annotations_added += len(annotations)


def _new_annotations(tx: Transaction, prepared: list[_Prepared], annotator: str) -> list[Annotation]:
    """One import annotation per (image, label), skipping those an earlier ingest already recorded."""
    existing = tx.labels.existing_annotations([e.digest for e in prepared])
    annotations = []
    for entry in prepared:
        key = (entry.digest, entry.item.label, annotator)
        if entry.item.label and key not in existing:
            existing.add(key)
            annotations.append(Annotation(sha256=entry.digest, class_name=entry.item.label, annotator=annotator,
                                          source="import"))
    return annotations


def _prepare(workspace: Workspace, chunk: list[SourceItem], report: IngestReport, seen: dict[str, str],
             known_classes: set[str], create_classes: bool) -> list[_Prepared]:
    """Read, hash, decode, measure and store the blobs of a chunk (no database writes yet)."""
    loaded = _read_files(chunk, report, known_classes, create_classes)
    digests = [sha256_bytes(data) for _, data in loaded]
    stored = workspace.db.images.existing(d for d in digests if d not in seen)
    prepared, new_blobs = [], []
    for (item, data), digest in zip(loaded, digests, strict=True):
        if digest in seen or digest in stored:
            report.duplicates.append((str(item.path), seen.get(digest, digest)))
            prepared.append(_Prepared(item, digest, None))
            continue
        try:
            decoded = decode_image(data, name=str(item.path))
            record = measure_decoded(decoded, digest, len(data), item.meta, ImageSource.collection)
        except ImageError as exc:
            report.skipped.append((str(item.path), exc.message.split(": ", 1)[-1] + f" ({exc.hint})"))
            continue
        _note_decode(report, str(item.path), decoded)
        new_blobs.append(data)
        seen[digest] = str(item.path)
        prepared.append(_Prepared(item, digest, record))
    workspace.blobs.put_many(new_blobs)  # blobs are durable before any row names them
    return prepared


def _read_files(chunk: list[SourceItem], report: IngestReport, known_classes: set[str],
                create_classes: bool) -> list[tuple[SourceItem, bytes]]:
    loaded = []
    for item in chunk:
        if item.label and not CLASS_NAME.match(item.label):
            report.skipped.append((str(item.path), f"label {item.label!r} is not a valid class name (1-64 letters, "
                                                   "digits, space, '_', '-' or '.'); rename the folder or label"))
            continue
        if item.label and item.label not in known_classes and not create_classes:
            report.skipped.append((str(item.path), f"unknown class {item.label!r}; define it first with "
                                                   f"'inspectloop classes add {item.label}'"))
            continue
        try:
            loaded.append((item, item.path.read_bytes()))
        except OSError as exc:
            report.skipped.append((str(item.path), f"cannot read file: {exc.strerror or exc}"))
    return loaded


def _note_decode(report: IngestReport, path: str, decoded: Decoded) -> None:
    """Keep what the decoder changed: its warnings, and the EXIF orientation it applied (the stored bytes
    keep the original orientation; every decode, in training and serving alike, turns them upright)."""
    report.warnings.extend((path, warning) for warning in decoded.warnings)
    if decoded.reoriented:
        report.reoriented.append((path, decoded.orientation))


def measure_image(data: bytes, digest: str, meta: CaptureMeta, source: ImageSource,
                  name: str | None = None) -> ImageRecord:
    """Decode an image once and describe it: format and modes, size, quality statistics.

    ImageError (naming ``name``) when it cannot be used.
    """
    return measure_decoded(decode_image(data, name=name), digest, len(data), meta, source)


def measure_decoded(decoded: Decoded, digest: str, size_bytes: int, meta: CaptureMeta,
                    source: ImageSource) -> ImageRecord:
    """Describe an image already decoded by ``decode_image`` (no options): what ``measure_image`` records.

    The service decodes each request once and measures that decode (``inspectloop.serve``).
    """
    image = decoded.image
    # RGB files whose channels are identical (common for greyscale cameras) are worked on as L.
    working_mode = "L" if is_grey_content(image) else image.mode
    return ImageRecord(sha256=digest, format=decoded.format, original_mode=decoded.original_mode,
                       working_mode=working_mode, width=image.width, height=image.height, size_bytes=size_bytes,
                       meta=meta, quality=quality_stats(image), source=source)


def _default_class(name: str) -> ClassDefinition:
    good = looks_good(name)
    criterion = "defect-free part" if good else ""
    return ClassDefinition(name=name, criterion=criterion, severity=Severity.none if good else Severity.major,
                           is_good=good)


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        return f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}"
    return str(exc)
