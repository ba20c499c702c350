"""The pages' HTTP contract without a browser: redirects, cookie flags, CSRF, escaping, image access."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from inspectloop.store import schema as s
from inspectloop.web.auth import COOKIE
from inspectloop.web.pages import csrf_token
from tests.review_helpers import Seeded, seed
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
    return csrf_token(seeded.tokens[name])


def reviewer_annotations(seeded: Seeded) -> int:
    with seeded.workspace.db.engine.connect() as conn:
        return conn.execute(select(func.count()).where(s.annotations.c.source == "reviewer")).scalar_one()


@pytest.mark.parametrize("path", ["/", "/review", "/dashboard"])
def test_pages_send_strangers_to_login(client: TestClient, path: str) -> None:
    reply = client.get(path, follow_redirects=True)
    assert reply.url.path == "/login" and 'name="token"' in reply.text


def test_login_cookie_is_http_only_and_strict(client: TestClient, seeded: Seeded) -> None:
    reply = client.post("/login", data={"token": seeded.tokens["ana"]})
    cookie = reply.headers["set-cookie"].lower()
    assert f"{COOKIE}=" in cookie and "httponly" in cookie and "samesite=strict" in cookie


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example"])
def test_login_never_redirects_off_site(client: TestClient, seeded: Seeded, target: str) -> None:
    reply = client.post("/login", data={"token": seeded.tokens["ana"], "next": target})
    assert reply.headers["location"] == "/review"


def test_a_bad_token_is_refused_with_the_reason(client: TestClient) -> None:
    reply = client.post("/login", data={"token": "guess"})
    assert reply.status_code == 401 and "unknown or disabled token" in reply.text


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


def test_a_decision_answers_with_the_next_item(client: TestClient, seeded: Seeded) -> None:
    csrf = logged_in(client, seeded)
    assert f'data-item-id="{seeded.items[0]}"' in client.get("/review").text
    reply = client.post(f"/review/items/{seeded.items[0]}/decision", data={"label": "dent"},
                        headers={"X-CSRF-Token": csrf})
    assert reply.status_code == 200 and f'data-item-id="{seeded.items[1]}"' in reply.text
    again = client.post(f"/review/items/{seeded.items[0]}/decision", data={"label": "good", "csrf": csrf})
    assert again.status_code == 409 and "already decided by ana" in again.text
    assert reviewer_annotations(seeded) == 1


def test_an_unauthenticated_write_gets_401(client: TestClient, seeded: Seeded) -> None:
    reply = client.post(f"/review/items/{seeded.items[0]}/decision", data={"label": "good"})
    assert reply.status_code == 401 and reviewer_annotations(seeded) == 0


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
