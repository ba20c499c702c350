"""Shared benchmark plumbing: the real datasets as ingest sources, result files, timing helpers.

The datasets in ../shared/datasets are research-use only: they are read in place, never copied
into the repository (the workspace a benchmark builds lives in a temporary or ignored folder).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from inspectloop.domain import CaptureMeta
from inspectloop.ingest import SourceItem, scan_folder
from inspectloop.provenance import code_version

DATASETS = Path(os.environ.get("INSPECTLOOP_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets"))
RESULTS = Path(__file__).resolve().parent / "results"
CACHE = Path(__file__).resolve().parent / "cache"

CITATIONS = {
    "neu_det": "K. Song, Y. Yan, Applied Surface Science 285 (2013) 858-864; Y. He et al., IEEE TIM 69(4) (2020)",
    "magnetic_tile": "Y. Huang, C. Qiu, K. Yuan, The Visual Computer 36 (2020) 85-96",
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
