"""The duration estimate a run prints before its first epoch, against the training time it then took.

    python -m benchmarks.estimate [--cases quickstart neu magnetic_tile] [--epochs 3]

Each case trains a fine-tuned model (short runs: the estimate is per epoch, so a few epochs test it as well as
fifteen) and records the estimate (``metrics.estimate``), the actual ``train_seconds``, their ratio and the
whole run's wall time. The figure the issue asks for: actual within +-25% of the estimate. The machine's load
is recorded too: the estimate measures the machine as it is when the run starts, so a load that changes during
the run moves the actual time away from it.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from collections.abc import Callable
from typing import Any

from benchmarks.common import CACHE, magnetic_tile_items, neu_items, previous_datasets, write_result
from benchmarks.training_bench import fresh_workspace
from inspectloop.datasets import SplitPlan, load_version
from inspectloop.ingest import SourceItem, scan_manifest
from inspectloop.quickstart import DEMO_FREEZE_BLOCKS, DEMO_SPLIT
from inspectloop.synthetic import DEMO_SIZE, generate_line
from inspectloop.train.config import TrainConfig
from inspectloop.train.run import train

NAME = "estimate"


def quickstart_case(epochs: int) -> tuple[list[SourceItem], SplitPlan, TrainConfig]:
    """The quickstart's synthetic line (300 images per class at 160 px) and its training settings."""
    line = generate_line(CACHE / "estimate-quickstart-line")
    items, _ = scan_manifest(line.manifest)
    return items, DEMO_SPLIT, TrainConfig(epochs=epochs, input_size=DEMO_SIZE, batch_size=16,
                                          freeze_blocks=DEMO_FREEZE_BLOCKS)


def neu_case(epochs: int, per_class: int = 60) -> tuple[list[SourceItem], SplitPlan, TrainConfig]:
    """NEU-DET, ``per_class`` images of each of its six classes, at the default 224 px settings."""
    return (_subset(neu_items(), per_class), SplitPlan(group_by="none", val_fraction=0.15, test_fraction=0.15),
            TrainConfig(epochs=epochs))


def magnetic_tile_case(epochs: int, per_class: int = 60) -> tuple[list[SourceItem], SplitPlan, TrainConfig]:
    """Magnetic tile, up to ``per_class`` images of each class, at the default 224 px settings."""
    return (_subset(magnetic_tile_items(), per_class), SplitPlan(group_by="none", val_fraction=0.15,
                                                                   test_fraction=0.15), TrainConfig(epochs=epochs))


CASES: dict[str, Callable[[int], tuple[list[SourceItem], SplitPlan, TrainConfig]]] = {
    "quickstart": quickstart_case, "neu": neu_case, "magnetic_tile": magnetic_tile_case}


def measure(name: str, epochs: int) -> dict[str, Any]:
    """Train one case and compare its estimate with the training time it took."""
    items, plan, config = CASES[name](epochs)
    ws = fresh_workspace(f"estimate-{name}", items, plan)
    load_before = os.getloadavg()[0]
    said: list[str] = []
    started = time.perf_counter()
    result = train(ws, config, progress=lambda stage, info: _show(name, stage, info, said))
    wall = time.perf_counter() - started
    splits = {split: sum(counts.values()) for split, counts in load_version(ws, "latest").summary["splits"].items()}
    ws.close()
    estimate, actual = result.metrics["estimate"], result.metrics["train_seconds"]
    history = result.metrics["history"]
    epoch_actual = actual / len(history)
    return {"images": splits,
            "config": {"epochs": config.epochs, "input_size": config.input_size, "batch_size": config.batch_size,
                       "freeze_blocks": config.freeze_blocks},
            "said": said[0] if said else None, "estimate": estimate, "train_seconds": actual,
            "actual_over_estimate": round(actual / estimate["seconds"], 3),
            "epoch_seconds": {"estimated": estimate["epoch_seconds"], "actual_mean": round(epoch_actual, 1),
                              "each": [round(b["seconds"] - a, 1) for a, b in
                                       zip([0.0] + [h["seconds"] for h in history[:-1]], history)]},
            "within_25_percent": abs(actual / estimate["seconds"] - 1) <= 0.25,
            "run_wall_seconds": round(wall, 1), "load_average_1min": {"before": round(load_before, 2),
                                                                     "after": round(os.getloadavg()[0], 2)}}


def _show(name: str, stage: str, info: dict[str, Any], said: list[str]) -> None:
    if stage == "estimate":
        said.append(info["message"])
        print(f"  [{name}] {info['message']}", flush=True)
    elif stage == "epoch":
        print(f"  [{name}] epoch {info['epoch'] + 1}/{info['epochs']} at {info['seconds']} s", flush=True)


def _subset(items: list[SourceItem], per_class: int) -> list[SourceItem]:
    rng = random.Random(0)
    by_class: dict[str, list[SourceItem]] = {}
    for item in items:
        by_class.setdefault(str(item.label), []).append(item)
    return [item for label in sorted(by_class) for item in rng.sample(by_class[label], min(per_class,
                                                                                           len(by_class[label])))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=["quickstart", "neu"], choices=sorted(CASES))
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    results = previous_datasets(NAME)
    for name in args.cases:
        results[name] = measure(name, args.epochs)
        print(f"{name}: estimate {results[name]['estimate']['seconds']} s, actual {results[name]['train_seconds']} s "
              f"(ratio {results[name]['actual_over_estimate']})", flush=True)
    write_result(NAME, {"epochs": args.epochs, "datasets": results, "command": "python -m benchmarks.estimate "
                        f"--cases {' '.join(args.cases)} --epochs {args.epochs}"})


if __name__ == "__main__":
    main()
