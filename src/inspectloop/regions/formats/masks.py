"""Mask images (PNG): one mask per image, same stem, non-zero pixels are the defect. Import only.

Each connected part of a mask becomes a region outlined by its contour. The class is the name of
the folder that holds the ``masks`` folder (``Crack/masks/exp1_1.png`` is a Crack), as in the
magnetic tile set, or the single name given by the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from inspectloop.errors import LabelError
from inspectloop.regions.formats.base import Drawn, ExportImage, Parsed, Problem, display, files_under
from inspectloop.regions.geometry import mask_to_polygons

NAME = "masks"
CARRIES_ANNOTATOR = False
HOLDS_POLYGONS = True
THRESHOLD = 128  # masks saved as JPEG-like greys or anti-aliased: half-way is in


def read(path: Path, *, class_names: Sequence[str] = ()) -> Parsed:
    """Every ``*.png`` mask at ``path`` (a file or a folder)."""
    if len(class_names) > 1:
        raise LabelError(f"masks carry one class each, got {len(class_names)} names",
                         "give one class with --classes, or lay the masks out as <class>/masks/<image>.png")
    parsed = Parsed()
    for file in files_under(path, ".png"):
        parsed.files += 1
        name = display(file, path)
        class_name = class_names[0] if class_names else _class_from_folder(file)
        try:
            with Image.open(file) as opened:
                mask = np.asarray(opened.convert("L")) >= THRESHOLD
        except (OSError, UnidentifiedImageError) as exc:
            parsed.problems.append(Problem(name, f"cannot be read as an image: {exc}", None, "file skipped"))
            continue
        outlines, specks = mask_to_polygons(mask)
        if specks:
            parsed.problems.append(Problem(name, f"{specks} speck(s) under 1 square pixel", None, "dropped"))
        if class_name not in parsed.classes and outlines:
            parsed.classes.append(class_name)
        size = (mask.shape[1], mask.shape[0])
        # Matched by stem: <class>/masks/x.png outlines <class>/images/x.jpg.
        parsed.regions += [Drawn(image=file.stem, class_name=class_name, file=name, where=f"part {i}",
                                 polygon=tuple(o), image_size=size)
                           for i, o in enumerate(outlines, start=1)]
    return parsed


def _class_from_folder(file: Path) -> str:
    return file.parent.parent.name if file.parent.name.lower() == "masks" else file.parent.name


def write(folder: Path, images: Sequence[ExportImage], classes: Sequence[str]) -> list[Path]:
    raise LabelError("masks are an import format only", "export as coco, voc, yolo, cvat or labelstudio")
