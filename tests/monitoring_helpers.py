"""A line with history: the tiny CNN in production, a frozen test split with cameras, a prediction log.

Images are synthetic (``tests.test_export.synthetic_image``); production rows are written as the
prediction log writes them (statistics measured, some images stored), at chosen times, so drift,
camera and recalibration tests control exactly what the window holds.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from PIL import Image
from sqlalchemy import insert, update

from inspectloop.domain import Annotation, CaptureMeta, DatasetItem, ImageSource
from inspectloop.ingest import measure_image
from inspectloop.store import schema as s
from inspectloop.workspace import Workspace
from tests.service_helpers import Line, line_workspace
from tests.test_export import CLASSES, synthetic_image

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
CAMERAS = ("cam-a", "cam-b")

Degrade = Callable[[Image.Image], Image.Image]


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def darker(image: Image.Image) -> Image.Image:
    """Light intensity decay: 45% of the brightness."""
    return Image.fromarray((np.asarray(image, dtype=np.float64) * 0.45).astype(np.uint8), image.mode)


def store_images(workspace: Workspace, images: Sequence[Image.Image], camera: str | None,
                 source: ImageSource = ImageSource.collection) -> list[str]:
    """Blobs and ``images`` rows (measured as at ingest); return the digests."""
    records = []
    for image in images:
        data = png(image)
        digest, _ = workspace.blobs.put(data)
        record = measure_image(data, digest, CaptureMeta(camera=camera, shift="early"), ImageSource.production)
        records.append(record.model_copy(update={"source": source}))
    ingest_id = workspace.db.images.begin_ingest("test", "folder")
    with workspace.db.transaction() as tx:
        for record in {r.sha256: r for r in records}.values():
            tx.images.add_once(record, ingest_id)
    return [r.sha256 for r in records]


def frozen_test_split(line: Line, per_class: int = 12) -> None:
    """Dataset version v2 (test split per camera, labelled) behind the production run."""
    workspace, items, annotations = line.workspace, [], []
    for c, camera in enumerate(CAMERAS):
        for k, label in enumerate(CLASSES):
            images = [synthetic_image(label, 50_000 + c * 1000 + k * 100 + i) for i in range(per_class)]
            for digest in store_images(workspace, images, camera):
                items.append(DatasetItem(sha256=digest, label=label, split="test", group_key=digest))
                annotations.append(Annotation(sha256=digest, class_name=label, annotator="import"))
    workspace.db.datasets.add("v2", "v1", {}, {"count": len(items)}, items)
    workspace.db.labels.add_annotations(annotations)
    with workspace.db.engine.begin() as conn:
        conn.execute(update(s.runs).where(s.runs.c.id == line.production.run_id).values(dataset_version="v2"))


def log_predictions(line: Line, camera: str, count: int, *, start: datetime, spacing: timedelta = timedelta(minutes=5),
                    degrade: Degrade | None = None, stored_every: int = 2, seed: int = 0,
                    labels: Sequence[str] = CLASSES) -> list[int]:
    """``count`` production predictions of the production model on ``camera``; return their ids."""
    from inspectloop.runtime import EdgeModel

    model = EdgeModel(line.production.path)
    workspace, rows, kept = line.workspace, [], []
    for i in range(count):
        image = synthetic_image(labels[i % len(labels)], seed * 10_000 + i)
        image = degrade(image) if degrade else image
        data = png(image)
        digest = __import__("hashlib").sha256(data).hexdigest()
        record = measure_image(data, digest, CaptureMeta(camera=camera, shift=("early", "late")[i % 2]),
                               ImageSource.production)
        stored = i % stored_every == 0
        if stored:
            workspace.blobs.put(data)
            kept.append(record)  # measured as a production image
        p = model.predict(data)
        rows.append({"request_id": f"{camera}-{seed}-{i}-{start.timestamp()}", "received_at": (start + i * spacing).isoformat(),
                         "source": "http", "camera": camera, "shift": record.meta.shift, "extra": {}, "image_sha256": digest,
                         "image_stored": stored, "model_version_id": line.production.id, "model_name": "tiny v1",
                         "label": p.label, "decision": p.decision, "confidence": p.confidence, "scores": p.scores,
                         "latency_ms": p.latency_ms, "stats": record.quality.model_dump()})
    ingest_id = workspace.db.images.begin_ingest("service", "service")
    with workspace.db.transaction() as tx:
        for record in {r.sha256: r for r in kept}.values():
            tx.images.add_once(record, ingest_id)
    with workspace.db.engine.begin() as conn:
        return [int(conn.execute(insert(s.predictions).values(**row)).inserted_primary_key[0]) for row in rows]


def monitored_line(root: Path) -> Line:
    """A line with its frozen test split; nothing logged yet."""
    line = line_workspace(root)
    frozen_test_split(line)
    return line
