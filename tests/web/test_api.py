"""The inspection API: decisions logged once, bad requests refused with a fix and no row, roles, hot swap."""

from __future__ import annotations

import io
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
        assert client.get("/v1/health", headers=line.auth()).json()["production"]["name"] == line.production.name
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
        first = post(client, line, image_bytes("dark", 5), headers={"X-Request-ID": "cam1-000042"},
                     camera="cam1", part_id="P-1").json()
        again = post(client, line, image_bytes("dark", 5), headers={"X-Request-ID": "cam1-000042"},
                     part_id="P-1", camera="cam1")
        form = post(client, line, image_bytes(), request_id="cam1-000043", camera="cam1").json()
        with ThreadPoolExecutor(8) as pool:  # the same id at once from eight clients
            racing = list(pool.map(lambda _: post(client, line, image_bytes(), headers={"X-Request-ID": "race"}),
                                   range(8)))
    assert again.status_code == 200 and again.json() == {**first, "replayed": True}
    assert form["request_id"] == "cam1-000043"
    assert len({r.json()["prediction_id"] for r in racing}) == 1
    assert rows(line) == 3


REUSED = {  # the issue: a reused id with other content answered 200 replayed with the first image's decision
    "image": ({"image": ("good", 8)}, "image bytes"),
    "camera": ({"camera": "cam2"}, "camera"),
    "part": ({"part_id": "P-2"}, "part_id"),
    "other metadata": ({"operator": "jo"}, "operator"),
    "a field left out": ({"shift": None}, "shift"),
}


@pytest.mark.parametrize("case", list(REUSED))
def test_a_reused_request_id_with_other_content_is_a_409_naming_the_difference(line: Line, case: str) -> None:
    change, named = REUSED[case]
    base = {"camera": "cam1", "part_id": "P-1", "shift": "A"}
    fields = {k: v for k, v in {**base, **change}.items() if k != "image" and v is not None}
    with client_for(line, cameras=("cam1", "cam2")) as client:
        first = post(client, line, image_bytes("scratch", 1), headers={"X-Request-ID": "cam1-7"}, **base).json()
        reused = post(client, line, image_bytes(*change.get("image", ("scratch", 1))),
                      headers={"X-Request-ID": "cam1-7"}, **fields)
    assert reused.status_code == 409, reused.text
    assert named in reused.json()["error"] and "cam1-7" in reused.json()["error"] and reused.json()["fix"]
    assert f"prediction {first['prediction_id']}" in reused.json()["error"] and rows(line) == 1


def test_racing_requests_with_one_id_and_different_images_log_one_and_refuse_the_rest(line: Line) -> None:
    with client_for(line) as client, ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda i: post(client, line, image_bytes("good", i), headers={"X-Request-ID": "r"}),
                                range(8)))
    assert sorted(r.status_code for r in replies) == [200] + [409] * 7 and rows(line) == 1


def test_health_is_bare_liveness_without_a_token(line: Line) -> None:
    with client_for(line, cameras=("cam1",)) as client:
        public = client.get("/v1/health")
        detailed = client.get("/v1/health", headers=line.auth())
        refused = client.get("/v1/health", headers={"Authorization": "Bearer not-a-token"})
    assert public.status_code == 200 and public.json() == {"status": "ok"}
    assert detailed.json()["production"]["classes"] == ["dark", "good", "scratch"] or detailed.json()["cameras"]
    assert detailed.json()["cameras"] == ["cam1"] and line.production.name in detailed.text
    assert refused.status_code == 401


@pytest.mark.parametrize("field", ["camera", "part_id", "operator"])
def test_metadata_fields_are_bounded(line: Line, field: str) -> None:
    with client_for(line) as client:
        response = post(client, line, image_bytes(), **{"camera": "cam1", field: "x" * 100_000})
        too_long_name = post(client, line, image_bytes(), **{"camera": "cam1", "n" * 300: "1"})
        at_the_limit = post(client, line, image_bytes(), **{"camera": "cam1", "operator": "x" * 256})
    assert response.status_code == 422 and field in response.json()["error"] and "256" in response.json()["error"]
    assert too_long_name.status_code == 422 and at_the_limit.status_code == 200
    assert rows(line) == 1


def test_the_api_takes_bearer_tokens_only_and_never_writes_for_another_site(line: Line) -> None:
    """The issue: /v1/inspect accepted the login cookie without CSRF or Origin checks (200, a row written)."""
    with client_for(line) as client:
        assert client.post("/login", data={"token": line.reviewer}, follow_redirects=False).status_code == 303
        assert client.get("/review").status_code == 200  # the browser session works for the pages
        files = {"image": ("a.png", image_bytes(), "image/png")}
        with_cookie = client.post("/v1/inspect", files=files, data={"camera": "cam1"})
        foreign = client.post("/v1/inspect", files=files, data={"camera": "cam1"},
                              headers={"Origin": "http://evil.example"})
        foreign_bearer = client.post("/v1/inspect", files=files, data={"camera": "cam1"},
                                     headers={"Origin": "http://evil.example", **line.auth()})
        qc = client.post("/v1/qc", json={"prediction_id": 1, "label": "good"}, headers={"Origin": "http://evil.example"})
    assert with_cookie.status_code == 401 and "no credentials" in with_cookie.json()["error"]
    assert foreign.status_code == 403 and foreign_bearer.status_code == 403 and qc.status_code == 403
    assert "another site" in foreign.json()["error"]
    assert rows(line) == 0 and rows(line, s.qc_decisions) == 0


def test_expired_and_revoked_tokens_get_a_401_saying_so(line: Line) -> None:
    from sqlalchemy import update

    from inspectloop.people import revoke_token

    with client_for(line) as client:
        with line.workspace.db.engine.begin() as conn:
            conn.execute(update(s.users).where(s.users.c.name == "rita")
                         .values(token_expires_at="2020-01-01T00:00:00+00:00"))
        expired = post(client, line, image_bytes())
        revoke_token(line.workspace, "adam", actor="test")
        revoked = client.post("/v1/models/rollback", json={"reason": "x"}, headers=line.auth("admin"))
    assert expired.status_code == 401 and "expired at 2020-01-01" in expired.json()["error"]
    assert "token-rotate rita" in expired.json()["fix"]
    assert revoked.status_code == 401 and "revoked" in revoked.json()["error"]
    assert rows(line) == 0


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
        # the rollback waits until the promoted model has answered: without it the two calls can fall between
        # two requests and the swap, though done, serves nothing
        wait_for(lambda: any(a.json()["model"]["name"] == v2.name for a in list(answers[after_promotion:])))
        rolled = client.post("/v1/models/rollback", json={"reason": "trial over"}, headers=line.auth("admin"))
        assert rolled.status_code == 200 and rolled.json()["production"]["name"] == line.production.name
        wait_for(lambda: len(answers) >= after_promotion + 20)
        stop.set()
        for thread in threads:
            thread.join()
        assert client.get("/v1/health", headers=line.auth()).json()["production"]["name"] == line.production.name
    assert not errors and rows(line) == len(answers)
    assert {a.json()["model"]["name"] for a in answers} == {line.production.name, v2.name}
    assert production_model(line.workspace).name == line.production.name


def test_a_promotion_made_elsewhere_is_picked_up_by_polling(line: Line) -> None:
    from inspectloop.registry import promote

    v2 = add_version(line.workspace, "run-b", tiny_model_bytes())
    with client_for(line) as client:
        promote(line.workspace, v2, "production", actor="ana", reason="cli", override=True)
        wait_for(lambda: client.get("/v1/health", headers=line.auth()).json()["production"]["name"] == v2.name)
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
        for bad_id in (10**30, 0, -1):  # 10**30 overflowed the database driver: a 500
            huge = client.post("/v1/qc", json={"prediction_id": bad_id, "label": "good"}, headers=line.auth())
            assert huge.status_code == 422 and "prediction_id" in huge.json()["error"], huge.text
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


def test_redacting_a_token_in_the_url_keeps_the_access_log_line(capsys: pytest.CaptureFixture[str]) -> None:
    """The issue: ``token=`` in a URL gave '--- Logging error ---' (a TypeError) and no access-log line."""
    from uvicorn.logging import AccessFormatter

    from inspectloop.cli.service_commands import log_config

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(AccessFormatter(log_config()["formatters"]["access"]["fmt"], use_colors=False))
    handler.addFilter(RedactSecrets())
    logger = logging.getLogger("tests.uvicorn.access")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:  # the call uvicorn's access logger makes for each request
        logger.info('%s - "%s %s HTTP/%s" %d', "10.0.0.7:5123", "GET", "/v1/health?token=s3cret&x=1", "1.1", 200)
    finally:
        logger.removeHandler(handler)
    line = stream.getvalue()
    assert '10.0.0.7:5123 - "GET /v1/health?token=[redacted]&x=1 HTTP/1.1" 200' in line and "s3cret" not in line
    assert "Logging error" not in capsys.readouterr().err


@pytest.mark.parametrize(("body", "words"), [(b"{not json", "not valid JSON"), (b'{"label": 3}', "label"),
                                             (b'{"label": "good", "colour": "red"}', "colour")])
def test_a_malformed_qc_verdict_gets_a_422_naming_the_problem(line: Line, body: bytes, words: str) -> None:
    with client_for(line) as client:
        response = client.post("/v1/qc", content=body,
                               headers={**line.auth(), "content-type": "application/json"})
    assert response.status_code == 422 and words in response.json()["error"] and response.json()["fix"]
    assert rows(line, s.qc_decisions) == 0


def test_an_answer_from_a_camera_that_failed_its_health_check_is_marked_suspect(line: Line, tmp_path: Path) -> None:
    from tests.camera.targets import fail_camera_check

    fail_camera_check(line.workspace, "cam1", tmp_path)
    with client_for(line, cameras=("cam1", "cam2")) as client:
        doubted = post(client, line, image_bytes("scratch", 1), camera="cam1")
        trusted = post(client, line, image_bytes("scratch", 2), camera="cam2")
    assert doubted.status_code == trusted.status_code == 200, doubted.text
    assert doubted.json()["suspect"] is True and trusted.json()["suspect"] is False
