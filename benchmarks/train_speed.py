"""Fine-tuning throughput on a 2-core CPU: each speed lever alone and together, and the fast path's accuracy.

    python -m benchmarks.train_speed [--datasets neu magnetic_tile] [--rounds 6] [--steps 2] [--compile]
    python -m benchmarks.train_speed --loading                              # decoding vs the image cache
    python -m benchmarks.train_speed --accuracy neu [--path old] [--seed S] # test macro recall, NEU recipe

Throughput is the training step a run repeats (augmentation of the batch, forward, backward, optimiser step)
in images per second, with the dataset's benchmark recipe (NEU: the 160 px fine-tune of benchmarks.neu;
magnetic tile: the 192 px main model of benchmarks.magnetic_tile; stem and two blocks frozen, batch 32).
The old path is the loop before issue 16 (float32, NCHW, pads as separate copies); each lever changes one
thing of it; the fast path is ``--set precision=auto --set channels_last=true`` as the loop now runs it, and
"before" is that path as it was before its depthwise convolutions stayed in float32.
Every configuration holds its own model, and the configurations take turns over short timing windows
(``--steps`` steps each, in a rotating order, for ``--rounds`` rounds): the machine is shared, so a load
spike hits every configuration alike. Reported: the median images/s of each, the median of the per-round
ratios to the old path, and the load average around each round; and the same per CPU-second of this process
(images per CPU-second: the work a step costs, less sensitive than wall time to other processes' load).
``--compile`` adds torch.compile (its compile time is reported: minutes). ``--loading`` times loading a run's
images (decode and resize, as without the image cache or on its first run) against reading them back from the
image cache. The accuracy mode trains the recipe end to end (fresh workspace, frozen test split) on the fast
path or (``--path old``) in float32 NCHW, and adds its test macro recall.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import statistics
import time
from typing import Any

import numpy as np
import torch

from benchmarks.common import RESULTS, magnetic_tile_items, neu_items, write_result
from inspectloop.datasets import SplitPlan
from inspectloop.ingest import SourceItem
from inspectloop.models.backbones import backbone_spec, load_backbone
from inspectloop.models.classifier import Classifier
from inspectloop.runtime.images import load_image
from inspectloop.runtime.preprocess import Preprocess
from inspectloop.train.augment import augment_for
from inspectloop.train.config import TrainConfig
from inspectloop.train.data import augmented_batch
from inspectloop.train.loop import freeze_early_layers, train_step, training_layout, training_precision

FAST = {"precision": "bf16", "channels_last": True}  # the fast path (opt-in: --set precision=auto channels_last=true)
# The path before issue 16: float32, NCHW, TensorFlow-style pads as separate copies. ``pads_separate`` and
# ``depthwise_bf16`` put back what the loop changed, to time it against what it replaced.
OLD = {"precision": "float32", "channels_last": False, "compile": False, "pads_separate": True}
LEVERS = {
    "old (float32, NCHW, pads separate)": OLD,
    "pads in the convolution": {**OLD, "pads_separate": False},
    "bf16 autocast": {**OLD, "precision": "bf16"},
    "channels-last": {**OLD, "channels_last": True},
    "bf16 + channels-last, depthwise in bf16 (before)": {**FAST, "depthwise_bf16": True, "pads_separate": True},
    "bf16 + channels-last (fast path)": FAST,
}
BENCH_ONLY = ("pads_separate", "depthwise_bf16")  # switches of this benchmark, not of TrainConfig
COMPILED = {"bf16 + channels-last + compile": {**FAST, "compile": True}}
DATASETS = {"neu": (neu_items, 160), "magnetic_tile": (magnetic_tile_items, 192)}
TIMING_IMAGES = 96  # decoded once per dataset, spread over its classes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", nargs="+", choices=sorted(DATASETS), default=sorted(DATASETS))
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=2, help="training steps per timing window")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (minutes of compiling)")
    parser.add_argument("--levers", nargs="+", choices=list(LEVERS), help="time only these (and the old path)")
    parser.add_argument("--section", default="speed", help="the result's section the throughput goes to")
    parser.add_argument("--loading", action="store_true", help="time decoding against the image cache")
    parser.add_argument("--accuracy", choices=sorted(DATASETS), help="train end to end and score the test split")
    parser.add_argument("--path", choices=("new", "old"), default="new", help="accuracy: new defaults or old path")
    parser.add_argument("--per-class", type=int, default=0, help="accuracy: the first N images of each class (0 = all)")
    parser.add_argument("--size", type=int, help="input size (default: the recipe's)")
    parser.add_argument("--epochs", type=int, help="accuracy: epochs (default: the recipe's)")
    parser.add_argument("--seed", type=int, default=0, help="accuracy: the run's seed")
    args = parser.parse_args()
    if args.loading:
        result = _previous() | {"loading": {name: loading(name, args.rounds) for name in args.datasets}}
    elif args.accuracy:
        measured = accuracy(args.accuracy, args.path, args.per_class, args.size, args.epochs, args.seed)
        result = _previous()  # read now: another mode may have written meanwhile
        recipe = measured["recipe"]
        key = args.path if not (args.per_class or args.size or args.epochs) else (
            f"{args.path}: {args.per_class or 'all'} images per class, {recipe['input_size']} px, {recipe['epochs']} epochs")
        key += f", seed {args.seed}" if args.seed else ""
        result.setdefault("accuracy", {}).setdefault(args.accuracy, {})[key] = measured
    else:
        chosen = {name: update for name, update in LEVERS.items() if not args.levers or name in args.levers
                  or update == OLD}
        levers = {**chosen, **(COMPILED if args.compile else {})}
        speed = {name: throughput(name, args.rounds, args.steps, levers, args.size) for name in args.datasets}
        previous = _previous()
        result = previous | {args.section: previous.get(args.section, {}) | speed, "cpu": {"avx512_bf16": bool(torch.cpu._is_avx512_bf16_supported()),
                                                        "threads": torch.get_num_threads()}}
    write_result("train_speed", result)


def throughput(dataset: str, rounds: int, steps: int, levers: dict[str, dict[str, Any]],
               size: int | None = None) -> dict[str, Any]:
    """Images/s of each configuration over interleaved timing windows, with per-round ratios to the old path
    (at the recipe's input size, or ``size``)."""
    items, recipe_size = DATASETS[dataset]
    size = size or recipe_size
    images, labels = _timing_images(items(), size)
    base = TrainConfig(input_size=size, seed=0)
    configs = {name: base.model_copy(update={k: v for k, v in update.items() if k not in BENCH_ONLY})
               for name, update in levers.items()}
    trainers = {name: _Trainer(config, len(set(labels.tolist())), **{k: levers[name][k] for k in BENCH_ONLY
                                                                     if k in levers[name]})
                for name, config in configs.items()}
    compile_seconds = {name: trainer.warm_up(images, labels) for name, trainer in trainers.items()}
    rates: dict[str, list[float]] = {name: [] for name in configs}
    cpu_rates: dict[str, list[float]] = {name: [] for name in configs}
    loads = []
    names = list(configs)
    for r in range(rounds):
        loads.append(os.getloadavg()[0])
        for name in names[r % len(names):] + names[:r % len(names)]:  # rotate who goes first
            cpu_started = time.process_time()
            rates[name].append(trainers[name].window(images, labels, steps))
            cpu_rates[name].append(steps * base.batch_size / (time.process_time() - cpu_started))
        print(f"{dataset} round {r + 1}/{rounds} load {loads[-1]:.1f}: "
              + ", ".join(f"{n} {rates[n][-1]:.2f} ({cpu_rates[n][-1]:.2f}/cpu-s)" for n in names), flush=True)
    loads.append(os.getloadavg()[0])
    old = rates[names[0]]
    return {"input_size": size, "batch_size": base.batch_size, "rounds": rounds, "steps_per_window": steps,
            "load_average_1min": {"median": round(statistics.median(loads), 2), "min": round(min(loads), 2),
                                  "max": round(max(loads), 2)},
            "configs": {name: {"settings": levers[name] or "defaults",
                               "precision": training_precision(configs[name]),
                               "images_per_second_median": round(statistics.median(rates[name]), 2),
                               "images_per_second": [round(v, 2) for v in rates[name]],
                               "speedup_median_of_round_ratios": round(statistics.median(
                                   [v / o for v, o in zip(rates[name], old)]), 2),
                               "images_per_cpu_second_median": round(statistics.median(cpu_rates[name]), 2),
                               "images_per_cpu_second": [round(v, 2) for v in cpu_rates[name]],
                               "cpu_speedup_median_of_round_ratios": round(statistics.median(
                                   [v / o for v, o in zip(cpu_rates[name], cpu_rates[names[0]])]), 2),
                               **({"compile_seconds": round(compile_seconds[name], 1)}
                                  if configs[name].compile else {})}
                        for name in names}}


class _Trainer:
    """One configuration's model, optimiser and random draws: the fine-tuning loop's step, timed."""

    def __init__(self, config: TrainConfig, classes: int, pads_separate: bool = False,
                 depthwise_bf16: bool = False) -> None:
        torch.manual_seed(0)
        self.config = config
        self.model = Classifier(load_backbone(config.backbone, input_size=config.input_size),
                                backbone_spec(config.backbone).feature_dim, classes)
        if pads_separate:
            _separate_pads(self.model)
        self.frozen = freeze_early_layers(self.model, config.freeze_blocks)
        if depthwise_bf16:  # the layout alone, without the float32 depthwise convolutions
            training_layout(self.model, "float32", config.channels_last)
        else:
            training_layout(self.model, training_precision(config), config.channels_last, config.freeze_blocks)
        self.optimizer = torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad], lr=config.lr,
                                           weight_decay=config.weight_decay)
        self.stepper = torch.compile(self.model) if config.compile else self.model
        self.augment = augment_for(config)
        self.preprocess = Preprocess(config.input_size, backbone_spec(config.backbone).mean,
                                     backbone_spec(config.backbone).std)
        self.rng, self.draw = random.Random(0), np.random.default_rng(0)

    def warm_up(self, images: list[Any], labels: np.ndarray) -> float:
        """One untimed step (builds kernels; compiles); with compile, its seconds beyond a plain step's."""
        started = time.perf_counter()
        self.window(images, labels, 1)
        first = time.perf_counter() - started
        if not self.config.compile:
            return 0.0
        return max(0.0, first - self.config.batch_size / self.window(images, labels, 1))

    def window(self, images: list[Any], labels: np.ndarray, steps: int) -> float:
        """``steps`` training steps as the loop runs them; images per second."""
        self.model.train()
        for module in self.frozen:
            module.eval()
        size = self.config.batch_size
        started = time.perf_counter()
        for _ in range(steps):
            index = self.draw.choice(len(images), size=size, replace=False)
            x = augmented_batch([images[i] for i in index], self.preprocess, self.augment, self.rng)
            train_step(self.stepper, x, torch.from_numpy(labels[index]), self.optimizer, self.config)
        return steps * size / (time.perf_counter() - started)


def _separate_pads(model: torch.nn.Module) -> None:
    """Undo ``models.backbones._fold_symmetric_padding``: each pad a separate copy again, as before issue 16."""
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d) and module.padding != (0, 0) and hasattr(module, "static_padding"):
            top, left = module.padding
            module.static_padding = torch.nn.ZeroPad2d((left, left, top, top))
            module.padding = (0, 0)


def loading(dataset: str, rounds: int, count: int = 120) -> dict[str, Any]:
    """Images/s of loading ``count`` of the dataset's images for a run: decoded and resized, or from the cache."""
    import tempfile
    from pathlib import Path

    from inspectloop.domain import DatasetItem
    from inspectloop.train.data import ImageCache, load_image_set

    items, size = DATASETS[dataset]
    chosen = items()[:: max(1, len(items()) // count)][:count]
    blobs = {hashlib.sha256(item.path.read_bytes()).hexdigest(): item.path for item in chosen}
    version = [DatasetItem(digest, "x", "train", digest) for digest in blobs]
    preprocess = Preprocess(size)
    rates: dict[str, list[float]] = {"decode and resize": [], "image cache": []}
    with tempfile.TemporaryDirectory() as folder:
        cache = ImageCache(Path(folder), preprocess, mode="L")
        load_image_set(version, ["x"], lambda d: blobs[d].read_bytes(), preprocess, mode="L", cache=cache)  # fill
        for _ in range(rounds):
            for name, used in (("decode and resize", None), ("image cache", cache)):
                started = time.perf_counter()
                load_image_set(version, ["x"], lambda d: blobs[d].read_bytes(), preprocess, mode="L", cache=used)
                rates[name].append(len(version) / (time.perf_counter() - started))
    return {"images": len(version), "input_size": size, "load_average_1min": round(os.getloadavg()[0], 2),
            **{name: {"images_per_second_median": round(statistics.median(v), 1)} for name, v in rates.items()},
            "speedup": round(statistics.median(rates["image cache"]) / statistics.median(rates["decode and resize"]), 1)}


def _timing_images(items: list[SourceItem], size: int) -> tuple[list[Any], np.ndarray]:
    """``TIMING_IMAGES`` images spread evenly over the dataset, decoded and resized as a run does."""
    chosen = items[:: max(1, len(items) // TIMING_IMAGES)][:TIMING_IMAGES]
    preprocess = Preprocess(size)
    names = sorted({item.label for item in items})
    images = [preprocess.resize(load_image(item.path, mode="L")) for item in chosen]
    return images, np.array([names.index(item.label) for item in chosen], dtype=np.int64)


def accuracy(dataset: str, path: str, per_class: int = 0, size: int | None = None,
             epochs: int | None = None, seed: int = 0) -> dict[str, Any]:
    """The dataset's fine-tuning recipe end to end on the fast path or the old one: test macro recall.
    ``per_class``, ``size`` and ``epochs`` shrink it (a quick check on a busy machine, not the benchmark)."""
    from benchmarks.magnetic_tile import PLAN as MT_PLAN
    from benchmarks.neu import PLAN as NEU_PLAN
    from benchmarks.training_bench import fresh_workspace, train_and_score

    items, recipe_size = DATASETS[dataset]
    plan: SplitPlan = NEU_PLAN if dataset == "neu" else MT_PLAN
    recipe = {"mode": "finetune", "input_size": size or recipe_size,
              "epochs": epochs or (4 if dataset == "neu" else 12), "seed": seed}
    update = {k: v for k, v in (OLD if path == "old" else FAST).items() if k not in BENCH_ONLY}
    chosen = _first_per_class(items(), per_class) if per_class else items()
    ws = fresh_workspace(f"train_speed_{dataset}_{path}_{seed}", chosen, plan)
    load_before = os.getloadavg()[0]
    run = train_and_score(ws, TrainConfig(**recipe, **update), f"{dataset}-{path}-{seed}", int8=False)
    ws.close()
    return {"recipe": recipe, "images": len(chosen), "settings": update or "defaults", "test_macro_recall": run["test"]["fp32"]["macro_recall"],
            "per_class_recall": {k: v["recall"] for k, v in run["test"]["fp32"]["per_class"].items()},
            "train_seconds": run["train_seconds"], "run_wall_seconds": run["run_wall_seconds"],
            "best_epoch": run["best_epoch"], "history": run["history"],
            "load_average_1min": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)}}


def _first_per_class(items: list[SourceItem], count: int) -> list[SourceItem]:
    """The first ``count`` items of each label, in the dataset's order."""
    taken: dict[str, int] = {}
    chosen = []
    for item in items:
        if taken.get(item.label, 0) < count:
            taken[item.label] = taken.get(item.label, 0) + 1
            chosen.append(item)
    return chosen


def _previous() -> dict[str, Any]:
    """The last result's sections, so the speed and accuracy modes each update their own."""
    path = RESULTS / "train_speed.json"
    if not path.exists():
        return {}
    drop = ("benchmark", "code_version", "machine", "measured_at")  # write_result sets them afresh
    return {key: value for key, value in json.loads(path.read_text()).items() if key not in drop}


if __name__ == "__main__":
    main()
