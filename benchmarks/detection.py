"""NEU-DET boxes: a CPU detector's test mAP50 / mAP50:95 per class, image-level defect recall, training time.

    python -m benchmarks.detection [--per-class N] [--epochs E] [--size S] [--threads T] [--peer]

Split (fixed, documented): every image its own group (NEU has no part or session ids); stratified
70 / 15 / 15 train / val / test per image class with seed 0. Boxes come from the dataset's Pascal VOC
files (imported with ``inspectloop regions import --format voc``; 188 boxes name another class than
their image's folder, kept as drawn). The detector is EfficientNet-Lite0 + P3-P5 pyramid + anchor-free
head (:mod:`inspectloop.detect`), trained from the installed ImageNet weights; no hub download.

Goal (issue 12): test mAP50 >= 80 in <= 60 min of training on 2 cores. ``--per-class`` takes the first N
images of each class (a smoke run: its figures are not the goal's). The exported detector's edge latency is
measured as :mod:`benchmarks.edge_latency` does (JPEG bytes -> boxes with ``EdgeModel``, batch 1, one thread).

``--peer`` (after ``bash benchmarks/peers/setup_ultralytics.sh``) then trains Ultralytics YOLO11n from its model
yaml in .venv-ultralytics (AGPL-3.0: a separate process, never a product dependency) on the same version's
train/val/test images and boxes (:mod:`benchmarks.yolo_dataset`), at the same input size, batch and threads, for
the same wall-clock budget, and records its test mAP (scored by the same pycocotools code as ours, and by its
own metric) and its bare onnxruntime p50 beside ours. Not measured here: the 12 MP synthetic frames.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import CITATIONS, machine, neu_items, require, write_result
from benchmarks.edge_latency import measure, test_images
from benchmarks.training_bench import CACHE
from benchmarks.yolo_dataset import image_stem, write_yolo_dataset
from inspectloop.datasets import SplitPlan, create_version, load_version
from inspectloop.detect.metrics import Boxes, coco_map
from inspectloop.detect.run import plan_detection
from inspectloop.ingest import ingest
from inspectloop.regions.run import import_regions
from inspectloop.train.config import TrainConfig
from inspectloop.train.run import train
from inspectloop.workspace import Workspace, init_workspace

PLAN = SplitPlan(group_by="none", val_fraction=0.15, test_fraction=0.15, seed=0)
REPO = Path(__file__).resolve().parents[1]
PEER_PYTHON = REPO / ".venv-ultralytics" / "bin" / "python"
PEER_SCRIPT = REPO / "benchmarks" / "peers" / "ultralytics_run.py"
PEER_SLACK_SECONDS = 1800  # past the budget: caching, the last epoch's validation, test, export, timing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--per-class", type=int, default=0, help="first N images of each class (0: all 300)")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--size", type=int, default=256, help="model input; NEU frames (200 px) are resized to it")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", choices=("bf16", "float32"), default="bf16",
                        help="training arithmetic (bf16 with channels-last: about 2x faster steps than float32 here)")
    parser.add_argument("--float-layout", action="store_true", help="train in the default layout, not channels-last")
    parser.add_argument("--max-minutes", type=float, default=60.0, help="the goal's training budget")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--backbone", default="efficientnet-lite0",
                        choices=("efficientnet-lite0", "efficientnet-lite2"),
                        help="the detector's pretrained trunk (TrainConfig.backbone)")
    parser.add_argument("--ema", action="store_true", help="keep a moving average of the weights (TrainConfig.ema)")
    parser.add_argument("--mosaic", type=float, default=0.0, help="share of training views that are mosaics of four")
    parser.add_argument("--name", default=None, help="result file name (default detection, or detection-smoke)")
    parser.add_argument("--latency-iterations", type=int, default=400, help="edge latency samples after warm-up")
    parser.add_argument("--peer", action="store_true",
                        help="also train Ultralytics YOLO11n on the same split for the same --max-minutes")
    parser.add_argument("--peer-workers", type=int, default=1, help="the peer's data loader worker processes")
    args = parser.parse_args()
    if args.peer and not PEER_PYTHON.exists():
        raise SystemExit(f"{PEER_PYTHON} not found; run: bash benchmarks/peers/setup_ultralytics.sh")
    items = neu_items()
    if args.per_class:
        counts: dict[str, int] = {}
        items = [i for i in items if counts.setdefault(i.label, 0) < args.per_class
                 and not counts.__setitem__(i.label, counts[i.label] + 1)]
    # a named run keeps its own workspace: the default run's (which detection_int8 and detection_frames read) stays
    root = CACHE / ("neu-detect" if args.name in (None, "detection") else f"neu-detect-{args.name}")
    shutil.rmtree(root, ignore_errors=True)
    ws = init_workspace(root)
    ingest(ws, items, source="neu_det")
    imported = import_regions(ws, require("neu_det") / "annotations", "voc", images=require("neu_det") / "images")
    version = create_version(ws, PLAN)
    print(f"neu-detect: {len(items)} images, {version.summary['regions']} boxes, splits {version.summary['splits']}",
          flush=True)
    config = TrainConfig(task="detect", input_size=args.size, epochs=args.epochs, batch_size=args.batch_size,
                         threads=args.threads, seed=0, lr=args.lr, precision=args.precision,
                         channels_last=not args.float_layout, max_minutes=args.max_minutes, ema=args.ema,
                         mosaic=args.mosaic, backbone=args.backbone)
    started = time.perf_counter()
    result = train(ws, config, dataset=version.name, progress=show_progress)
    wall = round(time.perf_counter() - started, 1)
    test = result.metrics["test"]
    latency = measure(result.model_path, test_images(), args.latency_iterations)
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
        "edge_latency": {"threads": 1, "batch": 1, "images": "100 NEU 200x200 JPEGs held in memory", **latency},
        "not_measured": ["12 MP synthetic frames (recall vs crops, p50 per frame)", "magnetic tile localisation"],
    }
    if args.peer:
        payload["peer"] = run_peer(ws, version.name, args)
        payload["side_by_side"] = side_by_side(test, latency, payload["peer"])
    else:
        payload["not_measured"].insert(0, "Ultralytics YOLO11n side by side (run with --peer)")
    print(f"NEU-DET detector: test mAP50 {test['map50']}, mAP50:95 {test['map50_95']}, image defect recall "
          f"{test['image']['defect_recall']}; training {result.metrics['train_seconds']} s, run {wall} s; edge "
          f"full path p50 {latency['full_path_ms']['p50']} ms", flush=True)
    if args.peer:
        print(f"YOLO11n peer: {json.dumps(payload['side_by_side'])}", flush=True)
    write_result(args.name or ("detection-smoke" if args.per_class else "detection"), payload)
    ws.close()


def run_peer(ws: Workspace, version: str, args: argparse.Namespace) -> dict[str, Any]:
    """YOLO11n on ``version``'s split in .venv-ultralytics for ``--max-minutes``; its figures, or why there are none."""
    folder, out = CACHE / "neu-detect-yolo", CACHE / "neu-detect-ultralytics"
    written = write_yolo_dataset(ws, version, folder)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    command = [str(PEER_PYTHON), str(PEER_SCRIPT), "--data", str(folder), "--out", str(out),
               "--minutes", str(args.max_minutes), "--imgsz", str(args.size), "--batch", str(args.batch_size),
               "--threads", str(args.threads), "--workers", str(args.peer_workers)]
    print(f"peer: YOLO11n for {args.max_minutes:g} min on {written['splits']}", flush=True)
    base = {"dataset": written, "command": command, "load_average_at_start": [round(v, 2) for v in os.getloadavg()]}
    started = time.perf_counter()
    try:
        with (out / "log.txt").open("w") as log:
            code = subprocess.run(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, check=False,
                                  timeout=args.max_minutes * 60 + PEER_SLACK_SECONDS).returncode
    except subprocess.TimeoutExpired:
        code = None
    base["wall_seconds"] = round(time.perf_counter() - started, 1)
    if code != 0 or not (out / "result.json").exists():
        tail = (out / "log.txt").read_text(errors="replace")[-1500:]
        return {**base, "status": "stopped: past its time limit" if code is None else f"failed (exit {code})",
                "log_tail": tail}
    peer = json.loads((out / "result.json").read_text())
    return {**base, "status": "ok", "test": score_peer(ws, version, out / "predictions.json"), **peer}


def score_peer(ws: Workspace, version: str, predictions: Path) -> dict[str, Any]:
    """The peer's test predictions scored by the same COCO code and the same true boxes as inspectloop's."""
    plan = plan_detection(ws, load_version(ws, version))
    found = json.loads(predictions.read_text())
    truth, predicted = [], []
    for item in plan.splits["test"]:
        digest = item.sha256
        truth.append(Boxes(plan.boxes.get(digest, np.zeros((0, 4), np.float32)),
                           plan.labels.get(digest, np.zeros(0, np.int64))))
        mine = found.get(image_stem(digest), {"boxes": [], "classes": [], "scores": []})  # none found: no boxes
        predicted.append(Boxes(np.array(mine["boxes"], np.float32).reshape(-1, 4), np.array(mine["classes"], np.int64),
                               np.array(mine["scores"], np.float32)))
    return {**coco_map(truth, predicted, plan.box_classes), "scored_by": "inspectloop.detect.metrics.coco_map "
            "(pycocotools, 100 boxes per image) on the peer's boxes at conf >= 0.001"}


def side_by_side(ours: dict[str, Any], latency: dict[str, Any], peer: dict[str, Any]) -> dict[str, Any]:
    """The issue's comparison: both mAPs and inspectloop's full path p50 against the peer's bare run p50."""
    if peer["status"] != "ok":
        return {"status": peer["status"]}
    full, bare = latency["full_path_ms"]["p50"], peer["bare_run_ms"]["p50"]
    return {"map50": {"inspectloop": ours["map50"], "yolo11n": peer["test"]["map50"]},
            "map50_95": {"inspectloop": ours["map50_95"], "yolo11n": peer["test"]["map50_95"]},
            "edge_p50_ms": {"inspectloop_full_path": full, "yolo11n_bare_run": bare},
            "goal": "inspectloop full path (JPEG bytes -> boxes) p50 <= YOLO11n bare onnxruntime p50",
            "latency_goal_met": full <= bare}


def show_progress(stage: str, info: dict) -> None:
    """A detection run's epochs and stages, one line each."""
    if stage == "epoch":
        print(f"  epoch {info['epoch'] + 1}/{info['epochs']} loss {info['loss']:.3f} (cls {info['cls']:.3f}, box "
              f"{info['box']:.3f}) val mAP50 {info['val_map50']} at {info['seconds']} s", flush=True)
    elif stage in ("evaluate", "export"):
        print(f"  {stage}", flush=True)


if __name__ == "__main__":
    main()
