"""The prediction log: group commit, one row per request id, kept images stored before their rows."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("torch")
from sqlalchemy import select  # noqa: E402

from inspectloop.domain import CaptureMeta  # noqa: E402
from inspectloop.serve.prediction_log import PredictionLog, PredictionRecord  # noqa: E402
from inspectloop.runtime import EdgeModel  # noqa: E402
from inspectloop.runtime.images import decode_image  # noqa: E402
from inspectloop.store import schema as s  # noqa: E402
from inspectloop.store import sha256_bytes  # noqa: E402
from tests.service_helpers import image_bytes, line_workspace  # noqa: E402


def test_concurrent_records_commit_in_groups_once_per_request_id(tmp_path: Path) -> None:
    line = line_workspace(tmp_path / "ws")
    model = EdgeModel(line.production.path)
    images = [image_bytes("good", i) for i in range(6)]
    predictions = [model.predict(data) for data in images]
    log = PredictionLog(line.workspace, ingest_id=line.workspace.db.begin_ingest("test", "service"))
    log.start()

    def record(i: int) -> PredictionRecord:
        data = images[i % 6]
        return PredictionRecord(request_id=f"r{i % 40}", source="http", meta=CaptureMeta(camera="cam1"),
                                data=data, decoded=decode_image(data), sha256=sha256_bytes(data),
                                model_version_id=line.production.id, model_name="v1", prediction=predictions[i % 6],
                                keep_image=i % 6 == 0)

    with ThreadPoolExecutor(16) as pool:
        logged = list(pool.map(lambda i: log.submit(record(i)).result(timeout=30), range(80)))
    log.stop()
    assert log.batches < 80  # group commit: many requests per transaction
    by_id = {}
    for entry in logged:
        assert by_id.setdefault(entry.request_id, entry.id) == entry.id
    with line.workspace.db.engine.connect() as conn:
        rows = conn.execute(select(s.predictions)).all()
        images_rows = conn.execute(select(s.images)).all()
    assert len(rows) == 40 and {r.request_id for r in rows} == set(by_id)
    kept = {r.image_sha256 for r in rows if r.image_stored}
    assert kept == {i.sha256 for i in images_rows} == {sha256_bytes(images[0])}
    # statistics of images not kept are measured after the answer; stop() drains that thread too
    assert all(line.workspace.blobs.exists(d) for d in kept) and all(r.stats for r in rows)
    line.workspace.close()

