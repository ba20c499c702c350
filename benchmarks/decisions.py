"""Three-way decisions with an escape guarantee: escape, false-reject and automation rates on the
frozen test set for several alphas, from review bands fitted on the calibration split.

    python -m benchmarks.calibration      # first: trains the models, with calibration splits
    python -m benchmarks.decisions [--confidence 0.9]

Probabilities come from the exported model files through the edge runtime (temperature applied).
Both guarantees of ``inspectloop.decisions.conformal`` are measured: PAC (with ``confidence`` over
the draw of the calibration split, the escape rate is at most alpha) and marginal (at most alpha on
average over calibration draws). Decisions apply the per-class operating points (fitted on the
calibration split, target recall by class severity) as the runtime does; ``test_band_only`` shows
the band without them. Goals at alpha = 1%: NEU >= 99%
automation, magnetic tile >= 80%.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import CACHE, CITATIONS, previous_datasets, write_result
from inspectloop.datasets import load_version
from inspectloop.decisions.conformal import (
    GUARANTEES, decision_rates, fit_review_band, min_calibration_size,
)
from inspectloop.decisions.operating_points import operating_point, target_recalls
from inspectloop.decisions.line_rate import line_rate_view
from inspectloop.runtime import EdgeModel, threshold_array
from inspectloop.workspace import open_workspace

ALPHAS = (0.005, 0.01, 0.02)
LINE = {"parts_per_hour": 3600.0, "defect_rate": 0.02}  # an illustrative line for the per-hour view


def probabilities(ws: Any, model: EdgeModel, split: str) -> tuple[np.ndarray, np.ndarray]:
    names = list(model.metadata.class_names)
    items = load_version(ws).split(split)
    probs = [[model.predict(ws.blobs.get(i.sha256)).scores[c] for c in names] for i in items]
    return np.array(probs), np.array([names.index(i.label) for i in items])


def evaluate(name: str, confidence: float) -> dict[str, Any]:
    root = CACHE / f"calibration-{name}"
    if not root.exists():
        raise SystemExit(f"{root} not found: run python -m benchmarks.calibration first")
    ws = open_workspace(root)
    run = [r for r in ws.db.runs.list() if r.status == "finished"][-1]
    model = EdgeModel(Path(run.artifacts) / "model.onnx")
    meta = model.metadata
    names = list(meta.class_names)
    good = names.index(meta.good_class) if meta.good_class else None
    severities = {c.name: c.severity.value for c in ws.db.labels.classes().values()}
    calib, calib_y = probabilities(ws, model, "calib")
    test, test_y = probabilities(ws, model, "test")
    ws.close()
    targets = target_recalls(names, severities, meta.good_class)
    points = {n: operating_point(calib, calib_y, names.index(n), t) for n, t in targets.items()
              if (calib_y == names.index(n)).any()}
    thresholds = threshold_array(names, {n: p.threshold for n, p in points.items()})
    results: dict[str, Any] = {}
    for guarantee in GUARANTEES:
        per_alpha = {}
        for alpha in ALPHAS:
            band = fit_review_band(calib, calib_y, good_index=good, alpha=alpha, confidence=confidence,
                                   guarantee=guarantee)
            rates = decision_rates(test, test_y, band, thresholds)
            band_only = decision_rates(test, test_y, band)
            view = line_rate_view(rates, LINE["parts_per_hour"], LINE["defect_rate"]) if good is not None else None
            per_alpha[str(alpha)] = {"band": band.to_dict(), "test": rates.to_dict(),
                                     "test_band_only": band_only.to_dict(), "line": view.to_dict() if view else None,
                                     "calibration_needed": min_calibration_size(alpha, confidence, guarantee)}
            parts = rates.defective if good is not None else rates.count
            print(f"{name} {guarantee} alpha {alpha:.1%}: certifiable {band.certifiable}, escape "
                  f"{rates.escape_rate:.2%} ({rates.escapes}/{parts}), automation {rates.automation_rate:.1%} "
                  f"(band alone {band_only.automation_rate:.1%}), false rejects {rates.false_reject_rate:.2%}",
                  flush=True)
        results[guarantee] = per_alpha
    return {"citation": CITATIONS[name], "run": run.id, "temperature": meta.temperature,
            "calibration_images": len(calib_y), "test_images": len(test_y),
            "calibration_defects": int(np.sum(calib_y != good)) if good is not None else len(calib_y),
            "operating_points": {n: p.to_dict() for n, p in points.items()}, "guarantees": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--confidence", type=float, default=0.9)
    parser.add_argument("--dataset", choices=["neu_det", "magnetic_tile", "both"], default="both")
    parser.add_argument("--result", default="decisions", help="name of the results file")
    args = parser.parse_args()
    names = ["neu_det", "magnetic_tile"] if args.dataset == "both" else [args.dataset]
    results = previous_datasets(args.result)
    results.update({name: evaluate(name, args.confidence) for name in names})
    write_result(args.result, {"confidence": args.confidence, "line": LINE, "goal": {
        "escape_rate": "<= alpha (or within its sampling error)",
        "automation_at_alpha_1pct": {"neu_det": ">= 0.99", "magnetic_tile": ">= 0.80"}}, "datasets": results})


if __name__ == "__main__":
    main()
