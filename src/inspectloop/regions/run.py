"""Region annotations in a workspace: import files, export a version, measure annotator agreement.

An import keeps every good annotation and reports each bad one with its file (and line, where the
format has lines): images that are not in the workspace, classes it does not define (unless
``add_classes``), boxes outside the image (clipped, or dropped when nothing is left inside) and
degenerate outlines are skipped with a message; the rest is recorded in one transaction.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from pydantic import ValidationError

from inspectloop.domain import CLASS_NAME, Box, ClassDefinition, ImageRecord, Polygon, Region, Task
from inspectloop.errors import LabelError
from inspectloop.regions.agreement import IOU_THRESHOLD, PairAgreement, agreement
from inspectloop.regions.formats import Drawn, ExportImage, Problem, get_format
from inspectloop.regions.geometry import clip_box, clip_polygon, inside_image, shoelace
from inspectloop.store import sha256_bytes
from inspectloop.workspace import Workspace

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
DEFAULT_ANNOTATOR = "import"


@dataclass
class ImportReport:
    """What an import recorded and what it skipped, file by file."""

    source: str
    format: str
    files: int = 0
    regions_added: int = 0
    duplicates: int = 0
    images: int = 0
    classes_added: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {"source": self.source, "format": self.format, "files": self.files,
                "regions_added": self.regions_added, "duplicates": self.duplicates, "images": self.images,
                "classes_added": self.classes_added, "problems": [p.to_dict() for p in self.problems]}


@dataclass
class ExportReport:
    folder: str
    format: str
    images: int
    regions: int
    files: list[str]
    notes: list[str]

    def to_dict(self) -> dict[str, object]:
        return {"folder": self.folder, "format": self.format, "images": self.images, "regions": self.regions,
                "files": self.files, "notes": self.notes}


class ImageIndex:
    """Finds the stored image an annotation file names: a file under the images folder (hashed), else a
    path the image was ingested from; by relative path, then file name, then stem (when unambiguous)."""

    def __init__(self, workspace: Workspace, folder: Path | None) -> None:
        self._workspace = workspace
        self._keys: dict[str, set[str]] = defaultdict(set)  # lookup key -> candidate files or "sha:<digest>"
        self._hashed: dict[str, str] = {}
        if folder is not None and folder.is_dir():
            for path in folder.rglob("*"):
                if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                    self._index(path.relative_to(folder).as_posix(), str(path))
        for digest, original in workspace.db.regions.image_sources():
            self._index(PurePosixPath(original.replace("\\", "/")).as_posix(), f"sha:{digest}", suffix_keys=True)

    def _index(self, relative: str, target: str, *, suffix_keys: bool = False) -> None:
        pure = PurePosixPath(relative)
        keys = {pure.as_posix(), pure.with_suffix("").as_posix(), pure.name, pure.stem}
        if suffix_keys:  # an ingested path matches the tail a file names: "images/a.jpg" in "/data/x/images/a.jpg"
            keys |= {PurePosixPath(*pure.parts[-2:]).as_posix(), PurePosixPath(*pure.parts[-2:]).with_suffix("").as_posix()}
        for key in keys:
            self._keys[key].add(target)

    def find(self, reference: str) -> tuple[str | None, str]:
        """``(sha256, "")`` for the stored image ``reference`` names, or ``(None, why not)``."""
        pure = PurePosixPath(reference.replace("\\", "/").removeprefix("./"))
        if not pure.name:
            return None, "no image named"
        for key in (pure.as_posix(), pure.with_suffix("").as_posix(), pure.name, pure.stem):
            candidates = {self._digest(t) for t in self._keys.get(key, ())}
            if not candidates:
                continue
            # Files that are not stored images (a mask beside its image, say) are not what the file means.
            digests = self._workspace.db.images.existing(candidates)
            if not digests:
                return None, (f"image {reference!r} is not in this workspace "
                              "(ingest it first: inspectloop ingest FOLDER)")
            if len(digests) == 1:
                return digests.pop(), ""
            return None, f"image {reference!r} names {len(digests)} different images; give --images FOLDER"
        return None, f"image {reference!r} not found (under --images, or among ingested paths)"

    def _digest(self, target: str) -> str:
        if target.startswith("sha:"):
            return target[4:]
        if target not in self._hashed:
            self._hashed[target] = sha256_bytes(Path(target).read_bytes())
        return self._hashed[target]


def import_regions(workspace: Workspace, source: Path, fmt: str, *, images: Path | None = None,
                   annotator: str | None = None, add_classes: bool = False,
                   class_names: Sequence[str] = ()) -> ImportReport:
    """Read annotation files at ``source`` and record their regions; skip and report the bad ones."""
    source = Path(source)
    parsed = get_format(fmt).read(source, class_names=class_names)
    report = ImportReport(source=str(source), format=fmt, files=parsed.files, problems=list(parsed.problems))
    index = ImageIndex(workspace, images if images is not None else (source if source.is_dir() else source.parent))
    defined = workspace.db.labels.class_names()
    new_classes = _classes_to_add(parsed.regions, defined, add_classes, report)
    found = {ref: index.find(ref) for ref in dict.fromkeys(d.image for d in parsed.regions)}
    records = workspace.db.images.get_many([d for d, _ in found.values() if d])
    seen = {r.key() for r in workspace.db.regions.current(list(records))}
    to_add: list[Region] = []
    for drawn in parsed.regions:
        digest, why = found[drawn.image]
        if digest is None:
            report.problems.append(Problem(drawn.file, f"{drawn.place}{why}", drawn.line))
            continue
        if drawn.class_name not in defined and drawn.class_name not in new_classes:
            report.problems.append(Problem(drawn.file, f"{drawn.place}unknown class {drawn.class_name!r} "
                                           f"(defined: {', '.join(sorted(defined)) or 'none'}; "
                                           "add it with --add-classes)", drawn.line))
            continue
        region = _region(drawn, records[digest], annotator or drawn.annotator or DEFAULT_ANNOTATOR, report)
        if region is None:
            continue
        if region.key() in seen:
            report.duplicates += 1
            continue
        seen.add(region.key())
        to_add.append(region)
    with workspace.db.transaction() as tx:
        for name in sorted(new_classes):
            tx.labels.upsert_class(ClassDefinition(name=name, task=Task.detection))
        tx.regions.add(to_add)
    report.regions_added = len(to_add)
    report.images = len({r.sha256 for r in to_add})
    report.classes_added = sorted(new_classes)
    return report


def _classes_to_add(drawn: Sequence[Drawn], defined: set[str], add: bool, report: ImportReport) -> set[str]:
    unknown = {d.class_name for d in drawn} - defined
    if not add:
        return set()
    bad = {name for name in unknown if not CLASS_NAME.match(name)}
    for name in sorted(bad):
        report.problems.append(Problem(report.source, f"class name {name!r} cannot be a class (1-64 letters, "
                                                      "digits, space, '_', '-' or '.'): its regions are skipped"))
    return unknown - bad


def _region(drawn: Drawn, record: ImageRecord, annotator: str, report: ImportReport) -> Region | None:
    """The region ``drawn`` describes on ``record``, clipped to it; None (with a problem) when unusable."""
    width, height = record.width, record.height
    where = f"{drawn.place}image {drawn.image!r} ({width}x{height})"
    if drawn.image_size and not drawn.relative and drawn.image_size != (width, height):
        report.problems.append(Problem(drawn.file, f"{where}: the file says the image is "
                                       f"{drawn.image_size[0]}x{drawn.image_size[1]}", drawn.line))
        return None
    scale = (width, height) if drawn.relative else (1, 1)
    try:
        shape = _outline(drawn, scale, record) if drawn.polygon is not None else _box(drawn, scale, record)
    except ValidationError as exc:
        message = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
        report.problems.append(Problem(drawn.file, f"{where}: {message}", drawn.line, "dropped"))
        return None
    box, polygon, action = shape
    if action == "dropped":
        report.problems.append(Problem(drawn.file, f"{where}: {'outline' if polygon else 'box'} "
                                       f"{_fmt(box.as_tuple())} lies outside the image", drawn.line, "dropped"))
        return None
    if action == "clipped":
        kept = polygon.bounds() if polygon else box
        report.problems.append(Problem(drawn.file, f"{where}: {'outline' if drawn.polygon else 'box'} reaches "
                                       f"outside the image, clipped to {_fmt(kept.as_tuple())}", drawn.line,
                                       "clipped"))
    return Region(sha256=record.sha256, class_name=drawn.class_name, box=box,
                  polygon=polygon, annotator=annotator, source="import")


def _box(drawn: Drawn, scale: tuple[int, int], record: ImageRecord) -> tuple[Box, None, str]:
    """The box in pixels (raises when it has no area), and whether it was kept, clipped or dropped."""
    x0, y0, x1, y1 = drawn.box or (0.0, 0.0, 0.0, 0.0)
    box = Box(x0=x0 * scale[0], y0=y0 * scale[1], x1=x1 * scale[0], y1=y1 * scale[1])
    if inside_image(box.as_tuple(), record.width, record.height):
        return box, None, "kept"
    inside = clip_box(box.as_tuple(), record.width, record.height)
    if inside is None:
        return box, None, "dropped"
    return Box(x0=inside[0], y0=inside[1], x1=inside[2], y1=inside[3]), None, "clipped"


def _outline(drawn: Drawn, scale: tuple[int, int], record: ImageRecord) -> tuple[Box, Polygon | None, str]:
    """The outline in pixels (raises when degenerate), and whether it was kept, clipped or dropped."""
    polygon = Polygon(points=[(x * scale[0], y * scale[1]) for x, y in drawn.polygon or ()])
    if inside_image(polygon.bounds().as_tuple(), record.width, record.height):
        return polygon.bounds(), polygon, "kept"
    clipped = clip_polygon(polygon.points, record.width, record.height)
    if len(set(clipped)) < 3 or shoelace(clipped) <= 0:
        return polygon.bounds(), None, "dropped"
    inside = Polygon(points=clipped)
    return inside.bounds(), inside, "clipped"


def _fmt(box: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:g}" for v in box) + ")"


def export_regions(workspace: Workspace, folder: Path, fmt: str, *, version: str | None = None,
                   annotator: str | None = None, copy_images: bool = True) -> ExportReport:
    """Write the current regions (or a dataset version's, with its images that have none) to ``folder``."""
    module = get_format(fmt)
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise LabelError(f"{folder} exists and is not an empty folder", "export into a new or empty folder")
    digests, regions = _regions_to_export(workspace, version)
    regions = _one_annotator(regions, annotator, module)
    digests = sorted(set(digests) | {r.sha256 for r in regions})
    if not digests:
        raise LabelError("there are no region annotations to export",
                         "import some first: inspectloop regions import FILE --format ...")
    records = workspace.db.images.get_many(digests)
    names = _file_names(workspace, records)
    by_image: dict[str, list[Region]] = defaultdict(list)
    for region in regions:
        by_image[region.sha256].append(region)
    entries = [ExportImage(names[d], records[d].width, records[d].height, tuple(by_image[d])) for d in digests]
    folder.mkdir(parents=True, exist_ok=True)
    written = module.write(folder, entries, sorted({r.class_name for r in regions}))
    if copy_images:
        (folder / "images").mkdir(exist_ok=True)
        for digest in digests:
            (folder / "images" / names[digest]).write_bytes(workspace.blobs.get(digest))
    notes = []
    outlines = sum(1 for r in regions if r.polygon)
    if outlines and not module.HOLDS_POLYGONS:
        notes.append(f"{outlines} outline(s) written as their boxes ({fmt} holds boxes only)")
    return ExportReport(str(folder), fmt, len(entries), len(regions), [p.relative_to(folder).as_posix()
                                                                       for p in written], notes)


def _regions_to_export(workspace: Workspace, version: str | None) -> tuple[list[str], list[Region]]:
    if version is None:
        return [], workspace.db.regions.current()
    from inspectloop.datasets import load_version

    loaded = load_version(workspace, version)
    return [i.sha256 for i in loaded.items], workspace.db.regions.in_version(loaded.name)


def _one_annotator(regions: list[Region], annotator: str | None, module: object) -> list[Region]:
    """Only ``annotator``'s regions; all, when the format keeps annotators apart or there is only one."""
    who = sorted({r.annotator for r in regions})
    if annotator is not None:
        if annotator not in who:
            raise LabelError(f"no regions by {annotator!r} (annotators: {', '.join(who) or 'none'})",
                             "name one of them with --annotator")
        return [r for r in regions if r.annotator == annotator]
    if len(who) > 1 and not getattr(module, "CARRIES_ANNOTATOR"):
        raise LabelError(f"{len(who)} annotators drew these regions ({', '.join(who)}) and "
                         f"{getattr(module, 'NAME')} files cannot keep them apart",
                         "export one with --annotator NAME, or use --format coco or labelstudio")
    return regions


def _file_names(workspace: Workspace, records: dict[str, ImageRecord]) -> dict[str, str]:
    """A file name per image: the name it was ingested under, made unique by stem (label files go by stem)."""
    sources: dict[str, str] = {}
    for digest, original in workspace.db.regions.image_sources():
        sources.setdefault(digest, PurePosixPath(original.replace("\\", "/")).name)
    names: dict[str, str] = {}
    stems: set[str] = set()
    for digest in sorted(records):
        name = sources.get(digest) or f"{digest[:16]}.{records[digest].format.lower()}"
        path = PurePosixPath(name)
        if path.stem in stems:
            name = f"{path.stem}-{digest[:8]}{path.suffix}"
        stems.add(PurePosixPath(name).stem)
        names[digest] = name
    return names


def region_agreement(workspace: Workspace, *, version: str | None = None, annotators: Sequence[str] = (),
                     threshold: float = IOU_THRESHOLD) -> list[PairAgreement]:
    """How far each pair of annotators agree on the current regions (or a version's), per class."""
    if not 0 < threshold <= 1:
        raise LabelError(f"IoU threshold {threshold} is not in (0, 1]", "use e.g. 0.5")
    _digests, regions = _regions_to_export(workspace, version)
    who = sorted({r.annotator for r in regions})
    missing = [a for a in annotators if a not in who]
    if missing:
        raise LabelError(f"no regions by {', '.join(map(repr, missing))} (annotators: {', '.join(who) or 'none'})",
                         "name annotators who drew regions")
    if len(annotators or who) < 2:
        raise LabelError(f"agreement needs two annotators; regions are by {', '.join(who) or 'nobody yet'}",
                         "import a second annotator's file with --annotator NAME")
    return agreement(regions, list(annotators) or None, threshold)


def edit_region(workspace: Workspace, region_id: int, *, annotator: str, box: Box | None = None,
                polygon: Polygon | None = None, class_name: str | None = None, source: str = "reviewer") -> Region:
    """Record ``annotator``'s edit of a current region (new class, box or outline); return the new region.

    The old region stays in the dataset versions that hold it; the next version holds the edit.
    """
    old = _current_region(workspace, region_id)
    name = class_name or old.class_name
    if name not in workspace.db.labels.class_names():
        raise LabelError(f"unknown class {name!r}", f"define it first: inspectloop classes add {name!r}")
    outline = polygon if polygon is not None else (old.polygon if box is None else None)
    new = Region(sha256=old.sha256, class_name=name, box=outline.bounds() if outline else (box or old.box),
                 polygon=outline, annotator=annotator, source=source)
    record = workspace.db.images.get(old.sha256)
    if record is not None and not inside_image(new.box.as_tuple(), record.width, record.height):
        raise LabelError(f"box {_fmt(new.box.as_tuple())} reaches outside the {record.width}x{record.height} image",
                         "keep the region inside the image")
    new_id = workspace.db.regions.replace(region_id, new)
    return new.model_copy(update={"id": new_id, "supersedes": region_id})


def delete_region(workspace: Workspace, region_id: int, *, annotator: str, source: str = "reviewer") -> None:
    """Record that ``annotator`` deleted a current region (versions that hold it keep it)."""
    _current_region(workspace, region_id)
    workspace.db.regions.delete(region_id, annotator=annotator, source=source)


def _current_region(workspace: Workspace, region_id: int) -> Region:
    region = workspace.db.regions.get(region_id)
    if region is None:
        raise LabelError(f"no region {region_id} in this workspace", "check the region id")
    if region_id not in {r.id for r in workspace.db.regions.current([region.sha256])}:
        raise LabelError(f"region {region_id} was edited or deleted since", "edit its latest version instead")
    return region
