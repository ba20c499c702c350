"""Ingest camera images: from a folder-per-class tree or a CSV manifest with capture metadata.

Each image is decoded (so corrupt files are caught here, not during training), measured, stored once
under its SHA-256 and recorded with its metadata and label. Bad files are reported with their path
and skipped; they never abort the batch. Blobs are written atomically before the rows that name them,
and rows commit in small transactions, so a crash leaves no half-written image or row.
"""

from __future__ import annotations

import csv
import errno
import fnmatch
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from inspectloop.domain import (
    CLASS_NAME, MAX_FIELD_CHARS, METADATA_FIELDS, Annotation, CaptureMeta, ClassDefinition, ImageRecord, ImageSource, Severity,
    looks_good,
)
from inspectloop.errors import ImageError, IngestError
from inspectloop.evaluate.slices import label_determined_fields
from inspectloop.near_duplicates import HASH_KIND, perceptual_hash
from inspectloop.quality import quality_stats
from inspectloop.runtime.images import Decoded, decode_image, is_grey_content
from inspectloop.store import Transaction, sha256_bytes
from inspectloop.workspace import Workspace

CHUNK = 64
Progress = Callable[[int, int], None]
SOFT_LABEL = "defect_probability"
# Every column a manifest may have, with what it means and an example: the README's manifest section and
# ``inspectloop ingest --help`` list the same (a test holds them to it). Names are exact and lower-case.
MANIFEST_COLUMNS: tuple[tuple[str, str], ...] = (
    ("path", "required: the image file, relative to the manifest's folder (good/0001.png)"),
    ("label", "its class (scratch); empty: unlabelled; no column: every image unlabelled"),
    ("camera", "the camera (cam1): drift is monitored per camera, reports slice by it"),
    ("line", "the production line (L3)"),
    ("shift", "the shift (night)"),
    ("lighting", "the lighting or fixture (dome)"),
    ("part_id", "the part (P-00123): a part's images never straddle train and test"),
    ("session", "the capture session (s05): 'dataset create --test-value s05' holds one out"),
    ("captured_at", "when, in ISO 8601 (2026-03-01T22:15:00); another format refuses the row"),
    (SOFT_LABEL, "soft label: probability 0-1 that the part is defective (0.3); needs a label"),
)


@dataclass(frozen=True)
class SourceItem:
    """One file to ingest, with what the source says about it."""

    path: Path
    label: str | None
    meta: CaptureMeta
    probability: float | None = None  # soft label: the annotator's probability that the part is defective
    data: bytes | None = None  # the image's bytes when they come from memory (a camera), not from ``path``


@dataclass(frozen=True)
class SourceScan:
    """What a folder or manifest holds: the files to ingest, the rows refused, and notes for the user."""

    items: list[SourceItem]
    refused: list[tuple[str, str]] = field(default_factory=list)  # (path or manifest:line, reason)
    notes: list[str] = field(default_factory=list)  # things the user must hear about (no label column, ...)
    kind: str = "folder"


@dataclass(frozen=True)
class LabelConflict:
    """The same bytes arrived under two classes from one annotator: both kept, left out of training until settled."""

    path: str
    sha256: str
    label: str
    other_labels: tuple[str, ...]
    same_as: str | None  # a path the same bytes arrived from earlier

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "label": self.label,
                "other_labels": list(self.other_labels), "same_as": self.same_as}


@dataclass
class IngestReport:
    source: str
    added: int = 0
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (path, sha256 already stored)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    warnings: list[tuple[str, str]] = field(default_factory=list)  # (path, what the decoder lost or guessed)
    reoriented: list[tuple[str, int]] = field(default_factory=list)  # (path, EXIF orientation applied)
    annotations_added: int = 0
    completed: int = 0  # images stored before whose missing metadata this ingest filled in (``complete_meta``)
    classes_created: list[str] = field(default_factory=list)
    seconds: float = 0.0
    conflicts: list[LabelConflict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    first_paths: dict[str, str] = field(default_factory=dict)  # sha256 -> first path it arrived from, this ingest

    @property
    def seen(self) -> int:
        return self.added + len(self.duplicates) + len(self.skipped)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "added": self.added, "duplicates": len(self.duplicates),
                "skipped": len(self.skipped), "annotations_added": self.annotations_added,
                "completed": self.completed,
                "classes_created": self.classes_created, "seconds": round(self.seconds, 3),
                "skipped_files": [{"path": p, "reason": r} for p, r in self.skipped],
                "duplicate_files": [{"path": p, "sha256": d, "same_as": self.first_paths.get(d)}
                                    for p, d in self.duplicates],
                "conflicts": len(self.conflicts), "conflict_files": [c.to_dict() for c in self.conflicts],
                "notes": self.notes,
                "warnings": [{"path": p, "warning": w} for p, w in self.warnings],
                "reoriented_files": [{"path": p, "exif_orientation": o} for p, o in self.reoriented]}


def scan_source(source: Path, *, exclude: Iterable[str] = (), allow_outside: bool = False) -> SourceScan:
    """A folder-per-class tree or a CSV manifest (when ``source`` is a file), with what the user must hear."""
    source = Path(source)
    if source.is_file():
        return scan_manifest_source(source, allow_outside=allow_outside)
    return scan_folder_source(source, exclude=exclude)


def scan_folder(root: Path, *, exclude: Iterable[str] = ()) -> list[SourceItem]:
    """The files of a folder-per-class tree (``scan_folder_source`` also says what it skipped)."""
    return scan_folder_source(root, exclude=exclude).items


def scan_folder_source(root: Path, *, exclude: Iterable[str] = ()) -> SourceScan:
    """A folder-per-class tree: ``root/<class>/...``; files directly in ``root`` are unlabelled.

    ``exclude`` holds glob patterns on the path relative to ``root`` (e.g. ``*/masks/*``). Symlinked
    files are followed; symlink loops, broken links and symlinked folders are skipped and said so.
    """
    root = Path(root)
    if not root.is_dir():
        raise IngestError(f"{root} is not a folder", "point ingest at the folder that holds one sub-folder per class")
    patterns = list(exclude)
    items, unusable = [], []
    for path in sorted(p for p in root.rglob("*") if not _hidden(p, root)):
        relative = path.relative_to(root).as_posix()
        if any(fnmatch.fnmatch(relative, pattern) for pattern in patterns):
            continue
        if not path.is_file():
            if path.is_symlink():
                unusable.append(path)
            continue
        label = path.relative_to(root).parts[0] if len(path.relative_to(root).parts) > 1 else None
        items.append(SourceItem(path=path, label=label, meta=CaptureMeta()))
    if not items:
        raise IngestError(f"no files found in {root}" + (" (after --exclude)" if patterns else ""),
                          "put images in one sub-folder per class, e.g. good/ and scratch/")
    return SourceScan(items, notes=_symlink_notes(unusable), kind="folder")


def _symlink_notes(links: list[Path]) -> list[str]:
    """One line per kind of symlink a folder scan could not use: loops, broken links, linked folders."""
    kinds: dict[str, list[Path]] = {"loop": [], "broken": [], "folder": []}
    for link in links:
        try:
            target = link.resolve(strict=True)
        except RuntimeError:  # Python 3.11 reports a loop so; later versions raise OSError(ELOOP)
            kinds["loop"].append(link)
            continue
        except OSError as exc:
            kinds["loop" if exc.errno == errno.ELOOP else "broken"].append(link)
            continue
        kinds["loop" if link.parent.resolve().is_relative_to(target) else "folder"].append(link)
    texts = {"loop": "symlink loop(s) skipped", "broken": "broken symlink(s) skipped",
             "folder": "symlinked folder(s) not followed (ingest that folder itself, or link its files)"}
    return [f"{len(found)} {texts[kind]}; first: {found[0]}" for kind, found in kinds.items() if found]


def scan_manifest(manifest: Path, *, allow_outside: bool = False) -> tuple[list[SourceItem], list[tuple[str, str]]]:
    """The items of a CSV manifest and the rows refused, with reasons (see ``scan_manifest_source``)."""
    scan = scan_manifest_source(manifest, allow_outside=allow_outside)
    return scan.items, scan.refused


def scan_manifest_source(manifest: Path, *, allow_outside: bool = False) -> SourceScan:
    """A CSV with a ``path`` column (relative to the CSV's folder), optional ``label`` and metadata columns.

    Known columns: ``MANIFEST_COLUMNS``; any other column is kept as free-form metadata (reports slice
    by it like the known ones); an empty cell is no value. A row naming a file outside the manifest's folder (``../``,
    an absolute path, a symlink leading out) is refused unless ``allow_outside``: a manifest from
    elsewhere must not pull arbitrary files of this machine into the workspace.
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
            item = _manifest_item(manifest.parent, row)
        except (ValueError, ValidationError) as exc:
            refused.append((f"{manifest}:{number}", f"bad row: {_first_error(exc)}"))
            continue
        outside = None if allow_outside else _outside_reason(item.path, manifest.parent)
        if outside:
            refused.append((f"{manifest}:{number}", f"{outside}; refused (pass --allow-outside to ingest it)"))
        else:
            items.append(item)
    notes = [] if "label" in columns else [_no_label_note(manifest, columns, len(items))]
    return SourceScan(items, refused, notes + label_echo_notes(items), kind="manifest")


def label_echo_notes(items: Sequence[SourceItem]) -> list[str]:
    """One line per metadata column that repeats the label (each class has one value of it): such a
    column is kept, but evaluation reports do not slice by it (``evaluate.slices``)."""
    labelled = [item for item in items if item.label]
    echoes = label_determined_fields([item.label for item in labelled], [item.meta.fields() for item in labelled])
    return [f"column {echo.describe()}: kept as metadata, but evaluation reports do not slice by it "
            "(its slices would only be the classes again)" for echo in echoes]


def _outside_reason(path: Path, base: Path) -> str | None:
    """Why ``path`` is not inside ``base`` once ``..`` and symlinks are resolved; None when it is."""
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError):  # a symlink loop
        return f"{path} is a symlink loop"
    if resolved.is_relative_to(base.resolve()):
        return None
    via = " (through a symlink)" if path.absolute().is_relative_to(base.absolute()) else ""
    return f"{path} is outside the manifest's folder {base}{via}"


def _no_label_note(manifest: Path, columns: list[str], count: int) -> str:
    near = [c for c in columns if c.lower() in {"label", "labels", "class", "category", "defect"}]
    fix = f"rename column {near[0]!r} to 'label'" if near else "add a 'label' column to label them"
    return f"{manifest.name} has no 'label' column: its {count} image(s) are ingested unlabelled ({fix})"


def _manifest_item(base: Path, row: dict[str, str | None]) -> SourceItem:
    clean = {(k or "").strip(): (v or "").strip() for k, v in row.items() if k is not None}
    if not clean.get("path"):
        raise ValueError("empty 'path'")
    for name, value in clean.items():
        if name != "path" and (len(name) > MAX_FIELD_CHARS or len(value) > MAX_FIELD_CHARS):
            raise ValueError(f"column {name[:40]!r} holds {len(value):,} characters, over the {MAX_FIELD_CHARS} "
                             "allowed (a metadata value names a camera or a part, it is not a document)")
    known = {name: clean.get(name) or None for name in METADATA_FIELDS}
    if known["captured_at"]:
        known["captured_at"] = datetime.fromisoformat(known["captured_at"])  # type: ignore[assignment]
    extra = {k: v for k, v in clean.items() if k not in {*METADATA_FIELDS, "path", "label", SOFT_LABEL} and v}
    path = Path(clean["path"])
    return SourceItem(path=path if path.is_absolute() else base / path, label=clean.get("label") or None,
                      meta=CaptureMeta(**known, extra=extra), probability=soft_label(clean))


def soft_label(row: dict[str, str]) -> float | None:
    """A manifest row's ``defect_probability``: None when empty; a number in [0, 1] with a label, else refused."""
    text = row.get(SOFT_LABEL, "")
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{SOFT_LABEL} {text[:40]!r} is not a number (give a probability from 0 to 1)") from None
    if not 0.0 <= value <= 1.0:  # NaN fails this too
        raise ValueError(f"{SOFT_LABEL} {text[:40]!r} is outside [0, 1] (a probability that the part is defective)")
    if not row.get("label"):
        raise ValueError(f"{SOFT_LABEL} {text[:40]!r} without a label (a soft label qualifies the row's class)")
    return value


def ingest(workspace: Workspace, items: list[SourceItem], *, source: str, kind: str = "folder",
           annotator: str = "import", create_classes: bool = True, refused: Iterable[tuple[str, str]] = (),
           progress: Progress | None = None, notes: Iterable[str] = ()) -> IngestReport:
    """Store ``items`` in the workspace and return what happened to each file.

    The same bytes under two classes (from one annotator) keep both annotations: a conflict, reported
    per file and left out of new dataset versions until someone settles it (``labels.resolve_labels``).
    """
    session = IngestSession(workspace, source=source, kind=kind, annotator=annotator, create_classes=create_classes,
                            refused=refused, notes=notes)
    for done, chunk in _chunks(items):
        session.add(chunk)
        if progress:
            progress(done, len(items))
    return session.finish()


class IngestSession:
    """One ingest record kept open while items arrive over time (a station collecting from its cameras):
    ``add`` stores a batch as :func:`ingest` stores files (deduplicated by content, an image already
    stored is never replaced); ``finish`` closes the record with the report."""

    def __init__(self, workspace: Workspace, *, source: str, kind: str, annotator: str = "import",
                 create_classes: bool = True, refused: Iterable[tuple[str, str]] = (),
                 notes: Iterable[str] = (), complete_meta: bool = False) -> None:
        self.workspace = workspace
        self.annotator = annotator
        self.complete_meta = complete_meta
        self.create_classes = create_classes
        self.report = IngestReport(source=source, skipped=list(refused), notes=list(notes))
        self._known_classes = set(workspace.db.labels.classes())
        self._started = time.perf_counter()
        self.ingest_id = workspace.db.images.begin_ingest(source, kind)

    def add(self, items: list[SourceItem]) -> None:
        """Store a batch (at most a chunk's worth at a time, in one transaction each)."""
        for _, chunk in _chunks(items):
            _ingest_chunk(self.workspace, chunk, self.ingest_id, self.report, self.report.first_paths,
                          self._known_classes, annotator=self.annotator, create_classes=self.create_classes,
                          complete_meta=self.complete_meta)

    def finish(self) -> IngestReport:
        """Close the ingest record; the report of everything added."""
        self.report.seconds = time.perf_counter() - self._started
        self.workspace.db.images.finish_ingest(self.ingest_id, self.report.to_dict())
        return self.report


def _chunks(items: list[SourceItem]) -> Iterator[tuple[int, list[SourceItem]]]:
    for start in range(0, len(items), CHUNK):
        chunk = items[start:start + CHUNK]
        yield start + len(chunk), chunk


@dataclass
class _Prepared:
    item: SourceItem
    digest: str
    record: ImageRecord | None  # None when the bytes are already stored
    phash: int | None = None  # the near-duplicate hash of a new image, from the same decode


def _ingest_chunk(workspace: Workspace, chunk: list[SourceItem], ingest_id: int, report: IngestReport,
                  seen: dict[str, str], known_classes: set[str], *, annotator: str, create_classes: bool,
                  complete_meta: bool = False) -> None:
    prepared = _prepare(workspace, chunk, report, seen, known_classes, create_classes)
    with workspace.db.transaction() as tx:
        for label in sorted({e.item.label for e in prepared if e.item.label} - known_classes):
            tx.labels.upsert_class(_default_class(label))
            known_classes.add(label)
            report.classes_created.append(label)
        new_records = [e.record for e in prepared if e.record is not None]
        tx.images.add(new_records, ingest_id)
        if complete_meta:  # an image stored first by another writer (before, or since _prepare) gains the fields
            report.completed += tx.images.complete_meta([(e.digest, e.item.meta) for e in prepared])  # it lacks
        tx.hashes.add({e.digest: e.phash for e in prepared if e.phash is not None}, HASH_KIND)
        tx.images.add_sources([(e.digest, str(e.item.path)) for e in prepared], ingest_id)
        annotations, conflicts = _new_annotations(tx, prepared, annotator, report.first_paths)
        tx.labels.add_annotations(annotations)
    report.conflicts += conflicts
    report.added += len(new_records)
    report.annotations_added += len(annotations)


def _new_annotations(tx: Transaction, prepared: list[_Prepared], annotator: str,
                     first_paths: dict[str, str]) -> tuple[list[Annotation], list[LabelConflict]]:
    """One import annotation per (image, label), skipping those an earlier ingest already recorded,
    and the files whose label differs from one this annotator already gave the same bytes."""
    existing = tx.labels.existing_annotations([e.digest for e in prepared])
    given: dict[str, set[str]] = defaultdict(set)  # digest -> classes this annotator gave it
    for digest, class_name, who in existing:
        if who == annotator:
            given[digest].add(class_name)
    annotations, conflicts = [], []
    for entry in prepared:
        label = entry.item.label
        if not label:
            continue
        if given[entry.digest] - {label}:
            same_as = first_paths.get(entry.digest) or next(iter(tx.images.sources(entry.digest)), None)
            conflicts.append(LabelConflict(str(entry.item.path), entry.digest, label,
                                           tuple(sorted(given[entry.digest] - {label})), same_as))
        given[entry.digest].add(label)
        if (entry.digest, label, annotator) not in existing:
            existing.add((entry.digest, label, annotator))
            annotations.append(Annotation(sha256=entry.digest, class_name=label, annotator=annotator,
                                          source="import", probability=entry.item.probability))
    return annotations, conflicts


def _prepare(workspace: Workspace, chunk: list[SourceItem], report: IngestReport, seen: dict[str, str],
             known_classes: set[str], create_classes: bool) -> list[_Prepared]:
    """Read, hash, decode, measure and store the blobs of a chunk (no database writes yet)."""
    loaded = _read_files(chunk, report, known_classes, create_classes)
    digests = [sha256_bytes(data) for _, data in loaded]
    stored = workspace.db.images.existing(d for d in digests if d not in seen)
    prepared, new_blobs = [], []
    for (item, data), digest in zip(loaded, digests, strict=True):
        if digest in seen or digest in stored:
            report.duplicates.append((str(item.path), digest))
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
        prepared.append(_Prepared(item, digest, record, perceptual_hash(decoded.image)))
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
            loaded.append((item, item.data if item.data is not None else item.path.read_bytes()))
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
