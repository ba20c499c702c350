"""Where in an image a model saw something: boxes, masks and a heatmap, as validated arrays.

Regions ride beside a prediction's image-level scores. Decisions, calibration, shadow agreement,
drift and recalibration read only the scores; localisation metrics and the review page read the
regions. A classifier has none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True, eq=False)
class Regions:
    """The located findings of one image.

    ``image_size`` is the (width, height) of the image as given to the model, before any resizing:
    boxes are in its pixels. The ``K`` located items have ``class_ids`` (K,) (indices into the
    model's class names) and ``scores`` (K,) in [0, 1], and ``boxes`` (K, 4) as x0, y0, x1, y1
    and/or ``masks`` (K, H, W) booleans. ``heatmap`` (H, W) is a per-pixel score map of the whole
    image (an anomaly map, say); masks and heatmap may have any resolution and cover the whole image.
    All arrays are read-only copies.
    """

    image_size: tuple[int, int]
    class_ids: np.ndarray | None = None
    scores: np.ndarray | None = None
    boxes: np.ndarray | None = None
    masks: np.ndarray | None = None
    heatmap: np.ndarray | None = None

    def __post_init__(self) -> None:
        size = tuple(self.image_size) if isinstance(self.image_size, (tuple, list)) else ()
        if len(size) != 2 or not all(type(v) is int and v > 0 for v in size):
            raise ValueError(f"image_size must be (width, height) in pixels, got {self.image_size!r}")
        object.__setattr__(self, "image_size", size)
        if self.boxes is None and self.masks is None and self.heatmap is None:
            raise ValueError("regions need boxes, masks or a heatmap (a classifier's prediction has regions=None)")
        items = self._check_items()
        self._store("class_ids", _integers(self.class_ids, items, "class_ids"))
        self._store("scores", _probabilities(self.scores, items))
        self._store("boxes", None if self.boxes is None else _boxes(self.boxes, items, size))
        self._store("masks", None if self.masks is None else _masks(self.masks, items))
        self._store("heatmap", None if self.heatmap is None else _heatmap(self.heatmap))

    def __len__(self) -> int:
        """The number of located items (boxes or masks); 0 for a heatmap alone."""
        return 0 if self.class_ids is None else int(self.class_ids.size)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; masks run-length encoded (see :func:`mask_to_runs`). :meth:`from_dict` reads it back."""
        return {
            "image_size": list(self.image_size),
            "class_ids": None if self.class_ids is None else self.class_ids.tolist(),
            "scores": None if self.scores is None else self.scores.tolist(),
            "boxes": None if self.boxes is None else self.boxes.tolist(),
            "masks": None if self.masks is None else [mask_to_runs(m) for m in self.masks],
            "heatmap": None if self.heatmap is None else self.heatmap.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Regions:
        """Regions from :meth:`to_dict` output (validated as on construction)."""
        boxes, masks, heatmap = data.get("boxes"), data.get("masks"), data.get("heatmap")
        return cls(image_size=tuple(data["image_size"]), class_ids=_array(data.get("class_ids"), np.int64),
                   scores=_array(data.get("scores"), np.float32),
                   boxes=None if boxes is None else np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
                   masks=None if masks is None else _stack_masks([mask_from_runs(runs) for runs in masks]),
                   heatmap=None if heatmap is None else np.asarray(heatmap, dtype=np.float32))

    def _check_items(self) -> int | None:
        """How many located items the arrays describe (None without boxes or masks)."""
        counts = {name: np.shape(getattr(self, name))[0] for name in ("boxes", "masks")
                  if getattr(self, name) is not None and np.ndim(getattr(self, name)) > 0}
        if self.boxes is None and self.masks is None:
            if self.class_ids is not None or self.scores is not None:
                raise ValueError("class_ids and scores describe boxes or masks, and there are none")
            return None
        if self.class_ids is None or self.scores is None:
            raise ValueError("boxes and masks need class_ids and scores, one per item")
        if len(set(counts.values())) > 1:
            raise ValueError(f"boxes and masks must describe the same items, got {counts}")
        return next(iter(counts.values()), 0)

    def _store(self, name: str, value: np.ndarray | None) -> None:
        if value is not None:
            value.setflags(write=False)
        object.__setattr__(self, name, value)


def mask_to_runs(mask: np.ndarray) -> dict[str, Any]:
    """A boolean (H, W) mask as ``{"size": [H, W], "counts": [...]}``: run lengths in row-major order,
    starting with a run of False (0 when the first pixel is set)."""
    flat = np.asarray(mask, dtype=bool).ravel()
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    counts = np.diff(np.concatenate(([0], changes, [flat.size])))
    if flat.size and flat[0]:
        counts = np.concatenate(([0], counts))
    return {"size": list(np.shape(mask)), "counts": counts.tolist()}


def mask_from_runs(runs: dict[str, Any]) -> np.ndarray:
    """The boolean mask that :func:`mask_to_runs` encoded; ValueError when the runs do not fill it."""
    height, width = runs["size"]
    counts = np.asarray(runs["counts"], dtype=np.int64)
    if counts.sum() != height * width or (counts < 0).any():
        raise ValueError(f"mask runs add up to {int(counts.sum())} pixels, expected {height} x {width}")
    return np.repeat(np.arange(counts.size) % 2 == 1, counts).reshape(height, width)


def _array(values: Any, dtype: type) -> np.ndarray | None:
    return None if values is None else np.asarray(values, dtype=dtype)


def _stack_masks(masks: list[np.ndarray]) -> np.ndarray:
    return np.stack(masks) if masks else np.zeros((0, 1, 1), dtype=bool)


def _integers(values: np.ndarray | None, items: int | None, name: str) -> np.ndarray | None:
    if values is None:
        return None
    array = np.asarray(values)
    if array.shape != (items,) or (array.size and (array.dtype.kind not in "iu" or array.min() < 0)):
        raise ValueError(f"{name} must be ({items},) non-negative class indices, got shape {array.shape} "
                         f"of {array.dtype}")
    return array.astype(np.int64)


def _probabilities(values: np.ndarray | None, items: int | None) -> np.ndarray | None:
    if values is None:
        return None
    array = np.array(values, dtype=np.float32)
    if array.shape != (items,) or not np.isfinite(array).all() or (array < 0).any() or (array > 1).any():
        raise ValueError(f"scores must be ({items},) numbers from 0 to 1, got shape {array.shape}")
    return array


def _boxes(values: np.ndarray, items: int | None, size: tuple[int, int]) -> np.ndarray:
    boxes = np.array(values, dtype=np.float32)
    if boxes.shape != (items, 4) or not np.isfinite(boxes).all():
        raise ValueError(f"boxes must be ({items}, 4) finite x0, y0, x1, y1, got shape {boxes.shape}")
    width, height = size
    x0, y0, x1, y1 = boxes.T
    if ((x0 < 0) | (y0 < 0) | (x1 < x0) | (y1 < y0) | (x1 > width) | (y1 > height)).any():
        raise ValueError(f"boxes must lie inside the {width} x {height} image with x0 <= x1 and y0 <= y1")
    return boxes


def _masks(values: np.ndarray, items: int | None) -> np.ndarray:
    masks = np.asarray(values)
    if masks.ndim != 3 or masks.shape[0] != items or masks.dtype != np.bool_ or min(masks.shape[1:]) < 1:
        raise ValueError(f"masks must be ({items}, H, W) booleans, got shape {masks.shape} of {masks.dtype}")
    return masks.copy()


def _heatmap(values: np.ndarray) -> np.ndarray:
    heatmap = np.array(values, dtype=np.float32)
    if heatmap.ndim != 2 or min(heatmap.shape) < 1 or not np.isfinite(heatmap).all():
        raise ValueError(f"heatmap must be a finite (H, W) array, got shape {heatmap.shape}")
    return heatmap
