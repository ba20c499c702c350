"""CVAT for images 1.1 XML: one file for many images, ``<box>`` and ``<polygon>`` shapes in pixels.

Other shapes (polylines, points, ellipses, masks, cuboids, skeletons) and rotated boxes are
reported and skipped. Parsed with defusedxml (see ``voc.parse_xml``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from xml.etree.ElementTree import Element, ElementTree, SubElement, indent

from inspectloop.regions.formats.base import Drawn, ExportImage, Parsed, Problem, display, files_under, number
from inspectloop.regions.formats.voc import parse_xml

NAME = "cvat"
CARRIES_ANNOTATOR = False
HOLDS_POLYGONS = True
SHAPES = ("box", "polygon", "polyline", "points", "ellipse", "mask", "cuboid", "skeleton", "tag")


def read(path: Path, *, class_names: Sequence[str] = ()) -> Parsed:
    """Every ``*.xml`` CVAT file at ``path`` (a file or a folder)."""
    parsed = Parsed()
    for file in files_under(path, ".xml"):
        parsed.files += 1
        name = display(file, path)
        root = parse_xml(file, name, parsed)
        if root is None:
            continue
        if root.tag != "annotations":
            parsed.problems.append(Problem(name, f"not a CVAT for images file (root element <{root.tag}>)",
                                           None, "file skipped"))
            continue
        for label in root.iterfind(".//meta//labels/label/name"):
            if label.text and label.text.strip() not in parsed.classes:
                parsed.classes.append(label.text.strip())
        for image in root.iterfind("image"):
            _read_image(image, name, parsed)
    return parsed


def _read_image(image: Element, file: str, parsed: Parsed) -> None:
    try:
        size: tuple[int, int] | None = (int(image.get("width", "")), int(image.get("height", "")))
    except ValueError:
        size = None
    image_name = image.get("name", "")
    for index, shape in enumerate(image, start=1):
        where = f"image {image_name!r} shape {index}"
        if shape.tag not in ("box", "polygon"):
            if shape.tag in SHAPES and shape.tag != "tag":
                parsed.problems.append(Problem(file, f"{where}: a {shape.tag} is not a box or polygon"))
            continue
        try:
            drawn = _shape(shape, image_name, file, where, size)
        except ValueError as exc:
            parsed.problems.append(Problem(file, f"{where}: malformed ({exc})"))
            continue
        parsed.regions.append(drawn)


def _shape(shape: Element, image: str, file: str, where: str, size: tuple[int, int] | None) -> Drawn:
    label = (shape.get("label") or "").strip()
    if not label:
        raise ValueError("no label")
    common = dict(image=image, class_name=label, file=file, where=where, image_size=size)
    if shape.tag == "box":
        if float(shape.get("rotation", "0")) != 0:
            raise ValueError(f"rotated by {shape.get('rotation')} degrees; only upright boxes are regions")
        return Drawn(box=tuple(float(shape.get(k, "")) for k in ("xtl", "ytl", "xbr", "ybr")), **common)
    pairs = [p.split(",") for p in (shape.get("points") or "").split(";") if p.strip()]
    if any(len(p) != 2 for p in pairs):
        raise ValueError("points are not 'x,y;x,y;...'")
    return Drawn(polygon=tuple((float(x), float(y)) for x, y in pairs), **common)


def write(folder: Path, images: Sequence[ExportImage], classes: Sequence[str]) -> list[Path]:
    """One ``annotations.xml`` (CVAT for images 1.1) for every image."""
    root = Element("annotations")
    SubElement(root, "version").text = "1.1"
    labels = SubElement(SubElement(SubElement(root, "meta"), "task"), "labels")
    for name in classes:
        label = SubElement(labels, "label")
        SubElement(label, "name").text = name
        SubElement(label, "type").text = "any"
    for image_id, image in enumerate(images):
        node = SubElement(root, "image", id=str(image_id), name=image.file_name, width=str(image.width),
                          height=str(image.height))
        for region in image.regions:
            if region.polygon:
                points = ";".join(f"{number(x)},{number(y)}" for x, y in region.polygon.points)
                SubElement(node, "polygon", label=region.class_name, source="manual", occluded="0",
                           points=points, z_order="0")
            else:
                b = region.box
                SubElement(node, "box", label=region.class_name, source="manual", occluded="0",
                           xtl=number(b.x0), ytl=number(b.y0), xbr=number(b.x1), ybr=number(b.y1), z_order="0")
    indent(root)
    path = folder / "annotations.xml"
    ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
    return [path]
