"""Magnetic tile localisation: a detector trained on boxes from the masks, tested on the unseen sessions.

    python -m benchmarks.detection_magnetic_tile [--max-minutes 30] [--size 256] [--threads 2]

The split is the classifier benchmark's (:data:`benchmarks.magnetic_tile.PLAN`): test = capture sessions exp5 and
exp6, validation 15% of exp0-exp4, training the rest. Boxes come from the dataset's masks, imported as the product
imports them (``inspectloop regions import --format masks``: one outline per connected part of a mask, its box
used for training). Free tiles have no mask and are defect-free frames. The detector is the product's
(``--task detect``: EfficientNet-Lite0 + pyramid + anchor-free head), trained from the installed ImageNet weights
for ``--max-minutes`` on these cores, with its per-class box thresholds calibrated on the validation frames.

Reported (issue 12): per-class box recall at IoU 0.5 at the operating point, COCO AP50 per class, and the
image-level figures read from the exported file with the torch-free runtime, image by image: per folder class,
the share of test tiles the detector rejects (a box at or above its class's threshold) and the share it rejects
or sends to review; Free tiles rejected. Beside them, the classifier's image-level recall on the same test split
(top class, the fine-tuned recipe with the probe's head refitted, 3 seeds; read from
``magnetic_tile_standardise_refit*.json``, not re-trained here).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import CITATIONS, RESULTS, machine, magnetic_tile_items, require, write_result
from benchmarks.detection import show_progress
from benchmarks.magnetic_tile import PLAN
from benchmarks.training_bench import CACHE
from inspectloop.datasets import create_version
from inspectloop.domain import ClassDefinition
from inspectloop.ingest import ingest
from inspectloop.regions.run import import_regions
from inspectloop.runtime import EdgeModel
from inspectloop.train.config import TrainConfig
from inspectloop.train.run import train
from inspectloop.workspace import Workspace, init_workspace

GOOD = "Free"
CLASSIFIER_RESULTS = ("magnetic_tile_standardise_refit.json", "magnetic_tile_standardise_refit_seeds12.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-minutes", type=float, default=30.0, help="training budget")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lr", type=float, default=2e-3)
    args = parser.parse_args()
    ws, version, imported = build_workspace()
    config = TrainConfig(task="detect", input_size=args.size, epochs=args.epochs, batch_size=args.batch_size,
                         threads=args.threads, seed=0, lr=args.lr, precision="bf16", channels_last=True,
                         max_minutes=args.max_minutes)
    started = time.perf_counter()
    result = train(ws, config, dataset=version.name, progress=show_progress)
    wall = round(time.perf_counter() - started, 1)
    test = result.metrics["test"]
    images = image_level(ws, version, result.model_path, args.threads)
    payload = {
        "dataset": "magnetic_tile", "citation": CITATIONS["magnetic_tile"], "machine": machine(),
        "split": "test = sessions exp5+exp6; val 15% of exp0-exp4 (benchmarks.magnetic_tile.PLAN)",
        "boxes": version.summary["regions"], "import": {"files": imported.files, "problems": len(imported.problems)},
        "config": config.model_dump(), "run": result.run_id,
        "train_seconds": result.metrics["train_seconds"], "run_wall_seconds": wall,
        "stopped_at_budget": result.metrics["stopped_at_budget"], "best_epoch": result.metrics["best_epoch"],
        "tile_scale": result.metrics["tile_scale"],
        "test": {"map50": test["map50"], "map50_95": test["map50_95"], "image": test["image"],
                 "review": test.get("review"),
                 "per_class_boxes": {n: {k: v[k] for k in ("recall", "precision", "ap50", "ap50_95") if k in v}
                                     for n, v in test["per_class"].items()}},
        "image_level_by_folder": images, "classifier": classifier_figures(),
        "history": result.metrics["history"],
    }
    print(json.dumps({"map50": test["map50"], "image": test["image"], "by_folder": images,
                      "classifier": payload["classifier"]}, indent=1), flush=True)
    write_result("detection_magnetic_tile", payload)
    ws.close()


def build_workspace() -> tuple[Workspace, Any, Any]:
    """A fresh workspace: the tiles ingested with their sessions, Free marked good, the masks imported."""
    root = CACHE / "mt-detect"
    shutil.rmtree(root, ignore_errors=True)
    ws = init_workspace(root)
    ingest(ws, magnetic_tile_items(), source="magnetic_tile")
    ws.db.labels.upsert_class(ClassDefinition(name=GOOD, is_good=True))
    imported = import_regions(ws, require("magnetic_tile"), "masks", images=require("magnetic_tile"))
    version = create_version(ws, PLAN)
    print(f"mt-detect: {version.summary['regions']} boxes from {imported.files} masks "
          f"({len(imported.problems)} problems), splits {version.summary['splits']}", flush=True)
    return ws, version, imported


def image_level(ws: Workspace, version: Any, model_path: Path, threads: int) -> dict[str, Any]:
    """Per folder class, the exported detector's decisions on the test tiles (torch-free runtime)."""
    model = EdgeModel(model_path, threads=threads)
    decisions: dict[str, list[str]] = defaultdict(list)
    for item in version.split("test"):
        prediction = model.predict(ws.blobs.get(item.sha256))
        decisions[item.label].append(str(prediction.decision))
    out = {}
    for label, made in sorted(decisions.items()):
        rejected = np.mean([d == "reject" for d in made])
        flagged = np.mean([d in ("reject", "review") for d in made])
        out[label] = {"tiles": len(made), "rejected": round(float(rejected), 4),
                      "rejected_or_review": round(float(flagged), 4)}
    return out


def classifier_figures() -> dict[str, Any]:
    """The fine-tuned classifier's top-class recall per class on the same test split, per seed (recorded runs)."""
    rows = []
    for name in CLASSIFIER_RESULTS:
        path = RESULTS / name
        if path.exists():
            data = json.loads(path.read_text())
            rows += [{"seed": r["seed"], "per_class_recall": r["per_class_recall"], "code_version": data.get(
                "code_version")} for r in data["rows"] if r.get("standardise")]
    if not rows:
        return {"status": "no recorded classifier run: python -m benchmarks.magnetic_tile --standardise-study "
                          "--head-refit --treatments std"}
    classes = rows[0]["per_class_recall"]
    mean = {c: round(float(np.mean([r["per_class_recall"][c] for r in rows])), 4) for c in classes}
    return {"recipe": "finetune 192 px, standardised, head refitted (top-class recall)", "seeds": rows,
            "mean_per_class_recall": mean}


if __name__ == "__main__":
    main()
