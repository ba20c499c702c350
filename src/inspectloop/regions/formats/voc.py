"""Pascal VOC XML: one file per image, boxes only.

VOC coordinates are 1-based pixel numbers, both ends included: ``xmin=1, xmax=200`` covers a whole
200-pixel-wide image, which is ``x0=0, x1=200`` here. Files are parsed with defusedxml: annotation
files come from outside the plant's control and must not be able to expand entities or reach the network.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from xml.etree.ElementTree import Element, ElementTree, ParseError, SubElement, indent

from inspectloop.errors import require
from inspectloop.regions.formats.base import Drawn, ExportImage, Parsed, Problem, display, files_under, number

NAME = "voc"
CARRIES_ANNOTATOR = False
HOLDS_POLYGONS = False


def parse_xml(file: Path, name: str, parsed: Parsed) -> Element | None:
    """The root element of an untrusted XML file, or None with a problem (file and line) recorded."""
    safe = require("defusedxml.ElementTree", "regions", package="defusedxml")
    defused = require("defusedxml", "regions")
    try:
        return safe.parse(file).getroot()
    except ParseError as exc:
        line = exc.position[0] if exc.position else None
        parsed.problems.append(Problem(name, f"not well-formed XML: {exc}", line, "file skipped"))
    except defused.DefusedXmlException as exc:
        parsed.problems.append(Problem(name, f"refused: {exc} (entities and DTDs are not allowed)", None,
                                       "file skipped"))
    except OSError as exc:
        parsed.problems.append(Problem(name, f"cannot be read: {exc}", None, "file skipped"))
    return None


def read(path: Path, *, class_names: Sequence[str] = ()) -> Parsed:
    """Every ``*.xml`` VOC file at ``path`` (a file or a folder)."""
    parsed = Parsed()
    for file in files_under(path, ".xml"):
        parsed.files += 1
        name = display(file, path)
        root = parse_xml(file, name, parsed)
        if root is None:
            continue
        if root.tag != "annotation":
            parsed.problems.append(Problem(name, f"not a Pascal VOC file (root element <{root.tag}>)", None,
                                           "file skipped"))
            continue
        image = (root.findtext("filename") or "").strip() or file.stem
        size = _size(root)
        for index, obj in enumerate(root.findall("object"), start=1):
            where = f"object {index}"
            try:
                box = obj.find("bndbox")
                if box is None:
                    raise ValueError("no <bndbox>")
                xmin, ymin, xmax, ymax = (float(box.findtext(k) or "") for k in ("xmin", "ymin", "xmax", "ymax"))
                class_name = (obj.findtext("name") or "").strip()
                if not class_name:
                    raise ValueError("no <name>")
            except ValueError as exc:
                parsed.problems.append(Problem(name, f"{where}: malformed ({exc})"))
                continue
            if class_name not in parsed.classes:
                parsed.classes.append(class_name)
            parsed.regions.append(Drawn(image=image, class_name=class_name, file=name, where=where,
                                        box=(xmin - 1, ymin - 1, xmax, ymax), image_size=size))
    return parsed


def _size(root: Element) -> tuple[int, int] | None:
    try:
        width, height = int(root.findtext("size/width") or 0), int(root.findtext("size/height") or 0)
    except ValueError:
        return None
    return (width, height) if width > 0 and height > 0 else None


def write(folder: Path, images: Sequence[ExportImage], classes: Sequence[str]) -> list[Path]:
    """``Annotations/<image stem>.xml`` per image (outlines are written as their boxes)."""
    target = folder / "Annotations"
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for image in images:
        root = Element("annotation")
        SubElement(root, "folder").text = "images"
        SubElement(root, "filename").text = image.file_name
        size = SubElement(root, "size")
        for key, value in (("width", image.width), ("height", image.height), ("depth", 3)):
            SubElement(size, key).text = str(value)
        SubElement(root, "segmented").text = "0"
        for region in image.regions:
            obj = SubElement(root, "object")
            SubElement(obj, "name").text = region.class_name
            for key in ("pose", "truncated", "difficult"):
                SubElement(obj, key).text = "Unspecified" if key == "pose" else "0"
            box = SubElement(obj, "bndbox")
            b = region.box
            for key, value in (("xmin", b.x0 + 1), ("ymin", b.y0 + 1), ("xmax", b.x1), ("ymax", b.y1)):
                SubElement(box, key).text = number(value)
        indent(root)
        path = target / f"{Path(image.file_name).stem}.xml"
        ElementTree(root).write(path, encoding="utf-8", xml_declaration=False)
        written.append(path)
    return written
