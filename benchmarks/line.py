"""``inspectloop run`` on emulated Basler cameras: trigger-to-published latency and dropped/late parts.

    python -m benchmarks.line [--model MODEL.onnx] [--parts 200] [--rate 5] [--width 1280 --height 1024]
                              [--cameras 1] [--deadline-ms 1000]
                              [--collect-fraction 1.0 [--collect-only]] [--distinct N]

pylon's camera emulation (``PYLON_CAMEMU``) serves synthetic greyscale frames of the given size from
files, software-triggered at ``--rate`` parts per second; each part (one frame per camera, a capture set
when ``--cameras 2``) goes through the real station loop: the pinned model through the inspection
service (durable prediction log, ``synchronous=FULL``, 5 % of frames kept), the deadline gate, the synced
decision journal, and a real MQTT broker (amqtt, the tests' broker) plus inspectloop's OPC UA server.
Latency is from a part's trigger to the last publisher's acknowledgement. Everything shares this
machine's cores with the broker. Not measured here: the issue's 5-minute highest sustained rate.

``--collect-fraction F`` adds collection mode (a seeded fraction F of parts stored in the workspace, full
ingest: hash, decode, quality statistics, perceptual hash, blob and rows); ``--collect-only`` runs it without
a model (a new line's first weeks). ``--distinct N`` makes the emulator serve N different frames, so that
stored parts are new images, not duplicates of the first four.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from benchmarks.common import CACHE, write_result

os.environ.setdefault("PYLON_CAMEMU", "2")  # read when pylon first loads: before anything imports pypylon

MODEL_GLOB = "calibration-magnetic_tile/runs/*/model.onnx"  # a greyscale classifier benchmarks.calibration trains


def default_model() -> Path:
    """A cached benchmark classifier (this checkout's cache, else the main checkout's)."""
    for cache in (CACHE, Path("/work/main/benchmarks/cache")):
        found = sorted(cache.glob(MODEL_GLOB))
        if found:
            return found[-1]
    raise SystemExit("no cached model: run python -m benchmarks.calibration first, or pass --model")


def synthetic_frames(folder: Path, width: int, height: int, count: int = 4) -> Path:
    """``count`` noisy grey surfaces, every other one with a dark scratch, as BMP files the camera serves
    (the emulator decodes its file for every frame: 2 x 12 MP took 560 ms from PNG, 120 ms from BMP, and a
    real camera decodes nothing)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        pixels = rng.normal(128, 12, (height, width))
        if i % 2:
            row = int(rng.integers(height // 4, 3 * height // 4))
            pixels[row:row + max(height // 100, 3), width // 10:-width // 10] -= 70
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"{i}.bmp")
    return folder


def line_config(frames: Path, args: argparse.Namespace, mqtt_port: int, opcua_port: int) -> dict[str, Any]:
    cameras = [{"name": f"cam{i}", "serial": f"0815-{i:04d}", "exposure_us": 800, "pixel_format": "Mono8",
                "roi": {"width": args.width, "height": args.height}, "image_files": str(frames),
                "timeout_ms": 5000} for i in range(args.cameras)]
    collect = {"collect": {"fraction": args.collect_fraction, "seed": 0}} if args.collect_fraction else {}
    return {**collect, "cameras": cameras, "capture_set": {"cameras": [c["name"] for c in cameras]},
            "publish": {"deadline_ms": args.deadline_ms, "fail_safe": "review",
                        "mqtt": {"host": "127.0.0.1", "port": mqtt_port, "topic": "bench/decision"},
                        "opcua": {"endpoint": f"opc.tcp://127.0.0.1:{opcua_port}/inspectloop/"}}}


def run(args: argparse.Namespace) -> dict[str, Any]:
    import logging

    from inspectloop.line.config import parse_line_config
    from inspectloop.line.run import RunOptions, run_station
    from inspectloop.serve.service import ServiceConfig
    from inspectloop.workspace import init_workspace
    from tests.line.brokers import free_port, mqtt_broker  # the tests' real broker, not a second copy

    logging.getLogger("asyncua").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        frames = synthetic_frames(root / "frames", args.width, args.height, args.distinct)
        workspace = init_workspace(root / "ws", "bench-line")
        mqtt_port = free_port()
        line = parse_line_config(line_config(frames, args, mqtt_port, free_port()))
        try:
            with mqtt_broker(mqtt_port):
                options = RunOptions(parts=args.parts, rate_hz=args.rate, collect_only=args.collect_only)
                summary = run_station(workspace, line, options, ServiceConfig(model_file=args.model, threads=1))
        finally:
            workspace.close()
    return summary.to_dict()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--parts", type=int, default=200)
    parser.add_argument("--rate", type=float, default=5.0)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--cameras", type=int, default=1, choices=(1, 2))
    parser.add_argument("--deadline-ms", type=float, default=1000.0)
    parser.add_argument("--collect-fraction", type=float, default=None)
    parser.add_argument("--collect-only", action="store_true")
    parser.add_argument("--distinct", type=int, default=4, help="different frames the emulator serves in turn")
    parser.add_argument("--name", default="line", help="result file name under benchmarks/results")
    args = parser.parse_args()
    if args.collect_only and not args.collect_fraction:
        parser.error("--collect-only needs --collect-fraction")
    args.model = None if args.collect_only else args.model or default_model()
    load_before = os.getloadavg()[0]  # the 2 cores are shared with other work: say how busy they were
    summary = run(args)
    print(json.dumps(summary, indent=1))
    write_result(args.name, {
        "setup": {"model": "/".join(args.model.parts[-4:]) if args.model else None, "parts": args.parts,
                  "collect_fraction": args.collect_fraction, "collect_only": args.collect_only,
                  "distinct_frames": args.distinct, "rate_hz": args.rate, "cameras": args.cameras,
                  "frame": f"{args.width}x{args.height} Mono8", "deadline_ms": args.deadline_ms,
                  "publishers": [] if args.collect_only else ["MQTT (amqtt on loopback)", "OPC UA server"],
                  "threads_per_inference": 1,
                  "load_average_before": round(load_before, 1), "load_average_after": round(os.getloadavg()[0], 1)},
        "summary": summary})


if __name__ == "__main__":
    main()
