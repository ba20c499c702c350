"""Magnetic tile (Free + 5 defect classes) with capture sessions held out: the real test.

    python -m benchmarks.magnetic_tile [--epochs 12] [--size 192] [--fast-size 160]

Split (fixed by the issue): test = sessions exp5 and exp6; train and validation from exp0..exp4
(validation: 15% per class, stratified, seed 0). The main model fine-tunes EfficientNet-Lite0 (stem
and first two blocks frozen) with production augmentations and class-balanced sampling; the fast
deployment option is the same recipe at a smaller input, exported in float32 and INT8.
"""

from __future__ import annotations

import argparse

from benchmarks.common import CITATIONS, magnetic_tile_items, write_result
from benchmarks.training_bench import fresh_workspace, train_and_score
from inspectloop.datasets import SplitPlan
from inspectloop.train.config import TrainConfig

PLAN = SplitPlan(group_by="none", val_fraction=0.15, test_field="session", test_values=("exp5", "exp6"), seed=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--fast-size", type=int, default=160, help="0 = skip the fast variant")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--freeze-blocks", type=int, default=2)
    args = parser.parse_args()
    ws = fresh_workspace("magnetic_tile", magnetic_tile_items(), PLAN)
    sizes = [("main", args.size)] + ([("fast", args.fast_size)] if args.fast_size else [])
    runs = []
    for label, size in sizes:
        config = TrainConfig(mode="finetune", input_size=size, epochs=args.epochs, freeze_blocks=args.freeze_blocks,
                             seed=0)
        runs.append(train_and_score(ws, config, f"mt-{label}-{size}", int8=label == "fast"))
    ws.close()
    main_scores = runs[0]["test"]["fp32"]
    defects = {k: v for k, v in main_scores["per_class"].items() if k != "Free"}
    result = {
        "dataset": "magnetic_tile", "citation": CITATIONS["magnetic_tile"],
        "split": "test = sessions exp5+exp6; train/val from exp0..exp4 (val 15% per class, seed 0)",
        "goal": {"test_macro_recall": ">= 0.90", "every_defect_recall": ">= 0.80"},
        "main": {"test_macro_recall": main_scores["macro_recall"],
                 "per_class": main_scores["per_class"],
                 "min_defect_recall": min(v["recall"] for v in defects.values()),
                 "confusion_matrix": main_scores["confusion_matrix"], "class_names": main_scores["class_names"],
                 "run_wall_seconds": runs[0]["run_wall_seconds"]},
        "fast": {v: runs[1]["test"][v]["macro_recall"] for v in runs[1]["test"]} if len(runs) > 1 else None,
        "runs": runs,
    }
    print(f"magnetic tile main: macro recall {main_scores['macro_recall']:.4f}, "
          f"min defect recall {result['main']['min_defect_recall']:.3f}")
    write_result("magnetic_tile", result)


if __name__ == "__main__":
    main()
