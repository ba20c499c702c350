"""Review with boxes in a real headless Chromium: draw, resize, delete and submit boxes by mouse, then by keyboard
alone, and read back the region annotations the server stored."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from inspectloop import review
from tests.review_helpers import seed
from tests.test_review_boxes import detector_prediction
from tests.web.conftest import LiveServer, serving
from tests.web.test_review_browser import item_id, log_in, press_and_wait, start

NEAR = 1.0  # image pixels: a mouse lands on a screen pixel, and a 96 px image is drawn ~6x larger


@pytest.fixture
def box_server(tmp_path: Path) -> Iterator[LiveServer]:
    """A live server whose first item is a detector's uncertain frame with three boxes:
    scratch (10, 10, 30, 20), dent (50, 40, 70, 80), scratch (5, 60, 25, 90)."""
    seeded = seed(tmp_path, items=6)  # image 5 waits as a shadow item, so it can wait as uncertain too
    prediction = detector_prediction()
    with seeded.workspace.db.transaction() as tx:
        queued = review.enqueue(tx, image_sha256=seeded.images[-1], reason="uncertain", suggestion="scratch",
                                scores=prediction.scores, details=review.prediction_details(prediction),
                                priority=999.0)
    seeded.items.insert(0, int(queued))
    yield from serving(seeded)


def to_screen(page: Any, x: float, y: float) -> tuple[float, float]:
    """An image pixel's position on the screen (the box layer's viewBox is the image's pixels)."""
    return page.evaluate("""([x, y]) => {
        const m = document.querySelector('svg#boxes').getScreenCTM();
        return [m.a * x + m.e, m.d * y + m.f];
    }""", [x, y])


def drag(page: Any, start: tuple[float, float], end: tuple[float, float]) -> None:
    page.mouse.move(*to_screen(page, *start))
    page.mouse.down()
    page.mouse.move(*to_screen(page, *end), steps=6)
    page.mouse.up()


def shown_boxes(page: Any) -> list[tuple[float, float, float, float]]:
    return page.eval_on_selector_all("svg#boxes rect.box", """rects => rects.map(r => [
        +r.getAttribute('x'), +r.getAttribute('y'),
        +r.getAttribute('x') + +r.getAttribute('width'), +r.getAttribute('y') + +r.getAttribute('height')])""")


def close(actual: tuple[float, ...], expected: tuple[float, ...]) -> bool:
    return all(abs(a - e) <= NEAR for a, e in zip(actual, expected, strict=True))


def test_draw_resize_delete_and_submit_boxes_with_the_mouse(browser: Any, box_server: LiveServer) -> None:
    page = log_in(browser, box_server, "ana")
    first = start(page)
    assert first == str(box_server.seeded.items[0])
    page.wait_for_function("document.querySelectorAll('svg#boxes rect.box').length === 3")
    assert page.is_visible("text=drag to draw")  # the box keys are listed on the page
    page.keyboard.press("4")  # classes in key order: good, dent, scratch, stain: the next box drawn is a stain
    drag(page, (60, 5), (90, 25))  # draw a new box
    assert len(shown_boxes(page)) == 4 and close(shown_boxes(page)[3], (60, 5, 90, 25))
    page.mouse.click(*to_screen(page, 60, 60))  # select the dent box ...
    drag(page, (70, 80), (75, 86))  # ... and drag its bottom-right corner
    assert close(shown_boxes(page)[1], (50, 40, 75, 86))
    page.mouse.click(*to_screen(page, 15, 75))  # select the second scratch box ...
    page.keyboard.press("Delete")  # ... a false alarm
    assert len(shown_boxes(page)) == 3
    assert press_and_wait(page, "Enter") != first  # submitted: the next item is on the page

    ws = box_server.seeded.workspace
    regions = ws.db.regions.current([box_server.seeded.images[-1]])
    assert [(r.class_name, r.annotator, r.source) for r in regions] == [
        ("scratch", "ana", "reviewer"), ("dent", "ana", "reviewer"), ("stain", "ana", "reviewer")]
    assert regions[0].box.as_tuple() == (10, 10, 30, 20)  # kept exactly as the model drew it
    assert close(regions[1].box.as_tuple(), (50, 40, 75, 86)) and close(regions[2].box.as_tuple(), (60, 5, 90, 25))
    item = review.get_item(ws, int(first))
    assert (item.status, item.decided_label, item.decided_by) == ("done", "dent", "ana")  # the worst box: critical
    assert {k: item.details["box_review"][k] for k in ("kept", "edited", "deleted", "drawn")} == \
        {"kept": 1, "edited": 1, "deleted": 1, "drawn": 1}


def test_boxes_by_keyboard_alone(browser: Any, box_server: LiveServer) -> None:
    page = log_in(browser, box_server, "bo")
    first = start(page)
    page.wait_for_function("document.querySelectorAll('svg#boxes rect.box').length === 3")
    page.keyboard.press("Tab")  # the first box (scratch)
    page.keyboard.press("2")  # it is a dent, in truth
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")  # the third box
    page.keyboard.press("Delete")
    page.keyboard.press("Tab")  # the dent box
    page.keyboard.press("Escape")  # deselected
    page.keyboard.press("4")  # the next box is a stain
    page.keyboard.press("b")  # added in the middle (24 x 24 at 36..60), selected
    for _ in range(3):
        page.keyboard.press("ArrowRight")  # moved right
    page.keyboard.press("Shift+ArrowDown")  # and made taller
    boxes = shown_boxes(page)
    assert len(boxes) == 3 and boxes[2][0] > 36 and boxes[2][3] - boxes[2][1] > 24
    assert "3 box(es)" in page.inner_text("#box-status")
    assert press_and_wait(page, "Enter") != first
    regions = box_server.seeded.workspace.db.regions.current([box_server.seeded.images[-1]])
    assert [(r.class_name, r.annotator) for r in regions] == [("dent", "bo"), ("dent", "bo"), ("stain", "bo")]
    assert regions[0].box.as_tuple() == (10, 10, 30, 20) and regions[2].box.as_tuple() == tuple(boxes[2])


def test_a_refused_box_keeps_the_reviewers_work_on_the_page(browser: Any, box_server: LiveServer) -> None:
    page = log_in(browser, box_server, "ana")
    first = start(page)
    page.wait_for_function("document.querySelectorAll('svg#boxes rect.box').length === 3")
    # The class the reviewer meant was removed meanwhile: the server names the problem, the boxes stay.
    ws = box_server.seeded.workspace
    with ws.db.engine.begin() as conn:
        from sqlalchemy import update

        from inspectloop.store import schema as s

        conn.execute(update(s.classes).where(s.classes.c.name == "stain").values(is_good=True))
    page.keyboard.press("4")
    page.keyboard.press("b")
    page.keyboard.press("Enter")
    page.wait_for_selector("#item .error")
    assert "a good class: a box marks a defect" in page.inner_text("#item .error")
    assert item_id(page) == first and len(shown_boxes(page)) == 4
    assert review.get_item(ws, int(first)).status == "open"
