"""The dataset browser's HTTP contract: the page, its JSON, thumbnails, sends, and bad input as 4xx."""

from __future__ import annotations

from collections.abc import Iterator
from io import BytesIO

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from inspectloop.labelquality.settle import settle_queue
from inspectloop.web.auth import COOKIE
from inspectloop.web.pages import csrf_token
from tests.datamap_helpers import VERSION, fake_run, mapped
from tests.review_helpers import Seeded
from tests.web.conftest import pages_app


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    """One mapped workspace for the module (seeding is the slow part); each send test uses its own images."""
    result = mapped(tmp_path_factory.mktemp("browse"), items=12)
    fake_run(result)
    yield result
    result.workspace.close()


def waiting(seeded: Seeded) -> set[str]:
    return {c.sha256 for c in settle_queue(seeded.workspace)}


@pytest.fixture
def client(seeded: Seeded) -> TestClient:
    return TestClient(pages_app(seeded.workspace), follow_redirects=False)


def log_in(client: TestClient, seeded: Seeded, name: str = "ana") -> str:
    assert client.post("/login", data={"token": seeded.tokens[name]}).status_code == 303
    return csrf_token(str(client.cookies.get(COOKIE)))


def test_nothing_without_a_session(client: TestClient, seeded: Seeded) -> None:
    assert client.get("/browse").headers["location"] == "/login?next=/browse"
    for path in ("/browse/points", "/browse/live", f"/browse/images/{seeded.images[0]}",
                 f"/browse/thumbs/{seeded.images[0]}"):
        assert client.get(path).status_code == 401
    reply = client.post("/browse/send", json={"version": VERSION, "queue": "settle", "sha256": seeded.images[:1]})
    assert reply.status_code == 401 and "log in" in reply.json()["error"]


def test_the_page_lists_versions_and_runs_under_the_pages_security_headers(client: TestClient, seeded: Seeded) -> None:
    log_in(client, seeded)
    page = client.get("/browse", params={"run": "run-map"})
    assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
    assert f'<option value="{VERSION}" selected>' in page.text and '<option value="run-map" selected>' in page.text
    assert '<script src="/static/browse.js">' in page.text and client.get("/static/browse.js").status_code == 200


def test_points_detail_and_thumbnails(client: TestClient, seeded: Seeded) -> None:
    log_in(client, seeded)
    points = client.get("/browse/points", params={"version": VERSION}).json()
    assert points["count"] == 20 and {"label", "split", "source", "camera"} <= set(points["fields"])
    live = client.get("/browse/live", params={"version": VERSION, "run": "run-map"}).json()
    assert live["count"] == 20 and set(live["fields"]) == {"current", "prediction", "correct"}
    story = client.get(f"/browse/images/{seeded.images[0]}", params={"version": VERSION}).json()
    assert story["annotations"][0]["annotator"] == "import" and story["versions"][0]["version"] == VERSION
    thumb = client.get(f"/browse/thumbs/{seeded.images[0]}")
    assert thumb.headers["content-type"] == "image/jpeg" and max(Image.open(BytesIO(thumb.content)).size) <= 128


def test_a_selection_is_sent_to_settle_and_to_review(client: TestClient, seeded: Seeded) -> None:
    csrf = log_in(client, seeded)
    body = {"version": VERSION, "queue": "settle", "sha256": seeded.images[:2]}
    reply = client.post("/browse/send", json=body, headers={"X-CSRF-Token": csrf})
    assert reply.status_code == 200 and reply.json() == {"queue": "settle", "added": 2, "already_waiting": 0}
    assert set(seeded.images[:2]) <= waiting(seeded)
    reply = client.post("/browse/send", json={**body, "queue": "review"}, headers={"X-CSRF-Token": csrf})
    assert reply.json()["added"] == 2


def test_the_settle_page_says_a_selection_came_from_the_browser(client: TestClient, seeded: Seeded) -> None:
    csrf = log_in(client, seeded)
    body = {"version": VERSION, "queue": "settle", "sha256": seeded.images[8:9], "colour_by": "split",
            "colour_values": ["test"]}
    assert client.post("/browse/send", json=body, headers={"X-CSRF-Token": csrf}).status_code == 200
    page = " ".join(client.get("/settle").text.split())
    assert "sent from the browser by ana (map coloured by split: test)" in page
    assert "suspect" not in page.split(seeded.images[8])[1].split("</article>")[0]


def test_forged_sends_are_refused(client: TestClient, seeded: Seeded) -> None:
    csrf = log_in(client, seeded)
    body = {"version": VERSION, "queue": "settle", "sha256": seeded.images[5:6]}
    assert client.post("/browse/send", json=body).status_code == 403  # no CSRF token
    assert client.post("/browse/send", json=body, headers={"X-CSRF-Token": "0" * 64}).status_code == 403
    other = client.post("/browse/send", json=body, headers={"X-CSRF-Token": csrf, "Origin": "https://evil.example"})
    assert other.status_code == 403 and seeded.images[5] not in waiting(seeded)


@pytest.mark.parametrize(("method", "path", "params", "status", "message"), [
    ("get", "/browse/points", {"version": "v9"}, 404, "no dataset version 'v9' (known: v1, v2)"),
    ("get", "/browse/live", {"version": VERSION, "run": "run-x"}, 404, "no training run 'run-x'"),
    ("get", "/browse/live", {"version": VERSION, "run": "run-1"}, 422, "run run-1 has no per-image predictions"),
    ("get", "/browse/points", {"version": "v1"}, 404, "no map of dataset version v1 yet"),
    ("get", "/browse/live", {"version": "v9"}, 404, "no dataset version 'v9'"),
    ("get", "/browse/points", {"version": VERSION, "method": "umap"}, 422, "unknown map method 'umap'"),
    ("get", "/browse/points", {"version": VERSION, "method": "tsne"}, 404, "no map of dataset version v2"),
    ("get", "/browse/points", {"version": VERSION, "features": "../../etc"}, 422, "unknown features '../../etc'"),
    ("get", "/browse/live", {"version": VERSION, "features": "a.b"}, 422, "unknown features 'a.b'"),
    ("get", "/browse/images/" + "a" * 64, {"version": VERSION}, 404, "no image"),
    ("get", "/browse/images/not-a-digest", {"version": VERSION}, 404, "no image"),
    ("get", "/browse/images/" + "a" * 64, {"version": "v9"}, 404, "no dataset version 'v9'"),
])
def test_bad_requests_get_a_message_and_a_4xx(client: TestClient, seeded: Seeded, method: str, path: str,
                                              params: dict[str, str], status: int, message: str) -> None:
    log_in(client, seeded)
    reply = client.request(method, path, params=params)
    assert reply.status_code == status and message in reply.json()["error"] and reply.json()["fix"]


@pytest.mark.parametrize(("body", "message"), [
    ({"version": VERSION, "queue": "settle", "sha256": []}, "the selection is empty"),
    ({"version": VERSION, "queue": "settle", "sha256": ["f" * 64]}, "1 selected image(s) are not in dataset version v2"),
    ({"version": "v9", "queue": "review", "sha256": ["f" * 64]}, "no dataset version 'v9'"),
])
def test_bad_selections_are_refused_and_queue_nothing(client: TestClient, seeded: Seeded, body: dict[str, object],
                                                      message: str) -> None:
    csrf = log_in(client, seeded)
    before = waiting(seeded)
    reply = client.post("/browse/send", json=body, headers={"X-CSRF-Token": csrf})
    assert reply.status_code in (404, 422) and message in reply.json()["error"]
    assert waiting(seeded) == before and not seeded.workspace.db.review.of_image("f" * 64)


@pytest.mark.parametrize("body", [{"version": VERSION, "queue": "trash", "sha256": []}, {"version": VERSION}, "[1"])
def test_malformed_sends_are_a_422(client: TestClient, seeded: Seeded, body: object) -> None:
    csrf = log_in(client, seeded)
    kwargs = {"content": body, "headers": {"X-CSRF-Token": csrf, "Content-Type": "application/json"}} \
        if isinstance(body, str) else {"json": body, "headers": {"X-CSRF-Token": csrf}}
    assert client.post("/browse/send", **kwargs).status_code == 422


def test_thumbnails_of_unknown_images_are_404(client: TestClient, seeded: Seeded) -> None:
    log_in(client, seeded)
    assert client.get("/browse/thumbs/" + "b" * 64).status_code == 404
    assert client.get("/browse/thumbs/nope").status_code == 404
