"""The review pages in a real headless Chromium: login, a keyboard-only review session, two reviewers, the dashboard."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, select

from inspectloop import review
from inspectloop.store import schema as s
from inspectloop.web.auth import COOKIE
from tests.web.conftest import LiveServer

MIN_ITEMS_PER_MINUTE = 20  # the figure: a reviewer clears at least 20 items a minute


def log_in(browser: Any, server: LiveServer, name: str) -> Any:
    """A new browser context logged in as ``name``, by typing the token and pressing Enter."""
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    page.goto(f"{server.url}/review")
    page.wait_for_url("**/login?next=/review")
    page.wait_for_selector("#token:focus")  # autofocus: the reviewer just types
    page.keyboard.type(server.seeded.tokens[name])
    page.keyboard.press("Enter")
    page.wait_for_url(at("/review"))
    return page


def start(page: Any) -> str | None:
    """Take the first item with the keyboard (the page claims nothing by itself); return its id."""
    assert item_id(page) is None and page.is_visible("form#next button")
    page.keyboard.press("Enter")
    page.wait_for_selector("#item [data-item-id]")
    page.wait_for_load_state()  # the item is parsed before review.js runs: keys pressed earlier go nowhere
    return item_id(page)


def at(path: str) -> Any:
    """A URL predicate for ``wait_for_url``: exactly this path (``**/review`` would match ``/login?next=/review``)."""
    return lambda url: urlsplit(url).path == path


def item_id(page: Any) -> str | None:
    return page.eval_on_selector("#item", "el => el.querySelector('[data-item-id]')?.dataset.itemId ?? null")


def press_and_wait(page: Any, key: str) -> str | None:
    """Press ``key`` and wait until the next item (or the empty queue) is on the page."""
    before = item_id(page)
    page.keyboard.press(key)
    page.wait_for_function("b => (document.querySelector('#item [data-item-id]')?.dataset.itemId ?? null) !== b",
                           arg=before, timeout=5000)
    return item_id(page)


def test_login_rejects_a_bad_token_then_sets_a_strict_http_only_cookie_and_logs_out(browser: Any,
                                                                                     server16: LiveServer) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{server16.url}/dashboard")
    page.wait_for_url("**/login?next=/dashboard")
    page.fill("#token", "not-a-token")
    page.keyboard.press("Enter")
    assert "unknown token" in page.inner_text(".error")
    page.fill("#token", server16.seeded.tokens["ana"])
    page.keyboard.press("Enter")
    page.wait_for_url(at("/dashboard"))
    cookie = next(c for c in context.cookies() if c["name"] == COOKIE)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and not cookie["secure"]  # plain HTTP here
    assert cookie["value"] != server16.seeded.tokens["ana"]  # a session id, never the API token
    assert page.evaluate("document.cookie") == ""  # scripts cannot read the session id
    page.click("text=Log out")
    page.wait_for_url(at("/login"))
    page.goto(f"{server16.url}/review")
    page.wait_for_url("**/login?next=/review")
    context.add_cookies([cookie])  # the old cookie, put back: the session is gone server-side
    page.goto(f"{server16.url}/review")
    page.wait_for_url("**/login?next=/review")
    context.close()


def test_a_reviewer_clears_the_queue_with_the_keyboard_only(browser: Any, server40: LiveServer) -> None:
    page = log_in(browser, server40, "ana")
    started = time.perf_counter()
    start(page)
    page.screenshot(path="/tmp/inspectloop-review.png")
    keys = ["Enter", "2", "1", "3", "Enter", "4", "s", "Enter"]  # confirm, pick classes, skip
    decided = 0
    while item_id(page) is not None:
        press_and_wait(page, keys[decided % len(keys)])
        decided += 1
    per_minute = decided / (time.perf_counter() - started) * 60
    print(f"\nreviewed {decided} items with the keyboard at {per_minute:.0f} items/minute")
    assert decided == 40
    assert per_minute >= MIN_ITEMS_PER_MINUTE
    assert "The queue is empty" in page.text_content("#item")
    with server40.seeded.workspace.db.engine.connect() as conn:
        rows = conn.execute(select(s.annotations.c.annotator, s.annotations.c.source, func.count())
                            .where(s.annotations.c.source == "reviewer")
                            .group_by(s.annotations.c.annotator, s.annotations.c.source)).all()
        skipped = conn.execute(select(func.count()).where(s.review_items.c.status == "skipped")).scalar_one()
    assert rows == [("ana", "reviewer", 35)] and skipped == 5


def test_help_and_item_details_are_on_the_page(browser: Any, server16: LiveServer) -> None:
    page = log_in(browser, server16, "ana")
    start(page)
    assert page.is_hidden("#help")
    page.keyboard.press("?")
    page.wait_for_selector("#help", state="visible", timeout=2000)
    page.screenshot(path="/tmp/inspectloop-review-help.png")
    page.keyboard.press("Escape")
    text = page.text_content("main")
    assert "Suggestion" in text and "cam-A" in text and "P-0000" in text
    assert page.locator('.model-scores[data-role="production"] h2').text_content().startswith("Production model")
    assert "<until washed>" in text  # the criterion is shown as written, escaped, not parsed as a tag
    assert page.locator(".refs img").count() == 8
    assert page.evaluate("document.querySelector('#shot').naturalWidth") == 96  # the image was served


def test_a_shadow_item_shows_both_models_scores_each_named(browser: Any, server16: LiveServer) -> None:
    with server16.seeded.workspace.db.engine.begin() as conn:
        conn.execute(s.review_items.update().values(status="done"))
    with server16.seeded.workspace.db.transaction() as tx:  # prediction 1: line7-v1, shadowed by line7-v2
        review.enqueue(tx, image_sha256=server16.seeded.images[0], reason="shadow", prediction_id=1,
                       suggestion="dent", scores={"dent": 0.7})
    page = log_in(browser, server16, "ana")
    start(page)
    page.screenshot(path="/tmp/inspectloop-review-shadow.png")
    panels = page.locator(".model-scores")
    assert panels.count() == 2
    assert panels.nth(0).text_content().split()[:3] == ["Production", "model", "line7-v1"]
    assert panels.nth(1).text_content().split()[:3] == ["Shadow", "model", "line7-v2"]
    assert "decided reject · dent" in panels.nth(1).text_content()
    assert "from the shadow model line7-v2" in page.text_content(".suggestion")


def test_two_reviewers_never_see_the_same_item_at_once(browser: Any, server16: LiveServer) -> None:
    ana, bo = log_in(browser, server16, "ana"), log_in(browser, server16, "bo")
    start(ana), start(bo)
    seen: dict[str, list[str]] = {"ana": [], "bo": []}
    turn = 0
    while item_id(ana) is not None or item_id(bo) is not None:
        shown = (item_id(ana), item_id(bo))
        assert shown[0] is None or shown[0] != shown[1], f"both reviewers see item {shown[0]}"
        name, page = (("ana", ana), ("bo", bo))[turn % 2]
        if shown[turn % 2] is not None:
            seen[name].append(shown[turn % 2])
            press_and_wait(page, "Enter")
        turn += 1
    assert not set(seen["ana"]) & set(seen["bo"])
    assert len(seen["ana"]) + len(seen["bo"]) == 16
    with server16.seeded.workspace.db.engine.connect() as conn:
        per_image = conn.execute(select(func.count()).where(s.annotations.c.source == "reviewer")
                                 .group_by(s.annotations.c.sha256)).scalars().all()
    assert per_image == [1] * 16


def test_the_dashboard_shows_rates_backlog_discrepancies_and_decisions(browser: Any, server16: LiveServer) -> None:
    page = log_in(browser, server16, "cy")
    start(page)
    press_and_wait(page, "2")  # one decision, so that it is listed: dent instead of the model's suggestion
    page.goto(f"{server16.url}/dashboard")
    page.screenshot(path="/tmp/inspectloop-dashboard.png", full_page=True)
    day = page.locator('[data-window="Last 24 hours"]')
    assert day.locator('[data-camera="cam-A"]').inner_text().split() == ["cam-A", "10", "60.0%", "20.0%", "20.0%"]
    assert day.locator('[data-camera="all"] td').first.inner_text() == "14"
    every = page.locator('[data-window="All time"]')
    assert every.locator('[data-camera="cam-B"]').inner_text().split()[:3] == ["cam-B", "8", "37.5%"]
    assert page.locator('.backlog [data-reason="uncertain"] td').inner_text() == "11"  # 12 queued, 1 decided
    assert page.locator('.backlog [data-reason="shadow"] td').inner_text() == "4"
    assert page.locator(".discrepancies tbody tr").count() == 3
    assert "line7-v2" in page.inner_text(".discrepancies")
    decision = page.locator(".decisions tbody tr").first.inner_text()
    assert "cy" in decision and "dent" in decision and "scratch" in decision


def test_unauthenticated_visits_go_to_login_and_images_are_refused(browser: Any, server16: LiveServer) -> None:
    page = browser.new_context().new_page()
    for path in ("/review", "/dashboard", "/"):
        page.goto(f"{server16.url}{path}")
        assert "/login" in page.url
    reply = page.request.get(f"{server16.url}/images/{server16.seeded.images[0]}")
    assert reply.status == 401


def test_an_anomaly_items_heatmap_lies_exactly_over_its_image_and_can_be_hidden(browser: Any,
                                                                                server16: LiveServer) -> None:
    import numpy as np

    from inspectloop.runtime import Prediction, Regions

    ws = server16.seeded.workspace
    with ws.db.engine.begin() as conn:
        conn.execute(s.review_items.update().values(status="done"))
    digest = server16.seeded.images[0]
    size = ws.db.images.get(digest).width, ws.db.images.get(digest).height
    heatmap = np.zeros((64, 64), dtype=np.float32)
    heatmap[8:16, 40:48] = 2.0
    prediction = Prediction("anomaly", 0.8, {"good": 0.2, "anomaly": 0.8}, "review", {},
                            regions=Regions(image_size=size, heatmap=heatmap), anomaly_score=2.0)
    overlay = review.heatmap_overlay(prediction)
    ws.blobs.put(overlay)
    with ws.db.transaction() as tx:
        review.enqueue(tx, image_sha256=digest, reason="uncertain", suggestion="anomaly", scores=prediction.scores,
                       details=review.prediction_details(prediction, overlay))
    page = log_in(browser, server16, "ana")
    start(page)
    page.wait_for_function("() => document.querySelector('#heatmap')?.complete && "
                           "document.querySelector('#heatmap').naturalWidth > 0")
    page.screenshot(path="/tmp/inspectloop-review-heatmap.png")
    shot, heat = page.locator("#shot").bounding_box(), page.locator("#heatmap").bounding_box()
    assert shot is not None and heat is not None
    assert all(abs(shot[k] - heat[k]) < 1.0 for k in ("x", "y", "width", "height"))  # same box: same fit
    page.keyboard.press("Enter")  # "anomaly" is not a class: Enter confirms nothing
    time.sleep(0.3)
    assert item_id(page) is not None and page.is_visible("#heatmap")
    page.click("#heatmap-toggle")
    assert not page.is_visible("#heatmap")


def test_a_suspect_camera_is_shown_on_the_review_page_and_the_dashboard(browser: Any, server16: LiveServer,
                                                                        tmp_path: Any) -> None:
    from tests.camera.targets import fail_camera_check
    from tests.review_helpers import queue_suspect_item

    fail_camera_check(server16.seeded.workspace, "cam-A", tmp_path)
    item = queue_suspect_item(server16.seeded, "cam-A")
    page = log_in(browser, server16, "ana")
    assert start(page) == str(item)
    panel = page.locator(".card.suspect")
    assert panel.is_visible() and "cam-A had failed its health check" in panel.inner_text()
    page.goto(f"{server16.url}/dashboard")
    health = page.locator('.camera-health [data-camera="cam-A"]')
    assert health.is_visible() and health.get_attribute("data-status") == "fail"
    assert "suspect" in health.inner_text()
    colour = health.locator(".badge").evaluate("el => getComputedStyle(el).backgroundColor")
    assert colour == "rgb(247, 217, 214)"  # the fail badge's colour: the style sheet reached the browser
