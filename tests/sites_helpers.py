"""A centre with a signed production model and locked criteria, and a site that syncs with it through an
exchange folder and then works offline for a while (images, predictions, review decisions, a drift check).

Everything goes through the library (registry, review, ingest) except the prediction log, which is
written into the store in bulk as the service records it (50,000 requests through HTTP would measure the
service, not the sync).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from PIL import Image
from sqlalchemy import insert

from inspectloop import registry
from inspectloop.ingest import ingest, scan_folder
from inspectloop.keys import export_public_key
from inspectloop.review import claim_next, enqueue, record_verdict, skip
from inspectloop.sites import init_site, trust_site
from inspectloop.store import schema as s
from inspectloop.workspace import Workspace, init_workspace

ROOT = Path(__file__).resolve().parents[1]
SITE = "plant2"
CLASSES = ("good", "scratch")  # the tiny CNN's (tests.test_export)


@dataclass
class Pair:
    central: Workspace
    site: Workspace
    exchange: Path


def make_central(root: Path, database: str | None = None) -> Workspace:
    """A centre with the tiny CNN registered, signed, in production, and criteria locked."""
    from tests.registry_helpers import CRITERIA_YAML, add_run_with_model, seeded_workspace

    central = seeded_workspace(root, database)
    add_run_with_model(central, "run-1", signed=True)
    version = registry.register(central, "run-1", name="line3-v1")
    registry.promote(central, version, "production", actor="qe", reason="first", override=True)
    central.db.criteria.lock("line3", "c" * 64, CRITERIA_YAML, {"name": "line3"}, "qe")
    return central


def make_pair(root: Path, central_database: str | None = None, site_database: str | None = None) -> Pair:
    """A centre and a site (no classes, no model yet) that trust each other, sharing ``root/exchange``."""
    exchange = root / "exchange"
    exchange.mkdir(parents=True)
    central = make_central(root / "central", central_database)
    site = init_workspace(root / "site", name=SITE, database=site_database)
    trust_site(central, SITE, export_public_key(site.root, root / "site.pub.pem"), by="qe")
    init_site(site, SITE, exchange, export_public_key(central.root, root / "central.pub.pem"), by="tech")
    return Pair(central, site, exchange)


def work_offline(site: Workspace, folder: Path, *, predictions: int, decisions: int, days: int = 7,
                 seed: int = 0) -> None:
    """A week without the centre: ``decisions`` images sent to review and decided (a few skipped),
    ``predictions`` logged over ``days`` days by the production model, one drift check."""
    rng = random.Random(seed)
    digests = _review_images(site, folder, decisions, rng)
    version = registry.production_model(site)
    start = datetime(2026, 11, 20, 6, tzinfo=UTC)
    step = timedelta(days=days) / max(predictions, 1)
    rows = []
    for index in range(predictions):
        reviewed = index < len(digests)
        decision = "review" if reviewed else rng.choice(("pass", "pass", "pass", "reject"))
        label = "scratch" if decision == "reject" else "good"
        rows.append({"request_id": f"req-{seed}-{index}", "received_at": (start + index * step).isoformat(
            timespec="seconds"), "source": "http", "camera": f"cam-{index % 2}", "line": "L3", "extra": {},
            "image_sha256": digests[index] if reviewed else f"{rng.getrandbits(256):064x}",
            "image_stored": reviewed, "model_version_id": version.id if version else None,
            "model_name": version.name if version else "bare.onnx", "label": label, "decision": decision,
            "confidence": round(rng.uniform(0.5, 1.0), 4), "scores": {label: 0.9},
            "latency_ms": {"total": round(rng.uniform(3, 9), 2)}, "suspect": False})
    with site.db.engine.begin() as conn:
        for start_row in range(0, len(rows), 5000):
            conn.execute(insert(s.predictions), rows[start_row:start_row + 5000])
    _decide(site, digests, rng)
    _drift_check(site, start + timedelta(days=days))


def _review_images(site: Workspace, folder: Path, count: int, rng: random.Random) -> list[str]:
    if count == 0:
        return []
    for index in range(count):
        pixels = np.random.default_rng(rng.getrandbits(32)).integers(0, 255, (24, 24), dtype=np.uint8)
        path = folder / f"r{index:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels, "L").save(path)
    ingest(site, scan_folder(folder), source=str(folder), create_classes=False)
    with site.db.engine.connect() as conn:
        rows = conn.execute(s.image_sources.select().order_by(s.image_sources.c.original_path)).all()
    return [row.sha256 for row in rows if row.original_path.startswith(str(folder))]


def _decide(site: Workspace, digests: list[str], rng: random.Random) -> None:
    predictions = {p.image_sha256: p.id for p in site.db.predictions.window("2000", "3000", stored_only=True)}
    with site.db.transaction() as tx:
        for digest in digests:
            enqueue(tx, image_sha256=digest, reason="uncertain", prediction_id=predictions.get(digest),
                    suggestion="good", scores={"good": 0.55, "scratch": 0.45})
    for index in range(len(digests)):
        item = claim_next(site, "ana")
        assert item is not None
        if index % 50 == 49:
            skip(site, item.id, "ana", note="blurred")
        else:
            record_verdict(site, item.id, "ana", rng.choice(CLASSES))


def _drift_check(site: Workspace, when: datetime) -> None:
    run = site.db.drift.add_run({"window_start": (when - timedelta(days=7)).isoformat(timespec="seconds"),
                                 "window_end": when.isoformat(timespec="seconds"), "outcome": "ok",
                                 "summary": {"cameras": 2}})
    site.db.drift.add_checks([{"monitor_run_id": run, "camera": "cam-0", "checked_at": when.isoformat(),
                               "signal": "brightness", "effect": 0.1, "effect_unit": "sd", "p_value": 0.4,
                               "raw_p_value": 0.2, "fired": False, "n_baseline": 200, "n_current": 300,
                               "message": "brightness as at deployment"}])


def copy_sqlite_workspace(workspace: Workspace, destination: Path) -> Path:
    """A copy of an SQLite workspace's folder (a second centre in the same state); ``workspace`` stays usable."""
    workspace.db.engine.dispose()
    shutil.copytree(workspace.root, destination)
    return destination


def receive_killed(root: Path, exchange: Path, after: int) -> int:
    """Run ``inspectloop site receive`` on the centre at ``root`` and SIGKILL it once ``after`` predictions are
    committed; return how many were."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{os.environ.get('PYTHONPATH', '')}"}
    process = subprocess.Popen([sys.executable, "-c", "from inspectloop.cli.app import app; app()", "site",
                                "receive", str(exchange), "-w", str(root)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    committed = 0
    try:
        while process.poll() is None:
            committed = _committed(root / "inspectloop.db")
            if committed >= after:
                process.send_signal(signal.SIGKILL)
                break
            time.sleep(0.02)
        process.wait()
    finally:
        if process.poll() is None:
            process.kill()
    if process.returncode != -signal.SIGKILL:
        raise AssertionError(f"the receive finished before {after} predictions were committed: send more")
    return _committed(root / "inspectloop.db")


def _committed(database: Path) -> int:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10) as conn:
        try:
            return int(conn.execute("SELECT count(*) FROM sync_records WHERE kind = 'predictions'").fetchone()[0])
        except sqlite3.OperationalError:
            return 0
