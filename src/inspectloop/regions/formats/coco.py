"""COCO JSON (object detection / instance segmentation): one file for many images.

Boxes are ``[x, y, width, height]`` in pixels; outlines are ``segmentation`` polygons, or RLE masks
(decoded with pycocotools, then traced to outlines). An object in several polygon parts becomes one
region per part. inspectloop writes each region's annotator in an ``annotator`` key that COCO tools ignore.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from inspectloop.errors import require
from inspectloop.regions.formats.base import Drawn, ExportImage, Parsed, Problem, display, files_under
from inspectloop.regions.geometry import mask_to_polygons, shoelace

NAME = "coco"
CARRIES_ANNOTATOR = True
HOLDS_POLYGONS = True


def read(path: Path, *, class_names: Sequence[str] = ()) -> Parsed:
    """Every ``*.json`` COCO file at ``path`` (a file or a folder)."""
    parsed = Parsed()
    for file in files_under(path, ".json"):
        parsed.files += 1
        _read_file(file, display(file, path), parsed)
    return parsed


def _read_file(file: Path, name: str, parsed: Parsed) -> None:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        parsed.problems.append(Problem(name, f"not valid JSON: {exc.msg} (column {exc.colno})", exc.lineno,
                                       "file skipped"))
        return
    except (OSError, UnicodeDecodeError) as exc:
        parsed.problems.append(Problem(name, f"cannot be read: {exc}", None, "file skipped"))
        return
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "annotations")):
        parsed.problems.append(Problem(name, "not a COCO file: it needs 'images' and 'annotations' lists",
                                       None, "file skipped"))
        return
    categories = {c.get("id"): str(c.get("name")) for c in data.get("categories", []) if isinstance(c, dict)}
    parsed.classes += [n for n in categories.values() if n not in parsed.classes]
    images = {i.get("id"): i for i in data["images"] if isinstance(i, dict)}
    for index, ann in enumerate(data["annotations"]):
        where = f"annotation {ann.get('id', index) if isinstance(ann, dict) else index}"
        try:
            parsed.regions += _regions(ann, images, categories, name, where)
        except (KeyError, TypeError, ValueError) as exc:
            parsed.problems.append(Problem(name, f"{where}: malformed ({exc})"))


def _regions(ann: dict[str, Any], images: dict[Any, dict[str, Any]], categories: dict[Any, str],
             file: str, where: str) -> list[Drawn]:
    image = images.get(ann["image_id"])
    if image is None:
        raise ValueError(f"image_id {ann['image_id']!r} is not among the file's images")
    if ann["category_id"] not in categories:
        raise ValueError(f"category_id {ann['category_id']!r} is not among the file's categories")
    size = (int(image["width"]), int(image["height"])) if "width" in image and "height" in image else None
    common = dict(image=str(image["file_name"]), class_name=categories[ann["category_id"]], file=file, where=where,
                  annotator=ann.get("annotator"), image_size=size)
    segmentation = ann.get("segmentation")
    if isinstance(segmentation, dict):  # RLE: a mask
        outlines = _rle_outlines(segmentation, size)
        return [Drawn(polygon=tuple(o), **common) for o in outlines]
    if isinstance(segmentation, list) and segmentation:
        parts = [[(float(p[i]), float(p[i + 1])) for i in range(0, len(p) - 1, 2)] for p in segmentation]
        return [Drawn(polygon=tuple(part), **common) for part in parts]
    x, y, w, h = (float(v) for v in ann["bbox"])
    return [Drawn(box=(x, y, x + w, y + h), **common)]


def _rle_outlines(rle: dict[str, Any], size: tuple[int, int] | None) -> list[list[tuple[float, float]]]:
    mask_utils = require("pycocotools.mask", "regions", package="pycocotools")
    height, width = rle["size"]
    if isinstance(rle["counts"], list):  # uncompressed RLE
        rle = mask_utils.frPyObjects(rle, height, width)
    with warnings.catch_warnings():  # pycocotools 2.0.11's decoder trips numpy 2's copy-keyword deprecation
        warnings.simplefilter("ignore", DeprecationWarning)
        mask = mask_utils.decode(rle)
    outlines, _specks = mask_to_polygons(mask.astype(bool))
    return outlines


def write(folder: Path, images: Sequence[ExportImage], classes: Sequence[str]) -> list[Path]:
    """One ``annotations.json`` for every image; category ids count from 1 in class-name order."""
    category = {name: number for number, name in enumerate(classes, start=1)}
    entries, annotations = [], []
    for image_id, image in enumerate(images, start=1):
        entries.append({"id": image_id, "file_name": image.file_name, "width": image.width, "height": image.height})
        for region in image.regions:
            box = region.box
            ann: dict[str, Any] = {
                "id": len(annotations) + 1, "image_id": image_id, "category_id": category[region.class_name],
                "bbox": [box.x0, box.y0, round(box.width, 3), round(box.height, 3)], "iscrowd": 0,
                "area": round(shoelace(region.polygon.points) if region.polygon else box.area, 3),
                "segmentation": [region.polygon.flat()] if region.polygon else [],
                "annotator": region.annotator,
            }
            annotations.append(ann)
    document = {"info": {"description": "exported by inspectloop"}, "images": entries, "annotations": annotations,
                "categories": [{"id": i, "name": n, "supercategory": "defect"} for n, i in category.items()]}
    target = folder / "annotations.json"
    target.write_text(json.dumps(document, indent=1), encoding="utf-8")
    return [target]
