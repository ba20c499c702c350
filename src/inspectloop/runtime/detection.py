"""Detection post-processing for the edge: tiles, non-maximum suppression, merging across tile borders.

Numpy only. A frame no larger than the model input is resized to it (as a classifier's image is);
a larger frame is cut into overlapping tiles of the input's size at native scale, so a defect a few
pixels wide stays a few pixels wide (``tile_scale`` zooms the frame first, for a detector that learnt
its defects at another scale). Each tile's boxes go through class-wise NMS; boxes of one class
from different tiles that cover mostly the same thing (intersection over the smaller box) are then
merged into their union, so a defect cut by a tile border comes back as one box. A frame's
image-level score per defect class is its highest box confidence: the frame is as bad as its worst region.

Tiles go through the graph in batches of ``TILE_BATCH`` (the exported batch axis is dynamic); the boxes
are those of one tile at a time, within float tolerance. ``skip_plain`` (off by default) lets a cheap
statistic skip tiles whose every cell looks like the rest of the frame; see :func:`plain_tiles`.

Per defect class, a box at or above its class's threshold (the model's ``thresholds``, its operating
point) rejects the frame; a box from ``review_from`` up to it sends the frame to review; weaker boxes are
not shown. :class:`BoxRule` applies it; :mod:`inspectloop.detect.calibrate` chooses both on validation frames.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from inspectloop.errors import ModelFileError
from inspectloop.runtime.decision import Decision

BOXES_NAME, SCORES_NAME = "boxes", "scores"  # the graph's outputs: (N, A, 4) input pixels, (N, A, C) in [0, 1]
DEFAULTS: dict[str, Any] = {"tile_overlap": 64, "nms_iou": 0.5, "merge_ios": 0.5, "max_boxes": 100,
                            "min_score": 0.05, "skip_plain": 0.0, "review_from": {}, "tile_scale": 1.0}
MAX_TILE_SCALE = 8.0
# Tiles per onnxruntime call (benchmarks/detection_speed.py): batches of 8 took 14.7 s per 12 MP frame where
# one tile per call took 18.4 s (fp32, 256-px tiles, 2 threads on 2 shared cores).
TILE_BATCH = 8
PLAIN_CELL = 32  # frame pixels per side of a cell of the plain-tile check
FRAME_MODES = ("L", "RGB")


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
    check_frame(image)
    width, height = image.size
    if overlap >= size and (width > size or height > size):
        raise ValueError(f"tile overlap {overlap} must be smaller than the {size}-pixel tiles (the model input)")
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


def check_frame(image: Image.Image) -> None:
    """ValueError naming the problem when ``image`` cannot be tiled: not 8-bit grey or RGB, or empty."""
    if not isinstance(image, Image.Image):
        raise ValueError(f"a frame must be a PIL image, got {type(image).__name__}")
    if image.mode not in FRAME_MODES:
        raise ValueError(f"a frame must be 8-bit grey (L) or RGB, got mode {image.mode!r}; convert it first "
                         "(EdgeModel.predict decodes and converts files itself)")
    if min(image.size) < 1:
        raise ValueError(f"a frame must have pixels, got size {image.size}")


def plain_tiles(image: Image.Image, tiles: list[Tile], size: int, z: float) -> np.ndarray:
    """Which tiles (bool per tile) look plain: every :data:`PLAIN_CELL` cell they touch has a mean and a
    spread within ``z`` robust deviations (1.4826 MAD) of the frame's typical cell. A cheap check (one
    2x reduction of the frame, no model): a defect that neither brightens, darkens nor roughens its cell
    is missed, so recall on such defects must be measured before it is switched on (``skip_plain``)."""
    grey = np.asarray(image.convert("L").reduce(2), dtype=np.float32)
    cell = PLAIN_CELL // 2
    rows, cols = -(-grey.shape[0] // cell), -(-grey.shape[1] // cell)
    grey = np.pad(grey, ((0, rows * cell - grey.shape[0]), (0, cols * cell - grey.shape[1])), mode="edge")
    blocks = grey.reshape(rows, cell, cols, cell)
    unusual = np.zeros((rows, cols), dtype=bool)
    for stat in (blocks.mean((1, 3)), blocks.std((1, 3))):
        centre = np.median(stat)
        spread = max(1.4826 * float(np.median(np.abs(stat - centre))), 0.5)  # 0.5 grey: a flat frame is not all unusual
        unusual |= np.abs(stat - centre) > z * spread
    out = np.ones(len(tiles), dtype=bool)
    for n, tile in enumerate(tiles):
        top, left = tile.y // PLAIN_CELL, tile.x // PLAIN_CELL
        out[n] = not unusual[top:-(-(tile.y + size) // PLAIN_CELL), left:-(-(tile.x + size) // PLAIN_CELL)].any()
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
                 min_score: float | None = None, batch: int = TILE_BATCH) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A whole frame's boxes (K, 4) in frame pixels, scores (K,) and class ids (K,).

    ``run`` maps model inputs (PIL images of ``size``, at most ``batch`` at a time) to the graph's
    (boxes (N, A, 4), scores (N, A, C)); ``settings`` are the model file's detection settings
    (:data:`DEFAULTS` for any left out). ValueError for a frame that cannot be tiled (:func:`check_frame`).
    """
    if type(batch) is not int or batch < 1:
        raise ValueError(f"batch must be a positive integer, got {batch!r}")
    s = {**DEFAULTS, **(settings or {})}
    floor = s["min_score"] if min_score is None else min_score
    check_frame(image)
    width, height = image.size
    image = zoomed(image, size, float(s["tile_scale"]))
    tiles = tiles_of(image, size, int(s["tile_overlap"]))
    if s["skip_plain"] and len(tiles) > 1:
        plain = plain_tiles(image, [tile for tile, _ in tiles], size, float(s["skip_plain"]))
        tiles = [t for t, skip in zip(tiles, plain) if not skip]
    parts = [(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64),
              np.zeros(0, bool))]
    for start in range(0, len(tiles), batch):
        chunk = tiles[start:start + batch]
        raw_boxes, raw_scores = run([crop for _, crop in chunk])
        for n, (tile, _) in enumerate(chunk, start):
            boxes, scores, classes = select(raw_boxes[n - start], raw_scores[n - start], floor, s["nms_iou"],
                                            s["max_boxes"])
            cut = _cut(boxes, tile, size, *image.size)
            boxes = boxes * np.array([tile.scale_x, tile.scale_y] * 2, dtype=np.float32) + np.array(
                [tile.x, tile.y] * 2, dtype=np.float32)
            parts.append((boxes, scores, classes, np.full(len(scores), n), cut))
    boxes, scores, classes, origin, cut = (np.concatenate(p) for p in zip(*parts))
    if len(tiles) > 1:
        boxes, scores, classes = merge_across_tiles(boxes, scores, classes, origin, s["merge_ios"], cut)
        order = np.argsort(-scores, kind="stable")[: s["max_boxes"]]
        boxes, scores, classes = boxes[order], scores[order], classes[order]
    boxes = boxes * np.array([width / image.width, height / image.height] * 2, dtype=np.float32)
    boxes = np.clip(boxes, 0, [width, height, width, height]).astype(np.float32)
    return boxes, scores.astype(np.float32), classes.astype(np.int64)


def zoomed(image: Image.Image, size: int, scale: float) -> Image.Image:
    """A frame larger than the model input, resized by ``scale`` before it is tiled (``tile_scale``): a detector
    that learnt its defects from images enlarged to its input sees a frame's defects at that size again. A frame
    that fits the input is returned as is (it is resized whole)."""
    width, height = image.size
    if scale == 1.0 or (width <= size and height <= size):
        return image
    return image.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.BILINEAR)


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


def check_settings(settings: Any, box_classes: tuple[str, ...] | None = None,
                   thresholds: dict[str, float] | None = None) -> dict[str, Any]:
    """A model file's detection settings, validated (ValueError naming the bad one); defaults filled in.

    With ``box_classes`` and ``thresholds`` (the file's), ``review_from`` must name box classes and lie
    at or below its class's threshold."""
    if not isinstance(settings, dict) or set(settings) - set(DEFAULTS):
        raise ValueError(f"detection settings must be an object with keys from {sorted(DEFAULTS)}, got {settings!r}")
    merged = {**DEFAULTS, **settings}
    for name in ("tile_overlap", "max_boxes"):
        if type(merged[name]) is not int or merged[name] < (0 if name == "tile_overlap" else 1):
            raise ValueError(f"detection.{name} must be a {'non-negative' if name == 'tile_overlap' else 'positive'} "
                             f"integer, got {merged[name]!r}")
    for name in ("nms_iou", "merge_ios", "min_score"):
        if not _is_fraction(merged[name]):
            raise ValueError(f"detection.{name} must be a number from 0 to 1, got {merged[name]!r}")
    scale = merged["tile_scale"]
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 1 / MAX_TILE_SCALE <= scale <= MAX_TILE_SCALE:
        raise ValueError(f"detection.tile_scale must be a number from {1 / MAX_TILE_SCALE:g} to {MAX_TILE_SCALE:g} "
                         f"(the zoom of a large frame before tiling; 1 = native scale), got {scale!r}")
    skip = merged["skip_plain"]
    if isinstance(skip, bool) or not isinstance(skip, (int, float)) or not 0 <= skip < float("inf"):
        raise ValueError(f"detection.skip_plain must be 0 (off) or a positive number of deviations, got {skip!r}")
    merged["review_from"] = _check_review_from(merged["review_from"], box_classes, thresholds or {})
    return merged


def _is_fraction(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and 0.0 <= value <= 1.0


def _check_review_from(review: Any, box_classes: tuple[str, ...] | None,
                       thresholds: dict[str, float]) -> dict[str, float]:
    if not isinstance(review, dict) or not all(isinstance(k, str) and _is_fraction(v) for k, v in review.items()):
        raise ValueError(f"detection.review_from must map box classes to numbers from 0 to 1, got {review!r}")
    if box_classes is not None:
        unknown = sorted(set(review) - set(box_classes))
        if unknown:
            raise ValueError(f"detection.review_from names classes with no boxes: {', '.join(unknown)} "
                             f"(box classes: {', '.join(box_classes)})")
        above = sorted(n for n, v in review.items() if v > thresholds.get(n, 1.0))
        if above:
            raise ValueError(f"detection.review_from must lie at or below each class's threshold; it does not "
                             f"for {', '.join(above)}")
    return {name: float(value) for name, value in review.items()}


@dataclass(frozen=True, eq=False)
class BoxRule:
    """Per defect class (in the model's box-class order): ``reject_at`` (K,), the box confidence that rejects
    the frame, and ``review_from`` (K,), the lowest that sends it to review (equal to ``reject_at``: no band)."""

    reject_at: np.ndarray
    review_from: np.ndarray

    @classmethod
    def of(cls, box_classes: tuple[str, ...], thresholds: dict[str, float], review_from: dict[str, float],
           default: float = 0.0) -> BoxRule:
        """The rule of a model file: its ``thresholds`` by class (``default`` for a class without one) and the
        detection settings' ``review_from`` (the threshold itself for a class without one)."""
        reject = np.array([float(thresholds.get(n, default)) for n in box_classes] or [default])
        review = np.array([min(float(review_from.get(n, r)), r) for n, r in zip(box_classes, reject)] or [default])
        return cls(reject, review)

    def shown(self, scores: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """Which boxes (K,) count: those at or above their class's ``review_from``."""
        return scores >= self.review_from[classes] if classes.size else np.zeros(0, dtype=bool)

    def verdict(self, scores: np.ndarray, classes: np.ndarray) -> tuple[str, int | None]:
        """The frame's verdict from its worst box: ``reject``, ``review`` or ``pass``, and the box class
        (index among the defect classes) of the strongest box that decided it (None for a pass)."""
        for name, floor in (("reject", self.reject_at), ("review", self.review_from)):
            hit = scores >= floor[classes] if classes.size else np.zeros(0, dtype=bool)
            if hit.any():
                return name, int(classes[hit][np.argmax(scores[hit])])
        return "pass", None


def check_outputs(outputs: dict[str, Any], input_size: int, defects: int, label: str) -> None:
    """A detection file gives ``boxes`` (N, A, 4) and ``scores`` (N, A, defects); ModelFileError otherwise."""
    boxes, scores = outputs.get(BOXES_NAME), outputs.get(SCORES_NAME)
    if boxes is None or scores is None or len(boxes) != 3 or len(scores) != 3 or boxes[2] != 4 \
            or (isinstance(scores[2], int) and scores[2] != defects):
        raise ModelFileError(f"{label}: a detection model must give '{BOXES_NAME}' (N, A, 4) and '{SCORES_NAME}' "
                             f"(N, A, {defects}) for {input_size}-pixel inputs, got outputs {outputs}",
                             "export the model with inspectloop.export.export_detector")


def frame_decision(rule: BoxRule, scores: np.ndarray, classes: np.ndarray, label: int, decision: Decision,
                   banded: bool) -> tuple[int, Decision]:
    """A detector's decision for a frame (label: class index, the good class 0 first), given the decision
    policy's (``label``, ``decision``) from the image-level scores.

    Without an image-level review band (``banded`` False) the boxes decide, by :meth:`BoxRule.verdict`:
    a reject or review as the class of the box that decided it, else a pass. With one, the policy's band
    (and its escape guarantee) decides, and a box in a class's review band can only turn a pass into a review.
    """
    verdict, box_class = rule.verdict(scores, classes)
    if banded:
        if decision == Decision.PASS and box_class is not None:
            return box_class + 1, Decision.REVIEW
        return label, decision
    return (0, Decision.PASS) if box_class is None else (box_class + 1, Decision(verdict))
