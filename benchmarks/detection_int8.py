"""The NEU-DET detector in INT8: test mAP and edge latency beside the float model and YOLO11n's bare run.

    python -m benchmarks.detection_int8 [--iterations 400]

No training: it takes the latest finished detection run in ``benchmarks/cache/neu-detect`` (left by
``python -m benchmarks.detection``) and the YOLO11n ONNX file its ``--peer`` run exported
(``benchmarks/cache/neu-detect-ultralytics/runs/train/weights/best.onnx``; the latency row is left out
without it).

- INT8: the product's static QDQ copy (:func:`inspectloop.export.quantize_detector`, per-channel weights),
  activation ranges from 48 training images.
- mAP: both files scored on the run's frozen test split through the runtime's own path
  (:func:`inspectloop.runtime.detection.detect_frame`, as ``EdgeModel.predict`` runs it) with a 0.001 score
  floor, by the same pycocotools code as :mod:`benchmarks.detection`. The training run's own test mAP (PyTorch,
  before export) is quoted beside them.
- Latency, batch 1, one thread, as :mod:`benchmarks.edge_latency` measures it: inspectloop's full path (JPEG
  bytes -> decode -> preprocess -> infer -> boxes -> decision, ``EdgeModel.predict``) for the float and the INT8
  file, and YOLO11n's bare ``session.run`` on a ready float tensor (its decode, resize and NMS not counted).
  The three alternate image by image in one loop, so machine noise hits them alike.

Issue 12's latency goal: inspectloop's full path p50 <= YOLO11n's bare p50 at the same input size.
"""

from __future__ import annotations

import argparse
import io
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from PIL import Image

from benchmarks.common import percentiles, write_result
from benchmarks.detection_frames import int8_detector, latest_detection_run
from benchmarks.edge_latency import test_images
from benchmarks.training_bench import CACHE
from inspectloop.datasets import load_version
from inspectloop.detect.metrics import Boxes, coco_map
from inspectloop.detect.run import plan_detection
from inspectloop.runtime import EdgeModel
from inspectloop.runtime.detection import detect_frame
from inspectloop.runtime.images import load_image
from inspectloop.workspace import open_workspace

PEER_ONNX = CACHE / "neu-detect-ultralytics" / "runs" / "train" / "weights" / "best.onnx"
MAP_FLOOR = 0.001  # COCO mAP integrates over every score: the same floor the peer's boxes are scored at
WARM_UP = 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=400, help="latency samples per model after warm-up")
    args = parser.parse_args()
    ws = open_workspace(CACHE / "neu-detect")
    run = latest_detection_run(ws)
    plan = plan_detection(ws, load_version(ws, run.dataset_version))
    float_path = Path(run.artifacts) / "model.onnx"
    int8_path = int8_detector(float_path, ws, plan)
    files = {"float32": float_path, "int8": int8_path}
    accuracy = {name: test_map(EdgeModel(path, threads=2), ws, plan) for name, path in files.items()}
    for name, figures in accuracy.items():
        print(f"{name}: test mAP50 {figures['map50']}, mAP50:95 {figures['map50_95']}", flush=True)
    images = test_images()
    latency = interleaved_latency(files, images, args.iterations)
    print(f"p50 ms: {({k: v['p50'] for k, v in latency.items() if k != 'note'})}", flush=True)
    payload = {
        "dataset": "neu_det", "run": run.id, "code_version_of_run": run.code_version,
        "training_test": {k: run.metrics["test"][k] for k in ("map50", "map50_95")},
        "int8": "static QDQ copy, per-channel weights, activation ranges from 48 training images "
                "(inspectloop.export.quantize_detector)",
        "files_bytes": {name: path.stat().st_size for name, path in files.items()},
        "test": accuracy, "latency_ms": latency, "threads": 1, "batch": 1,
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "goal": "inspectloop full path p50 <= YOLO11n bare session.run p50 (issue 12)",
        "goal_met": None if "yolo11n_bare_run" not in latency else {
            name: latency[f"inspectloop_{name}_full_path"]["p50"] <= latency["yolo11n_bare_run"]["p50"]
            for name in files},
    }
    write_result("detection_int8", payload)
    ws.close()


def test_map(model: EdgeModel, ws: Any, plan: Any) -> dict[str, Any]:
    """COCO mAP of ``model`` on the plan's test split, through the runtime's frame path."""
    truth, predicted = [], []
    for item in plan.splits["test"]:
        image = load_image(ws.blobs.get(item.sha256), name=item.sha256[:12], mode="L")
        boxes, scores, classes = detect_frame(image, model.metadata.input_size, model.run_tiles,
                                              model.metadata.detection, min_score=MAP_FLOOR)
        truth.append(Boxes(plan.boxes.get(item.sha256, np.zeros((0, 4), np.float32)),
                           plan.labels.get(item.sha256, np.zeros(0, np.int64))))
        predicted.append(Boxes(boxes.astype(np.float32), classes.astype(np.int64), scores.astype(np.float32)))
    return coco_map(truth, predicted, plan.box_classes)


def interleaved_latency(files: dict[str, Path], images: list[bytes], iterations: int) -> dict[str, Any]:
    """Per-image milliseconds of each file's full path and of the peer's bare run, alternating image by image."""
    models = {name: EdgeModel(path, threads=1) for name, path in files.items()}
    peer = _peer_session(images[0])
    samples: dict[str, list[float]] = {f"inspectloop_{name}_full_path": [] for name in models}
    if peer is not None:
        samples["yolo11n_bare_run"] = []
    for i in range(WARM_UP + iterations):
        data = images[i % len(images)]
        for name, model in models.items():
            start = time.perf_counter()
            model.predict(data)
            if i >= WARM_UP:
                samples[f"inspectloop_{name}_full_path"].append((time.perf_counter() - start) * 1000)
        if peer is not None:
            session, feed = peer
            start = time.perf_counter()
            session.run(None, feed)
            if i >= WARM_UP:
                samples["yolo11n_bare_run"].append((time.perf_counter() - start) * 1000)
    return {**{name: percentiles(values) for name, values in samples.items()},
            "note": "full path: JPEG bytes -> boxes and decision; YOLO11n: session.run on a ready float tensor "
                    "(no decode, resize or NMS); 1 intra-op and 1 inter-op thread each"}


def _peer_session(jpeg: bytes) -> tuple[ort.InferenceSession, dict[str, np.ndarray]] | None:
    """YOLO11n's file on one thread and its input, made as its own benchmark makes it (RGB, resized, / 255)."""
    if not PEER_ONNX.exists():
        print(f"no YOLO11n file at {PEER_ONNX}: run python -m benchmarks.detection --peer first", flush=True)
        return None
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(PEER_ONNX), options, providers=["CPUExecutionProvider"])
    size = session.get_inputs()[0].shape[-1]  # static [1, 3, size, size]
    rgb = Image.open(io.BytesIO(jpeg)).convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    tensor = np.ascontiguousarray(np.asarray(rgb, dtype=np.float32).transpose(2, 0, 1)[None] / 255.0)
    return session, {session.get_inputs()[0].name: tensor}


if __name__ == "__main__":
    main()
