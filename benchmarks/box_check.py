"""Wrong boxes seeded into NEU-DET's own box annotations: how many of each kind the box check finds, and how
many of its findings are the seeded ones.

    python -m benchmarks.box_check

NEU-DET's 4,189 boxes (Pascal VOC, 1,800 images, often several overlapping boxes of one class) are the
prediction (each as sure as a second annotator's box); the annotation is the same boxes with errors seeded:
a share of the boxes dropped (expected: ``missing``), moved by half their width or height (IoU 1/3:
``misplaced``), given another NEU class (``wrong_class``), and as many boxes of a real box's size added
where no box is near (``spurious``). A finding counts when its kind and box are the seeded error's.
Recall is per kind; precision is over every finding. No detector is trained here (CPU time), so this
measures the check's rules on real box layouts, not a detector's quality: with a detector's boxes, its
misses and false boxes add findings of their own.
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

import numpy as np

from benchmarks.common import CITATIONS, require, write_result
from inspectloop.labelquality.boxcheck import (
    MISPLACED, MISSING, SPURIOUS, WRONG_CLASS, BoxFinding, Boxes, check_boxes,
)
from inspectloop.regions.formats import voc
from inspectloop.regions.geometry import box_iou

RATES = (0.05, 0.10)
SEEDS = (0, 1, 2)
SIZE = 200  # NEU-DET images are 200 x 200
Box = tuple[float, float, float, float]


def neu_boxes() -> dict[str, list[tuple[Box, str]]]:
    parsed = voc.read(require("neu_det") / "annotations")
    images: dict[str, list[tuple[Box, str]]] = defaultdict(list)
    for drawn in parsed.regions:
        if drawn.box is not None:
            images[drawn.image].append((drawn.box, drawn.class_name))
    return dict(images)


def seed_errors(truth: list[tuple[Box, str]], rate: float, classes: list[str], sizes: list[Box],
                rng: random.Random) -> tuple[list[tuple[Box, str]], list[tuple[str, Box]]]:
    """The annotation with errors seeded, and the errors as (expected kind, the box the finding names)."""
    annotated, seeded = [], []
    for box, name in truth:
        if rng.random() >= rate:
            annotated.append((box, name))
            continue
        kind = rng.choice((MISSING, MISPLACED, WRONG_CLASS))
        if kind == MISSING:
            seeded.append((MISSING, box))
        elif kind == MISPLACED:
            annotated.append((_moved(box, rng), name))
            seeded.append((MISPLACED, box))
        else:
            annotated.append((box, rng.choice([c for c in classes if c != name])))
            seeded.append((WRONG_CLASS, box))
    if rng.random() < rate * len(truth) / 3:  # about as many added boxes as of each other kind
        added = _free_box(truth, rng.choice(sizes), rng)
        if added is not None:
            annotated.append((added, rng.choice(classes)))
            seeded.append((SPURIOUS, added))
    return annotated, seeded


def _moved(box: Box, rng: random.Random) -> Box:
    x0, y0, x1, y1 = box
    dx, dy = ((x1 - x0) / 2, 0.0) if rng.random() < 0.5 else (0.0, (y1 - y0) / 2)
    sign = 1 if rng.random() < 0.5 else -1
    return (x0 + sign * dx, y0 + sign * dy, x1 + sign * dx, y1 + sign * dy)


def _free_box(truth: list[tuple[Box, str]], size: Box, rng: random.Random) -> Box | None:
    """A box of ``size``'s width and height where no true box is near (IoU < 0.1), or None when none fits."""
    width, height = min(size[2] - size[0], SIZE - 1), min(size[3] - size[1], SIZE - 1)
    for _ in range(50):
        x0, y0 = rng.uniform(0, SIZE - width), rng.uniform(0, SIZE - height)
        box = (x0, y0, x0 + width, y0 + height)
        if box_iou(np.array([box]), np.array([b for b, _ in truth])).max() < 0.1:
            return box
    return None


def named_box(finding: BoxFinding) -> Box | None:
    return finding.annotated_box if finding.kind == SPURIOUS else finding.predicted_box


def score(images: dict[str, list[tuple[Box, str]]], rate: float, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    classes = sorted({name for boxes in images.values() for _, name in boxes})
    sizes = [box for boxes in images.values() for box, _ in boxes]
    seeded_count: dict[str, int] = defaultdict(int)
    found_count: dict[str, int] = defaultdict(int)
    findings = correct = 0
    for name in sorted(images):
        truth = images[name]
        annotated, seeded = seed_errors(truth, rate, classes, sizes, rng)
        found = check_boxes(Boxes.of([b for b, _ in annotated], [c for _, c in annotated]),
                            Boxes.of([b for b, _ in truth], [c for _, c in truth]))
        findings += len(found)
        hits = {(f.kind, _key(named_box(f))) for f in found}
        for kind, box in seeded:
            seeded_count[kind] += 1
            if (kind, _key(box)) in hits:
                found_count[kind] += 1
        correct += sum((f.kind, _key(named_box(f))) in {(k, _key(b)) for k, b in seeded} for f in found)
    return {"seeded": dict(seeded_count), "found": dict(found_count),
            "recall": {k: round(found_count[k] / n, 3) for k, n in seeded_count.items()},
            "findings": findings, "precision": round(correct / findings, 3) if findings else None}


def _key(box: Box | None) -> tuple[float, ...] | None:
    return None if box is None else tuple(round(v, 1) for v in box)


def main() -> None:
    images = neu_boxes()
    results = {}
    for rate in RATES:
        runs = [score(images, rate, seed) for seed in SEEDS]
        kinds = sorted({k for run in runs for k in run["recall"]})
        results[str(rate)] = {
            "recall": {k: round(float(np.mean([run["recall"].get(k, 0.0) for run in runs])), 3) for k in kinds},
            "precision": round(float(np.mean([run["precision"] for run in runs])), 3), "runs": runs}
        print(f"rate {rate}: recall {results[str(rate)]['recall']}, precision {results[str(rate)]['precision']}",
              flush=True)
    write_result("box_check", {"dataset": "neu_det", "citation": CITATIONS["neu_det"], "images": len(images),
                               "boxes": sum(len(b) for b in images.values()), "seeds": list(SEEDS),
                               "rates": results})


if __name__ == "__main__":
    main()
