"""The dataset browser on 10,000 images: time to compute the map, and from navigation to points drawn.

    python -m benchmarks.browser            # reuses benchmarks/cache/browser when it is there
    python -m benchmarks.browser --fresh    # rebuilds the workspace and the map

Images: the project's synthetic production line (``inspectloop.synthetic``: 4 classes, 3 cameras, shifts,
sessions, parts; 64x64 px), 2,500 per class, ingested into a workspace and split into version v1. A
made-up run's per-image outcomes on the test split (every 7th test image wrong) give the page a
prediction and correctness column to colour by.

Map computation, measured in three parts:
- the frozen backbone (efficientnet-lite0, 224 px, CPU) embedding 256 of the images: images per second,
  and the extrapolated time for 10,000 (embedding all of them here would hold the shared 2-core
  machine for most of an hour);
- the 10,000-point map itself on ``pixels`` features (16x16 grey thumbnails): PCA alone, and PCA to 50
  then t-SNE (what ``inspectloop dataset map`` runs; the projection's cost depends on the number of
  points, not on what the features are).
How well a map keeps the classes apart: the share of each image's 10 nearest neighbours with its label,
in the features and on the PCA and t-SNE maps, on the synthetic images (pixel features) and on 50 real
NEU-DET images per class (6 classes) through the frozen backbone.
Page load: uvicorn serving the pages (as ``inspectloop serve`` mounts them), Debian's Chromium headless
through Playwright, logged in; each load is a full navigation to ``/browse?version=v1&run=...``; the time
is the page's own ``performance.now()`` when the canvas has every point drawn (its clock starts at
navigation), and the wall time seen from Python. Goal: <= 2 s. The points and their fixed fields come
from the file kept beside the map; the live columns (the label the policy gives each image now, the
run's prediction and correctness) arrive in a second request, timed too (``live_at_ms``): the page
recolours by correctness when they land.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.common import CACHE, write_result

IMAGES_PER_CLASS = 2500
IMAGE_SIDE = 64
LOADS = 5
EMBED_SAMPLE = 256
NEU_PER_CLASS = 50
GOAL_MS = 2000
RUN_ID = "bench-run"
CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if Path(p).exists()), None)


def build(folder: Path) -> dict[str, Any]:
    """Generate, ingest and split the images; compute the maps; return what each step took."""
    from inspectloop.datamap.build import PIXELS, compute_map
    from inspectloop.datasets import SplitPlan, create_version
    from inspectloop.ingest import ingest, scan_manifest
    from inspectloop.people import add_user
    from inspectloop.synthetic import generate_line
    from inspectloop.workspace import init_workspace

    shutil.rmtree(folder, ignore_errors=True)
    timings: dict[str, Any] = {}
    start = time.perf_counter()
    line = generate_line(folder / "line", per_class=IMAGES_PER_CLASS, size=IMAGE_SIDE)
    timings["generate_s"] = round(time.perf_counter() - start, 1)
    with init_workspace(folder / "ws", name="browser-bench") as workspace:
        start = time.perf_counter()
        found, refused = scan_manifest(line.manifest)
        ingest(workspace, found, source=str(line.manifest), kind="manifest")
        timings["ingest_s"] = round(time.perf_counter() - start, 1)
        version = create_version(workspace, SplitPlan(group_by="part_id"))
        timings["images"] = len(version.items)
        token = add_user(workspace, "bench", "reviewer")
        pca = compute_map(workspace, version.name, features=PIXELS, method="pca")
        tsne = compute_map(workspace, version.name, features=PIXELS, method="tsne")
        timings["pixel_features_s"] = round(pca.embed_seconds, 1)
        timings["pca_s"] = round(pca.seconds - pca.embed_seconds, 1)
        timings["pca_then_tsne_s"] = round(tsne.seconds - tsne.embed_seconds, 1)  # features from the PCA map's file
        timings["tsne_reused_features"] = tsne.embedded == 0
        timings["embedding"] = embedding_rate(workspace, [i.sha256 for i in version.items[:EMBED_SAMPLE]])
        fake_run(workspace, version.name)
    (folder / "build.json").write_text(json.dumps({"timings": timings, "token": token}, indent=2))
    return timings


def embedding_rate(workspace: Any, digests: list[str]) -> dict[str, Any]:
    """The frozen backbone on ``digests``: images per second, and the time 10,000 would take."""
    from inspectloop.labelquality.probabilities import frozen_features

    frozen_features(digests[:8], workspace.blobs.get)  # weights loaded, first batch warmed
    start = time.perf_counter()
    frozen_features(digests, workspace.blobs.get)
    seconds = time.perf_counter() - start
    rate = len(digests) / seconds
    return {"backbone": "efficientnet-lite0", "input_size": 224, "images": len(digests),
            "seconds": round(seconds, 1), "images_per_second": round(rate, 1),
            "extrapolated_10000_s": round(10_000 / rate)}


def fake_run(workspace: Any, version: str) -> None:
    """A finished run whose report holds outcomes for the test split (every 7th image called wrong)."""
    from inspectloop.evaluate.outcomes import ImageOutcome

    test = [i for i in workspace.db.datasets.items(version) if i.split == "test"]
    classes = sorted({i.label for i in test})
    outcomes = [ImageOutcome(i.sha256, i.label, classes[(classes.index(i.label) + (k % 7 == 0)) % len(classes)], 0.8)
                for k, i in enumerate(test)]
    report = workspace.runs_dir / RUN_ID / "report"
    report.mkdir(parents=True, exist_ok=True)
    (report / "metrics.json").write_text(json.dumps({"outcomes": [o.to_dict() for o in outcomes]}))
    workspace.db.runs.add(RUN_ID, version, {}, "benchmark", str(report.parent))
    workspace.db.runs.finish(RUN_ID, "finished", metrics={})


def neighbour_agreement(workspace: Any) -> dict[str, float]:
    """Share of each image's 10 nearest neighbours that carry its label: in the features, and on each map.

    How much of the features' class structure a map keeps on screen (1.0: every neighbour agrees)."""
    import numpy as np

    from inspectloop.datamap.build import PIXELS, known_features, load_map

    labels = {i.sha256: i.label for i in workspace.db.datasets.items("v1")}
    result = {}
    for method in ("pca", "tsne"):
        data_map = load_map(workspace, "v1", features=PIXELS, method=method)
        names = np.array([labels[d] for d in data_map.sha256])
        result[f"map_{method}"] = _agreement(data_map.xy, names)
    features = known_features(workspace, PIXELS, list(data_map.sha256))
    result["features"] = _agreement(np.stack([features[d] for d in data_map.sha256]), names)
    return result


def neu_agreement(per_class: int = NEU_PER_CLASS) -> dict[str, Any]:
    """Real images through the real pipeline: ``per_class`` NEU-DET images of each of its 6 classes, frozen
    backbone features, then each projection; label agreement of the 10 nearest neighbours in each."""
    import numpy as np

    from benchmarks.common import DATASETS, neu_items
    from inspectloop.datamap.projection import project
    from inspectloop.labelquality.probabilities import frozen_features

    if not (DATASETS / "neu_det").is_dir():
        return {"skipped": f"NEU-DET not found under {DATASETS}"}
    items, chosen = neu_items(), []
    for label in sorted({item.label for item in items}):
        chosen += [item for item in items if item.label == label][:per_class]
    start = time.perf_counter()
    features = frozen_features([str(item.path) for item in chosen], lambda path: Path(path).read_bytes())
    embed_s = time.perf_counter() - start
    names = np.array([item.label for item in chosen])
    result: dict[str, Any] = {"images": len(chosen), "embed_s": round(embed_s, 1),
                              "features": _agreement(features, names)}
    for method in ("pca", "tsne"):
        start = time.perf_counter()
        xy = project(features, method)  # type: ignore[arg-type]
        result[f"map_{method}"] = _agreement(xy, names)
        result[f"{method}_s"] = round(time.perf_counter() - start, 2)
    return result


def _agreement(points: Any, names: Any, k: int = 10) -> float:
    """Share of each point's ``k`` nearest neighbours (itself left out) that carry its label."""
    import numpy as np
    from sklearn.neighbors import NearestNeighbors

    _, index = NearestNeighbors(n_neighbors=k + 1).fit(points).kneighbors(points)
    return round(float(np.mean(names[index[:, 1:]] == names[:, None])), 3)


def serve(workspace: Any) -> tuple[str, Any, threading.Thread]:
    """The pages (review, settle, browse) under uvicorn on a free loopback port, in a thread."""
    import uvicorn
    from fastapi import FastAPI

    from inspectloop.web import browse, pages

    app = FastAPI()
    app.state.workspace = workspace
    app.include_router(pages.router)
    app.include_router(browse.router)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    return f"http://127.0.0.1:{sock.getsockname()[1]}", server, thread


def page_loads(url: str, token: str) -> list[dict[str, Any]]:
    """``LOADS`` full navigations to the browse page; per load: drawn-at, wall time, the points request."""
    from playwright.sync_api import sync_playwright

    loads = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        page = browser.new_context(viewport={"width": 1440, "height": 900}).new_page()
        page.goto(f"{url}/login?next=/browse")
        page.fill("#token", token)
        page.press("#token", "Enter")
        page.wait_for_url("**/browse*")
        page.wait_for_selector("canvas#map[data-state=drawn]")
        for _ in range(LOADS):
            start = time.perf_counter()
            page.goto(f"{url}/browse?version=v1&run={RUN_ID}")
            page.wait_for_selector("canvas#map[data-state=drawn]", timeout=60_000)
            wall = (time.perf_counter() - start) * 1000
            page.wait_for_selector("canvas#map[data-live=ready]", timeout=60_000)
            measured = page.evaluate("""() => {
                const points = performance.getEntriesByType('resource').find((e) => e.name.includes('/browse/points'));
                return {drawn_at_ms: window.browseDrawnAt, live_at_ms: window.browseLiveAt,
                        points: window.browseMap.digests.length,
                        points_request_ms: points ? points.duration : null,
                        points_bytes: points ? points.encodedBodySize : null};
            }""")
            loads.append({**measured, "wall_ms": round(wall, 1), "drawn_at_ms": round(measured["drawn_at_ms"], 1),
                          "live_at_ms": round(measured["live_at_ms"], 1),
                          "points_request_ms": round(measured["points_request_ms"] or 0, 1)})
            print(f"  load: points drawn at {loads[-1]['drawn_at_ms']} ms, live columns at {loads[-1]['live_at_ms']} ms "
                  f"({loads[-1]['points']} points; "
                  f"points request {loads[-1]['points_request_ms']} ms, {loads[-1]['points_bytes']} bytes)", flush=True)
        browser.close()
    return loads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fresh", action="store_true", help="rebuild the workspace and the maps")
    parser.add_argument("--neu", type=int, default=NEU_PER_CLASS,
                        help="NEU-DET images per class for the real-image check (0: skip)")
    args = parser.parse_args()
    if CHROMIUM is None:
        raise SystemExit("Chromium not found (/usr/bin/chromium): scripts/setup.sh installs it")
    from inspectloop.datamap.build import load_map, write_fixed
    from inspectloop.datamap.points import live_columns, map_points_json
    from inspectloop.workspace import open_workspace

    folder = CACHE / "browser"
    if args.fresh or not (folder / "build.json").exists():
        print("building 10,000 synthetic images, their version and maps (minutes)...", flush=True)
        build(folder)
    built = json.loads((folder / "build.json").read_text())
    print(f"built: {built['timings']}", flush=True)
    workspace = open_workspace(folder / "ws")
    start = time.perf_counter()
    write_fixed(workspace, load_map(workspace, "v1"))  # what 'dataset map' writes beside the map, once
    fixed_s = time.perf_counter() - start
    start = time.perf_counter()
    points = json.loads(map_points_json(workspace, "v1"))
    fixed_ms = (time.perf_counter() - start) * 1000
    start = time.perf_counter()
    live = live_columns(workspace, "v1", run=RUN_ID)
    live_ms = (time.perf_counter() - start) * 1000
    agreement = neighbour_agreement(workspace)
    print(f"label agreement of the 10 nearest neighbours: {agreement}", flush=True)
    neu = neu_agreement(args.neu) if args.neu else {"skipped": "--neu 0"}
    print(f"NEU-DET, frozen backbone: {neu}", flush=True)
    url, server, thread = serve(workspace)
    try:
        loads = page_loads(url, built["token"])
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        workspace.close()
    drawn = [load["drawn_at_ms"] for load in loads]
    live_at = [load["live_at_ms"] for load in loads]
    result = {
        "images": points["count"], "fields": [*points["fields"], *live["fields"]],
        "load_average": list(os.getloadavg()),
        "map_computation": {**built["timings"], "fixed_columns_s": round(fixed_s, 1)},
        "neighbour_label_agreement_k10": {"synthetic_pixels": agreement, "neu_det_backbone": neu},
        "server_ms": {"fixed_points_read": round(fixed_ms, 1), "live_columns": round(live_ms, 1)},
        "page_loads": loads, "drawn_at_ms_median": round(statistics.median(drawn), 1),
        "drawn_at_ms_max": round(max(drawn), 1), "goal_ms": GOAL_MS, "goal_met": max(drawn) <= GOAL_MS,
        "live_at_ms_median": round(statistics.median(live_at), 1), "live_at_ms_max": round(max(live_at), 1),
        "chromium": CHROMIUM,
    }
    print(f"{points['count']} points drawn in median {result['drawn_at_ms_median']} ms, max {result['drawn_at_ms_max']} "
          f"ms after navigation (goal {GOAL_MS} ms); live columns (label now, run) {live_ms:.0f} ms on the server",
          flush=True)
    write_result("browser", result)


if __name__ == "__main__":
    main()
