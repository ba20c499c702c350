"""NEU-DET boxes: a CPU detector's test mAP50 / mAP50:95 per class, image-level defect recall, training time.

    python -m benchmarks.detection [--per-class N] [--epochs E] [--size S] [--threads T]

Split (fixed, documented): every image its own group (NEU has no part or session ids); stratified
70 / 15 / 15 train / val / test per image class with seed 0. Boxes come from the dataset's Pascal VOC
files (imported with ``inspectloop regions import --format voc``; 188 boxes name another class than
their image's folder, kept as drawn). The detector is EfficientNet-Lite0 + P3-P5 pyramid + anchor-free
head (:mod:`inspectloop.detect`), trained from the installed ImageNet weights; no hub download.

Goal (issue 12): test mAP50 >= 80 in <= 60 min of training on 2 cores. ``--per-class`` takes the first N
images of each class (a smoke run: its figures are not the goal's). Not measured here yet, and named so in
the result: the Ultralytics YOLO11n side-by-side, and the 12 MP synthetic frames.
"""

from __future__ import annotations

import argparse
import shutil
import time

from benchmarks.common import CITATIONS, machine, neu_items, require, write_result
from benchmarks.training_bench import CACHE
from inspectloop.datasets import SplitPlan, create_version
from inspectloop.ingest import ingest
from inspectloop.regions.run import import_regions
from inspectloop.train.config import TrainConfig
from inspectloop.train.run import train
from inspectloop.workspace import init_workspace

PLAN = SplitPlan(group_by="none", val_fraction=0.15, test_fraction=0.15, seed=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--per-class", type=int, default=0, help="first N images of each class (0: all 300)")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--size", type=int, default=256, help="model input; NEU frames (200 px) are resized to it")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", choices=("bf16", "float32"), default="bf16",
                        help="training arithmetic (bf16 autocast: about 1.5x faster steps here)")
    parser.add_argument("--float-layout", action="store_true", help="train in the default layout, not channels-last")
    parser.add_argument("--max-minutes", type=float, default=60.0, help="the goal's training budget")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--name", default=None, help="result file name (default detection, or detection-smoke)")
    args = parser.parse_args()
    items = neu_items()
    if args.per_class:
        counts: dict[str, int] = {}
        items = [i for i in items if counts.setdefault(i.label, 0) < args.per_class
                 and not counts.__setitem__(i.label, counts[i.label] + 1)]
    root = CACHE / "neu-detect"
    shutil.rmtree(root, ignore_errors=True)
    ws = init_workspace(root)
    ingest(ws, items, source="neu_det")
    imported = import_regions(ws, require("neu_det") / "annotations", "voc", images=require("neu_det") / "images")
    version = create_version(ws, PLAN)
    print(f"neu-detect: {len(items)} images, {version.summary['regions']} boxes, splits {version.summary['splits']}",
          flush=True)
    config = TrainConfig(task="detect", input_size=args.size, epochs=args.epochs, batch_size=args.batch_size,
                         threads=args.threads, seed=0, lr=args.lr, precision=args.precision,
                         channels_last=not args.float_layout, max_minutes=args.max_minutes)
    started = time.perf_counter()
    result = train(ws, config, dataset=version.name, progress=_show)
    wall = round(time.perf_counter() - started, 1)
    test = result.metrics["test"]
    payload = {
        "dataset": "neu_det", "citation": CITATIONS["neu_det"], "machine": machine(),
        "smoke": bool(args.per_class), "images": len(items), "boxes": version.summary["regions"],
        "import_problems": len(imported.problems),
        "split": "stratified 70/15/15 per class, seed 0", "config": config.model_dump(),
        "goal": {"test_map50": ">= 80", "train_wall_seconds": "<= 3600 on 2 cores"},
        "test": {"map50": test["map50"], "map50_95": test["map50_95"], "image": test["image"],
                 "per_class": test["per_class"]},
        "train_seconds": result.metrics["train_seconds"], "run_wall_seconds": wall,
        "stopped_at_budget": result.metrics["stopped_at_budget"],
        "best_epoch": result.metrics["best_epoch"], "history": result.metrics["history"],
        "not_measured": ["Ultralytics YOLO11n side by side (same split, same wall clock)",
                         "12 MP synthetic frames (recall vs crops, p50 per frame)", "magnetic tile localisation"],
    }
    print(f"NEU-DET detector: test mAP50 {test['map50']}, mAP50:95 {test['map50_95']}, image defect recall "
          f"{test['image']['defect_recall']}; training {result.metrics['train_seconds']} s, run {wall} s", flush=True)
    write_result(args.name or ("detection-smoke" if args.per_class else "detection"), payload)
    ws.close()


def _show(stage: str, info: dict) -> None:
    if stage == "epoch":
        print(f"  epoch {info['epoch'] + 1}/{info['epochs']} loss {info['loss']:.3f} (cls {info['cls']:.3f}, box "
              f"{info['box']:.3f}) val mAP50 {info['val_map50']} at {info['seconds']} s", flush=True)
    elif stage in ("evaluate", "export"):
        print(f"  {stage}", flush=True)


if __name__ == "__main__":
    main()
