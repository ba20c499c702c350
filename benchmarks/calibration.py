"""Calibrated confidence: expected calibration error (ECE) on the frozen test set, before and after
temperature scaling, for a split run and a cross-fitted run on the same dataset version.

    python -m benchmarks.calibration [--dataset neu_det|magnetic_tile|both] [--band-fit split crossfit] [--reuse]

Splits as in the NEU and magnetic-tile benchmarks, with 20% of the non-test images per class set
aside as the calibration split. The *split* run trains on the rest and fits its temperature (and
review band) on that split; the *cross-fitted* run deals training and calibration images into folds
(NEU: 5 folds of single images; magnetic tile: 4 folds by capture session, so every out-of-fold score
comes from a model that never saw that session, as the test sessions exp5/exp6 are new to the shipped
model), fits the temperature on the out-of-fold scores and ships a refit on all of them. Both runs
stay in ``benchmarks/cache/calibration-<dataset>`` for ``python -m benchmarks.decisions``.
``--reuse`` keeps that workspace: finished runs with the same config are reused, failed ones resumed.
Magnetic tile costs 1 + 5 fine-tunes (about an hour on an idle 2-core machine); its fine-tune keeps the head
it was first measured with (``head_refit=false``). ``magnetic_tile_refit`` is the same split and band fits with
issue 17's fine-tuned recipe: per-image standardisation and the probe's head refitted on the tuned trunk (the
default head since 2026-12-01). ``magnetic_tile_probe`` is the standardised probe alone (minutes).
Goal: ECE after calibration <= 2% on both datasets.
"""

from __future__ import annotations

import argparse
from typing import Any

from benchmarks.common import CACHE, CITATIONS, magnetic_tile_items, neu_items, previous_datasets, write_result
from benchmarks.training_bench import fresh_workspace, progress_printer
from inspectloop.datasets import SplitPlan
from inspectloop.train.config import TrainConfig
from inspectloop.train.run import train
from inspectloop.workspace import Workspace, open_workspace

NEU = TrainConfig(mode="probe", input_size=224, augment="none")
MT = TrainConfig(mode="finetune", input_size=192, epochs=12, freeze_blocks=2, head_refit=False)  # as first measured
MT_REFIT = MT.model_copy(update={"standardise": True, "head_refit": True})  # issue 17's fine-tuned recipe
MT_PROBE = TrainConfig(mode="probe", input_size=192, standardise=True)  # issue 17: the recipe that held across sessions
MT_PLAN = SplitPlan(group_by="none", val_fraction=0.15, calib_fraction=0.2, test_field="session",
                    test_values=("exp5", "exp6"))
SETUPS = {
    "neu_det": (neu_items, SplitPlan(group_by="none", val_fraction=0.15, test_fraction=0.15, calib_fraction=0.2),
                {"split": NEU, "crossfit": NEU.model_copy(update={"band_fit": "crossfit", "folds": 5})}),
    "magnetic_tile": (magnetic_tile_items, MT_PLAN,
                      {"split": MT, "crossfit": MT.model_copy(update={"band_fit": "crossfit", "folds": 4,
                                                                      "fold_by": "session"})}),
    "magnetic_tile_refit": (magnetic_tile_items, MT_PLAN,
                            {"split": MT_REFIT, "crossfit": MT_REFIT.model_copy(update={
                                "band_fit": "crossfit", "folds": 4, "fold_by": "session"})}),
    "magnetic_tile_probe": (magnetic_tile_items, MT_PLAN,
                            {"split": MT_PROBE, "crossfit": MT_PROBE.model_copy(update={
                                "band_fit": "crossfit", "folds": 4, "fold_by": "session"})}),
}
DATASET = {"magnetic_tile_probe": "magnetic_tile", "magnetic_tile_refit": "magnetic_tile"}  # a setup's dataset, where its name is not one


def workspace_for(name: str, reuse: bool) -> Workspace:
    """The dataset's benchmark workspace: kept with ``reuse`` when it exists, else built afresh."""
    root = CACHE / f"calibration-{name}"
    if reuse and root.exists():
        return open_workspace(root)
    items, plan, _ = SETUPS[name]
    return fresh_workspace(f"calibration-{name}", items(), plan)


def run_once(ws: Workspace, config: TrainConfig, label: str) -> tuple[str, dict[str, Any]]:
    """Train with ``config`` (or reuse a finished run with that config, or resume a failed one): id and metrics."""
    # A stored config is read through today's TrainConfig, so a field added since (with its default) still matches.
    same = [r for r in ws.db.runs.list() if TrainConfig.model_validate(r.config).model_dump() == config.model_dump()]
    finished = [r for r in same if r.status == "finished"]
    if finished:
        print(f"  [{label}] reusing {finished[-1].id}", flush=True)
        return finished[-1].id, finished[-1].metrics or {}
    result = train(ws, config, resume=same[-1].id if same else None, progress=progress_printer(label))
    return result.run_id, result.metrics


def measure(name: str, band_fits: list[str], reuse: bool) -> dict[str, Any]:
    ws = workspace_for(name, reuse)
    results: dict[str, Any] = {}
    for band_fit in band_fits:
        run_id, metrics = run_once(ws, SETUPS[name][2][band_fit], f"{name}/{band_fit}")
        results[band_fit] = {**metrics["calibration"], "test_macro_recall": metrics["test"]["macro_recall"],
                             "run_id": run_id, "train_seconds": metrics["train_seconds"],
                             "crossfit": metrics.get("crossfit")}
        c = results[band_fit]
        print(f"{name} {band_fit}: temperature {c['temperature']:.3f} (fitted {c['fitted_temperature']:.3f} on "
              f"{c['calibration_images']} {c['source']}), test ECE {c['test_ece_before']:.2%} -> "
              f"{c['test_ece_after']:.2%}, test macro recall {c['test_macro_recall']:.4f}", flush=True)
    ws.close()
    return {"citation": CITATIONS[DATASET.get(name, name)], "recipe": SETUPS[name][2]["split"].mode, **results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", choices=[*SETUPS, "both"], default="both",
                        help="both: neu_det and magnetic_tile; magnetic_tile_probe: the standardised probe recipe")
    parser.add_argument("--band-fit", nargs="+", choices=["split", "crossfit"], default=["split", "crossfit"])
    parser.add_argument("--reuse", action="store_true", help="keep the workspace; reuse or resume its runs")
    args = parser.parse_args()
    names = ["neu_det", "magnetic_tile"] if args.dataset == "both" else [args.dataset]
    results = previous_datasets("calibration")
    for name in names:
        kept = {k: v for k, v in results.get(name, {}).items() if k in ("split", "crossfit")}  # a rerun of one side
        results[name] = {**kept, **measure(name, args.band_fit, args.reuse)}
    write_result("calibration", {"goal": {"test_ece_after": "<= 0.02"}, "datasets": results})


if __name__ == "__main__":
    main()
