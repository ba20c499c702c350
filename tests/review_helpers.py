"""A workspace with a filled review queue, production predictions and shadow discrepancies.

Images are small synthetic surfaces; classes have criteria and reference images. Predictions and
shadow results are written straight into the store, as the inspection service records them.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from PIL import Image
from sqlalchemy import insert, select, update

from inspectloop.domain import ClassDefinition
from inspectloop.ingest import ingest, scan_folder, scan_manifest
from inspectloop.labels import add_reference_image, define_class
from inspectloop.people import add_user
from inspectloop.review import enqueue
from inspectloop.store import schema as s
from inspectloop.workspace import Workspace, init_workspace
from tests.conftest import save, surface

CLASSES = (
    ClassDefinition(name="good", criterion="No mark longer than 0.5 mm on the sealing face.", severity="none",
                    is_good=True),
    ClassDefinition(name="scratch", criterion="A line mark you can feel with a fingernail, any length.",
                    severity="major"),
    ClassDefinition(name="dent", criterion="A depression that breaks the reflection of the ring light.",
                    severity="critical"),
    ClassDefinition(name="stain", criterion="Discolouration that wipes off is still a stain <until washed>.",
                    severity="minor"),
)
CAMERAS = ("cam-A", "cam-B")
# Production decisions seeded per camera: (pass, reject, review) in the last day, and three days ago.
RECENT = {"cam-A": (6, 2, 2), "cam-B": (3, 1, 0)}
OLDER = {"cam-A": (0, 0, 0), "cam-B": (0, 4, 0)}


@dataclass
class Seeded:
    workspace: Workspace
    tokens: dict[str, str]  # user name -> token
    items: list[int]  # review item ids, highest priority first
    images: list[str]  # the queued images' digests


def seed(root: Path, *, items: int = 40) -> Seeded:
    """Workspace at ``root/ws`` with classes and references, ``items`` open review items, users, predictions."""
    workspace = init_workspace(root / "ws", name="line7")
    for definition in CLASSES:
        define_class(workspace, definition)
    _references(workspace, root / "refs")
    digests = _production_images(workspace, root / "production", items)
    ids = _queue(workspace, digests)
    _predictions(workspace, digests)
    tokens = {name: add_user(workspace, name, role) for name, role in
              (("ana", "reviewer"), ("bo", "reviewer"), ("cy", "admin"))}
    return Seeded(workspace, tokens, ids, digests)


def _references(workspace: Workspace, folder: Path) -> None:
    for index, definition in enumerate(CLASSES):
        for k in range(2):
            save(Image.fromarray(surface(500 + 10 * index + k, defect=not definition.is_good), "L"),
                 folder / definition.name / f"ref{k}.png")
    report = ingest(workspace, scan_folder(folder), source=str(folder), create_classes=False)
    assert report.added == 2 * len(CLASSES), report.to_dict()
    for sha256, _path in sorted(_sources(workspace, folder)):
        label = Path(_path).parent.name
        add_reference_image(workspace, label, sha256, note="typical")


def _sources(workspace: Workspace, folder: Path) -> list[tuple[str, str]]:
    with workspace.db.engine.connect() as conn:
        rows = conn.execute(s.image_sources.select()).all()
    return [(row.sha256, row.original_path) for row in rows if row.original_path.startswith(str(folder))]


def _production_images(workspace: Workspace, folder: Path, count: int) -> list[str]:
    rows = []
    for i in range(count):
        path = save(Image.fromarray(surface(1000 + i, size=96, defect=i % 3 == 0), "L"), folder / f"p{i:03d}.png")
        rows.append({"path": path.name, "camera": CAMERAS[i % 2], "line": "L7", "shift": ("early", "late")[i % 2],
                     "part_id": f"P-{i:04d}"})
    manifest = folder / "manifest.csv"
    with open(manifest, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    found, refused = scan_manifest(manifest)
    assert not refused
    ingest(workspace, found, source=str(manifest), kind="manifest")
    by_path = {Path(p).name: d for d, p in _sources(workspace, folder)}
    digests = [by_path[row["path"]] for row in rows]
    with workspace.db.engine.begin() as conn:  # as the service stores them
        conn.execute(update(s.images).where(s.images.c.sha256.in_(digests)).values(source="production"))
    return digests


def _queue(workspace: Workspace, digests: list[str]) -> list[int]:
    ids = []
    with workspace.db.transaction() as tx:
        for i, digest in enumerate(digests):
            defect = i % 3 == 0
            suggestion = "scratch" if defect else "good"
            scores = {"good": 0.3, "scratch": 0.55, "dent": 0.1, "stain": 0.05} if defect else \
                {"good": 0.62, "scratch": 0.2, "dent": 0.1, "stain": 0.08}
            reason = "shadow" if i % 4 == 1 else "uncertain"
            details = {"shadow_label": "dent", "shadow_model": "line7-v2"} if reason == "shadow" else \
                {"confidence": max(scores.values())}
            item = enqueue(tx, image_sha256=digest, reason=reason, suggestion=suggestion, scores=scores,
                           details=details, priority=float(len(digests) - i))
            assert item is not None
            ids.append(item)
    return ids


def _predictions(workspace: Workspace, digests: list[str]) -> None:
    now = datetime.now(UTC)
    version = _model_version(workspace)
    rows = []
    for when, plan in ((now - timedelta(minutes=30), RECENT), (now - timedelta(days=3), OLDER)):
        for camera, counts in plan.items():
            for decision, n in zip(("pass", "reject", "review"), counts, strict=True):
                for _ in range(n):
                    rows.append(_prediction(len(rows), when, camera, decision, digests[len(rows) % len(digests)]))
    with workspace.db.engine.begin() as conn:
        ids = [conn.execute(insert(s.predictions).values(**row)).inserted_primary_key[0] for row in rows]
        for k, prediction_id in enumerate(ids[:3]):  # the first three: the shadow disagreed
            conn.execute(insert(s.shadow_predictions).values(
                prediction_id=prediction_id, model_version_id=version, label="dent", decision="reject",
                confidence=0.7, scores={"dent": 0.7}, latency_ms={"total": 5.0}, agrees=False,
                created_at=(now - timedelta(minutes=k)).isoformat(timespec="seconds")))
        conn.execute(insert(s.shadow_predictions).values(
            prediction_id=ids[3], model_version_id=version, label="good", decision="pass", confidence=0.9,
            scores={"good": 0.9}, latency_ms={"total": 5.0}, agrees=True, created_at=now.isoformat()))


def _prediction(index: int, when: datetime, camera: str, decision: str, digest: str) -> dict[str, object]:
    label = {"pass": "good", "reject": "scratch", "review": "good"}[decision]
    return {"request_id": f"req-{index}", "received_at": when.isoformat(timespec="seconds"), "source": "http",
            "camera": camera, "line": "L7", "extra": {}, "image_sha256": digest, "image_stored": True,
            "model_name": "line7-v1", "label": label, "decision": decision, "confidence": 0.8,
            "scores": {label: 0.8}, "latency_ms": {"total": 4.0}}


def _model_version(workspace: Workspace) -> int:
    """A registered shadow version, recorded with the least the store needs (no model file is read)."""
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    with workspace.db.engine.begin() as conn:
        conn.execute(insert(s.dataset_versions).values(name="v1", created_at=stamp, params={}, summary={}))
        conn.execute(insert(s.runs).values(id="run-1", kind="train", status="finished", dataset_version="v1",
                                           config={}, code_version="test", artifacts="runs/run-1", started_at=stamp))
        model = conn.execute(insert(s.models).values(run_id="run-1", variant="fp32", path="runs/run-1/model.onnx",
                                                     file_sha256="0" * 64, weights_sha256="0" * 64,
                                                     created_at=stamp, metadata={})).inserted_primary_key[0]
        return int(conn.execute(insert(s.model_versions).values(
            name="line7-v2", run_id="run-1", model_id=model, variant="fp32", path="runs/run-1/model.onnx",
            file_sha256="0" * 64, stage="shadow", created_at=stamp, lineage={})).inserted_primary_key[0])


def queue_suspect_item(seeded: Seeded, camera: str) -> int:
    """Mark ``camera``'s seeded predictions suspect (they predate any baseline) and queue one of them as an
    "uncertain" item ahead of the seeded queue (its image had only a "shadow" item); return the item's id."""
    workspace = seeded.workspace
    workspace.db.predictions.mark_suspect(camera, None)
    shadow_only = {i.image_sha256 for i in map(workspace.db.review.get, seeded.items) if i and i.reason == "shadow"}
    with workspace.db.engine.connect() as conn:
        rows = conn.execute(select(s.predictions.c.id, s.predictions.c.image_sha256)
                            .where(s.predictions.c.camera == camera)).all()
    row = next(r for r in rows if r.image_sha256 in shadow_only)
    with workspace.db.transaction() as tx:
        item = enqueue(tx, image_sha256=row.image_sha256, reason="uncertain", prediction_id=row.id,
                       suggestion="good", priority=1e6)
    assert item is not None
    return item
