"""The Ultralytics side of ``python -m benchmarks.detection --peer``; runs in .venv-ultralytics, never in the product's.

    .venv-ultralytics/bin/python benchmarks/peers/ultralytics_run.py --data FOLDER --out DIR --minutes 60 --imgsz 256

Reads the YOLO folder the benchmark wrote (benchmarks/yolo_dataset.py: the same version's train/val/test images
and boxes as inspectloop's detector), trains YOLO11n from its model yaml (no pretrained weights: they are not
reachable offline) for a wall-clock budget through Ultralytics' own ``time=`` argument (hours; it re-fits the
epoch count and LR schedule to the budget after each epoch), on the CPU, seed 0, plots off. Then:

- Ultralytics' own test-split metrics (``val(split="test")``: mAP50, mAP50:95 per class);
- the test images' predictions (conf >= 0.001, its default NMS) in DIR/predictions.json, so the parent scores
  both detectors with the same COCO code;
- its ONNX export (static batch 1, its default graph: box decoding in, NMS out), timed as a bare
  ``InferenceSession.run`` at batch 1 on one thread (median of ``--latency-runs`` after 20 warm-up runs).

Writes DIR/result.json. Offline: YOLO_OFFLINE, no settings sync, no auto-install, a local font so its dataset
check does not fetch Arial.ttf, and an audit hook that refuses (and records) every network lookup or connection.
Imports nothing from inspectloop.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

WARM_UP = 20
NETWORK_ATTEMPTS: list[str] = []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="YOLO folder holding data.yaml")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--minutes", type=float, required=True, help="training wall-clock budget")
    parser.add_argument("--imgsz", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="torch threads for training and evaluation")
    parser.add_argument("--workers", type=int, default=1, help="data loader worker processes")
    parser.add_argument("--max-epochs", type=int, default=1000, help="upper bound; the time budget decides")
    parser.add_argument("--latency-runs", type=int, default=200)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    go_offline(args.out / "config")

    import torch
    from ultralytics import YOLO, __version__

    torch.set_num_threads(args.threads)
    data = args.data / "data.yaml"
    result: dict = {"peer": "ultralytics", "model": "yolo11n.yaml (from scratch)", "imgsz": args.imgsz,
                    "batch": args.batch, "threads": args.threads, "workers": args.workers,
                    "budget_minutes": args.minutes,
                    "versions": {"ultralytics": __version__, "torch": torch.__version__}}
    model = YOLO("yolo11n.yaml")
    started = time.perf_counter()
    model.train(data=str(data), imgsz=args.imgsz, epochs=args.max_epochs, time=args.minutes / 60, batch=args.batch,
                workers=args.workers, device="cpu", seed=0, deterministic=True, plots=False, amp=False, cache="disk",
                project=str(args.out / "runs"), name="train", exist_ok=True, verbose=False)
    trainer = model.trainer
    result.update({"train_wall_seconds": round(time.perf_counter() - started, 1), "epochs_run": trainer.epoch + 1,
                   "epochs_planned_at_end": trainer.epochs, "best_weights": str(trainer.best)})
    best = YOLO(str(trainer.best))
    result["test_ultralytics_metric"] = test_metrics(best, data, args)
    write_predictions(best, args.data / "images" / "test", args.out / "predictions.json", args)
    result.update(export_and_time(best, args))
    result["network_attempts"] = NETWORK_ATTEMPTS
    (args.out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "versions"}))


def go_offline(config: Path) -> None:
    """Settings in ``config`` (not the user's), no telemetry, no update checks or installs, no network at all."""
    os.environ.update({"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "False", "YOLO_CONFIG_DIR": str(config)})
    sys.addaudithook(_refuse_network)
    import matplotlib
    from ultralytics.utils import SETTINGS, USER_CONFIG_DIR

    SETTINGS.update({"sync": False, "runs_dir": str(config.parent / "runs"),
                     "weights_dir": str(config.parent / "weights"), "datasets_dir": str(config.parent)})
    # Its dataset check looks for Arial.ttf in its config dir and downloads it from GitHub when missing. Plots
    # are off, so the font is never drawn with: matplotlib's bundled DejaVu Sans stands in under those names.
    font = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        if not (USER_CONFIG_DIR / name).exists():
            shutil.copyfile(font, USER_CONFIG_DIR / name)


def _refuse_network(event: str, args: tuple) -> None:
    if event == "socket.getaddrinfo" or (event == "socket.connect" and not isinstance(args[1], (str, bytes))):
        NETWORK_ATTEMPTS.append(f"{event} {args[0] if event == 'socket.getaddrinfo' else args[1]}")
        raise OSError(f"network refused by the benchmark ({event})")


def test_metrics(model, data: Path, args: argparse.Namespace) -> dict:  # noqa: ANN001 - its types live in its venv
    """Ultralytics' own test-split mAP (its interpolation, not pycocotools'), overall and per class."""
    metrics = model.val(data=str(data), split="test", imgsz=args.imgsz, batch=args.batch, device="cpu",
                        plots=False, verbose=False, project=str(args.out / "runs"), name="test", exist_ok=True)
    box, names = metrics.box, metrics.names
    percent = lambda v: round(100 * float(v), 2)  # noqa: E731
    per_class = {names[int(c)]: {"ap50": percent(box.ap50[i]), "ap50_95": percent(box.ap[i])}
                 for i, c in enumerate(metrics.ap_class_index)}
    return {"map50": percent(box.map50), "map50_95": percent(box.map), "per_class": per_class}


def write_predictions(model, images: Path, path: Path, args: argparse.Namespace) -> None:  # noqa: ANN001
    """Per test image (by file stem): boxes x0, y0, x1, y1 in its pixels, class ids and scores."""
    out = {}
    for found in model.predict(source=str(images), imgsz=args.imgsz, conf=0.001, device="cpu", stream=True,
                               verbose=False, max_det=300):
        boxes = found.boxes
        out[Path(found.path).stem] = {"boxes": boxes.xyxy.tolist(), "classes": boxes.cls.int().tolist(),
                                      "scores": boxes.conf.tolist()}
    path.write_text(json.dumps(out))


def export_and_time(model, args: argparse.Namespace) -> dict:  # noqa: ANN001
    """Ultralytics' ONNX export, timed as a bare session.run at batch 1 on one thread on a real test image."""
    import numpy as np
    import onnxruntime as ort
    from PIL import Image

    start = time.perf_counter()
    onnx_path = Path(model.export(format="onnx", imgsz=args.imgsz, batch=1, dynamic=False, device="cpu"))
    export_seconds = time.perf_counter() - start
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    image = next(p for p in sorted((args.data / "images" / "test").iterdir()) if p.is_file())
    rgb = Image.open(image).convert("RGB").resize((args.imgsz, args.imgsz), Image.Resampling.BILINEAR)
    tensor = np.ascontiguousarray(np.asarray(rgb, dtype=np.float32).transpose(2, 0, 1)[None] / 255.0)
    feed = {session.get_inputs()[0].name: tensor}
    samples = []
    for i in range(WARM_UP + args.latency_runs):
        t0 = time.perf_counter()
        session.run(None, feed)
        if i >= WARM_UP:
            samples.append((time.perf_counter() - t0) * 1000)
    ordered = sorted(samples)
    return {"onnx_path": str(onnx_path), "onnx_mb": round(onnx_path.stat().st_size / 2**20, 2),
            "export_seconds": round(export_seconds, 2), "onnx_outputs": [o.name for o in session.get_outputs()],
            "bare_run_ms": {"p50": round(statistics.median(ordered), 3),
                            "p95": round(ordered[int(0.95 * (len(ordered) - 1))], 3),
                            "mean": round(statistics.fmean(ordered), 3), "n": len(ordered)},
            "latency_note": "session.run only (input already a float tensor; no decode, resize or NMS), batch 1, "
                            "1 intra-op and 1 inter-op thread, onnxruntime CPU provider"}


if __name__ == "__main__":
    main()
