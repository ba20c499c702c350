"""Detection post-processing for the edge: tiles, non-maximum suppression, merging across tile borders.

Numpy only. A frame no larger than the model input is resized to it (as a classifier's image is);
a larger frame is cut into overlapping tiles of the input's size at native scale, so a defect a few
pixels wide stays a few pixels wide. Each tile's boxes go through class-wise NMS; boxes of one class
from different tiles that cover mostly the same thing (intersection over the smaller box) are then
merged into their union, so a defect cut by a tile border comes back as one box. A frame's
image-level score per defect class is its highest box confidence: the frame is as bad as its worst region.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from inspectloop.errors import ModelFileError

BOXES_NAME, SCORES_NAME = "boxes", "scores"  # the graph's outputs: (N, A, 4) input pixels, (N, A, C) in [0, 1]
DEFAULTS: dict[str, Any] = {"tile_overlap": 64, "nms_iou": 0.5, "merge_ios": 0.5, "max_boxes": 100,
                            "min_score": 0.05}


@dataclass(frozen=True)
class Tile:
    """Where a tile lies in its frame (``x``, ``y``: top-left corner, frame pixels) and how its model
    input maps back: frame coordinate = ``x`` + input coordinate * ``scale`` (``scale`` != 1 only for a
    frame resized whole)."""

    x: int
    y: int
    scale_x: float = 1.0
    scale_y: float = 1.0


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of ``tile`` pixels covering ``length`` with at least ``overlap`` shared pixels."""
    if length <= tile:
        return [0]
    step = max(1, tile - overlap)
    count = int(np.ceil((length - tile) / step)) + 1
    return np.linspace(0, length - tile, count).round().astype(int).tolist()


def tiles_of(image: Image.Image, size: int, overlap: int, fill: int | None = None) -> list[tuple[Tile, Image.Image]]:
    """The model inputs (``size`` x ``size``) a frame is seen as, each with its :class:`Tile`.

    A frame no larger than ``size`` either way is resized whole. Otherwise tiles are cut at native
    scale; a side shorter than ``size`` is padded with ``fill`` (default: the frame's mean grey).
    """
    width, height = image.size
    if width <= size and height <= size:
        resized = image.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None)  # as Preprocess.resize
        return [(Tile(0, 0, width / size, height / size), resized)]
    if fill is None:
        fill = int(np.asarray(image.convert("L").reduce(8) if min(image.size) >= 64 else image.convert("L")).mean())
    colour: int | tuple[int, ...] = fill if image.mode == "L" else (fill,) * len(image.getbands())
    out = []
    for y in tile_starts(height, size, overlap):
        for x in tile_starts(width, size, overlap):
            if x + size <= width and y + size <= height:
                out.append((Tile(x, y), image.crop((x, y, x + size, y + size))))
                continue
            canvas = Image.new(image.mode, (size, size), colour)  # grey, not black: no false edge to detect
            canvas.paste(image.crop((x, y, min(width, x + size), min(height, y + size))), (0, 0))
            out.append((Tile(x, y), canvas))
    return out


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices of the boxes kept by greedy non-maximum suppression (highest score first)."""
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        order = rest[overlap(boxes[best], boxes[rest], "iou") <= iou]
    return np.asarray(keep, dtype=np.int64)


def overlap(box: np.ndarray, others: np.ndarray, kind: str) -> np.ndarray:
    """``box`` (4,) against ``others`` (M, 4): intersection over union (``iou``) or over the smaller (``ios``)."""
    lt = np.maximum(box[:2], others[:, :2])
    rb = np.minimum(box[2:], others[:, 2:])
    inter = np.clip(rb - lt, 0, None).prod(1)
    area = np.clip(box[2:] - box[:2], 0, None).prod()
    areas = np.clip(others[:, 2:] - others[:, :2], 0, None).prod(1)
    if kind == "iou":
        return inter / np.maximum(area + areas - inter, 1e-9)
    return inter / np.maximum(np.minimum(area, areas), 1e-9)


def select(boxes: np.ndarray, scores: np.ndarray, min_score: float, iou: float,
           max_boxes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One model input's raw outputs -> (boxes (K, 4), scores (K,), class ids (K,)) after class-wise NMS.

    ``boxes`` (A, 4) and ``scores`` (A, C) as the graph gives them; locations below ``min_score`` are dropped."""
    where, classes = np.nonzero(scores >= min_score)
    kept_boxes, kept_scores, kept_classes = boxes[where], scores[where, classes], classes
    keep = [idx[nms(kept_boxes[idx], kept_scores[idx], iou)] for c in np.unique(kept_classes)
            for idx in [np.flatnonzero(kept_classes == c)]]
    index = np.concatenate(keep) if keep else np.zeros(0, dtype=np.int64)
    index = index[np.argsort(-kept_scores[index], kind="stable")][:max_boxes]
    return kept_boxes[index].astype(np.float32), kept_scores[index].astype(np.float32), kept_classes[index]


def merge_across_tiles(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, tiles: np.ndarray,
                       ios: float, cut: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greedy merge (highest score first) of same-class boxes from *different* tiles that overlap: their
    intersection over the smaller box exceeds ``ios``, or any overlap where either box is ``cut`` (K,)
    (touches an inner border of its tile: the defect goes on in the next tile). The union box, the highest score."""
    cut = np.zeros(len(boxes), dtype=bool) if cut is None else cut
    order = np.argsort(-scores, kind="stable")
    boxes, scores, classes, tiles, cut = boxes[order], scores[order], classes[order], tiles[order], cut[order]
    alive = np.ones(len(boxes), dtype=bool)
    out_boxes, out_scores, out_classes = [], [], []
    for i in range(len(boxes)):
        if not alive[i]:
            continue
        box = boxes[i].copy()
        group = np.flatnonzero(alive & (classes == classes[i]) & (tiles != tiles[i]))
        group = group[group > i]
        if group.size:
            shared = overlap(box, boxes[group], "ios")
            group = group[(shared > ios) | ((shared > 0) & (cut[i] | cut[group]))]
            if group.size:
                box = np.concatenate((np.minimum(box[:2], boxes[group, :2].min(0)),
                                      np.maximum(box[2:], boxes[group, 2:].max(0))))
                alive[group] = False
        out_boxes.append(box)
        out_scores.append(scores[i])
        out_classes.append(classes[i])
    return (np.asarray(out_boxes, dtype=np.float32).reshape(-1, 4), np.asarray(out_scores, dtype=np.float32),
            np.asarray(out_classes, dtype=np.int64))


RunTiles = Callable[[list[Image.Image]], tuple[np.ndarray, np.ndarray]]


def detect_frame(image: Image.Image, size: int, run: RunTiles, settings: dict[str, Any] | None = None,
                 min_score: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A whole frame's boxes (K, 4) in frame pixels, scores (K,) and class ids (K,).

    ``run`` maps model inputs (PIL images of ``size``) to the graph's (boxes (N, A, 4), scores (N, A, C));
    ``settings`` are the model file's detection settings (:data:`DEFAULTS` for any left out).
    """
    s = {**DEFAULTS, **(settings or {})}
    floor = s["min_score"] if min_score is None else min_score
    tiles = tiles_of(image, size, int(s["tile_overlap"]))
    raw_boxes, raw_scores = run([crop for _, crop in tiles])
    parts = []
    width, height = image.size
    for n, (tile, _) in enumerate(tiles):
        boxes, scores, classes = select(raw_boxes[n], raw_scores[n], floor, s["nms_iou"], s["max_boxes"])
        cut = _cut(boxes, tile, size, width, height)
        boxes = boxes * np.array([tile.scale_x, tile.scale_y] * 2, dtype=np.float32) + np.array(
            [tile.x, tile.y] * 2, dtype=np.float32)
        parts.append((boxes, scores, classes, np.full(len(scores), n), cut))
    boxes, scores, classes, origin, cut = (np.concatenate(p) for p in zip(*parts))
    if len(tiles) > 1:
        boxes, scores, classes = merge_across_tiles(boxes, scores, classes, origin, s["merge_ios"], cut)
        order = np.argsort(-scores, kind="stable")[: s["max_boxes"]]
        boxes, scores, classes = boxes[order], scores[order], classes[order]
    boxes = np.clip(boxes, 0, [width, height, width, height]).astype(np.float32)
    return boxes, scores.astype(np.float32), classes.astype(np.int64)


def _cut(boxes: np.ndarray, tile: Tile, size: int, width: int, height: int, margin: float = 2.0) -> np.ndarray:
    """Which boxes (tile pixels) touch an edge of the tile that lies inside the frame."""
    if tile.scale_x != 1.0 or tile.scale_y != 1.0:
        return np.zeros(len(boxes), dtype=bool)  # the whole frame: no inner borders
    inner = np.array([tile.x > 0, tile.y > 0, tile.x + size < width, tile.y + size < height])
    near = np.stack([boxes[:, 0] <= margin, boxes[:, 1] <= margin, boxes[:, 2] >= size - margin,
                     boxes[:, 3] >= size - margin], 1)
    return (near & inner).any(1)


def image_scores(scores: np.ndarray, classes: np.ndarray, num_defects: int) -> np.ndarray:
    """Per defect class, the highest confidence of its boxes (0 without one): the frame's worst region."""
    best = np.zeros(num_defects, dtype=np.float64)
    np.maximum.at(best, classes, scores.astype(np.float64))
    return best


def class_scores(defect_scores: np.ndarray) -> np.ndarray:
    """The image-level scores a decision reads, in a detector's class order (good class first):
    1 - the worst region's score, then each defect class's highest box confidence."""
    worst = float(defect_scores.max()) if defect_scores.size else 0.0
    return np.concatenate(([1.0 - worst], defect_scores))


def check_settings(settings: Any) -> dict[str, Any]:
    """A model file's detection settings, validated (ValueError naming the bad one); defaults filled in."""
    if not isinstance(settings, dict) or set(settings) - set(DEFAULTS):
        raise ValueError(f"detection settings must be an object with keys from {sorted(DEFAULTS)}, got {settings!r}")
    merged = {**DEFAULTS, **settings}
    for name in ("tile_overlap", "max_boxes"):
        if type(merged[name]) is not int or merged[name] < (0 if name == "tile_overlap" else 1):
            raise ValueError(f"detection.{name} must be a {'non-negative' if name == 'tile_overlap' else 'positive'} "
                             f"integer, got {merged[name]!r}")
    for name in ("nms_iou", "merge_ios", "min_score"):
        value = merged[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise ValueError(f"detection.{name} must be a number from 0 to 1, got {value!r}")
    return merged


def check_outputs(outputs: dict[str, Any], input_size: int, defects: int, label: str) -> None:
    """A detection file gives ``boxes`` (N, A, 4) and ``scores`` (N, A, defects); ModelFileError otherwise."""
    boxes, scores = outputs.get(BOXES_NAME), outputs.get(SCORES_NAME)
    if boxes is None or scores is None or len(boxes) != 3 or len(scores) != 3 or boxes[2] != 4 \
            or (isinstance(scores[2], int) and scores[2] != defects):
        raise ModelFileError(f"{label}: a detection model must give '{BOXES_NAME}' (N, A, 4) and '{SCORES_NAME}' "
                             f"(N, A, {defects}) for {input_size}-pixel inputs, got outputs {outputs}",
                             "export the model with inspectloop.export.export_detector")
