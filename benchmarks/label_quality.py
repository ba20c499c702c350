"""Label-error finding on seeded label noise: inspectloop's confident learning next to cleanlab's.

    python -m benchmarks.label_quality [--datasets neu_det magnetic_tile] [--seeds 10] [--fixed-split]

For NEU-DET and magnetic tile: frozen EfficientNet-Lite0 features of every image (cached under
benchmarks/cache), a stratified 80% training set (drawn afresh for every seed, so the retraining figures average
over test sets too; ``--fixed-split`` keeps split 0 for every seed, the earlier protocol), and label noise
seeded into it at 5% and 10%, uniform
(any other class) and class-conditional (each class flips only to its look-alike partner, e.g. Crack <->
Break). Out-of-fold probabilities (5-fold logistic regression) are computed once per setting; inspectloop's
``find_label_issues`` and cleanlab's ``find_label_issues`` (in its own venv: setup with
``bash benchmarks/peers/setup_cleanlab.sh``; its defaults, and ``filter_by="both"``, the filter inspectloop
uses) read the same probabilities. Precision / recall / F1 of the
flagged examples against the flipped ones, mean over seeds. "Real cases": what the estimate flags among the
datasets' own labels (no noise seeded), top 20 listed for a person to check. "Retraining": test macro recall
on the held-out 20% of a linear probe (the same pipeline) trained on the clean, the noisy and the settled
labels (each flagged image given its true label, as a quality engineer settling it would), and the share of
the loss to noise that settling wins back (the issue's goal: >= 80%; the share of the summed loss over seeds,
with a 95% bootstrap interval over seeds); then after a second look (suspects found again on the settled
labels, with fresh out-of-fold probabilities, and settled too).
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import CACHE, CITATIONS, magnetic_tile_items, neu_items, previous_datasets, write_result
from inspectloop.labelquality.confident import find_label_issues
from inspectloop.labelquality.probabilities import frozen_features, out_of_fold_probabilities

REPO = Path(__file__).resolve().parents[1]
CLEANLAB_PYTHON = REPO / ".venv-cleanlab" / "bin" / "python"
RATES = (0.05, 0.10)
# Class-conditional noise: each class flips only to its look-alike partner.
PAIRS = {
    "neu_det": [("crazing", "rolled-in_scale"), ("inclusion", "scratches"), ("patches", "pitted_surface")],
    "magnetic_tile": [("Crack", "Break"), ("Blowhole", "Fray"), ("Uneven", "Free")],
}
LOADERS = {"neu_det": neu_items, "magnetic_tile": magnetic_tile_items}


def features(name: str) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """(features, labels, class names, paths) of a dataset, from the cache when there."""
    path = CACHE / f"label_quality-{name}-features.npz"
    if path.exists():
        data = np.load(path)
        return data["features"], data["labels"], list(data["classes"]), list(data["paths"])
    items = LOADERS[name]()
    classes = sorted({item.label for item in items})
    labels = np.array([classes.index(item.label) for item in items])
    paths = [str(item.path) for item in items]
    x = frozen_features(paths, lambda p: Path(p).read_bytes(),
                        progress=lambda d, t: print(f"  {name}: {d}/{t} images embedded", end="\r", flush=True))
    print()
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(path, features=x, labels=labels, classes=np.array(classes), paths=np.array(paths))
    return x, labels, classes, paths


def train_indices(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """A stratified 80% of the images: the training set the noise is seeded into."""
    rng = np.random.default_rng(seed)
    keep = [rng.permutation(np.flatnonzero(labels == c))[: int(round(0.8 * np.sum(labels == c)))]
            for c in np.unique(labels)]
    return np.sort(np.concatenate(keep))


def seed_noise(labels: np.ndarray, rate: float, kind: str, partner: dict[int, int], seed: int) -> np.ndarray:
    """Noisy labels: a fraction ``rate`` of the images of each class gets another class (uniform) or its partner."""
    rng = np.random.default_rng(1000 + seed)
    noisy = labels.copy()
    k = int(labels.max()) + 1
    for c in range(k):
        members = np.flatnonzero(labels == c)
        flip = rng.choice(members, size=int(round(rate * len(members))), replace=False)
        for i in flip:
            noisy[i] = partner[c] if kind == "class_conditional" else rng.choice([j for j in range(k) if j != c])
    return noisy


def scores(flagged: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    tp = int(np.sum(flagged & truth))
    precision = tp / max(int(flagged.sum()), 1)
    recall = tp / max(int(truth.sum()), 1)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "flagged": int(flagged.sum()), "flipped": int(truth.sum())}


def run_cleanlab(settings: list[tuple[np.ndarray, np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """cleanlab's flags for each (labels, probabilities), with its defaults and with ``filter_by="both"``, in its
    own venv and process."""
    if not CLEANLAB_PYTHON.exists():
        raise SystemExit(f"{CLEANLAB_PYTHON} missing: bash benchmarks/peers/setup_cleanlab.sh")
    with tempfile.TemporaryDirectory() as tmp:
        source, target = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(source, **{f"labels_{i}": y for i, (y, _) in enumerate(settings)},
                 **{f"probs_{i}": p for i, (_, p) in enumerate(settings)})
        subprocess.run([str(CLEANLAB_PYTHON), str(REPO / "benchmarks" / "peers" / "cleanlab_run.py"),
                        str(source), str(target)], check=True)
        data = np.load(target)
        return [(data[f"issues_{i}"].astype(bool), data[f"issues_both_{i}"].astype(bool)) for i in range(len(settings))]


def macro_recall_after_training(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray) -> float:
    """Test macro recall of a linear probe (the out-of-fold model's pipeline) trained on (x, y)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import recall_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(x, y)
    return float(recall_score(y_test, model.predict(x_test), average="macro"))


def recovery(x: np.ndarray, clean: np.ndarray, noisy: np.ndarray, flagged: np.ndarray, again: np.ndarray,
             x_test: np.ndarray, y_test: np.ndarray) -> dict[str, float]:
    """Test macro recall trained on clean, noisy and settled labels (each flagged image given its true label,
    as a quality engineer settling it would), then settled twice (``again``: what a second look at the settled
    labels flags), and the share of the loss that settling wins back."""
    settled, twice = np.where(flagged, clean, noisy), np.where(flagged | again, clean, noisy)
    clean_r, noisy_r, settled_r, twice_r = (macro_recall_after_training(x, labels, x_test, y_test)
                                            for labels in (clean, noisy, settled, twice))
    lost = clean_r - noisy_r
    return {"clean": clean_r, "noisy": noisy_r, "settled": settled_r, "settled_twice": twice_r, "lost": lost,
            "second_round_flagged": int(again.sum()), "second_round_wrong": int(np.sum(again & (clean != noisy))),
            "recovered_share": (settled_r - noisy_r) / lost if lost > 0 else float("nan")}


def measure(name: str, seeds: int, fixed_split: bool = False) -> dict[str, Any]:
    x_all, labels, classes, paths = features(name)
    partner = {}
    for a, b in PAIRS[name]:
        partner[classes.index(a)], partner[classes.index(b)] = classes.index(b), classes.index(a)
    cases, settings = [], []
    for kind in ("uniform", "class_conditional"):
        for rate in RATES:
            for seed in range(seeds):
                train = train_indices(labels, 0 if fixed_split else seed)
                test = np.setdiff1d(np.arange(len(labels)), train)
                x, y = x_all[train], labels[train]
                noisy = seed_noise(y, rate, kind, partner, seed)
                probs = out_of_fold_probabilities(x, noisy, len(classes), seed=seed)
                flagged = find_label_issues(noisy, probs).mask
                settled = np.where(flagged, y, noisy)  # a second look: suspects on the settled version
                again = find_label_issues(settled, out_of_fold_probabilities(x, settled, len(classes),
                                                                              seed=seed)).mask & ~flagged
                cases.append((kind, rate, seed, noisy != y, flagged,
                              recovery(x, y, noisy, flagged, again, x_all[test], labels[test])))
                settings.append((noisy, probs))
    peer = run_cleanlab(settings)
    results: dict[str, Any] = {}
    for (kind, rate, _seed, truth, ours, retrained), (theirs, theirs_both) in zip(cases, peer, strict=True):
        entry = results.setdefault(f"{kind}@{rate:.2f}", {"inspectloop": [], "cleanlab": [], "cleanlab_both": [],
                                                          "retraining": []})
        entry["inspectloop"].append(scores(ours, truth))
        entry["cleanlab"].append(scores(theirs, truth))
        entry["cleanlab_both"].append(scores(theirs_both, truth))
        entry["retraining"].append(retrained)
    summary = {key: {side: _mean(runs) for side, runs in entry.items()} for key, entry in results.items()}
    for key, entry in summary.items():  # the share of the summed loss, not a mean of ratios of tiny losses
        r, runs = entry["retraining"], results[key]["retraining"]
        for share, settled in (("recovered_share", "settled"), ("recovered_share_twice", "settled_twice")):
            r[share] = round((r[settled] - r["noisy"]) / r["lost"], 4) if r["lost"] > 0 else None
            r[f"{share}_ci95"] = recovery_interval(runs, settled)
    train = train_indices(labels)
    return {"images": int(len(labels)), "train_images": int(len(train)), "classes": classes,
            "pairs": PAIRS[name], "seeds": seeds, "split": "split 0 for every seed" if fixed_split
            else "a fresh stratified 80/20 split per seed", "settings": summary,
            "real_cases": real_cases(x_all[train], labels[train], classes, [paths[i] for i in train])}


def recovery_interval(runs: list[dict[str, float]], settled: str, draws: int = 2000) -> list[float] | None:
    """95% bootstrap interval, over seeds, of the share of the summed loss won back by ``settled``."""
    gain = np.array([r[settled] - r["noisy"] for r in runs])
    lost = np.array([r["lost"] for r in runs])
    picks = np.random.default_rng(0).integers(0, len(runs), (draws, len(runs)))
    total = lost[picks].sum(1)
    shares = gain[picks].sum(1)[total > 0] / total[total > 0]
    return [round(float(q), 4) for q in np.percentile(shares, [2.5, 97.5])] if shares.size else None


def real_cases(x: np.ndarray, y: np.ndarray, classes: list[str], paths: list[str]) -> dict[str, Any]:
    """What the estimate flags among the dataset's own training labels (no noise seeded)."""
    probs = out_of_fold_probabilities(x, y, len(classes))
    issues = find_label_issues(y, probs)
    top = [{"path": str(Path(paths[i]).relative_to(Path(paths[i]).parents[1])), "given": classes[y[i]],
            "suggested": classes[issues.suggested[i]], "self_confidence": round(float(issues.quality[i]), 4)}
           for i in issues.flagged[:20]]
    return {"flagged": int(len(issues.flagged)), "oof_accuracy": round(float(np.mean(probs.argmax(1) == y)), 4),
            "top": top}


def _mean(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: round(float(np.mean([r[key] for r in runs])), 4) for key in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(LOADERS), choices=list(LOADERS))
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--fixed-split", action="store_true",
                        help="Split 0 for every seed (the earlier protocol) instead of a fresh split per seed.")
    parser.add_argument("--features-only", action="store_true", help="Embed and cache the features, then stop.")
    args = parser.parse_args()
    if args.features_only:
        for name in args.datasets:
            features(name)
        return
    datasets = previous_datasets("label_quality")  # rerunning one dataset keeps the others' figures
    for name in args.datasets:
        datasets[name] = measure(name, args.seeds, args.fixed_split)
        for key, sides in datasets[name]["settings"].items():
            r = sides["retraining"]
            print(f"{name:14s} {key:24s} inspectloop F1 {sides['inspectloop']['f1']:.3f}  "
                  f"cleanlab F1 {sides['cleanlab']['f1']:.3f} (both {sides['cleanlab_both']['f1']:.3f})  "
                  f"test macro recall clean {r['clean']:.4f} "
                  f"noisy {r['noisy']:.4f} settled {r['settled']:.4f} (recovered {r['recovered_share']} "
                  f"{r['recovered_share_ci95']}; twice {r['recovered_share_twice']})")
    write_result("label_quality", {"citations": {n: CITATIONS[n] for n in datasets}, "datasets": datasets,
                                   "noise": "a fraction of each class's training images flipped: uniform = to any "
                                            "other class, class_conditional = to the class's look-alike partner",
                                   "method": "frozen EfficientNet-Lite0 features (224 px), 5-fold logistic "
                                             "regression out-of-fold probabilities, same for both sides"})


if __name__ == "__main__":
    main()
