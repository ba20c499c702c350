"""The pages' HTTP contract without a browser: redirects, cookie flags, CSRF, escaping, image access."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from inspectloop import review
from inspectloop.camera import run as camera
from inspectloop.store import schema as s
from inspectloop.web.auth import COOKIE
from inspectloop.web.pages import csrf_token
from tests.camera.targets import fail_camera_check, targets
from tests.review_helpers import Seeded, queue_suspect_item, seed
from tests.web.conftest import pages_app


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[Seeded]:
    result = seed(tmp_path, items=6)
    yield result
    result.workspace.close()


@pytest.fixture
def client(seeded: Seeded) -> TestClient:
    return TestClient(pages_app(seeded.workspace), follow_redirects=False)


def logged_in(client: TestClient, seeded: Seeded, name: str = "ana") -> str:
    """Log ``name`` in through the form; return the session's CSRF token."""
    reply = client.post("/login", data={"token": seeded.tokens[name], "next": "/review"})
    assert reply.status_code == 303 and reply.headers["location"] == "/review"
    return csrf_token(str(client.cookies.get(COOKIE)))


def reviewer_annotations(seeded: Seeded) -> int:
    with seeded.workspace.db.engine.connect() as conn:
        return conn.execute(select(func.count()).where(s.annotations.c.source == "reviewer")).scalar_one()


@pytest.mark.parametrize("path", ["/", "/review", "/dashboard"])
def test_pages_send_strangers_to_login(client: TestClient, path: str) -> None:
    reply = client.get(path, follow_redirects=True)
    assert reply.url.path == "/login" and 'name="token"' in reply.text


def test_login_cookie_is_a_session_id_http_only_and_strict(client: TestClient, seeded: Seeded) -> None:
    reply = client.post("/login", data={"token": seeded.tokens["ana"]})
    cookie = reply.headers["set-cookie"].lower()
    assert f"{COOKIE}=" in cookie and "httponly" in cookie and "samesite=strict" in cookie
    assert "secure" not in cookie  # plain HTTP on loopback: a Secure cookie would never come back
    assert seeded.tokens["ana"].lower() not in cookie  # the issue: the cookie was the raw API token


def test_login_cookie_is_secure_under_tls(seeded: Seeded) -> None:
    client = TestClient(pages_app(seeded.workspace), base_url="https://testserver", follow_redirects=False)
    cookie = client.post("/login", data={"token": seeded.tokens["ana"]}).headers["set-cookie"].lower()
    assert "secure" in cookie and "httponly" in cookie


def test_logout_ends_the_session_so_the_old_cookie_fails(client: TestClient, seeded: Seeded) -> None:
    csrf = logged_in(client, seeded)
    old_cookie = str(client.cookies.get(COOKIE))
    assert client.get("/review").status_code == 200
    reply = client.post("/logout", data={"csrf": csrf})
    assert reply.status_code == 303 and reply.headers["location"] == "/login"
    replayed = TestClient(pages_app(seeded.workspace), follow_redirects=False, cookies={COOKIE: old_cookie})
    assert replayed.get("/review").headers["location"].startswith("/login")
    assert replayed.get(f"/images/{seeded.images[0]}").status_code == 401
    with seeded.workspace.db.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(s.sessions)).scalar_one() == 0


def test_a_raw_token_in_the_cookie_is_no_login(seeded: Seeded) -> None:
    client = TestClient(pages_app(seeded.workspace), follow_redirects=False, cookies={COOKIE: seeded.tokens["ana"]})
    assert client.get("/review").headers["location"].startswith("/login")


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example"])
def test_login_never_redirects_off_site(client: TestClient, seeded: Seeded, target: str) -> None:
    reply = client.post("/login", data={"token": seeded.tokens["ana"], "next": target})
    assert reply.headers["location"] == "/review"


def test_a_bad_token_is_refused_with_the_reason(client: TestClient) -> None:
    reply = client.post("/login", data={"token": "guess"})
    assert reply.status_code == 401 and "unknown token" in reply.text


@pytest.mark.parametrize(("headers", "form"), [
    ({}, {}),  # no CSRF token
    ({"X-CSRF-Token": "0" * 64}, {}),  # a wrong one
    ({"Origin": "http://evil.example"}, None),  # the right token from another site
])
def test_writes_without_the_csrf_token_or_from_another_site_are_refused(client: TestClient, seeded: Seeded,
                                                                        headers: dict[str, str],
                                                                        form: dict[str, str] | None) -> None:
    csrf = logged_in(client, seeded)
    client.get("/review")
    item = seeded.items[0]
    data = {"label": "good", **(form if form is not None else {"csrf": csrf})}
    reply = client.post(f"/review/items/{item}/decision", data=data, headers=headers)
    assert reply.status_code == 403
    assert reviewer_annotations(seeded) == 0


def claimed(seeded: Seeded) -> list[tuple[int, str]]:
    with seeded.workspace.db.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(s.review_items.c.id, s.review_items.c.claimed_by)
                                               .where(s.review_items.c.claimed_by.is_not(None)))]


def test_get_review_claims_nothing_and_the_next_item_is_claimed_by_a_post(client: TestClient,
                                                                           seeded: Seeded) -> None:
    """The issue's symptom: ``GET /review`` claimed an item (a write on a GET)."""
    csrf = logged_in(client, seeded)
    for _ in range(2):
        page = client.get("/review").text
        assert "data-item-id" not in page and 'action="/review/next"' in page and "6 item(s) wait" in page
    assert claimed(seeded) == []
    assert client.post("/review/next", data={"csrf": "0" * 64}).status_code == 403 and claimed(seeded) == []
    reply = client.post("/review/next", data={"csrf": csrf})
    assert reply.status_code == 303 and reply.headers["location"] == "/review"
    assert claimed(seeded) == [(seeded.items[0], "ana")]
    assert f'data-item-id="{seeded.items[0]}"' in client.get("/review").text  # the held item, shown again
    client.post("/review/next", data={"csrf": csrf})  # a second press keeps the item held, claims no other
    assert claimed(seeded) == [(seeded.items[0], "ana")]


def test_a_stranger_posting_for_the_next_item_is_sent_to_login(client: TestClient, seeded: Seeded) -> None:
    reply = client.post("/review/next", data={"csrf": "x"})
    assert reply.status_code == 303 and reply.headers["location"] == "/login?next=/review"
    assert claimed(seeded) == []


def test_a_decision_answers_with_the_next_item(client: TestClient, seeded: Seeded) -> None:
    csrf = logged_in(client, seeded)
    client.post("/review/next", data={"csrf": csrf})
    assert f'data-item-id="{seeded.items[0]}"' in client.get("/review").text
    reply = client.post(f"/review/items/{seeded.items[0]}/decision", data={"label": "dent"},
                        headers={"X-CSRF-Token": csrf})
    assert reply.status_code == 200 and f'data-item-id="{seeded.items[2]}"' in reply.text  # items[1]: shadow
    again = client.post(f"/review/items/{seeded.items[0]}/decision", data={"label": "good", "csrf": csrf})
    assert again.status_code == 409 and "already decided by ana" in again.text
    assert reviewer_annotations(seeded) == 1


def test_an_unauthenticated_write_gets_401(client: TestClient, seeded: Seeded) -> None:
    reply = client.post(f"/review/items/{seeded.items[0]}/decision", data={"label": "good"})
    assert reply.status_code == 401 and reviewer_annotations(seeded) == 0


def test_the_last_decision_answers_with_the_empty_queue_and_a_form_to_check_again(client: TestClient,
                                                                                   seeded: Seeded) -> None:
    csrf = logged_in(client, seeded)
    with seeded.workspace.db.engine.begin() as conn:
        conn.execute(s.review_items.update().where(s.review_items.c.id != seeded.items[0]).values(status="done"))
    client.post("/review/next", data={"csrf": csrf})
    reply = client.post(f"/review/items/{seeded.items[0]}/decision", data={"label": "good", "csrf": csrf})
    assert "The queue is empty" in reply.text and f'name="csrf" value="{csrf}"' in reply.text


def test_every_score_panel_names_its_model_and_role(client: TestClient, seeded: Seeded) -> None:
    """The issue's symptom: the shadow's scores were shown beside production's without saying which is which."""
    csrf = logged_in(client, seeded)
    with seeded.workspace.db.engine.begin() as conn:
        conn.execute(s.review_items.update().values(status="done"))
    with seeded.workspace.db.transaction() as tx:  # prediction 1: production line7-v1, shadowed by line7-v2
        review.enqueue(tx, image_sha256=seeded.images[0], reason="shadow", prediction_id=1, suggestion="dent",
                       scores={"dent": 0.7})
    client.post("/review/next", data={"csrf": csrf})
    page = client.get("/review").text
    assert 'data-role="production" data-model="line7-v1"' in page and 'data-role="shadow" data-model="line7-v2"' in page
    assert page.index("Production model") < page.index("Shadow model")
    assert "from the shadow model line7-v2" in page  # whose suggestion Enter confirms


def test_text_from_the_database_is_escaped(client: TestClient, seeded: Seeded) -> None:
    logged_in(client, seeded)
    page = client.get("/review").text
    assert "&lt;until washed&gt;" in page and "<until washed>" not in page
    assert "Content-Security-Policy" in client.get("/review").headers


def test_images_need_a_login_and_a_known_digest(client: TestClient, seeded: Seeded) -> None:
    digest = seeded.images[0]
    assert client.get(f"/images/{digest}").status_code == 401
    logged_in(client, seeded)
    reply = client.get(f"/images/{digest}")
    assert reply.status_code == 200 and reply.headers["content-type"] == "image/png"
    assert reply.content == seeded.workspace.blobs.get(digest)
    assert client.get(f"/images/{'0' * 64}").status_code == 404
    assert client.get("/images/..%2F..%2Finspectloop.yaml").status_code == 404


def test_static_files_are_served_from_the_package(client: TestClient) -> None:
    assert "keydown" in client.get("/static/review.js").text
    assert client.get("/static/style.css").headers["content-type"].startswith("text/css")
    assert client.get("/static/..%2Fpages.py").status_code == 404


def test_an_anomaly_item_shows_its_heatmap_over_the_image_and_asks_for_a_class(client: TestClient,
                                                                               seeded: Seeded) -> None:
    import numpy as np

    from inspectloop.runtime import Prediction, Regions

    ws = seeded.workspace
    heatmap = np.zeros((32, 32), dtype=np.float32)
    heatmap[4:8, 20:24] = 1.0
    prediction = Prediction("anomaly", 0.7, {"good": 0.3, "anomaly": 0.7}, "review", {},
                            regions=Regions(image_size=(80, 60), heatmap=heatmap), anomaly_score=1.0)
    overlay = review.heatmap_overlay(prediction)
    assert overlay is not None
    ws.blobs.put(overlay)
    with ws.db.transaction() as tx:
        item_id = review.enqueue(tx, image_sha256=seeded.images[-1], reason=review.REASONS[0], suggestion="anomaly",
                                 scores=prediction.scores, details=review.prediction_details(prediction, overlay),
                                 priority=99.0)
    assert client.get(f"/review/items/{item_id}/heatmap.png").status_code == 401
    csrf = logged_in(client, seeded)
    client.post("/review/next", data={"csrf": csrf})
    page = client.get("/review").text
    assert f'data-item-id="{item_id}"' in page and 'data-suggestion=""' in page  # Enter confirms nothing
    assert f'src="/review/items/{item_id}/heatmap.png"' in page and 'id="heatmap-toggle"' in page
    assert "not a class: pick good or the defect you see" in page and review.HEATMAP_DETAIL not in page
    reply = client.get(f"/review/items/{item_id}/heatmap.png")
    assert reply.status_code == 200 and reply.headers["content-type"] == "image/png" and reply.content == overlay
    assert client.get(f"/review/items/{seeded.items[0]}/heatmap.png").status_code == 404  # a classifier's item
    assert client.get("/review/items/99999/heatmap.png").status_code == 404


def queue_box_item(seeded: Seeded) -> int:
    """A detector's uncertain frame with three boxes, first in the queue."""
    from tests.test_review_boxes import detector_prediction

    prediction = detector_prediction()
    with seeded.workspace.db.transaction() as tx:
        item_id = review.enqueue(tx, image_sha256=seeded.images[-1], reason="uncertain", suggestion="scratch",
                                 scores=prediction.scores, details=review.prediction_details(prediction),
                                 priority=999.0)
    assert item_id is not None
    return item_id


def box_page(client: TestClient, csrf: str) -> tuple[str, str]:
    """Claim the next item; the page and the view token its box layer carries."""
    import re

    client.post("/review/next", data={"csrf": csrf})
    page = client.get("/review").text
    seen = re.search(r'data-seen="([0-9a-f]+)"', page)
    assert seen is not None, "the page has no box layer"
    return page, seen.group(1)


def test_a_box_item_draws_the_models_boxes_and_lists_the_box_keys(client: TestClient, seeded: Seeded) -> None:
    import json
    import re

    item_id = queue_box_item(seeded)
    page, _seen = box_page(client, logged_in(client, seeded))
    assert f'data-item-id="{item_id}"' in page and "data-box-review" in page
    assert 'viewBox="0 0 96 96"' in page and "/static/review_boxes.js" in page
    boxes = json.loads(re.search(r"data-boxes='([^']*)'", page).group(1).replace("&#34;", '"'))
    assert [(b["class"], b["box"]) for b in boxes] == [("scratch", [10.0, 10.0, 30.0, 20.0]),
                                                       ("dent", [50.0, 40.0, 70.0, 80.0]),
                                                       ("scratch", [5.0, 60.0, 25.0, 90.0])]
    for shortcut in ("<kbd>Del</kbd> delete", "<kbd>B</kbd> add a box", "<kbd>Enter</kbd> submit the boxes",
                     "<kbd>Tab</kbd> next box"):
        assert shortcut in page
    assert 'data-class="good" data-good' in page  # the page knows which class no box may take


def test_submitted_boxes_are_stored_and_the_answer_is_the_next_item(client: TestClient, seeded: Seeded) -> None:
    import json

    item_id = queue_box_item(seeded)
    csrf = logged_in(client, seeded)
    _page, seen = box_page(client, csrf)
    body = {"seen": seen, "boxes": [{"class": "dent", "box": [48, 38, 75, 85], "predicted": 1},
                                    {"class": "stain", "box": [70, 5, 90, 25], "predicted": None}]}
    reply = client.post(f"/review/items/{item_id}/boxes", content=json.dumps(body),
                        headers={"X-CSRF-Token": csrf, "Content-Type": "application/json"})
    assert reply.status_code == 200 and f'data-item-id="{seeded.items[0]}"' in reply.text
    item = review.get_item(seeded.workspace, item_id)
    assert (item.status, item.decided_label, item.decided_by) == ("done", "dent", "ana")
    regions = seeded.workspace.db.regions.current([seeded.images[-1]])
    assert [(r.class_name, r.box.as_tuple(), r.annotator) for r in regions] == [
        ("dent", (48, 38, 75, 85), "ana"), ("stain", (70, 5, 90, 25), "ana")]
    again = client.post(f"/review/items/{item_id}/boxes", content=json.dumps(body),
                        headers={"X-CSRF-Token": csrf, "Content-Type": "application/json"})
    assert again.status_code == 409 and "already decided by ana" in again.text


@pytest.mark.parametrize(("body", "message"), [
    ("not json", "the boxes did not arrive as JSON"),
    ('{"boxes": []}', "needs 'boxes' (a list) and 'seen'"),
    ('{"seen": "SEEN", "boxes": [{"class": "scratch", "box": [90, 90, 120, 95]}]}',
     "box 1 (90, 90, 120, 95) reaches outside the 96x96 image: keep the box inside the image"),
    ('{"seen": "SEEN", "boxes": [{"class": "rust", "box": [1, 1, 9, 9]}]}', "unknown class 'rust'"),
    ('{"seen": "SEEN", "boxes": [{"class": "scratch", "box": [5, 5, 5, 9]}]}', "has no area"),
])
def test_bad_boxes_are_refused_with_422_and_the_item_stays_with_the_reviewer(client: TestClient, seeded: Seeded,
                                                                             body: str, message: str) -> None:
    item_id = queue_box_item(seeded)
    csrf = logged_in(client, seeded)
    _page, seen = box_page(client, csrf)
    reply = client.post(f"/review/items/{item_id}/boxes", content=body.replace("SEEN", seen),
                        headers={"X-CSRF-Token": csrf, "Content-Type": "application/json"})
    assert reply.status_code == 422 and message in reply.text and "Traceback" not in reply.text
    assert review.get_item(seeded.workspace, item_id).status == "open"
    assert seeded.workspace.db.regions.current([seeded.images[-1]]) == []


def test_a_stale_box_view_is_refused_with_409(client: TestClient, seeded: Seeded) -> None:
    import json

    item_id = queue_box_item(seeded)
    csrf = logged_in(client, seeded)
    box_page(client, csrf)
    reply = client.post(f"/review/items/{item_id}/boxes", content=json.dumps({"seen": "0" * 32, "boxes": []}),
                        headers={"X-CSRF-Token": csrf, "Content-Type": "application/json"})
    assert reply.status_code == 409 and "changed since your page showed it" in reply.text
    assert f'data-item-id="{item_id}"' in reply.text  # still held: shown again, freshly drawn
    assert review.get_item(seeded.workspace, item_id).status == "open"


def test_box_writes_need_the_csrf_header_and_a_login(client: TestClient, seeded: Seeded) -> None:
    item_id = queue_box_item(seeded)
    assert client.post(f"/review/items/{item_id}/boxes", content="{}").status_code == 401
    logged_in(client, seeded)
    assert client.post(f"/review/items/{item_id}/boxes", content='{"seen": "", "boxes": []}').status_code == 403
    assert review.get_item(seeded.workspace, item_id).status == "open"



def test_an_item_from_a_suspect_camera_says_so_on_the_review_page(client: TestClient, seeded: Seeded,
                                                                  tmp_path: Path) -> None:
    fail_camera_check(seeded.workspace, "cam-A", tmp_path / "targets")
    item = queue_suspect_item(seeded, "cam-A")
    csrf = logged_in(client, seeded)
    client.post("/review/next", data={"csrf": csrf})
    page = client.get("/review").text
    assert f'data-item-id="{item}"' in page and 'class="card suspect"' in page and 'data-camera="cam-A"' in page
    assert "had failed its health check" in page and "not passed since" in page
    decided = client.post(f"/review/items/{item}/decision", data={"label": "good", "csrf": csrf})
    assert 'class="card suspect"' not in decided.text  # the next item's camera is trusted


def test_the_dashboard_shows_each_cameras_health_and_which_are_suspect(client: TestClient, seeded: Seeded,
                                                                       tmp_path: Path) -> None:
    logged_in(client, seeded)
    assert "no camera checks yet" in client.get("/dashboard").text
    fail_camera_check(seeded.workspace, "cam-A", tmp_path / "a")
    flat, edge = targets(tmp_path)
    camera.record_camera_baseline(seeded.workspace, "cam-B", flat=flat, edge=edge)
    flat2, edge2 = targets(tmp_path, seed=1)
    assert camera.check(seeded.workspace, "cam-B", flat=flat2, edge=edge2).status == "pass"
    page = client.get("/dashboard").text
    assert 'data-camera="cam-A" data-status="fail" class="suspect"' in page
    assert 'data-camera="cam-B" data-status="pass"' in page and "until a check passes" in page
