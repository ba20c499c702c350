"""The settle page's HTTP contract: every vote shown, who may settle, stale views refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from inspectloop.labelquality.settle import settle_queue
from inspectloop.labels import annotate
from inspectloop.web.auth import COOKIE
from inspectloop.web.pages import csrf_token
from tests.review_helpers import Seeded, seed
from tests.web.conftest import pages_app


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[Seeded]:
    result = seed(tmp_path, items=3)
    annotate(result.workspace, result.images[0], "scratch", annotator="ana")
    annotate(result.workspace, result.images[0], "good", annotator="bo")
    yield result
    result.workspace.close()


def log_in(client: TestClient, seeded: Seeded, name: str) -> str:
    assert client.post("/login", data={"token": seeded.tokens[name]}).status_code == 303
    return csrf_token(str(client.cookies.get(COOKIE)))


def test_the_queue_shows_every_vote_and_the_classes(seeded: Seeded) -> None:
    client = TestClient(pages_app(seeded.workspace), follow_redirects=False)
    assert client.get("/settle").headers["location"].startswith("/login")
    log_in(client, seeded, "ana")
    page = client.get("/settle").text
    assert seeded.images[0] in page and "<td>ana</td><td>scratch</td>" in page and "<td>bo</td><td>good</td>" in page
    assert "reference for scratch" in page and 'action="/settle"' not in page  # a reviewer sees, does not settle


def test_an_admin_settles_and_a_stale_view_is_refused(seeded: Seeded) -> None:
    client = TestClient(pages_app(seeded.workspace), follow_redirects=False)
    csrf = log_in(client, seeded, "cy")
    [case] = settle_queue(seeded.workspace)
    annotate(seeded.workspace, seeded.images[0], "scratch", annotator="dee")  # a vote after the page was shown
    form = {"sha256": case.sha256, "label": "good", "seen": case.seen, "csrf": csrf}
    reply = client.post("/settle", data=form)
    assert reply.status_code == 409 and "stale settle" in reply.text
    form["seen"] = settle_queue(seeded.workspace)[0].seen
    assert client.post("/settle", data=form).status_code == 303
    assert settle_queue(seeded.workspace) == []


def test_a_reviewer_may_not_settle_and_a_forged_post_is_refused(seeded: Seeded) -> None:
    client = TestClient(pages_app(seeded.workspace), follow_redirects=False)
    csrf = log_in(client, seeded, "ana")
    [case] = settle_queue(seeded.workspace)
    form = {"sha256": case.sha256, "label": "good", "seen": case.seen}
    assert client.post("/settle", data=form).status_code == 403  # no CSRF token
    reply = client.post("/settle", data={**form, "csrf": csrf})
    assert reply.status_code == 403 and "may not settle" in reply.text


def test_an_image_sent_for_its_boxes_shows_each_finding(seeded: Seeded) -> None:
    from inspectloop.labelquality.boxcheck import Boxes, check_boxes
    from inspectloop.labelquality.boxes import BoxReport, ImageFindings, queue_box_issues

    findings = check_boxes(Boxes.of([(10, 10, 50, 50)], ["scratch"]), Boxes.of([(10, 10, 50, 50)], ["pit"], [0.83]))
    report = BoxReport("v1", "detector-7.onnx", 1, 1, 1, [ImageFindings(seeded.images[1], "train", "good", findings)])
    assert queue_box_issues(seeded.workspace, report, report.flagged) == 1
    client = TestClient(pages_app(seeded.workspace), follow_redirects=False)
    log_in(client, seeded, "ana")
    page = " ".join(client.get("/settle").text.split())
    assert "boxes disagree with detector-7.onnx: 1 wrong class" in page
    assert "<td>wrong class</td> <td>scratch 10.0, 10.0, 50.0, 50.0</td> <td>pit 10.0, 10.0, 50.0, 50.0</td> <td>0.83</td>" in page
