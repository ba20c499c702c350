"""Three-way decisions with an escape guarantee: escape, false-reject and automation rates on the
frozen test set for several alphas, from review bands fitted on the calibration split.

    python -m benchmarks.calibration      # first: trains the models, with calibration splits
    python -m benchmarks.decisions [--confidence 0.9]

Probabilities come from the exported model files through the edge runtime (temperature applied).
The band is the PAC one of ``inspectloop.decisions.conformal``: with ``confidence`` over the draw
of the calibration split, the escape rate is at most alpha. Goals at alpha = 1%: NEU >= 99%
automation, magnetic tile >= 80%.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import CACHE, CITATIONS, write_result
from inspectloop.datasets import load_version
from inspectloop.decisions.conformal import decision_rates, fit_review_band, min_calibration_size
from inspectloop.decisions.line_rate import line_rate_view
from inspectloop.runtime import EdgeModel
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
    run = [r for r in ws.db.runs() if r["status"] == "finished"][-1]
    model = EdgeModel(Path(run["artifacts"]) / "model.onnx")
    meta = model.metadata
    good = meta.class_names.index(meta.good_class) if meta.good_class else None
    calib, calib_y = probabilities(ws, model, "calib")
    test, test_y = probabilities(ws, model, "test")
    ws.close()
    per_alpha = {}
    for alpha in ALPHAS:
        band = fit_review_band(calib, calib_y, good_index=good, alpha=alpha, confidence=confidence)
        rates = decision_rates(test, test_y, band)
        view = line_rate_view(rates, LINE["parts_per_hour"], LINE["defect_rate"]) if good is not None else None
        per_alpha[str(alpha)] = {"band": band.to_dict(), "test": rates.to_dict(),
                                 "line": view.to_dict() if view else None,
                                 "calibration_needed": min_calibration_size(alpha, confidence)}
        parts = rates.defective if good is not None else rates.count
        print(f"{name} alpha {alpha:.1%}: certifiable {band.certifiable}, escape {rates.escape_rate:.2%} "
              f"({rates.escapes}/{parts}), automation {rates.automation_rate:.1%}, "
              f"false rejects {rates.false_reject_rate:.2%}", flush=True)
    return {"citation": CITATIONS[name], "run": run["id"], "temperature": meta.temperature,
            "calibration_images": len(calib_y), "test_images": len(test_y),
            "calibration_defects": int(np.sum(calib_y != good)) if good is not None else None, "alphas": per_alpha}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--confidence", type=float, default=0.9)
    args = parser.parse_args()
    results = {name: evaluate(name, args.confidence) for name in ("neu_det", "magnetic_tile")}
    write_result("decisions", {"confidence": args.confidence, "line": LINE, "goal": {
        "escape_rate": "<= alpha (or within its sampling error)",
        "automation_at_alpha_1pct": {"neu_det": ">= 0.99", "magnetic_tile": ">= 0.80"}}, "datasets": results})


if __name__ == "__main__":
    main()
