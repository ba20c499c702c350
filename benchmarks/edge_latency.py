"""Edge latency, batch 1, one thread: the full runtime path against a bare ``InferenceSession.run``.

    python -m benchmarks.edge_latency [--iterations 400] [MODEL.onnx ...]

(a) full path per image: JPEG bytes in memory -> decode -> preprocess -> infer -> decide (``EdgeModel.predict``);
(b) bare ``session.run`` of the same model on the same image's preprocessed tensor.
(a) and (b) alternate image by image in one loop, so machine noise hits both alike; medians are quoted.
Without model arguments it measures the models the NEU and magnetic-tile benchmarks exported.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from benchmarks.common import RESULTS, percentiles, require, write_result
from inspectloop.runtime import EdgeModel
from inspectloop.runtime.detection import BOXES_NAME, SCORES_NAME
from inspectloop.runtime.metadata import DETECTION
from inspectloop.runtime.model import INPUT_NAME, OUTPUT_NAME


def test_images(count: int = 100) -> list[bytes]:
    """NEU 200x200 JPEGs (3-channel files with grey content), read once into memory."""
    root = require("neu_det") / "images"
    paths = sorted(root.glob("*/*.jpg"))[:: max(1, 1800 // count)][:count]
    return [p.read_bytes() for p in paths]


def measure(path: Path, images: list[bytes], iterations: int) -> dict[str, object]:
    model = EdgeModel(path, threads=1)
    tensors = [np.array(model._prepare(model._decode(data, None)[0])) for data in images]  # (b)'s inputs
    outputs = (BOXES_NAME, SCORES_NAME) if model.metadata.task == DETECTION else (OUTPUT_NAME,)
    full, bare, phases = [], [], {"decode": [], "preprocess": [], "infer": []}
    for i in range(iterations + 20):
        data, tensor = images[i % len(images)], tensors[i % len(images)]
        start = time.perf_counter()
        prediction = model.predict(data)
        middle = time.perf_counter()
        model.session.run(outputs, {INPUT_NAME: tensor})
        end = time.perf_counter()
        if i >= 20:  # warm-up excluded
            full.append((middle - start) * 1000)
            bare.append((end - middle) * 1000)
            for phase in phases:
                phases[phase].append(prediction.latency_ms[phase])
    full_stats, bare_stats = percentiles(full), percentiles(bare)
    return {"model": str(path), "model_version": model.metadata.model_version,
            "input_size": model.metadata.input_size, "colour_mode": model.metadata.colour_mode,
            "model_bytes": path.stat().st_size, "full_path_ms": full_stats, "bare_run_ms": bare_stats,
            "ratio_p50": round(full_stats["p50"] / bare_stats["p50"], 3),
            "phase_p50_ms": {k: round(float(np.median(v)), 3) for k, v in phases.items()}}


def default_models() -> dict[str, Path]:
    models = {}
    for bench in ("neu", "magnetic_tile"):
        result = RESULTS / f"{bench}.json"
        if result.exists():
            for run in json.loads(result.read_text())["runs"]:
                for variant, path in run["models"].items():
                    models[f"{run['label']}/{variant}"] = Path(path)
    return models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("models", nargs="*", type=Path)
    parser.add_argument("--iterations", type=int, default=400)
    args = parser.parse_args()
    models = {p.stem: p for p in args.models} if args.models else default_models()
    if not models:
        raise SystemExit("no models: run benchmarks.neu and benchmarks.magnetic_tile first, or name model files")
    images = test_images()
    results = {}
    for label, path in models.items():
        results[label] = measure(path, images, args.iterations)
        r = results[label]
        print(f"{label:28s} full p50 {r['full_path_ms']['p50']:6.3f} ms  bare p50 {r['bare_run_ms']['p50']:6.3f} ms  "
              f"ratio {r['ratio_p50']:.3f}  phases {r['phase_p50_ms']}", flush=True)
    write_result("edge_latency", {"threads": 1, "batch": 1, "iterations": args.iterations,
                                  "images": "100 NEU 200x200 JPEGs held in memory", "goal": {
                                      "ratio_p50": "<= 1.15", "fast_option_full_path_p50_ms": "<= 4.0"},
                                  "models": results})


if __name__ == "__main__":
    main()
