"""Anomaly models side by side: inspectloop's PatchCore vs anomalib's PatchCore and PaDiM (issue 11).

    bash benchmarks/peers/setup_anomalib.sh          # once: anomalib in its own venv (.venv-anomalib)
    python -m benchmarks.anomaly [--datasets kolektorsdd,magnetic_tile] [--sides inspectloop,patchcore,padim]
                                 [--subset 40] [--mem-cap-gb 12] [--peer-timeout 2400] [--square] [--name NAME]

Same split, same machine, same run, same input (256 px square, RGB from greyscale, bilinear), same
offline backbone (EfficientNet-Lite0, blocks 4 and 10; inspectloop on KolektorSDD: its tuned blocks 14 and 15,
see ``TUNED``). Each side runs in its own process (anomalib
in .venv-anomalib through benchmarks/peers/anomalib_run.py; inspectloop in this venv through this
module's ``--child``), reads the same split file, and writes its test scores and heatmaps to .npy;
every metric is then computed here, by the same code, for every side:

- image AUROC (scikit-learn);
- defect recall at 1% FPR: the threshold is the 99th percentile of the *test* good images' scores
  (linear interpolation), recall = share of defect images scoring above it; the realised FPR is reported;
- pixel AUROC (scikit-learn) and AUPRO up to FPR 0.3 (MVTec AD definition, normalised to [0, 1]) over
  every test image, heatmaps and ground truth (magnetic tile masks, KolektorSDD polygons) both in the
  256 x 256 square the models see;
- each side with its library's shipped settings: coreset share 0.04 (inspectloop) and 0.1 (anomalib's
  PatchCore), unless --coreset-ratio / --peer-coreset-ratio say otherwise (both recorded in the JSON);
- inspectloop with the per-data-set settings ``benchmarks.anomaly_tuning`` chose on training-side folds
  (``TUNED``: KolektorSDD's long parts at a non-square input, the image score's patch share), unless
  ``--square`` (the shipped defaults at 256 px); its heatmaps are resized to the 256 x 256 square for the
  pixel metrics, so every side is scored in the same frame;
- fit time and the fit's peak RSS (VmHWM, reset just before the fit) with 2 torch threads;
- CPU latency at batch 1, one thread, from JPEG bytes to scores (anomalib: its own ONNX export on
  onnxruntime; inspectloop: EdgeModel on its exported file).

Memory: each child's RSS is watched, and the child is killed past --mem-cap-gb (an address-space limit
backs the watch); that is recorded as the result. Data sets are read in place and cited in the JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from inspectloop.anomaly import PatchCoreConfig

from benchmarks.common import (CACHE, CITATIONS, AnomalySplit, ground_truth_mask, kolektorsdd_anomaly_split,
                               magnetic_tile_anomaly_split, write_result)

REPO = Path(__file__).resolve().parents[1]
PEER_PYTHON = REPO / ".venv-anomalib" / "bin" / "python"
PEER_SCRIPT = REPO / "benchmarks" / "peers" / "anomalib_run.py"
WORK = CACHE / "anomaly"
SIZE = 256
SPLITS = {"kolektorsdd": kolektorsdd_anomaly_split, "magnetic_tile": magnetic_tile_anomaly_split}
SIDES = ("inspectloop", "patchcore", "padim")
# Each side runs with its library's shipped coreset share unless told otherwise: the comparison is of the
# defaults a user gets (inspectloop's PatchCoreConfig; anomalib's Patchcore(coreset_sampling_ratio=0.1)).
DEFAULT_CORESET_RATIO = PatchCoreConfig().coreset_ratio
PEER_CORESET_RATIO = 0.1  # anomalib 2.x Patchcore's default (benchmarks/peers/anomalib_run.py's too)
# inspectloop's settings per data set, chosen by benchmarks.anomaly_tuning on training-side folds only
# (``--square`` runs the shipped defaults instead), as PatchCoreConfig fields: what a user passes as
# `--set input_size=192 input_height=480 patch_blocks=14,15 patch_stride=32 score_share=0.06` (KolektorSDD's
# commutators vary in their good surfaces: the deepest blocks separate them, and on their own stride-32 grid
# they score as well as at 16 with 4x fewer patches; the backbone's convolutions are 80% of the edge time, so
# the input is the smallest that kept the val fold's figures; magnetic tile keeps the mid-level defaults)
TUNED: dict[str, dict[str, Any]] = {"kolektorsdd": {"input_size": 192, "input_height": 480, "stages": [14, 15],
                                                    "stride": 32, "score_share": 0.06},
                                    "magnetic_tile": {}}
GOALS = {"kolektorsdd": {"image_auroc": 0.95, "recall_at_1pct_fpr": 0.66},
         "magnetic_tile": {"image_auroc": 0.97, "recall_at_1pct_fpr": 0.80}}
# glibc's dynamic mmap threshold lets anomalib's coreset loop grow the heap ~5 MB per step once the backbone
# has run (measured: 9.9 GB peak on 20 images, 21 GB and the OOM killer without no_grad). A fixed threshold
# keeps it flat (~1.1 GB), so the peer gets the best setting we found, not its default. The coreset's
# progress bar prints once a minute: a run stopped at the time limit leaves its rate and ETA in log_tail.
PEER_ENV = {"MALLOC_MMAP_THRESHOLD_": "1048576", "TQDM_MININTERVAL": "60"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="kolektorsdd,magnetic_tile")
    parser.add_argument("--sides", default=",".join(SIDES))
    parser.add_argument("--subset", type=int, default=0, help="N train and N test images per data set (0 = all)")
    parser.add_argument("--coreset-ratio", type=float, default=DEFAULT_CORESET_RATIO,
                        help="inspectloop's PatchCore (default: the library's shipped default)")
    parser.add_argument("--peer-coreset-ratio", type=float, default=PEER_CORESET_RATIO,
                        help="anomalib's PatchCore (default: anomalib's shipped default)")
    parser.add_argument("--latency", type=int, default=100, help="test images timed through ONNX per side")
    parser.add_argument("--update", type=int, default=50, help="inspectloop: good images added by update (0 = skip)")
    parser.add_argument("--mem-cap-gb", type=float, default=12.0)
    parser.add_argument("--peer-timeout", type=int, default=2400, help="seconds per child before it is stopped")
    parser.add_argument("--reuse", default="", help="sides whose result from an earlier run on the same split is kept")
    parser.add_argument("--peer-default-malloc", action="store_true", help="run anomalib with glibc's defaults")
    parser.add_argument("--square", action="store_true", help="inspectloop: shipped defaults at 256 px, not TUNED")
    parser.add_argument("--name", default="anomaly", help="results file name (a run on some data sets only keeps "
                                                          "the full run's anomaly.json)")
    parser.add_argument("--child", choices=["inspectloop"], help=argparse.SUPPRESS)
    parser.add_argument("--split", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--settings", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        inspectloop_child(json.loads(args.split.read_text()), args.out, coreset_ratio=args.coreset_ratio,
                          latency=args.latency, update=args.update, settings=json.loads(args.settings))
        return
    results = {name: run_dataset(name, args) for name in args.datasets.split(",")}
    name = args.name if not args.subset else f"{args.name}_subset{args.subset}"
    write_result(name, {"input_size": SIZE, "input_note": "inspectloop: see inspectloop_settings",
                        "backbone": "efficientnet-lite0 (offline package), blocks 4+10 unless "
                                    "inspectloop_settings name other stages",
                        "recall_rule": "threshold = 99th percentile of the test good scores; recall = defects above",
                        "pixel_rule": "heatmaps and masks in the 256x256 square the models see; AUPRO to FPR 0.3",
                        "peer_malloc": "glibc default" if args.peer_default_malloc else PEER_ENV,
                        "mem_cap_gb": args.mem_cap_gb, "datasets": results,
                        "coreset_ratio": {"inspectloop": args.coreset_ratio,
                                          "anomalib_patchcore": args.peer_coreset_ratio},
                        "inspectloop_settings": {name: {} if args.square else TUNED[name]
                                                 for name in args.datasets.split(",")},
                        "not_measured_here": {"novelty_guard": "issue 11 item 6 is measured by benchmarks/novelty.py "
                                              "(results/novelty.json)"}})
    print_table(results)


def run_dataset(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Write the split once, run every side on it in its own process, and score what each wrote."""
    split = SPLITS[name]()
    if args.subset:
        split = split.subset(args.subset, args.subset)
    work = WORK / (name if not args.subset else f"{name}-subset{args.subset}")
    work.mkdir(parents=True, exist_ok=True)
    split_path = work / "split.json"
    split_path.write_text(json.dumps(split.to_dict()) + "\n")
    masks = np.stack([ground_truth_mask(case, SIZE) for case in split.test])
    labels = np.array([case.is_defect for case in split.test])
    sides: dict[str, Any] = {}
    for side in args.sides.split(","):
        out = work / side
        print(f"[{name}] {side} ...", flush=True)
        digest = hashlib.sha256(split_path.read_bytes()).hexdigest()
        if side in args.reuse.split(",") and reusable(out, digest):
            run = json.loads((out / "run.json").read_text())
            when = run.get("measured_at", "an earlier day (its time was not recorded)")
            print(f"[{name}] {side}: reusing the run of {when} on the same split", flush=True)
        else:
            run = run_child(child_command(side, split_path, out, args, name), out, args, peer=side != "inspectloop")
            (out / "run.json").write_text(json.dumps({**run, "split_sha256": digest}, indent=2) + "\n")
        if run["status"] == "ok":
            run.update(score_side(out, labels, masks))
        sides[side] = run
        print(f"[{name}] {side}: {summary(run)}", flush=True)
    return {"citation": CITATIONS[name], "split": split.rule, "counts": split.counts(),
            "goal": GOALS[name], "sides": sides}


def reusable(out: Path, digest: str) -> bool:
    """Whether ``out`` holds a run on the split with this digest: finished with scores, or stopped (kept as
    the result: a peer that ran out of memory or time does not get a second try in the aggregate run)."""
    if not (out / "run.json").exists():
        return False
    run = json.loads((out / "run.json").read_text())
    return run.get("split_sha256") == digest and (run.get("status") != "ok" or (out / "scores.npy").exists())


def child_command(side: str, split_path: Path, out: Path, args: argparse.Namespace, dataset: str) -> list[str]:
    if side == "inspectloop":
        settings = {} if args.square else TUNED[dataset]
        return [sys.executable, "-m", "benchmarks.anomaly", "--child", "inspectloop", "--split", str(split_path),
                "--out", str(out), "--coreset-ratio", str(args.coreset_ratio), "--latency", str(args.latency),
                "--update", str(args.update), "--settings", json.dumps(settings)]
    if not PEER_PYTHON.exists():
        raise SystemExit(f"{PEER_PYTHON} not found; run: bash benchmarks/peers/setup_anomalib.sh")
    return [str(PEER_PYTHON), str(PEER_SCRIPT), "--split", str(split_path), "--model", side, "--out", str(out),
            "--size", str(SIZE), "--threads", "2", "--coreset-ratio", str(args.peer_coreset_ratio),
            "--latency", str(args.latency)]


def run_child(command: list[str], out: Path, args: argparse.Namespace, *, peer: bool) -> dict[str, Any]:
    """Run one side; kill it past the RSS cap or the time limit and say so. Reads its result.json."""
    for stale in ("result.json", "run.json", "scores.npy", "maps.npy"):
        (out / stale).unlink(missing_ok=True)
    cap = int(args.mem_cap_gb * 2**30)
    env = {**os.environ, **({} if args.peer_default_malloc or not peer else PEER_ENV)}
    # The address-space limit only backstops the RSS watch: torch maps a few GB it never touches.
    limit = lambda: resource.setrlimit(resource.RLIMIT_AS, (cap + 6 * 2**30,) * 2)  # noqa: E731
    load = [round(x, 2) for x in os.getloadavg()]
    start = time.perf_counter()
    proc = subprocess.Popen(command, cwd=REPO, env=env, preexec_fn=limit, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    watch = RssWatch(proc.pid, cap)
    watch.start()
    try:
        output, _ = proc.communicate(timeout=args.peer_timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
    wall = round(time.perf_counter() - start, 1)
    tail = "\n".join(line for line in output.splitlines() if "Warning" not in line and line.strip())[-1500:]
    base = {"measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "wall_seconds": wall,
            "max_rss_seen_mb": round(watch.peak / 2**20, 1)}
    if watch.killed:
        return {**base, "status": f"killed: RSS passed the {args.mem_cap_gb:g} GB cap", "log_tail": tail}
    if wall >= args.peer_timeout:
        stopped = f"stopped: still running after {args.peer_timeout} s"
        if not peer and (out / "result.json").exists():  # main figures written; the update comparison was cut
            return {**base, "status": "ok", **json.loads((out / "result.json").read_text()), "update": stopped}
        return {**base, "status": stopped, "log_tail": tail}
    if proc.returncode != 0 or not (out / "result.json").exists():
        oom = any(s in output for s in ("MemoryError", "bad_alloc", "Cannot allocate memory"))
        return {**base, "status": "out of memory" if oom else f"failed (exit {proc.returncode})", "log_tail": tail}
    return {**base, "status": "ok", "load_average_at_start": load, **json.loads((out / "result.json").read_text())}


class RssWatch(threading.Thread):
    """Polls a process's resident set; kills it once past ``cap`` bytes (``killed`` then says so)."""

    def __init__(self, pid: int, cap: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.cap, self.peak, self.killed = pid, cap, 0, False

    def run(self) -> None:
        status = Path(f"/proc/{self.pid}/status")
        while True:
            try:
                rss = next(int(line.split()[1]) * 1024 for line in status.read_text().splitlines()
                           if line.startswith("VmRSS:"))
            except (OSError, StopIteration):
                return
            self.peak = max(self.peak, rss)
            if rss > self.cap:
                self.killed = True
                os.kill(self.pid, 9)
                return
            time.sleep(0.2)


# --- Scoring: one implementation for every side ------------------------------------------------------

def score_side(out: Path, labels: np.ndarray, masks: np.ndarray) -> dict[str, Any]:
    """Image and pixel metrics of the scores.npy / maps.npy a side wrote (test order of the split)."""
    from sklearn.metrics import roc_auc_score

    scores = np.load(out / "scores.npy").astype(np.float64)
    maps = np.load(out / "maps.npy").astype(np.float32)
    if maps.shape[1:] != masks.shape[1:]:
        raise SystemExit(f"{out}: heatmaps are {maps.shape[1:]}, expected {masks.shape[1:]}")
    good, bad = scores[~labels], scores[labels]
    threshold = float(np.percentile(good, 99))
    return {"image_auroc": round(float(roc_auc_score(labels, scores)), 4),
            "recall_at_1pct_fpr": round(float(np.mean(bad > threshold)), 4),
            "realised_fpr": round(float(np.mean(good > threshold)), 4),
            "pixel_auroc": round(float(roc_auc_score(masks.reshape(-1), maps.reshape(-1))), 4),
            "aupro_0.3": round(aupro(maps, masks, max_fpr=0.3), 4)}


def aupro(maps: np.ndarray, masks: np.ndarray, *, max_fpr: float = 0.3) -> float:
    """Area under the per-region-overlap curve up to ``max_fpr``, divided by ``max_fpr`` (MVTec AD).

    PRO at a threshold is the mean, over every connected defect region of every image, of the share of
    the region's pixels above the threshold; FPR is the share of all defect-free pixels above it. Both
    are cumulative sums over the pixels sorted by score, so the curve is exact at every distinct score.
    """
    from scipy import ndimage

    region = np.zeros(masks.shape, dtype=np.int64)
    offset = 0
    for i, mask in enumerate(masks):
        labelled, count = ndimage.label(mask)
        region[i] = np.where(labelled > 0, labelled + offset, 0)
        offset += count
    if offset == 0:
        return float("nan")
    region, flat = region.reshape(-1), maps.reshape(-1)
    sizes = np.bincount(region, minlength=offset + 1).astype(np.float64)
    weight = np.where(region > 0, 1.0 / (sizes[region] * offset), 0.0)
    order = np.argsort(-flat, kind="stable")
    fpr = np.cumsum(region[order] == 0) / max(1, int(np.sum(region == 0)))
    pro = np.cumsum(weight[order])
    last = np.r_[flat[order][1:] != flat[order][:-1], True]  # one point per distinct score
    fpr, pro = np.r_[0.0, fpr[last]], np.r_[0.0, pro[last]]
    keep = fpr <= max_fpr
    x, y = fpr[keep], pro[keep]
    if x[-1] < max_fpr:  # close the curve at max_fpr by interpolation
        y = np.r_[y, np.interp(max_fpr, fpr, pro)]
        x = np.r_[x, max_fpr]
    return float(np.trapezoid(y, x) / max_fpr)


def summary(run: dict[str, Any]) -> str:
    if run["status"] != "ok":
        return run["status"]
    keys = ("image_auroc", "recall_at_1pct_fpr", "pixel_auroc", "aupro_0.3", "fit_seconds", "fit_peak_rss_mb")
    latency = run.get("latency_ms", {}).get("p50")
    return ", ".join(f"{k} {run.get(k)}" for k in keys) + f", latency p50 {latency} ms"


def print_table(results: dict[str, Any]) -> None:
    print("| data set | side | image AUROC | recall@1%FPR | pixel AUROC | AUPRO@0.3 | latency p50 ms | fit s | fit RSS MB |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, result in results.items():
        for side, run in result["sides"].items():
            if run["status"] != "ok":
                print(f"| {name} | {side} | {run['status']} | | | | | | |")
                continue
            print(f"| {name} | {side} | {run['image_auroc']} | {run['recall_at_1pct_fpr']} | {run['pixel_auroc']} "
                  f"| {run['aupro_0.3']} | {run.get('latency_ms', {}).get('p50')} | {run['fit_seconds']} "
                  f"| {run['fit_peak_rss_mb']} |")


# --- inspectloop's side (runs in a child process of this venv) ---------------------------------------

class LazyImages:
    """A sequence of image files opened on access, so neither side holds the training set decoded."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int | slice) -> Any:
        from PIL import Image

        if isinstance(index, slice):
            return LazyImages(self.paths[index])
        with Image.open(self.paths[index]) as image:
            image.load()
            return image


def inspectloop_child(split: dict[str, Any], out: Path, *, coreset_ratio: float, latency: int,
                      update: int, settings: dict[str, Any]) -> None:
    """Fit inspectloop's PatchCore on the split's good images, score the test set, export, time EdgeModel."""
    from inspectloop.anomaly import PatchCoreConfig, fit_patchcore

    out.mkdir(parents=True, exist_ok=True)
    train = [Path(p) for p in split["train"]]
    test = LazyImages([Path(c["path"]) for c in split["test"]])
    tuned = {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()}  # JSON lists: stages
    config = PatchCoreConfig(**{"input_size": SIZE, **tuned}, coreset_ratio=coreset_ratio, threads=2, seed=0)
    reset_peak_rss()
    start = time.perf_counter()
    model = fit_patchcore(LazyImages(train), config)
    result: dict[str, Any] = {"side": "inspectloop", "fit_seconds": round(time.perf_counter() - start, 2),
                              "fit_peak_rss_mb": peak_rss_mb(), "train_images": len(train),
                              "memory_bank_rows": int(model.bank.shape[0]), "coreset_ratio": coreset_ratio,
                              "settings": settings, "input_shape": list(model.preprocess.shape)}
    scores, maps = model.score(test)
    np.save(out / "scores.npy", scores)
    np.save(out / "maps.npy", to_square(maps, SIZE).astype(np.float16))
    if latency:
        result.update(time_edge_model(model, test, out, latency))
    result["process_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    # Written before the update comparison (two more fits), so a time limit there keeps the main figures.
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    if update and len(train) > update + 10:
        result["update"] = update_versus_refit(model, train, test, split, config, update)
        (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")


def to_square(maps: np.ndarray, size: int) -> np.ndarray:
    """Heatmaps (N, H, W) in the size x size square every side's pixel metrics are computed in (bilinear)."""
    if maps.shape[1:] == (size, size):
        return maps
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(m.astype(np.float32), "F").resize((size, size),
                                                                                 Image.Resampling.BILINEAR))
                     for m in maps])


def time_edge_model(model: Any, test: LazyImages, out: Path, count: int) -> dict[str, Any]:
    """Export to one ONNX file and time EdgeModel.predict from JPEG bytes on one thread."""
    from benchmarks.common import percentiles
    from inspectloop.anomaly.fit import metadata_for
    from inspectloop.export import export_anomaly
    from inspectloop.runtime import EdgeModel

    path = out / "model.onnx"
    metadata = metadata_for(model, model_name="anomaly-bench", model_version="1")
    export_anomaly(model.module, metadata, path, [test[i] for i in range(min(4, len(test)))])
    edge = EdgeModel(path, threads=1)
    blobs = [p.read_bytes() for p in test.paths[:count]]
    for data in blobs[:3]:
        edge.predict(data)
    samples = []
    for data in blobs:
        t0 = time.perf_counter()
        edge.predict(data)
        samples.append((time.perf_counter() - t0) * 1000)
    return {"onnx_mb": round(path.stat().st_size / 2**20, 2), "latency_ms": percentiles(samples)}


def update_versus_refit(model: Any, train: list[Path], test: LazyImages, split: dict[str, Any], config: Any,
                        count: int) -> dict[str, Any]:
    """Fit on all but ``count`` training images, add those by ``update``; AUROC against the full fit's."""
    from sklearn.metrics import roc_auc_score

    from inspectloop.anomaly import fit_patchcore

    labels = np.array([c["defect"] for c in split["test"]])
    start = time.perf_counter()
    base = fit_patchcore(LazyImages(train[:-count]), config)
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    updated = base.update(LazyImages(train[-count:]))
    update_seconds = time.perf_counter() - start
    full = roc_auc_score(labels, model.score(test)[0])
    return {"added_good": count, "base_auroc": round(float(roc_auc_score(labels, base.score(test)[0])), 4),
            "updated_auroc": round(float(roc_auc_score(labels, updated.score(test)[0])), 4),
            "full_refit_auroc": round(float(full), 4), "base_fit_seconds": round(fit_seconds, 2),
            "update_seconds": round(update_seconds, 2)}


def reset_peak_rss() -> None:
    try:  # Linux: writing 5 to clear_refs resets VmHWM, so the fit's own peak is read afterwards
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


if __name__ == "__main__":
    main()
