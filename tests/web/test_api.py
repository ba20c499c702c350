"""The inspection API: decisions logged once, bad requests refused with a fix and no row, roles, hot swap."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("torch")
from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from inspectloop.registry import production_model  # noqa: E402
from inspectloop.serve.service import ServiceConfig  # noqa: E402
from inspectloop.store import schema as s  # noqa: E402
from inspectloop.web.app import RedactSecrets, create_app  # noqa: E402
from tests.service_helpers import (  # noqa: E402
    Line, add_version, image_bytes, line_workspace, review_model_bytes, wait_for,
)
from benchmarks.hostile_corpus import png_of_zeros  # noqa: E402
from tests.registry_helpers import tiny_model_bytes  # noqa: E402


@pytest.fixture
def line(tmp_path: Path) -> Iterator[Line]:
    line = line_workspace(tmp_path / "ws")
    yield line
    line.workspace.close()


def client_for(line: Line, **config: object) -> TestClient:
    return TestClient(create_app(line.workspace.root, config=ServiceConfig(poll_seconds=0.2, **config)))


def rows(line: Line, table: object = s.predictions) -> int:
    with line.workspace.db.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def post(client: TestClient, line: Line, data: bytes | None = b"", role: str = "reviewer",
         headers: dict[str, str] | None = None, **fields: str) -> object:
    files = {"image": ("part.png", data, "image/png")} if data is not None else None
    return client.post("/v1/inspect", files=files, data=fields or {"camera": "cam1"},
                       headers={**line.auth(role), **(headers or {})})


def test_an_inspection_is_decided_logged_and_measured(line: Line) -> None:
    with client_for(line) as client:
        response = client.post("/v1/inspect", files={"image": ("a.png", image_bytes("scratch", 1), "image/png")},
                               data={"camera": "cam1", "line": "3", "part_id": "P-7", "operator": "jo"},
                               headers=line.auth())
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["label"] == "scratch" and body["decision"] == "reject" and not body["replayed"]
        assert body["model"]["name"] == line.production.name and set(body["scores"]) == {"good", "scratch", "dark"}
        assert client.get("/v1/health").json()["production"]["name"] == line.production.name
    with line.workspace.db.engine.connect() as conn:
        row = conn.execute(select(s.predictions)).one()
    assert (row.id, row.request_id, row.camera, row.part_id, row.source) == (
        body["prediction_id"], body["request_id"], "cam1", "P-7", "http")
    assert row.extra == {"operator": "jo"} and row.stats["brightness"] > 0 and row.model_version_id == line.production.id


BAD = {
    "no image": (None, 422, "no image"),
    "empty": (b"", 422, "empty"),
    "truncated": ("truncated", 422, "truncated"),
    "unsupported": (b"operator notes, not an image", 415, "supported format"),
    "format outside the policy": ("tga", 415, "supported format"),
    "decompression bomb (was a 500)": ("bomb", 413, "900.0 MP, over the 40.0 MP limit"),
    "oversized": ("big", 413, "limit"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_requests_get_a_4xx_with_a_fix_and_log_nothing(line: Line, case: str) -> None:
    data, status, words = BAD[case]
    if data == "truncated":
        data = image_bytes("good", 2, "JPEG")[:300]
    elif data == "tga":
        data = image_bytes("good", 2, "TGA")
    elif data == "bomb":
        data = png_of_zeros(30000, 30000)
    elif data == "big":
        data = image_bytes("good", 3) + bytes(30_000)
    with client_for(line, max_upload_mb=2.0 if case.startswith("decompression") else 0.02) as client:
        response = post(client, line, data)
    assert response.status_code == status, response.text
    assert words in response.json()["error"] and response.json()["fix"]
    assert rows(line) == 0


def test_unknown_camera_is_refused_naming_the_known_ones(line: Line) -> None:
    with client_for(line, cameras=("cam1", "cam2")) as client:
        response = post(client, line, image_bytes(), camera="cam9")
        assert response.status_code == 422 and "cam9" in response.json()["error"]
        assert "cam1, cam2" in response.json()["fix"]
        assert post(client, line, image_bytes(), camera="cam2").status_code == 200
    assert rows(line) == 1


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer not-a-token"}])
def test_writes_without_a_valid_token_are_refused(line: Line, headers: dict[str, str]) -> None:
    with client_for(line) as client:
        response = client.post("/v1/inspect", files={"image": ("a.png", image_bytes(), "image/png")}, headers=headers)
        assert response.status_code == 401 and response.json()["fix"]
        assert client.post("/v1/qc", json={"prediction_id": 1, "label": "good"}, headers=headers).status_code == 401
    assert rows(line) == 0


def test_a_retried_request_returns_the_stored_result_and_adds_no_row(line: Line) -> None:
    with client_for(line) as client:
        first = post(client, line, image_bytes(), headers={"X-Request-ID": "cam1-000042"}).json()
        again = post(client, line, image_bytes("dark", 5), headers={"X-Request-ID": "cam1-000042"}).json()
        form = post(client, line, image_bytes(), request_id="cam1-000043", camera="cam1").json()
        with ThreadPoolExecutor(8) as pool:  # the same id at once from eight clients
            racing = list(pool.map(lambda _: post(client, line, image_bytes(), headers={"X-Request-ID": "race"}),
                                   range(8)))
    assert again["prediction_id"] == first["prediction_id"] and again["replayed"] and again["label"] == first["label"]
    assert form["request_id"] == "cam1-000043"
    assert len({r.json()["prediction_id"] for r in racing}) == 1
    assert rows(line) == 3


def test_promotion_needs_an_admin_and_swaps_the_model_under_load(line: Line) -> None:
    v2 = add_version(line.workspace, "run-b", tiny_model_bytes())
    stop, answers, errors = threading.Event(), [], []

    def load(client: TestClient) -> None:
        while not stop.is_set():
            response = post(client, line, image_bytes("good", len(answers) % 7))
            (answers if response.status_code == 200 else errors).append(response)

    with client_for(line) as client:
        refused = client.post("/v1/models/promote", json={"version": v2.name, "override": True, "reason": "x"},
                              headers=line.auth("reviewer"))
        assert refused.status_code == 403 and "admin" in refused.json()["error"]
        threads = [threading.Thread(target=load, args=(client,)) for _ in range(4)]
        for thread in threads:
            thread.start()
        promoted = client.post("/v1/models/promote", json={"version": v2.name, "override": True, "reason": "better"},
                               headers=line.auth("admin"))
        assert promoted.status_code == 200 and promoted.json()["production"]["name"] == v2.name
        after_promotion = len(answers)
        rolled = client.post("/v1/models/rollback", json={"reason": "trial over"}, headers=line.auth("admin"))
        assert rolled.status_code == 200 and rolled.json()["production"]["name"] == line.production.name
        wait_for(lambda: len(answers) >= after_promotion + 20)
        stop.set()
        for thread in threads:
            thread.join()
        assert client.get("/v1/health").json()["production"]["name"] == line.production.name
    assert not errors and rows(line) == len(answers)
    assert {a.json()["model"]["name"] for a in answers} == {line.production.name, v2.name}
    assert production_model(line.workspace).name == line.production.name


def test_a_promotion_made_elsewhere_is_picked_up_by_polling(line: Line) -> None:
    from inspectloop.registry import promote

    v2 = add_version(line.workspace, "run-b", tiny_model_bytes())
    with client_for(line) as client:
        promote(line.workspace, v2, "production", actor="ana", reason="cli", override=True)
        wait_for(lambda: client.get("/v1/health").json()["production"]["name"] == v2.name)
        assert post(client, line, image_bytes()).json()["model"]["name"] == v2.name


def test_uncertain_predictions_are_kept_and_queued_for_review(line: Line, tmp_path: Path) -> None:
    model = tmp_path / "review.onnx"
    model.write_bytes(review_model_bytes())
    with client_for(line, model_file=model, sample_rate=0.0) as client:
        body = post(client, line, image_bytes("good", 9)).json()
    assert body["decision"] == "review" and body["model"]["version_id"] is None
    with line.workspace.db.engine.connect() as conn:
        image = conn.execute(select(s.images)).one()
        item = conn.execute(select(s.review_items)).one()
        stored = conn.execute(select(s.predictions.c.image_stored)).scalar_one()
    assert image.sha256 == body["image_sha256"] and image.source == "production" and image.camera == "cam1"
    assert stored and line.workspace.blobs.exists(image.sha256)
    assert (item.reason, item.prediction_id, item.suggestion) == ("uncertain", body["prediction_id"], body["label"])


def test_qc_verdicts_are_recorded_and_checked(line: Line) -> None:
    with client_for(line) as client:
        body = post(client, line, image_bytes("scratch", 4)).json()
        ok = client.post("/v1/qc", json={"prediction_id": body["prediction_id"], "label": "scratch"},
                         headers=line.auth())
        assert ok.status_code == 200 and ok.json()["production_agrees"]
        unknown = client.post("/v1/qc", json={"request_id": body["request_id"], "label": "dent"}, headers=line.auth())
        assert unknown.status_code == 422 and "dent" in unknown.json()["error"]
        missing = client.post("/v1/qc", json={"prediction_id": 999, "label": "good"}, headers=line.auth())
        assert missing.status_code == 404
        assert client.post("/v1/qc", json={"label": "good", "colour": 1}, headers=line.auth()).status_code == 422
    assert rows(line, s.qc_decisions) == 1


def test_tokens_never_reach_the_logs(line: Line, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with client_for(line) as client:
        post(client, line, image_bytes())
        client.post("/v1/models/rollback", json={"reason": "x"}, headers=line.auth("admin"))
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert line.reviewer not in text and line.admin not in text
    record = logging.LogRecord("uvicorn.access", logging.INFO, "", 0, '%s "%s"', ("1.2.3.4", f"GET /?token={line.admin}"),
                               None)
    assert RedactSecrets().filter(record) and line.admin not in record.getMessage()


@pytest.mark.parametrize(("body", "words"), [(b"{not json", "not valid JSON"), (b'{"label": 3}', "label"),
                                             (b'{"label": "good", "colour": "red"}', "colour")])
def test_a_malformed_qc_verdict_gets_a_422_naming_the_problem(line: Line, body: bytes, words: str) -> None:
    with client_for(line) as client:
        response = client.post("/v1/qc", content=body,
                               headers={**line.auth(), "content-type": "application/json"})
    assert response.status_code == 422 and words in response.json()["error"] and response.json()["fix"]
    assert rows(line, s.qc_decisions) == 0
