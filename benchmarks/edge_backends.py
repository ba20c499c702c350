"""Edge backends side by side, batch 1, one thread: the full path on OpenVINO against a bare onnxruntime run.

    python -m benchmarks.edge_backends [--iterations 300] [MODEL.onnx ...]

Per image, in one loop (so machine noise hits every column alike; medians quoted):
(a) OpenVINO full path: JPEG bytes in memory -> decode -> preprocess -> infer -> decide (``EdgeModel.predict``
    with ``backend="openvino"``); (b) the bare ``InferenceSession.run`` of the same model on that image's
    preprocessed tensor (onnxruntime, no decode, no decision); also (c) the onnxruntime full path and (d) the
    bare OpenVINO run. The goal (issue 13): (a) <= 0.75x (b).
Without model arguments it exports an EfficientNet-Lite0 classifier (the package's ImageNet trunk, six NEU
classes, 224 px, greyscale input as the NEU models use) once into benchmarks/cache/edge_backends/: latency
does not depend on the head's weights. Images: 100 NEU 200x200 JPEGs.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from benchmarks.common import CACHE, percentiles, require, write_result
from inspectloop.runtime import EdgeModel
from inspectloop.runtime.model import INPUT_NAME, OUTPUT_NAME

GOAL_RATIO = 0.75
NEU_CLASSES = ("crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches")
COLUMNS = ("openvino_full", "onnxruntime_bare", "onnxruntime_full", "openvino_bare")


def test_images(count: int = 100) -> list[bytes]:
    """NEU 200x200 JPEGs, read once into memory."""
    paths = sorted((require("neu_det") / "images").glob("*/*.jpg"))
    return [p.read_bytes() for p in paths[:: max(1, len(paths) // count)][:count]]


def lite0_model(images: list[bytes]) -> Path:
    """An exported EfficientNet-Lite0 NEU-shaped classifier (made once; needs the train extra)."""
    path = CACHE / "edge_backends" / "lite0-224-L.onnx"
    if path.exists():
        return path
    import io

    import torch
    from PIL import Image

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
    parity = [Image.open(io.BytesIO(data)).convert("L") for data in images[:8]]
    export_classifier(model, metadata, path, parity)
    return path


def measure(path: Path, images: list[bytes], iterations: int) -> dict[str, object]:
    """The four columns, alternated image by image after 20 warm-up rounds."""
    openvino = EdgeModel(path, threads=1, backend="openvino")
    ort = EdgeModel(path, threads=1, backend="onnxruntime")
    tensors = [np.array(ort._prepare(ort._decode(data, None)[0])) for data in images]
    runs = {
        "openvino_full": lambda data, tensor: openvino.predict(data),
        "onnxruntime_bare": lambda data, tensor: ort.session.run((OUTPUT_NAME,), {INPUT_NAME: tensor}),
        "onnxruntime_full": lambda data, tensor: ort.predict(data),
        "openvino_bare": lambda data, tensor: openvino.runner.run((OUTPUT_NAME,), {INPUT_NAME: tensor}),
    }
    samples: dict[str, list[float]] = {name: [] for name in COLUMNS}
    for i in range(iterations + 20):
        data, tensor = images[i % len(images)], tensors[i % len(images)]
        for name in COLUMNS:
            start = time.perf_counter()
            runs[name](data, tensor)
            if i >= 20:
                samples[name].append((time.perf_counter() - start) * 1000)
    agree = sum(openvino.predict(data).label == ort.predict(data).label for data in images)
    stats = {name: percentiles(values) for name, values in samples.items()}
    ratio = stats["openvino_full"]["p50"] / stats["onnxruntime_bare"]["p50"]
    return {"model": str(path), "input_size": ort.metadata.input_size, "colour_mode": ort.metadata.colour_mode,
            "model_bytes": path.stat().st_size, "ms": stats,
            "ratio_p50_openvino_full_vs_onnxruntime_bare": round(ratio, 3), "goal_met": ratio <= GOAL_RATIO,
            "top1_agreement_openvino_vs_onnxruntime": f"{agree}/{len(images)}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", type=Path)
    parser.add_argument("--iterations", type=int, default=300)
    args = parser.parse_args()
    images = test_images()
    models = args.models or [lite0_model(images)]
    load_before = os.getloadavg()
    results = {}
    for path in models:
        results[path.stem] = r = measure(path, images, args.iterations)
        cells = "  ".join(f"{name} p50 {r['ms'][name]['p50']:.3f} ms" for name in COLUMNS)  # type: ignore[index]
        print(f"{path.stem}: {cells}  ratio {r['ratio_p50_openvino_full_vs_onnxruntime_bare']:.3f} "
              f"(goal <= {GOAL_RATIO})", flush=True)
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
