"""Magnetic tile (Free + 5 defect classes) with capture sessions held out: the real test.

    python -m benchmarks.magnetic_tile [--epochs 12] [--size 192] [--fast-size 160]
    python -m benchmarks.magnetic_tile --standardise-study [--seeds 0] [--mode probe] [--head-refit]
                                       # plain vs per-image standardised (--treatments plain std)
                                       # [--fast-path] [--pose contain] [--name SUFFIX]: bf16 + channels-last,
                                       # borders kept in view, own result file
                                       # [--probe-c C]: the refitted head's penalty (weaker when larger)
                                       # [--head-blend B]: share of the fine-tuned head kept beside the refit
                                       # [--ensemble N]: N members a model, probabilities averaged

Split (fixed by the issue): test = sessions exp5 and exp6; train and validation from exp0..exp4
(validation: 15% per class, stratified, seed 0). The main model fine-tunes EfficientNet-Lite0 (stem
and first two blocks frozen) with production augmentations and class-balanced sampling; the fast
deployment option is the same recipe at a smaller input, exported in float32 and INT8.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from benchmarks.common import CITATIONS, magnetic_tile_items, require, write_result
from benchmarks.edge_latency import measure
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
    parser.add_argument("--standardise-study", action="store_true",
                        help="train the main recipe plain and with per-image standardisation, side by side")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds of the standardise study")
    parser.add_argument("--mode", choices=("finetune", "probe"), default="finetune", help="the standardise study's recipe")
    parser.add_argument("--head-refit", action="store_true", help="standardise study, finetune: refit the head as "
                                                                  "the probe does after fine-tuning")
    parser.add_argument("--treatments", nargs="+", choices=("plain", "std"), default=["plain", "std"],
                        help="the standardise study's sides")
    parser.add_argument("--fast-path", action="store_true", help="standardise study: train on the fast path "
                                                                 "(precision=auto, channels_last=true)")
    parser.add_argument("--pose", choices=("crop", "contain", "zoom"), default="crop",
                        help="standardise study: how augmented poses treat the image's borders (zoom: the masks "
                             "are imported as regions, and half the views zoom in around them)")
    parser.add_argument("--probe-views", type=int, default=1, help="standardise study: augmented views per image "
                                                                   "for the refitted head (1: the images as they are)")
    parser.add_argument("--probe-c", type=float, default=TrainConfig().probe_c,
                        help="standardise study: the refitted head's inverse L2 penalty (larger: weaker)")
    parser.add_argument("--head-blend", type=float, default=TrainConfig().head_blend,
                        help="standardise study: share of the fine-tuned head kept beside the refitted one")
    parser.add_argument("--ensemble", type=int, default=TrainConfig().ensemble,
                        help="standardise study: members per model, their probabilities averaged (seeds seed, seed+1, "
                             "...: give --seeds 0 3 6 for disjoint members)")
    parser.add_argument("--name", default="", help="standardise study: a suffix for the result's file name")
    args = parser.parse_args()
    if args.standardise_study:
        standardise_study(args)
        return
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


def standardise_study(args: argparse.Namespace) -> None:
    """Issue 17 item 1: the same fine-tune with and without per-image standardisation, same split, same
    seeds, one run; top-class decisions on the held-out sessions (good rejected = 1 - Free recall)."""
    ws = fresh_workspace("magnetic_tile", magnetic_tile_items(), PLAN,
                         masks=require("magnetic_tile") if args.pose == "zoom" else None)
    rows = []
    good_tiles = sorted((require("magnetic_tile") / "Free" / "images").glob("exp5_*.jpg"))[:50]
    test_jpegs = [p.read_bytes() for p in good_tiles]  # edge latency, full path
    # Named either way, so the command keeps its meaning whatever the default path is.
    path = {"precision": "auto", "channels_last": True} if args.fast_path else \
        {"precision": "float32", "channels_last": False}
    for seed in args.seeds:
        for standardise in (t == "std" for t in args.treatments):
            config = TrainConfig(mode=args.mode, input_size=args.size, epochs=args.epochs, head_refit=args.head_refit,
                                 freeze_blocks=args.freeze_blocks, seed=seed, standardise=standardise, pose=args.pose,
                                 probe_views=args.probe_views, probe_c=args.probe_c, head_blend=args.head_blend,
                                 ensemble=args.ensemble, **path)
            label = (f"mt-{args.mode}{'-refit' if args.head_refit else ''}-{'std' if standardise else 'plain'}"
                     f"-{args.size}{'-fast' if args.fast_path else ''}-{args.pose}-s{seed}"
                     f"{f'-e{args.ensemble}' if args.ensemble > 1 else ''}")
            run = train_and_score(ws, config, label, int8=False)
            run["edge_full_path_ms"] = measure(Path(run["models"]["fp32"]), test_jpegs, 100)["full_path_ms"]
            scores = run["test"]["fp32"]
            per_class = {k: v["recall"] for k, v in scores["per_class"].items()}
            rows.append({"seed": seed, "standardise": standardise, "macro_recall": scores["macro_recall"],
                         "good_rejected": 1 - per_class["Free"],
                         "min_defect_recall": min(v for k, v in per_class.items() if k != "Free"),
                         "per_class_recall": per_class, "not_passed": _not_passed(scores),
                         "misses": _misses(run), "run": run})
            print(f"seed {seed} standardise={standardise}: macro recall {scores['macro_recall']:.4f}, good rejected "
                  f"{1 - per_class['Free']:.3f}, min defect recall {rows[-1]['min_defect_recall']:.3f}, not passed "
                  + " ".join(f"{k}={v:.3f}" for k, v in rows[-1]["not_passed"].items()), flush=True)
    ws.close()
    suffix = (("" if args.mode == "finetune" else f"_{args.mode}") + ("_refit" if args.head_refit else "")
              + (f"_{args.name}" if args.name else ""))
    write_result("magnetic_tile_standardise" + suffix, {
        "dataset": "magnetic_tile", "citation": CITATIONS["magnetic_tile"],
        "split": "test = sessions exp5+exp6; train/val from exp0..exp4 (val 15% per class, seed 0)",
        "goal": {"every_defect_recall": ">= 0.95", "good_rejected": "<= 0.02 (issue 17, at the chosen operating "
                                                                     "point; here top-class decisions)"},
        "size": args.size, "fast_path": args.fast_path, "pose": args.pose, "probe_views": args.probe_views,
        "probe_c": args.probe_c, "head_blend": args.head_blend, "ensemble": args.ensemble,
        "rows": rows})


def _not_passed(scores: dict[str, Any]) -> dict[str, float]:
    """Each defect class's share of test images not passed: decided as any defect class, the right one or not.
    A Break called Crack is still taken off the line; top-class recall counts it as a miss, the line does not."""
    names, confusion = scores["class_names"], scores["confusion_matrix"]
    good = names.index("Free")
    return {name: round(1 - confusion[i][good] / sum(confusion[i]), 4)
            for i, name in enumerate(names) if i != good and sum(confusion[i])}


def _misses(run: dict[str, Any]) -> list[dict[str, Any]]:
    """The test images the run got wrong (image hash, true and predicted class, the prediction's score), so
    runs can be compared image by image: is it the same few tiles every time?"""
    report = json.loads((Path(run["models"]["fp32"]).parent / "eval-fp32" / "metrics.json").read_text())
    return [{"sha256": o["sha256"][:12], "true": o["true"], "predicted": o["predicted"], "score": o["score"],
             "session": o["meta"].get("session")} for o in report["outcomes"] if not o["correct"]]


if __name__ == "__main__":
    main()
