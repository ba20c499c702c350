"""NEU steel surface defects (6 classes x 300): test macro recall and training wall time.

    python -m benchmarks.neu [--fast-size 128]

Split (fixed, documented): every image is its own group (NEU has no part or session ids); stratified
70 / 15 / 15 train / val / test per class with seed 0. The main model is a linear probe on cached
frozen EfficientNet-Lite0 features at 224 px (the 3-minute budget). The fast deployment option is a
short fine-tune at a smaller input, exported in float32 and INT8 (calibrated on training images): a
fine-tuned trunk keeps its margins under INT8 rounding, where a probe on frozen features lost 1.5 points.
"""

from __future__ import annotations

import argparse

from benchmarks.common import CITATIONS, neu_items, write_result
from benchmarks.training_bench import fresh_workspace, train_and_score
from inspectloop.datasets import SplitPlan
from inspectloop.train.config import TrainConfig

PLAN = SplitPlan(group_by="none", val_fraction=0.15, test_fraction=0.15, seed=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--fast-size", type=int, default=160)
    parser.add_argument("--fast-epochs", type=int, default=4, help="fine-tuning epochs of the fast option")
    parser.add_argument("--head-refit", action="store_true",
                        help="also run the fast option ending with the probe's head refitted on its tuned trunk")
    args = parser.parse_args()
    ws = fresh_workspace("neu", neu_items(), PLAN)
    runs = []
    main_config = TrainConfig(mode="probe", input_size=args.size, augment="none", seed=0)
    fast_config = TrainConfig(mode="finetune", input_size=args.fast_size, epochs=args.fast_epochs, seed=0,
                              head_refit=False)
    runs.append(train_and_score(ws, main_config, f"neu-main-{args.size}", int8=False))
    runs.append(train_and_score(ws, fast_config, f"neu-fast-{args.fast_size}", int8=True))
    if args.head_refit:
        refit_config = fast_config.model_copy(update={"head_refit": True})
        runs.append(train_and_score(ws, refit_config, f"neu-fast-{args.fast_size}-refit", int8=True))
    ws.close()
    main_run = runs[0]
    result = {
        "dataset": "neu_det", "citation": CITATIONS["neu_det"], "split": "stratified 70/15/15 per class, seed 0",
        "goal": {"test_macro_recall": ">= 0.995", "train_wall_seconds": "<= 180"},
        "main": {"test_macro_recall": main_run["test"]["fp32"]["macro_recall"],
                 "run_wall_seconds": main_run["run_wall_seconds"], "train_seconds": main_run["train_seconds"]},
        "fast": {v: runs[1]["test"][v]["macro_recall"] for v in runs[1]["test"]},
        **({"fast_head_refit": {v: runs[2]["test"][v]["macro_recall"] for v in runs[2]["test"]}} if args.head_refit
           else {}),
        "runs": runs,
    }
    print(f"NEU main: macro recall {result['main']['test_macro_recall']:.4f} in {main_run['run_wall_seconds']} s "
          f"(whole run); fast: {result['fast']}; with the head refitted: {result.get('fast_head_refit', 'not run')}")
    write_result("neu", result)


if __name__ == "__main__":
    main()
