"""The prediction log: group commit, one row per request id, kept images stored before their rows."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("torch")
from sqlalchemy import select  # noqa: E402

from sqlalchemy import update  # noqa: E402

from inspectloop.domain import CaptureMeta  # noqa: E402
from inspectloop.errors import RequestError  # noqa: E402
from inspectloop.runtime import Prediction  # noqa: E402
from inspectloop.serve.prediction_log import PredictionLog, PredictionRecord  # noqa: E402
from inspectloop.runtime import EdgeModel  # noqa: E402
from inspectloop.runtime.images import decode_image  # noqa: E402
from inspectloop.store import schema as s  # noqa: E402
from inspectloop.store import sha256_bytes  # noqa: E402
from tests.service_helpers import Line, image_bytes, line_workspace  # noqa: E402


def _record(line: Line, request_id: str, data: bytes, prediction: Prediction, keep_image: bool = False,
            camera: str = "cam1") -> PredictionRecord:
    return PredictionRecord(request_id=request_id, source="http", meta=CaptureMeta(camera=camera), data=data,
                            decoded=decode_image(data), sha256=sha256_bytes(data), model_version_id=line.production.id,
                            model_name="v1", prediction=prediction, keep_image=keep_image)


def test_concurrent_records_commit_in_groups_once_per_request_id(tmp_path: Path) -> None:
    line = line_workspace(tmp_path / "ws")
    model = EdgeModel(line.production.path)
    images = [image_bytes("good", i) for i in range(6)]
    predictions = [model.predict(data) for data in images]
    log = PredictionLog(line.workspace, ingest_id=line.workspace.db.images.begin_ingest("test", "service"))
    log.start()

    def record(i: int) -> PredictionRecord:
        n = i % 40  # each request id twice, with the same content: a retry
        return _record(line, f"r{n}", images[n % 6], predictions[n % 6], keep_image=n % 6 == 0)

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



def test_a_reused_request_id_with_other_content_is_refused_by_the_writer_too(tmp_path: Path) -> None:
    """Two requests with one id can both pass the service's check before either commits: the writer decides."""
    line = line_workspace(tmp_path / "ws")
    model = EdgeModel(line.production.path)
    first, other = image_bytes("good", 1), image_bytes("good", 2)
    log = PredictionLog(line.workspace, ingest_id=line.workspace.db.images.begin_ingest("test", "service"))
    log.start()
    try:
        logged = log.submit(_record(line, "cam1-9", first, model.predict(first))).result(timeout=30)
        with line.workspace.db.engine.begin() as conn:  # as logged before schema v5: compared field by field
            conn.execute(update(s.predictions).values(content_sha256=None))
        same = log.submit(_record(line, "cam1-9", first, model.predict(first))).result(timeout=30)
        futures = [log.submit(_record(line, "cam1-9", other, model.predict(other))),
                   log.submit(_record(line, "cam1-9", first, model.predict(first), camera="cam2"))]
        errors = [future.exception(timeout=30) for future in futures]
    finally:
        log.stop()
    assert same.replayed and same.id == logged.id
    assert all(isinstance(e, RequestError) and e.kind == "conflict" for e in errors)
    assert "image bytes" in str(errors[0]) and "camera" in str(errors[1]) and "image bytes" not in errors[1].message
    with line.workspace.db.engine.connect() as conn:
        assert len(conn.execute(select(s.predictions)).all()) == 1
    line.workspace.close()


def test_a_failed_statistics_write_costs_those_rows_statistics_never_the_thread(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    line = line_workspace(tmp_path / "ws")
    model = EdgeModel(line.production.path)
    images = [image_bytes("good", i) for i in range(2)]
    log = PredictionLog(line.workspace, ingest_id=line.workspace.db.images.begin_ingest("test", "service"))
    real_set_stats, calls = line.workspace.db.predictions.set_stats, []

    def locked_once(rows: list) -> None:  # noqa: ANN001 (the repository's own row type)
        calls.append(len(rows))
        if len(calls) == 1:
            raise RuntimeError("database is locked")
        real_set_stats(rows)

    monkeypatch.setattr(line.workspace.db.predictions, "set_stats", locked_once)
    log.start()
    first = log.submit(_record(line, "r1", images[0], model.predict(images[0]))).result(timeout=30)
    deadline = time.monotonic() + 30
    while not calls and time.monotonic() < deadline:
        time.sleep(0.01)
    second = log.submit(_record(line, "r2", images[1], model.predict(images[1]))).result(timeout=30)
    log.stop()  # drains the statistics thread: it is still there to do so
    with line.workspace.db.engine.connect() as conn:
        stats = dict(conn.execute(select(s.predictions.c.id, s.predictions.c.stats)).all())
    assert stats[first.id] is None and stats[second.id]
    line.workspace.close()
