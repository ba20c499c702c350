"""Shared benchmark plumbing: the real datasets as ingest sources, result files, timing helpers.

The datasets in ../shared/datasets are research-use only: they are read in place, never copied
into the repository (the workspace a benchmark builds lives in a temporary or ignored folder).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from inspectloop.domain import CaptureMeta
from inspectloop.ingest import SourceItem, scan_folder
from inspectloop.provenance import code_version

DATASETS = Path(os.environ.get("INSPECTLOOP_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets"))
RESULTS = Path(__file__).resolve().parent / "results"
CACHE = Path(__file__).resolve().parent / "cache"

CITATIONS = {
    "neu_det": "K. Song, Y. Yan, Applied Surface Science 285 (2013) 858-864; Y. He et al., IEEE TIM 69(4) (2020)",
    "magnetic_tile": "Y. Huang, C. Qiu, K. Yuan, The Visual Computer 36 (2020) 85-96",
    "kolektorsdd": "D. Tabernik, S. Sela, J. Skvarc, D. Skocaj, J. Intelligent Manufacturing 31 (2020) 759-776",
}


def require(name: str) -> Path:
    path = DATASETS / name
    if not path.is_dir():
        raise SystemExit(f"dataset {name!r} not found at {path}; set INSPECTLOOP_DATASETS to the shared datasets folder")
    return path


def neu_items() -> list[SourceItem]:
    """NEU-DET: class = folder; no capture metadata, so every image is its own group."""
    return scan_folder(require("neu_det") / "images")


def magnetic_tile_items() -> list[SourceItem]:
    """Magnetic tile: class = folder; the capture session is the file-name prefix (exp0..exp6); masks skipped."""
    items = []
    for item in scan_folder(require("magnetic_tile"), exclude=["*/masks/*", "SOURCE.txt", "*.md"]):
        session = item.path.name.split("_", 1)[0]
        items.append(SourceItem(path=item.path, label=item.label, meta=CaptureMeta(session=session)))
    return items


def write_result(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "code_version": code_version(), "machine": machine(),
               "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **payload}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(f"wrote {path}")
    return path


def previous_datasets(name: str) -> dict[str, Any]:
    """The ``datasets`` of benchmark ``name``'s last result, so rerunning one dataset keeps the others."""
    path = RESULTS / f"{name}.json"
    return dict(json.loads(path.read_text()).get("datasets", {})) if path.exists() else {}


def machine() -> dict[str, Any]:
    return {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "processor": _cpu_model()}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]

    return {"p50": round(statistics.median(ordered), 3), "p95": round(pick(0.95), 3), "p99": round(pick(0.99), 3),
            "mean": round(statistics.fmean(ordered), 3), "n": len(ordered)}


def timed(func: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = func()
    return result, time.perf_counter() - start


# --- Anomaly splits (issue 11): good-only training sets and mixed test sets, shared by both sides of
# benchmarks.anomaly. They are plain file lists, written to JSON so a peer library in its own
# environment reads exactly the same images in the same order.

@dataclass(frozen=True)
class AnomalyCase:
    """One test image: ``label`` is "good" or the defect class; ``mask`` a mask PNG, a YOLO-seg polygon file or None."""

    path: Path
    label: str
    mask: Path | None = None

    @property
    def is_defect(self) -> bool:
        return self.label != "good"


@dataclass(frozen=True)
class AnomalySplit:
    """Training images (good only) and test cases of one data set, with the rule that made them."""

    dataset: str
    rule: str
    train: tuple[Path, ...]
    test: tuple[AnomalyCase, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "rule": self.rule, "train": [str(p) for p in self.train],
                "test": [{"path": str(c.path), "label": c.label, "mask": str(c.mask) if c.mask else None,
                          "defect": c.is_defect} for c in self.test]}

    def counts(self) -> dict[str, int]:
        defects = sum(c.is_defect for c in self.test)
        return {"train_good": len(self.train), "test_good": len(self.test) - defects, "test_defect": defects}

    def subset(self, n_train: int, n_test: int) -> AnomalySplit:
        """A small, deterministic slice for development runs (every k-th item; both classes kept in test)."""
        good = [c for c in self.test if not c.is_defect]
        bad = [c for c in self.test if c.is_defect]
        n_bad = max(1, min(len(bad), n_test // 3))
        test = _every(good, n_test - n_bad) + _every(bad, n_bad)
        return AnomalySplit(self.dataset, self.rule + f" (subset: {n_train} train, {len(test)} test)",
                            tuple(_every(list(self.train), n_train)), tuple(test))


def _every(items: list[Any], n: int) -> list[Any]:
    if n >= len(items):
        return list(items)
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]


def kolektorsdd_anomaly_split(train_fraction: float = 2 / 3, seed: int = 0) -> AnomalySplit:
    """KolektorSDD: train on ``train_fraction`` of the good images, test on the other good and every defect.

    Byte-identical images form one group, and a group is never split: the 14 duplicate good pairs land
    on one side together, and a good image whose twin is a defect (none today) would stay in test.
    """
    root = require("kolektorsdd")
    groups: dict[str, list[Path]] = {}
    for path in sorted(root.glob("*/*.jpg")):
        groups.setdefault(hashlib.sha256(path.read_bytes()).hexdigest(), []).append(path)
    good_groups = [paths for paths in groups.values() if all(p.parent.name == "good" for p in paths)]
    random.Random(seed).shuffle(good_groups)
    n_good = sum(len(g) for g in good_groups)
    train: list[Path] = []
    for paths in good_groups:
        if len(train) + len(paths) > round(train_fraction * n_good):
            continue
        train.extend(paths)
    train_set = set(train)
    test = [AnomalyCase(p, "good" if p.parent.name == "good" else "defect", p.with_suffix(".txt"))
            for p in sorted(root.glob("*/*.jpg")) if p not in train_set]
    rule = (f"train: {train_fraction:.3g} of the good images by exact-duplicate group (sha256), seed {seed}; "
            "test: the other good images and all defect images (polygons from the YOLO-seg .txt)")
    return AnomalySplit("kolektorsdd", rule, tuple(sorted(train)), tuple(test))


def magnetic_tile_anomaly_split() -> AnomalySplit:
    """Magnetic tile: train on Free of sessions exp0-exp4; test on every image of exp5 and exp6."""
    root = require("magnetic_tile")
    train, test = [], []
    for path in sorted(root.glob("*/images/*.jpg")):
        label = path.parts[-3]
        held_out = path.name.split("_", 1)[0] in ("exp5", "exp6")
        if held_out:
            test.append(AnomalyCase(path, "good" if label == "Free" else label,
                                    path.parent.parent / "masks" / (path.stem + ".png")))
        elif label == "Free":
            train.append(path)
    rule = "train: Free of sessions exp0-exp4; test: every image of sessions exp5+exp6 (pixel masks in <class>/masks)"
    return AnomalySplit("magnetic_tile", rule, tuple(train), tuple(test))


def ground_truth_mask(case: AnomalyCase, size: int) -> np.ndarray:
    """The defect mask of ``case`` as a (size, size) bool array, in the same squashed square the models see."""
    if case.mask is None or not case.mask.exists():
        return np.zeros((size, size), dtype=bool)
    if case.mask.suffix == ".txt":  # YOLO-seg: "class x1 y1 x2 y2 ...", normalised to the image
        canvas = Image.new("L", (size, size), 0)
        draw = ImageDraw.Draw(canvas)
        for line in case.mask.read_text().splitlines():
            values = [float(v) for v in line.split()[1:]]
            if len(values) >= 6:
                draw.polygon([(x * size, y * size) for x, y in zip(values[::2], values[1::2])], fill=255)
        return np.asarray(canvas) > 0
    with Image.open(case.mask) as mask:
        return np.asarray(mask.convert("L").resize((size, size), Image.Resampling.NEAREST)) > 0
