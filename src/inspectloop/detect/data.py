"""Frames and their true boxes, decoded once, and the training views (tiles) cut from them."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from inspectloop.detect.augment import clip_boxes
from inspectloop.runtime.detection import MAX_TILE_SCALE, tile_starts, zoomed

ON_DEFECT = 0.7  # share of a large frame's training tiles centred on a defect: most of a 12 MP frame is surface


@dataclass(frozen=True, eq=False)
class Frame:
    """One image: held at the model input's size when it fits in it (as the runtime resizes it), else at
    the run's ``tile_scale`` (the runtime zooms it by that and tiles it). ``boxes`` (K, 4) and ``labels`` (K,)
    defect class indices are in the held image's pixels; ``size`` is the stored image's (width, height)."""

    image: Image.Image
    boxes: np.ndarray
    labels: np.ndarray
    digest: str
    size: tuple[int, int]


def make_frame(image: Image.Image, boxes: np.ndarray, labels: np.ndarray, digest: str, input_size: int,
               tile_scale: float = 1.0) -> Frame:
    """A decoded image and its boxes (stored image pixels) as a :class:`Frame` for a model of ``input_size``."""
    width, height = image.size
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if width <= input_size and height <= input_size:
        held = image.resize((input_size, input_size), Image.Resampling.BILINEAR, reducing_gap=None)
    else:
        held = zoomed(image, input_size, tile_scale)
    boxes = boxes * np.array([held.width / width, held.height / height] * 2, dtype=np.float32)
    return Frame(held, boxes, labels, digest, (width, height))


def training_zoom(sizes: Sequence[tuple[int, int]], input_size: int) -> float:
    """The zoom a detector learns its defects at, the default ``tile_scale``: the median over the training
    images of input / longer side for an image held whole at the input (it fits in it), 1 for a larger frame
    (tiled at native scale). A detector that learnt from 200-px crops held at 256 px then meets a 12 MP frame's
    defects at the size it learnt them (1.28x), not 0.78x of it."""
    zooms = [input_size / max(w, h) if w <= input_size and h <= input_size else 1.0 for w, h in sizes]
    return round(min(float(np.median(zooms)), MAX_TILE_SCALE), 4) if zooms else 1.0


def training_view(frame: Frame, input_size: int, rng: random.Random) -> tuple[Image.Image, np.ndarray, np.ndarray]:
    """The frame itself when it is held at the input size, else one tile of it (most often on a defect)."""
    width, height = frame.image.size
    if (width, height) == (input_size, input_size):
        return frame.image, frame.boxes, frame.labels
    if len(frame.boxes) and rng.random() < ON_DEFECT:
        box = frame.boxes[rng.randrange(len(frame.boxes))]
        cx, cy = rng.uniform(box[0], box[2]), rng.uniform(box[1], box[3])
        x = int(np.clip(cx - input_size / 2, 0, max(0, width - input_size)))
        y = int(np.clip(cy - input_size / 2, 0, max(0, height - input_size)))
    else:
        x = rng.randint(0, max(0, width - input_size))
        y = rng.randint(0, max(0, height - input_size))
    fill = int(np.asarray(frame.image.convert("L").reduce(8)).mean()) if min(width, height) >= 64 else 128
    tile = Image.new(frame.image.mode, (input_size, input_size),
                     fill if frame.image.mode == "L" else (fill,) * len(frame.image.getbands()))
    tile.paste(frame.image.crop((x, y, min(width, x + input_size), min(height, y + input_size))), (0, 0))
    moved = frame.boxes - np.array([x, y, x, y], dtype=np.float32)
    boxes, labels = clip_boxes(moved, frame.labels, min(input_size, width - x), min(input_size, height - y))
    return tile, boxes, labels


def tiles_per_frame(frame: Frame, input_size: int, overlap: int) -> int:
    """How many model inputs the runtime cuts this frame into (1 when it is held at the input size)."""
    width, height = frame.image.size
    return len(tile_starts(width, input_size, overlap)) * len(tile_starts(height, input_size, overlap))


Reader = Callable[[str], Image.Image]


def load_frames(digests: Sequence[str], boxes: dict[str, np.ndarray], labels: dict[str, np.ndarray], read: Reader,
                input_size: int, progress: Callable[[int, int], None] | None = None,
                tile_scale: float = 1.0) -> list[Frame]:
    """Decode each image once and pair it with its boxes (none: a defect-free frame)."""
    frames = []
    for n, digest in enumerate(digests, start=1):
        frames.append(make_frame(read(digest), boxes.get(digest, np.zeros((0, 4))), labels.get(digest, np.zeros(0)),
                                 digest, input_size, tile_scale))
        if progress and (n % 50 == 0 or n == len(digests)):
            progress(n, len(digests))
    return frames
