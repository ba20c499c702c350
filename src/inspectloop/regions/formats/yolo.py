"""YOLO txt (Ultralytics): one ``.txt`` per image, one region per line, coordinates normalised to [0, 1].

``class cx cy w h`` is a box; ``class x1 y1 x2 y2 ...`` (three points or more) is a segment
(an outline). Class ids index the names in ``classes.txt``, ``obj.names`` or ``data.yaml``'s
``names`` beside the labels (or given by the caller). An empty file is an image without regions.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml

from inspectloop.errors import LabelError
from inspectloop.regions.formats.base import Drawn, ExportImage, Parsed, Problem, display, files_under, fraction

NAME = "yolo"
CARRIES_ANNOTATOR = False
HOLDS_POLYGONS = True
NAME_FILES = ("classes.txt", "obj.names")
YAML_FILES = ("data.yaml", "dataset.yaml")
NOT_LABELS = {"classes.txt", "readme.txt", "license.txt", "requirements.txt"}


def read(path: Path, *, class_names: Sequence[str] = ()) -> Parsed:
    """Every label ``.txt`` at ``path`` (a file or a folder); class names from ``class_names`` or a names file."""
    parsed = Parsed()
    names = list(class_names) or class_names_beside(path)
    if not names:
        raise LabelError(f"no class names for the YOLO class ids under {path}",
                         "put a classes.txt (one name per line) or a data.yaml with 'names' beside the labels, "
                         "or pass --classes name0,name1,...")
    parsed.classes = list(names)
    for file in files_under(path, ".txt"):
        if file.name.lower() in NOT_LABELS:
            continue
        parsed.files += 1
        _read_file(file, display(file, path), _image_ref(file, path), names, parsed)
    return parsed


def class_names_beside(path: Path) -> list[str]:
    """Class names from the first names file in ``path`` (or its folder) or its parent."""
    folder = path if path.is_dir() else path.parent
    for place in (folder, folder.parent):
        for name in NAME_FILES:
            if (place / name).is_file():
                return [line.strip() for line in (place / name).read_text().splitlines() if line.strip()]
        for name in YAML_FILES:
            if (place / name).is_file():
                try:
                    names = (yaml.safe_load((place / name).read_text()) or {}).get("names")
                except (yaml.YAMLError, AttributeError) as exc:
                    raise LabelError(f"{place / name} cannot be read: {exc}", "fix the file's YAML") from exc
                if isinstance(names, dict):
                    return [str(names[k]) for k in sorted(names)]
                if isinstance(names, list):
                    return [str(n) for n in names]
    return []


def _image_ref(label: Path, root: Path) -> str:
    """The image a label file belongs to: same stem, with a ``labels`` folder read as ``images``."""
    base = root if root.is_dir() else root.parent
    parts = list(label.relative_to(base).with_suffix("").parts)
    return "/".join("images" if p == "labels" else p for p in parts)


def _read_file(file: Path, name: str, image: str, names: Sequence[str], parsed: Parsed) -> None:
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        parsed.problems.append(Problem(name, f"cannot be read: {exc}", None, "file skipped"))
        return
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            values = [float(v) for v in fields[1:]]
            class_id = int(fields[0])
        except ValueError:
            parsed.problems.append(Problem(name, f"not numbers: {line.strip()[:60]!r}", number))
            continue
        if not 0 <= class_id < len(names):
            parsed.problems.append(Problem(name, f"class id {class_id} is not one of the {len(names)} "
                                                 f"names (0..{len(names) - 1})", number))
            continue
        common = dict(image=image, class_name=names[class_id], file=name, line=number, relative=True)
        if len(values) == 4:
            cx, cy, w, h = values
            parsed.regions.append(Drawn(box=(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), **common))
        elif len(values) >= 6 and len(values) % 2 == 0:
            points = tuple((values[i], values[i + 1]) for i in range(0, len(values), 2))
            parsed.regions.append(Drawn(polygon=points, **common))
        else:
            parsed.problems.append(Problem(name, f"{len(values)} coordinates: a box has 4, a segment an even "
                                                 "number of 6 or more", number))


def write(folder: Path, images: Sequence[ExportImage], classes: Sequence[str]) -> list[Path]:
    """``classes.txt``, ``data.yaml`` and ``labels/<image stem>.txt`` per image (boxes and segments)."""
    index = {name: number for number, name in enumerate(classes)}
    labels = folder / "labels"
    labels.mkdir(parents=True, exist_ok=True)
    (folder / "classes.txt").write_text("".join(f"{c}\n" for c in classes), encoding="utf-8")
    (folder / "data.yaml").write_text(yaml.safe_dump({"path": ".", "train": "images", "val": "images",
                                                       "names": dict(enumerate(classes))}, sort_keys=False))
    written = [folder / "classes.txt", folder / "data.yaml"]
    for image in images:
        rows = []
        for region in image.regions:
            if region.polygon:
                coords = [fraction(v / (image.width if i % 2 == 0 else image.height))
                          for i, v in enumerate(region.polygon.flat())]
            else:
                b = region.box
                coords = [fraction((b.x0 + b.x1) / 2 / image.width), fraction((b.y0 + b.y1) / 2 / image.height),
                          fraction(b.width / image.width), fraction(b.height / image.height)]
            rows.append(" ".join([str(index[region.class_name]), *coords]))
        path = labels / f"{Path(image.file_name).stem}.txt"
        path.write_text("".join(f"{r}\n" for r in rows), encoding="utf-8")
        written.append(path)
    return written
