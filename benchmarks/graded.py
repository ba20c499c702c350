"""Graded defects: ordinal training against plain classification on a synthetic graded line.

The line (:mod:`inspectloop.synthetic_graded`) has good parts and scratches graded minor < major <
critical by their length x contrast. Both variants train through the product's own path (ingest with
the grade order and soft labels, dataset version, ``train``, export); the shipped ONNX file then scores
the validation and test splits through the edge runtime. Compared at the same false-reject rate:

- recall of "grade >= major" (the parts a plant must stop), with the threshold on P(major) + P(critical)
  chosen on the validation split so that 5% of the parts below major (good and minor, both sellable)
  are rejected, then measured on the test split; and at exactly the same test false-reject rate;
- wrong grades more than one step apart on the test split (minor called critical, critical called good).

Small enough for about ten minutes of two shared CPU cores: 96 px images, probe mode (a linear head on the
frozen trunk's features: the ordinal targets act on that head alone); ``--mode finetune --epochs 6`` trains
the trunk's later blocks too (about 2 minutes an epoch on two busy cores).

    python -m benchmarks.graded [--per-class 150] [--mode probe] [--epochs 6 (fine-tuning)] [--seeds 0 1 2] [--name N]

A fine-tune ends with the probe's head refitted on the tuned trunk (the default since 2026-12-01), so the
ordinal variant's head is the ordinal probe's on the tuned features.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import write_result
from inspectloop.datasets import SplitPlan, create_version, load_version
from inspectloop.domain import ClassDefinition
from inspectloop.grades import set_grade_order
from inspectloop.ingest import ingest, scan_manifest_source
from inspectloop.labels import define_class
from inspectloop.runtime import EdgeModel
from inspectloop.synthetic_graded import CLASSES, GRADES, SCALE, SEVERITY, generate_graded_line
from inspectloop.train.config import TrainConfig
from inspectloop.train.run import train
from inspectloop.workspace import Workspace, init_workspace

FALSE_REJECT_TARGET = 0.05
REJECT_FROM = "major"  # the grade from which a part is stopped


def build_workspace(root: Path, per_class: int, size: int, seed: int) -> Workspace:
    """A workspace holding the graded line: classes, grade order, soft labels, one dataset version."""
    line = generate_graded_line(root / "line", per_class=per_class, size=size, seed=seed)
    ws = init_workspace(root / "ws")
    for name in CLASSES:
        define_class(ws, ClassDefinition(name=name, severity=SEVERITY[name], is_good=name == "good"))
    set_grade_order(ws, SCALE, GRADES)
    scan = scan_manifest_source(line.manifest)
    ingest(ws, scan.items, source=str(line.manifest), kind="manifest", refused=scan.refused)
    create_version(ws, SplitPlan(val_fraction=0.2, test_fraction=0.25, calib_fraction=0.1, seed=seed))
    return ws


def score_split(ws: Workspace, model_path: Path, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The shipped model's class probabilities on a split (edge runtime), the labels, the class names."""
    model = EdgeModel(model_path)
    names = list(model.metadata.class_names)
    items = load_version(ws).split(split)
    scores = np.array([[model.predict(ws.blobs.get(i.sha256)).scores[n] for n in names] for i in items])
    return scores, np.array([names.index(i.label) for i in items]), names


def measure(val: tuple[np.ndarray, np.ndarray, list[str]], test: tuple[np.ndarray, np.ndarray, list[str]]
            ) -> dict[str, Any]:
    """Recall of grade >= major at the same false-reject rate, and wrong grades by steps, on the test split."""
    names = val[2]
    grade = {"good": 0, **{g: n for n, g in enumerate(GRADES, start=1)}}
    stop = [names.index(g) for g in GRADES[GRADES.index(REJECT_FROM):]]
    rollup = {k: s[:, stop].sum(1) for k, s in (("val", val[0]), ("test", test[0]))}
    must_stop = {k: np.isin(y, stop) for k, y in (("val", val[1]), ("test", test[1]))}
    threshold = float(np.quantile(rollup["val"][~must_stop["val"]], 1 - FALSE_REJECT_TARGET))
    flagged = rollup["test"] > threshold
    same_test = float(np.quantile(rollup["test"][~must_stop["test"]], 1 - FALSE_REJECT_TARGET))
    levels = np.array([grade[n] for n in names])
    steps = np.abs(levels[test[0].argmax(1)] - levels[test[1]])
    return {
        "threshold_from_val": round(threshold, 4),
        "test_false_reject_rate": round(float(flagged[~must_stop["test"]].mean()), 4),
        "test_recall_grade_ge_major": round(float(flagged[must_stop["test"]].mean()), 4),
        "test_recall_grade_ge_major_at_same_test_frr": round(float((rollup["test"] > same_test)[must_stop["test"]]
                                                                   .mean()), 4),
        "wrong_grades_one_step": int((steps == 1).sum()),
        "wrong_grades_more_than_one_step": int((steps > 1).sum()),
        "test_images": int(len(test[1])), "test_grade_ge_major": int(must_stop["test"].sum()),
    }


def run_variant(ws: Workspace, ordinal: str, mode: str, epochs: int, size: int, seed: int) -> dict[str, Any]:
    """One training of the line: plain (ordinal off, soft labels off: one-hot cross-entropy) or ordinal."""
    config = TrainConfig(mode=mode, ordinal=ordinal, soft_labels=ordinal == "on", epochs=epochs, input_size=size,
                         augment="none" if mode == "probe" else "production", seed=seed, novelty_rate=0.0)
    started = time.perf_counter()
    result = train(ws, config)
    seconds = time.perf_counter() - started
    figures = measure(score_split(ws, result.model_path, "val"), score_split(ws, result.model_path, "test"))
    graded = result.metrics["test"].get("graded", {})
    aurocs = {c["name"]: c["auroc"] for c in graded.get("curves", [])}
    return {"ordinal": ordinal, **figures, "test_macro_recall": result.metrics["test"]["macro_recall"],
            "auroc": aurocs, "run_seconds": round(seconds, 1), "report": str(result.report)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=150)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--mode", choices=("probe", "finetune"), default="probe")
    parser.add_argument("--epochs", type=int, default=6, help="fine-tuning epochs (a probe fits to convergence)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--name", default=None, help="result file (default: graded, or graded_finetune)")
    args = parser.parse_args()
    started = time.perf_counter()
    runs = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory(prefix="graded-") as tmp:
            ws = build_workspace(Path(tmp), args.per_class, args.size, seed)
            try:
                for ordinal in ("off", "on"):
                    runs.append({"seed": seed, **run_variant(ws, ordinal, args.mode, args.epochs, args.size, seed)})
                    print({k: v for k, v in runs[-1].items() if k not in ("auroc", "report")}, flush=True)
            finally:
                ws.close()
    summary = {variant: {key: round(float(np.mean([r[key] for r in runs if r["ordinal"] == variant])), 4)
                         for key in ("test_recall_grade_ge_major", "test_recall_grade_ge_major_at_same_test_frr",
                                     "test_false_reject_rate", "wrong_grades_more_than_one_step",
                                     "wrong_grades_one_step", "test_macro_recall")}
               for variant in ("off", "on")}
    write_result(args.name or ("graded" if args.mode == "probe" else "graded_finetune"), {
        "setup": {"per_class": args.per_class, "classes": list(CLASSES), "size": args.size, "epochs": args.epochs,
                  "mode": args.mode, "seeds": args.seeds, "false_reject_target": FALSE_REJECT_TARGET,
                  "reject_from": REJECT_FROM, "split": "val 0.2 / test 0.25 / calib 0.1 by part",
                  "threshold": "on P(major)+P(critical), chosen on val for the target false-reject rate of parts "
                               "below major (good, minor); recall then measured on test"},
        "summary": {"plain (ordinal=off)": summary["off"], "ordinal (ordinal=on)": summary["on"]},
        "runs": runs, "total_seconds": round(time.perf_counter() - started, 1)})


if __name__ == "__main__":
    main()
