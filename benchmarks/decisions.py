"""Three-way decisions with an escape guarantee: the split band and the cross-fitted band side by side.

    python -m benchmarks.calibration      # first: trains a split run and a cross-fitted run per dataset
    python -m benchmarks.decisions [--confidence 0.9]

On the frozen test set (NEU: 270 images; magnetic tile: sessions exp5+exp6, 450), for alpha 0.5 / 1 / 2%:

- **split**: the split run's model; band fitted on its 20% calibration split, PAC (with ``confidence``
  over the draw of that split) and marginal (on average over calibration draws).
- **crossfit**: the cross-fitted run's shipped model (refit on training + calibration images); band
  fitted on the out-of-fold scores of all of them (guarantee ``crossfit``: proven, 2 alpha + slack at
  worst, for the fold models together; approximate for the refit).
- **crossfit aggregate**: the fold models together (:func:`inspectloop.decisions.crossfit.aggregate_decide`),
  the procedure the cross-fitted bound covers; band only (it does not ship: K models per part).

Shipped models are scored through the edge runtime (temperature applied); fold models with PyTorch
from their saved weights. Decisions apply the per-class operating points (fitted on the same held-out
scores as the band, target recall by class severity) as the runtime does; ``test_band_only`` shows the
band without them. Goals at alpha = 1%: NEU >= 99% automation; magnetic tile >= 80% with test
escapes within alpha (within their 95% Clopper-Pearson interval).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.calibration import DATASET, SETUPS
from benchmarks.common import CACHE, CITATIONS, previous_datasets, write_result
from inspectloop.datasets import DatasetVersion, load_version
from inspectloop.decisions.calibration import softmax
from inspectloop.decisions.conformal import (
    DecisionRates, ReviewBand, decision_rates, fit_review_band, min_calibration_size, rates_of_decisions,
)
from inspectloop.decisions.crossfit import OutOfFold, aggregate_decide
from inspectloop.decisions.line_rate import line_rate_view
from inspectloop.decisions.operating_points import operating_point, target_recalls
from inspectloop.runtime import EdgeModel, threshold_array
from inspectloop.workspace import Workspace, open_workspace

ALPHAS = (0.005, 0.01, 0.02)
LINE = {"parts_per_hour": 3600.0, "defect_rate": 0.02}  # an illustrative line for the per-hour view


def probabilities(ws: Workspace, version: DatasetVersion, model: EdgeModel, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The shipped model's calibrated probabilities on a split, through the edge runtime, and the labels."""
    names = list(model.metadata.class_names)
    items = version.split(split)
    probs = [[model.predict(ws.blobs.get(i.sha256)).scores[c] for c in names] for i in items]
    return np.array(probs), np.array([names.index(i.label) for i in items])


def fold_probabilities(ws: Workspace, version: DatasetVersion, run: dict[str, Any], model: EdgeModel) -> np.ndarray:
    """Every fold model's probabilities on the test set (folds x images x classes), at the shipped temperature."""
    from inspectloop.models.backbones import backbone_spec, load_backbone
    from inspectloop.models.classifier import Classifier
    from inspectloop.runtime.preprocess import Preprocess
    from inspectloop.train.data import load_image_set
    from inspectloop.train.loop import predict_logits
    import torch

    meta = model.metadata
    preprocess = Preprocess(meta.input_size, meta.mean, meta.std)
    test = load_image_set(version.split("test"), list(meta.class_names), ws.blobs.get, preprocess,
                          draft=meta.jpeg_draft, mode=meta.colour_mode)
    backbone, run_dir = run.config["backbone"], Path(run.artifacts)
    out = []
    for k in range(int(run.config["folds"])):
        net = Classifier(load_backbone(backbone, input_size=meta.input_size, pretrained=False),
                         backbone_spec(backbone).feature_dim, len(meta.class_names))
        net.load_state_dict(torch.load(run_dir / f"fold-{k}.pt", map_location="cpu"))
        out.append(softmax(predict_logits(net, test, preprocess), meta.temperature))
    return np.stack(out)


def operating_points(probs: np.ndarray, labels: np.ndarray, names: list[str], good: str | None,
                     severities: dict[str, str]) -> tuple[dict[str, Any], np.ndarray | None]:
    targets = target_recalls(names, severities, good)
    points = {n: operating_point(probs, labels, names.index(n), t) for n, t in targets.items()
              if (labels == names.index(n)).any()}
    return points, threshold_array(names, {n: p.threshold for n, p in points.items()})


def row(label: str, band: ReviewBand, rates: DecisionRates, band_only: DecisionRates,
        aggregate: DecisionRates | None = None) -> dict[str, Any]:
    """One line of the side-by-side table (and the printout)."""
    parts = rates.defective
    line = {"method": label, "alpha": band.alpha, "certifiable": band.certifiable,
            "calibration_defects": band.calibration_defects, "allowed_escapes": band.allowed_escapes,
            "automation": rates.automation_rate, "escapes": rates.escapes, "defective": parts,
            "escape_ci": list(rates.escape_ci), "escape_verdict": rates.escape_verdict,
            "false_rejects": rates.false_rejects, "good": rates.good,
            "band_only_automation": band_only.automation_rate, "band_only_escapes": band_only.escapes}
    if aggregate is not None:
        line |= {"aggregate_automation": aggregate.automation_rate, "aggregate_escapes": aggregate.escapes,
                 "aggregate_false_rejects": aggregate.false_rejects}
    print(f"  {label:<16} alpha {band.alpha:.1%}: automation {rates.automation_rate:6.1%} (band alone "
          f"{band_only.automation_rate:6.1%}), escapes {rates.escapes}/{parts} CI [{rates.escape_ci[0]:.2%}, "
          f"{rates.escape_ci[1]:.2%}] {rates.escape_verdict}, false rejects {rates.false_rejects}/{rates.good}"
          + (f"; fold models together: automation {aggregate.automation_rate:.1%}, escapes {aggregate.escapes}"
             if aggregate is not None else ""), flush=True)
    return line


def per_alpha(label: str, band: ReviewBand, test: np.ndarray, test_y: np.ndarray, thresholds: np.ndarray | None,
              confidence: float, table: list[dict[str, Any]], aggregate: DecisionRates | None = None) -> dict[str, Any]:
    """What one band does on the test set (with and without the operating points); appends its table row."""
    rates, band_only = decision_rates(test, test_y, band, thresholds), decision_rates(test, test_y, band)
    table.append(row(label, band, rates, band_only, aggregate))
    view = line_rate_view(rates, LINE["parts_per_hour"], LINE["defect_rate"]) if band.good_index is not None else None
    return {"band": band.to_dict(), "test": rates.to_dict(), "test_band_only": band_only.to_dict(),
            "test_fold_models_together": aggregate.to_dict() if aggregate else None,
            "line": view.to_dict() if view else None,
            "calibration_needed": min_calibration_size(band.alpha, confidence, band.guarantee_kind)}


def split_side(ws: Workspace, version: DatasetVersion, run: dict[str, Any], confidence: float,
               severities: dict[str, str], table: list[dict[str, Any]]) -> dict[str, Any]:
    model = EdgeModel(Path(run.artifacts) / "model.onnx")
    meta = model.metadata
    names, good = list(meta.class_names), meta.good_class
    g = names.index(good) if good else None
    calib, calib_y = probabilities(ws, version, model, "calib")
    test, test_y = probabilities(ws, version, model, "test")
    points, thresholds = operating_points(calib, calib_y, names, good, severities)
    results: dict[str, Any] = {}
    for guarantee in ("pac", "marginal"):
        results[guarantee] = {}
        for alpha in ALPHAS:
            band = fit_review_band(calib, calib_y, good_index=g, alpha=alpha, confidence=confidence, guarantee=guarantee)
            results[guarantee][str(alpha)] = per_alpha(f"split {guarantee}", band, test, test_y, thresholds,
                                                       confidence, table)
    return {"run": run.id, "temperature": meta.temperature, "calibration_images": len(calib_y),
            "calibration_defects": int(np.sum(calib_y != g)) if g is not None else len(calib_y),
            "operating_points": {n: p.to_dict() for n, p in points.items()}, "guarantees": results}


def crossfit_side(ws: Workspace, version: DatasetVersion, run: dict[str, Any], confidence: float,
                  severities: dict[str, str], table: list[dict[str, Any]]) -> dict[str, Any]:
    run_dir = Path(run.artifacts)
    model = EdgeModel(run_dir / "model.onnx")
    meta = model.metadata
    names, good = list(meta.class_names), meta.good_class
    g = names.index(good) if good else None
    with np.load(run_dir / "out-of-fold.npz") as saved:
        folds = int(run.config["folds"])
        oof = OutOfFold(softmax(saved["logits"], meta.temperature), saved["labels"], saved["folds"], folds)
    test, test_y = probabilities(ws, version, model, "test")
    fold_test = fold_probabilities(ws, version, run, model)
    points, thresholds = operating_points(oof.probs, oof.labels, names, good, severities)
    results: dict[str, Any] = {}
    for alpha in ALPHAS:
        band = fit_review_band(oof.probs, oof.labels, good_index=g, alpha=alpha, confidence=confidence,
                               guarantee="crossfit", folds=folds)
        together = rates_of_decisions(aggregate_decide(fold_test, oof, band), test_y, num_classes=len(names),
                                      good_index=g, alpha=alpha)
        results[str(alpha)] = per_alpha("crossfit", band, test, test_y, thresholds, confidence, table, together)
    return {"run": run.id, "temperature": meta.temperature, "folds": folds,
            "fold_by": run.config.get("fold_by"), "out_of_fold_images": int(oof.labels.size),
            "out_of_fold_defects": int(np.sum(oof.labels != g)) if g is not None else int(oof.labels.size),
            "stability_on_val": ((run.metrics or {}).get("crossfit") or {}).get("stability_on_val"),
            "operating_points": {n: p.to_dict() for n, p in points.items()}, "guarantees": {"crossfit": results}}


def evaluate(name: str, confidence: float) -> dict[str, Any]:
    root = CACHE / f"calibration-{name}"
    if not root.exists():
        raise SystemExit(f"{root} not found: run python -m benchmarks.calibration first")
    ws = open_workspace(root)
    version = load_version(ws)
    finished = [r for r in ws.db.runs.list() if r.status == "finished"]
    runs = {fit: [r for r in finished if r.config.get("band_fit", "split") == fit] for fit in ("split", "crossfit")}
    severities = {c.name: c.severity.value for c in ws.db.labels.classes().values()}
    table: list[dict[str, Any]] = []
    print(name, flush=True)
    result: dict[str, Any] = {"citation": CITATIONS[DATASET.get(name, name)], "test_images": len(version.split("test"))}
    if runs["split"]:
        result["split"] = split_side(ws, version, runs["split"][-1], confidence, severities, table)
    if runs["crossfit"]:
        result["crossfit"] = crossfit_side(ws, version, runs["crossfit"][-1], confidence, severities, table)
    ws.close()
    return {**result, "side_by_side": table}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--confidence", type=float, default=0.9)
    parser.add_argument("--dataset", choices=[*SETUPS, "both"], default="both")
    parser.add_argument("--result", default="decisions", help="name of the results file")
    args = parser.parse_args()
    names = ["neu_det", "magnetic_tile"] if args.dataset == "both" else [args.dataset]
    results = previous_datasets(args.result)
    results.update({name: evaluate(name, args.confidence) for name in names})
    write_result(args.result, {"confidence": args.confidence, "line": LINE, "goal": {
        "escape_rate": "<= alpha (within the 95% Clopper-Pearson interval of the test escapes)",
        "automation_at_alpha_1pct": {"neu_det": ">= 0.99", "magnetic_tile": ">= 0.80"}}, "datasets": results})


if __name__ == "__main__":
    main()
