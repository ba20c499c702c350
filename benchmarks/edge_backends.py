"""Edge backends side by side, batch 1, one thread: the full path on OpenVINO against a bare onnxruntime run.

    python -m benchmarks.edge_backends [--iterations 300] [--wide 0.06] [MODEL.onnx ...]

In one loop, image by image (machine noise hits both columns alike; medians quoted): (a) the OpenVINO full
path, JPEG bytes in memory -> decode -> preprocess -> infer -> decide (``EdgeModel.predict`` with
``backend="openvino"``), and (b) the bare onnxruntime ``InferenceSession.run`` of the same model on that
image's preprocessed tensor (no decode, no decision). The goal (issue 13): (a) <= 0.75x (b). One such loop
per OpenVINO variant, so only the two compared models are in the caches at a time: at the default parity
tolerance (its native precision, else float32) and at ``--wide`` (bfloat16 passes there on CPUs that have
it). Also recorded: what ``auto`` picks at either tolerance, OpenVINO's top-1 agreement with onnxruntime on
the images and the largest difference in any class probability.

Wall-clock times are the goal's; the process's CPU time per call is recorded beside them, since on a shared
machine (load above the core count) wall time mostly measures waiting for a core.

Without model arguments it exports an EfficientNet-Lite0 NEU classifier once into benchmarks/cache/edge_backends/
(the package's ImageNet trunk, a linear head fitted on 240 other NEU images' features, 224 px, greyscale input
as the NEU models use). Images: 100 NEU 200x200 JPEGs.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.common import CACHE, percentiles, require, write_result
from inspectloop.runtime import EdgeModel
from inspectloop.runtime.backends import TOLERANCE_ENV
from inspectloop.runtime.model import INPUT_NAME, OUTPUT_NAME

GOAL_RATIO = 0.75
NEU_CLASSES = ("crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches")


def neu_paths() -> list[Path]:
    return sorted((require("neu_det") / "images").glob("*/*.jpg"))


def test_images(count: int = 100) -> list[bytes]:
    """NEU 200x200 JPEGs (every n-th file), read once into memory."""
    paths = neu_paths()
    return [p.read_bytes() for p in paths[:: max(1, len(paths) // count)][:count]]


def lite0_model(per_class: int = 40) -> Path:
    """An EfficientNet-Lite0 NEU classifier (made once; needs the train extra): the package's ImageNet trunk and a
    linear head fitted on its features of ``per_class`` NEU images per class (none of the test images),
    so probabilities and top-class margins are a trained model's, not a random head's."""
    path = CACHE / "edge_backends" / "lite0-224-L-neu.onnx"
    if path.exists():
        return path
    import io

    import torch
    from PIL import Image
    from sklearn.linear_model import LogisticRegression

    from inspectloop.export import export_classifier
    from inspectloop.models.backbones import backbone_spec, load_backbone
    from inspectloop.models.classifier import Classifier
    from inspectloop.runtime.metadata import ModelMetadata

    torch.manual_seed(0)
    model = Classifier(load_backbone("efficientnet-lite0", input_size=224),
                       backbone_spec("efficientnet-lite0").feature_dim, len(NEU_CLASSES))
    metadata = ModelMetadata(model_name="lite0-bench", model_version="bench-1", class_names=NEU_CLASSES,
                             good_class=None, input_size=224, colour_mode="L")
    path.parent.mkdir(parents=True, exist_ok=True)
    held_out = set(test_images())
    train = [(p.read_bytes(), NEU_CLASSES.index(p.parent.name)) for p in neu_paths()]
    train = [t for t in train if t[0] not in held_out]
    train = [t for c in range(len(NEU_CLASSES)) for t in [t for t in train if t[1] == c][:per_class]]
    parity = [Image.open(io.BytesIO(data)).convert("L") for data, _ in train[::len(train) // 8][:8]]
    export_classifier(model, metadata, path, parity)  # the trunk's features, read through the edge runtime
    edge = EdgeModel(path, backend="onnxruntime")
    features = np.stack([edge.predict_with_features(data)[1] for data, _ in train])
    head = LogisticRegression(max_iter=2000, C=1.0).fit(features, [label for _, label in train])
    with torch.no_grad():
        model.head[1].weight.copy_(torch.as_tensor(head.coef_, dtype=torch.float32))
        model.head[1].bias.copy_(torch.as_tensor(head.intercept_, dtype=torch.float32))
    path.unlink()
    export_classifier(model, metadata, path, parity)
    return path


def load_openvino(path: Path, tolerance: float | None, backend: str = "openvino") -> EdgeModel:
    """The model loaded with ``backend`` at the default parity tolerance, or at ``tolerance``."""
    saved = os.environ.pop(TOLERANCE_ENV, None)
    try:
        if tolerance is not None:
            os.environ[TOLERANCE_ENV] = str(tolerance)
        return EdgeModel(path, threads=1, backend=backend)
    finally:
        os.environ.pop(TOLERANCE_ENV, None)
        if saved is not None:
            os.environ[TOLERANCE_ENV] = saved


def agreement(model: EdgeModel, reference: EdgeModel, images: list[bytes]) -> dict[str, object]:
    """Top-1 agreement and the largest / median difference in any class probability, on real images."""
    pairs = [(model.predict(data), reference.predict(data)) for data in images]
    shifts = [max(abs(a.scores[c] - b.scores[c]) for c in b.scores) for a, b in pairs]
    return {"backend": model.backend_reason, "top1_agreement": f"{sum(a.label == b.label for a, b in pairs)}/"
            f"{len(pairs)}", "max_probability_difference": round(max(shifts), 5),
            "median_probability_difference": round(float(np.median(shifts)), 5)}


def timed_loop(runs: dict[str, Callable[[bytes, np.ndarray], object]], images: list[bytes],
               tensors: list[np.ndarray], iterations: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall and process-CPU milliseconds per call of each run, alternated image by image, 20 warm-up rounds."""
    wall: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    for i in range(iterations + 20):
        data, tensor = images[i % len(images)], tensors[i % len(images)]
        for name, run in runs.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            run(data, tensor)
            if i >= 20:
                wall[name].append((time.perf_counter() - start) * 1000)
                cpu[name].append((time.process_time() - start_cpu) * 1000)
    return wall, cpu


def measure(path: Path, images: list[bytes], iterations: int, wide: float) -> dict[str, object]:
    """Per OpenVINO variant (the default parity tolerance, and ``wide``), one loop alternating its full path
    with onnxruntime's bare run."""
    ort = EdgeModel(path, threads=1, backend="onnxruntime")
    auto = {"default": load_openvino(path, None, "auto").backend_reason,
            f"tolerance {wide:g}": load_openvino(path, wide, "auto").backend_reason}
    variants = {"openvino_full": load_openvino(path, None), "openvino_wide_full": load_openvino(path, wide)}
    tensors = [np.array(ort._prepare(ort._decode(data, None)[0])) for data in images]
    wall_stats: dict[str, dict[str, float]] = {}
    cpu_stats: dict[str, dict[str, float]] = {}
    ratios: dict[str, dict[str, float]] = {}
    for variant, model in variants.items():  # one loop per variant: only the two compared models stay hot
        runs: dict[str, Callable[[bytes, np.ndarray], object]] = {
            variant: lambda data, tensor: model.predict(data),  # noqa: B023 (used within this iteration)
            "onnxruntime_bare": lambda data, tensor: ort.session.run((OUTPUT_NAME,), {INPUT_NAME: tensor}),
        }
        wall, cpu = timed_loop(runs, images, tensors, iterations)
        wall_stats[variant], cpu_stats[variant] = percentiles(wall[variant]), percentiles(cpu[variant])
        bare_wall, bare_cpu = percentiles(wall["onnxruntime_bare"]), percentiles(cpu["onnxruntime_bare"])
        wall_stats[f"onnxruntime_bare (beside {variant})"] = bare_wall
        cpu_stats[f"onnxruntime_bare (beside {variant})"] = bare_cpu
        ratios[variant] = {"wall": round(wall_stats[variant]["p50"] / bare_wall["p50"], 3),
                           "cpu": round(cpu_stats[variant]["p50"] / bare_cpu["p50"], 3)}
    return {"model": str(path), "input_size": ort.metadata.input_size, "colour_mode": ort.metadata.colour_mode,
            "model_bytes": path.stat().st_size, "wall_ms": wall_stats, "cpu_ms": cpu_stats,
            "ratio_p50_vs_onnxruntime_bare": ratios,
            "wide_tolerance": wide, "auto_chooses": auto,
            "on_the_images": {name: agreement(model, ort, images) for name, model in variants.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", type=Path)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--wide", type=float, default=0.06, help="the wider parity tolerance measured too")
    args = parser.parse_args()
    images = test_images()
    models = args.models or [lite0_model()]
    load_before = os.getloadavg()
    results = {}
    for path in models:
        results[path.stem] = r = measure(path, images, args.iterations, args.wide)
        for clock in ("wall", "cpu"):
            stats = r[f"{clock}_ms"].items()  # type: ignore[attr-defined]
            print(f"{path.stem} {clock} p50 ms: " + "  ".join(f"{k} {v['p50']:.3f}" for k, v in stats), flush=True)
        for name, ratio in r["ratio_p50_vs_onnxruntime_bare"].items():  # type: ignore[attr-defined]
            seen = r["on_the_images"][name]  # type: ignore[index]
            print(f"  {name}: {ratio['wall']:.3f}x wall, {ratio['cpu']:.3f}x CPU of onnxruntime bare (goal <= "
                  f"{GOAL_RATIO}); {seen['backend']}; top-1 {seen['top1_agreement']}, probability difference "
                  f"max {seen['max_probability_difference']} median {seen['median_probability_difference']}")
        print(f"  auto chooses: {r['auto_chooses']}")
    load_after = os.getloadavg()
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}")
    write_result("edge_backends", {"threads": 1, "batch": 1, "iterations": args.iterations,
                                   "images": "100 NEU 200x200 JPEGs held in memory",
                                   "goal": {"ratio_p50_openvino_full_vs_onnxruntime_bare": f"<= {GOAL_RATIO}"},
                                   "load_average_1min": {"before": round(load_before[0], 2),
                                                         "after": round(load_after[0], 2)},
                                   "models": results})


if __name__ == "__main__":
    main()
