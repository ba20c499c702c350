"""Where each training image's defect lies, from the regions its dataset version holds: what ``pose=zoom``
keeps in view when it zooms in (:func:`inspectloop.train.augment.zoomed`).

A classifier learns from image labels, but a zoomed view that cut the defect out would still carry the
defect's label. Region annotations (boxes, outlines, masks; ``inspectloop regions import``) say where the
defect is, so a zoom can frame it tight, as a camera that frames parts tighter will.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from inspectloop.domain import DatasetItem, DatasetVersion, Region
from inspectloop.errors import TrainingError
from inspectloop.workspace import Workspace

if TYPE_CHECKING:
    from inspectloop.train.config import TrainConfig
    from inspectloop.train.data import ImageSet


def with_places(images: ImageSet, config: TrainConfig, workspace: Workspace, version: DatasetVersion,
                items: Sequence[DatasetItem], good: str | None, warn: Callable[[str], None]) -> ImageSet:
    """``images`` (of ``items``) with where their defects lie when ``config`` zooms (pose=zoom); as they are
    otherwise."""
    if config.pose != "zoom":
        return images
    return replace(images, keep=version_places(workspace, version, items, good, warn))


def defect_places(items: Sequence[DatasetItem], boxes: Mapping[str, np.ndarray], sizes: Mapping[str, tuple[int, int]],
                  good: str | None) -> list[np.ndarray | None]:
    """Per item: its region boxes as fractions of the image (x0, y0, x1, y1 rows, clipped to it), an empty
    array for an item of the good class (nothing to keep), None for a defect image with no region."""
    places: list[np.ndarray | None] = []
    for item in items:
        if item.label == good:
            places.append(np.zeros((0, 4), dtype=np.float32))
        elif len(boxes.get(item.sha256, ())):
            width, height = sizes[item.sha256]
            scale = np.array([width, height, width, height], dtype=np.float32)
            places.append(np.clip(boxes[item.sha256] / scale, 0.0, 1.0).astype(np.float32))
        else:
            places.append(None)
    return places


def version_places(workspace: Workspace, version: DatasetVersion, items: Sequence[DatasetItem], good: str | None,
                   warn: Callable[[str], None]) -> list[np.ndarray | None]:
    """:func:`defect_places` of ``items`` from the regions ``version`` holds (every annotator's: the window
    keeps them all). TrainingError when the version holds none; a warning names the defect images that
    have none (they keep the whole image in view instead of zooming)."""
    drawn: dict[str, list[tuple[float, ...]]] = defaultdict(list)
    for region in version_regions(workspace, version):
        drawn[region.sha256].append(region.box.as_tuple())
    boxes = {digest: np.array(rows, dtype=np.float32) for digest, rows in drawn.items()}
    records = workspace.db.images.get_many([item.sha256 for item in items if item.sha256 in boxes])
    places = defect_places(items, boxes, {d: (r.width, r.height) for d, r in records.items()}, good)
    unplaced = [item for item, place in zip(items, places, strict=True) if place is None]
    if unplaced:
        warn(f"pose=zoom: {len(unplaced)} of {sum(item.label != good for item in items)} defect images have no "
             "region annotation; they are never zoomed (the whole image stays in view)")
    return places


def version_regions(workspace: Workspace, version: DatasetVersion) -> list[Region]:
    """The regions ``version`` holds; TrainingError when it holds none (pose=zoom has nothing to keep)."""
    regions = workspace.db.regions.in_version(version.name)
    if not regions:
        raise TrainingError(f"pose=zoom needs to know where the defects are, and dataset version {version.name} "
                            "holds no region annotations",
                            "import boxes or masks (inspectloop regions import ...) and make a new dataset version, "
                            "or train with pose=contain")
    return regions
