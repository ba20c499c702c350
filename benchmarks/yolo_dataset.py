"""A dataset version as an Ultralytics training folder: the very split and boxes inspectloop's detector trains on.

    FOLDER/images/{train,val,test}/<digest16>.<ext>   the stored image bytes, unchanged
    FOLDER/labels/{train,val,test}/<digest16>.txt     ``class cx cy w h`` normalised (empty: a defect-free image)
    FOLDER/data.yaml                                  absolute path, the three splits, the box class names

Each image's boxes are :func:`inspectloop.detect.run.plan_detection`'s (one annotator's, chosen by the labelling
policy), and class ids follow its box classes, so both detectors learn and are scored on the same boxes. A
version's ``calib`` split (when it has one) joins ``val``: neither side trains on it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from inspectloop.datasets import load_version
from inspectloop.detect.run import DetectionPlan, plan_detection
from inspectloop.workspace import Workspace

SUFFIXES = {"JPEG": ".jpg", "MPO": ".jpg"}  # PIL format name -> a suffix Ultralytics reads as an image


def image_stem(digest: str) -> str:
    """The file stem of an image in the folder (and of its label file and its predictions)."""
    return digest[:16]


def write_yolo_dataset(workspace: Workspace, version: str, folder: Path) -> dict[str, Any]:
    """Write ``version`` of ``workspace`` to ``folder`` (replaced if it exists); the counts written."""
    loaded = load_version(workspace, version)
    plan = plan_detection(workspace, loaded)
    splits = {"train": plan.splits["train"], "val": plan.splits["val"] + plan.splits["calib"],
              "test": plan.splits["test"]}
    folder = Path(folder)
    shutil.rmtree(folder, ignore_errors=True)
    records = workspace.db.images.get_many([item.sha256 for item in loaded.items])
    counts: dict[str, dict[str, int]] = {}
    for split, items in splits.items():
        (folder / "images" / split).mkdir(parents=True)
        (folder / "labels" / split).mkdir(parents=True)
        boxes = sum(_write_image(workspace, item.sha256, records[item.sha256], plan, folder, split) for item in items)
        counts[split] = {"images": len(items), "boxes": boxes}
    names = dict(enumerate(plan.box_classes))
    (folder / "data.yaml").write_text(yaml.safe_dump(
        {"path": str(folder.resolve()), "train": "images/train", "val": "images/val", "test": "images/test",
         "names": names}, sort_keys=False))
    return {"version": loaded.name, "folder": str(folder), "classes": list(plan.box_classes), "splits": counts}


def _write_image(workspace: Workspace, digest: str, record: Any, plan: DetectionPlan, folder: Path, split: str) -> int:
    """One image's bytes and its label file; the number of boxes written."""
    stem = image_stem(digest)
    suffix = SUFFIXES.get(record.format.upper(), f".{record.format.lower()}")
    (folder / "images" / split / f"{stem}{suffix}").write_bytes(workspace.blobs.get(digest))
    xyxy = plan.boxes.get(digest, np.zeros((0, 4))).astype(np.float64) / ([record.width, record.height] * 2)
    centre, size = (xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]
    rows = [f"{int(cls)} " + " ".join(f"{v:.6f}" for v in (*c, *s))
            for cls, c, s in zip(plan.labels.get(digest, ()), centre, size)]
    (folder / "labels" / split / f"{stem}.txt").write_text("".join(f"{row}\n" for row in rows))
    return len(rows)
