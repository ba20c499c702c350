"""Scale figures (issue 15): heavy batch work on one process vs Ray, and the cluster a plant would need;
several services on one PostgreSQL database with one killed; S3 ingest against local disk.

    python -m benchmarks.scale [--section rescore] [--images 3000] [--workers 2]
    python -m benchmarks.scale --section postgresql [--services 4] [--rate 30 120] [--seconds 20]
    python -m benchmarks.scale --section s3 [--s3-images 500] [--repeats 2]

Each run rewrites only its own section of benchmarks/results/scale.json and keeps the others; each section
records the code version and time that produced it.
Sections ``postgresql`` and ``s3`` start real servers: see ``benchmarks.scale_servers``.

Section ``rescore`` (shadow on history): a workspace holds N distinct stored production images (NEU
steel-surface JPEGs, 200x200, each one flipped, shifted and given fresh sensor noise so every image
is its own blob) and one logged production decision for each. A candidate EfficientNet-Lite0
classifier (224 px, ImageNet trunk, seeded head: the production architecture, so the cost per image
is the real one; its accuracy is not what is measured) re-scores them all with
``inspectloop.shadow_history.shadow_on_history``: once in this process, once on a local Ray instance
with ``--workers`` actors (one onnxruntime thread each). The two reports must be identical. The
Ray figure excludes starting Ray (reported apart: a cluster is started once, not per job).

The per-node throughput gives the cluster size for re-scoring a year of a 10-camera plant, twice:
from the Ray throughput measured here (on a shared machine: whatever share of the cores it got), and
from the images per CPU second of the one-process run times this node's cores (a quiet node, if
Ray scales linearly over its cores). The assumptions are arguments and are written with the result.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps
from sqlalchemy import insert

from benchmarks.common import RESULTS, require, write_result
from inspectloop.provenance import code_version
from benchmarks.scale_servers import databases, loadavg, object_storage
from inspectloop.batch.engine import LocalEngine, RayEngine
from inspectloop.domain import ClassDefinition
from inspectloop.labels import define_class
from inspectloop.registry import register
from inspectloop.runtime import EdgeModel
from inspectloop.shadow_history import shadow_on_history
from inspectloop.store import schema as s
from inspectloop.workspace import Workspace, init_workspace

NEU_CLASSES = ("crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches")
INPUT_SIZE = 224
RECEIVED = "2026-03-01T00:00:00+00:00"
PERIOD = ("2026-01-01", "2027-01-01")
OBJECT_STORE_MB = 200


def stored_images(count: int, seed: int = 0) -> list[tuple[str, bytes]]:
    """``count`` distinct (class, JPEG bytes): NEU images flipped, shifted and noised as a line would capture them."""
    sources = sorted((require("neu_det") / "images").glob("*/*.jpg"))
    rng = random.Random(seed)
    noise = np.random.default_rng(seed)
    images = []
    for n in range(count):
        path = sources[n % len(sources)]
        image = Image.open(path).convert("L")
        if rng.random() < 0.5:
            image = ImageOps.mirror(image)
        dx, dy = rng.randint(-4, 4), rng.randint(-4, 4)
        image = image.transform(image.size, Image.Transform.AFFINE, (1, 0, dx, 0, 1, dy), fillcolor=128)
        pixels = np.asarray(image, dtype=np.float32) + noise.normal(0, 2.0, (image.size[1], image.size[0]))
        buffer = io.BytesIO()
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=92)
        images.append((path.parent.name, buffer.getvalue()))
    return images


def candidate_file(path: Path) -> Path:
    """EfficientNet-Lite0 (ImageNet trunk) with a seeded head over the NEU classes, exported as the edge runs it."""
    import torch

    from inspectloop.export import export_classifier
    from inspectloop.models.backbones import backbone_spec, load_backbone
    from inspectloop.models.classifier import Classifier
    from inspectloop.runtime.metadata import ModelMetadata

    torch.manual_seed(0)
    spec = backbone_spec("efficientnet-lite0")
    model = Classifier(load_backbone("efficientnet-lite0", input_size=INPUT_SIZE), spec.feature_dim,
                       len(NEU_CLASSES)).eval()
    metadata = ModelMetadata(model_name="scale-candidate", model_version="scale-1", class_names=NEU_CLASSES,
                             good_class=None, input_size=INPUT_SIZE, mean=spec.mean, std=spec.std, colour_mode="L")
    parity = [Image.open(p).convert("L") for p in sorted((require("neu_det") / "images").glob("*/*.jpg"))[:2]]
    export_classifier(model, metadata, path, parity)
    return path


def archive_workspace(root: Path, images: list[tuple[str, bytes]]) -> tuple[Workspace, str]:
    """A workspace with the images stored, one logged production decision each, and the candidate registered."""
    workspace = init_workspace(root, name="scale")
    for name in NEU_CLASSES:
        define_class(workspace, ClassDefinition(name=name, severity="major"))
    workspace.db.datasets.add("v1", None, {}, {"count": 0, "classes": list(NEU_CLASSES)}, [])
    run_dir = workspace.runs_dir / "run-candidate"
    run_dir.mkdir(parents=True)
    model_path = candidate_file(run_dir / "model.onnx")
    workspace.db.runs.add("run-candidate", "v1", {"mode": "benchmark"}, "scale", str(run_dir))
    metadata = EdgeModel(model_path).metadata
    workspace.db.runs.add_model("run-candidate", "fp32", str(model_path),
                                hashlib.sha256(model_path.read_bytes()).hexdigest(), metadata.weights_sha256,
                                json.loads(metadata.to_json()))
    workspace.db.runs.finish("run-candidate", "finished", metrics={"test": {}})
    version = register(workspace, "run-candidate", name="candidate")
    digests = workspace.blobs.put_many([data for _, data in images])
    # production's logged decisions: the images' own classes (what is measured is throughput, not agreement)
    rows = [{"request_id": f"scale-{n}", "received_at": RECEIVED, "source": "benchmark", "extra": {},
             "image_sha256": digest, "image_stored": True, "model_version_id": None, "model_name": "production",
             "label": label, "decision": "reject", "confidence": 0.9, "scores": {label: 0.9}, "latency_ms": {}}
            for n, ((label, _), digest) in enumerate(zip(images, digests))]
    with workspace.db.engine.begin() as conn:
        conn.execute(insert(s.predictions), rows)
    return workspace, version.name


def rescore(args: argparse.Namespace) -> dict[str, Any]:
    load_before = loadavg()
    images = stored_images(args.images)
    with tempfile.TemporaryDirectory(prefix="inspectloop-scale-") as folder:
        workspace, candidate = archive_workspace(Path(folder) / "ws", images)
        with workspace:
            cpu = time.process_time()
            alone = shadow_on_history(workspace, candidate, start=PERIOD[0], end=PERIOD[1], engine=LocalEngine())
            cpu = time.process_time() - cpu  # this process's CPU seconds: what a dedicated core would take
            print(f"one process: {args.images / alone.seconds:.1f} images/s ({alone.seconds:.1f} s)", flush=True)
            started = time.perf_counter()
            with RayEngine(workers=args.workers, object_store_mb=OBJECT_STORE_MB) as engine:
                ray_start = time.perf_counter() - started
                spread = shadow_on_history(workspace, candidate, start=PERIOD[0], end=PERIOD[1], engine=engine)
            print(f"Ray, {args.workers} workers: {args.images / spread.seconds:.1f} images/s ({spread.seconds:.1f} s, "
                  f"Ray started in {ray_start:.1f} s)", flush=True)
    same = _without_time(alone.report.to_dict()) == _without_time(spread.report.to_dict())
    single, ray = args.images / alone.seconds, args.images / spread.seconds
    per_core = args.images / cpu
    return {"images": args.images, "image": "NEU 200x200 greyscale JPEG (flipped, shifted, noised: all distinct)",
            "model": "EfficientNet-Lite0 224 px classifier, fp32 ONNX, 1 onnxruntime thread per worker",
            "cpu_count": os.cpu_count(), "workers": args.workers,
            "one_process": {"seconds": round(alone.seconds, 2), "images_per_s": round(single, 1),
                            "cpu_seconds": round(cpu, 2), "images_per_cpu_second": round(per_core, 1)},
            "ray": {"seconds": round(spread.seconds, 2), "images_per_s": round(ray, 1),
                    "ray_start_seconds": round(ray_start, 2)},
            "ratio": round(ray / single, 2), "identical_reports": same, "compared": alone.report.compared,
            "cluster_measured": cluster_size(ray, args),
            "cluster_quiet_node": cluster_size(per_core * (os.cpu_count() or 1), args),
            "loadavg_before": load_before, "loadavg_after": loadavg()}


def cluster_size(node_images_per_s: float, args: argparse.Namespace) -> dict[str, Any]:
    """Nodes like this one needed to re-score a year of the plant's stored images within the target hours."""
    captured = args.cameras * args.parts_per_s * 3600 * args.hours_per_day * args.days
    stored = captured * args.stored_share
    node_capacity = node_images_per_s * args.target_hours * 3600
    return {"assumptions": {"cameras": args.cameras, "parts_per_s_per_camera": args.parts_per_s,
                            "hours_per_day": args.hours_per_day, "days_per_year": args.days,
                            "stored_share": args.stored_share, "target_hours": args.target_hours,
                            "node": f"{os.cpu_count()} cores like this machine's, {node_images_per_s:.1f} images/s"},
            "images_captured_per_year": int(captured), "images_stored_per_year": int(stored),
            "nodes_for_stored_archive": max(1, math.ceil(stored / node_capacity)),
            "nodes_for_every_image": max(1, math.ceil(captured / node_capacity))}


def _without_time(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in report.items() if k != "created_at"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--section", choices=list(SECTIONS), default="rescore")
    parser.add_argument("--images", type=int, default=3000, help="stored images to re-score (the issue asks 100,000)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cameras", type=int, default=10)
    parser.add_argument("--parts-per-s", type=float, default=1.0, help="parts per second per camera (3600 an hour)")
    parser.add_argument("--hours-per-day", type=float, default=16.0, help="two shifts")
    parser.add_argument("--days", type=int, default=250, help="production days a year")
    parser.add_argument("--stored-share", type=float, default=0.05, help="share of images the service keeps")
    parser.add_argument("--target-hours", type=float, default=8.0, help="re-score the year within one night")
    parser.add_argument("--services", type=int, default=4, help="postgresql: serve processes on one database")
    parser.add_argument("--rate", type=float, nargs="+", default=[30.0, 120.0],
                        help="postgresql: offered requests per second, in all (one run per rate)")
    parser.add_argument("--seconds", type=float, default=20.0, help="postgresql: load duration (kill half way)")
    parser.add_argument("--s3-images", type=int, default=500, help="s3: NEU images ingested per repeat")
    parser.add_argument("--repeats", type=int, default=2, help="s3: alternate disk and S3 this many times")
    args = parser.parse_args()
    result = SECTIONS[args.section](args)
    # each section names the code and time that produced it: sections are re-run one at a time
    stamped = {"code_version": code_version(), "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **result}
    write_result("scale", {**_other_sections(args.section), args.section: stamped})


def rescore_section(args: argparse.Namespace) -> dict[str, Any]:
    result = rescore(args)
    for name in ("cluster_measured", "cluster_quiet_node"):
        cluster = result[name]
        print(f"{name}: {cluster['assumptions']['node']}: a year of {cluster['images_stored_per_year']:,} stored "
              f"images in {args.target_hours:g} h needs {cluster['nodes_for_stored_archive']} node(s), every "
              f"captured image ({cluster['images_captured_per_year']:,}) {cluster['nodes_for_every_image']}")
    print(f"ratio Ray/one process {result['ratio']}x, identical reports: {result['identical_reports']}; "
          f"{result['one_process']['images_per_cpu_second']} images per CPU second; "
          f"load {result['loadavg_before']} -> {result['loadavg_after']}")
    return result


def postgresql_section(args: argparse.Namespace) -> dict[str, Any]:
    result = databases(args)
    for run in result["runs"]:
        print(f"{run['offered_rps']:g} req/s, p95 ms: {run['p95_ms']}")
    print(f"load {result['loadavg_before']} -> {result['loadavg_after']}")
    return result


def s3_section(args: argparse.Namespace) -> dict[str, Any]:
    result = object_storage(args)
    print(f"ingest {result['images']} images: local disk {result['local_disk_images_per_s']} images/s, S3 (moto) "
          f"{result['s3_images_per_s']} images/s, ratio {result['ratio_s3_to_disk']}; "
          f"load {result['loadavg_before']} -> {result['loadavg_after']}")
    return result


SECTIONS = {"rescore": rescore_section, "postgresql": postgresql_section, "s3": s3_section}


def _other_sections(section: str) -> dict[str, Any]:
    """The other sections of the last result, so rerunning one section keeps the rest."""
    path = RESULTS / "scale.json"
    kept = json.loads(path.read_text()) if path.exists() else {}
    return {k: v for k, v in kept.items() if k not in ("benchmark", "code_version", "machine", "measured_at",
                                                       section)}


if __name__ == "__main__":
    main()
