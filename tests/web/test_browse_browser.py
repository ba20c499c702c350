"""The dataset browser in a real headless Chromium: the map draws, colours, filters, a click shows an
image's story, a box and a lasso select points, and the selection goes to the settle queue."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from inspectloop.labelquality.settle import settle_queue
from tests.datamap_helpers import VERSION, fake_run, mapped
from tests.web.conftest import LiveServer, serving
from tests.web.test_review_browser import log_in


@pytest.fixture
def mapped_server(tmp_path: Path) -> Iterator[LiveServer]:
    seeded = mapped(tmp_path, items=16, method="tsne")
    fake_run(seeded)
    yield from serving(seeded)


def drawn(page: Any, server: LiveServer) -> None:
    page.goto(f"{server.url}/browse?version={VERSION}&run=run-map")
    page.wait_for_selector("canvas#map[data-state=drawn][data-live=ready]")


def point_on_page(page: Any, index: int) -> tuple[float, float]:
    box = page.locator("canvas#map").bounding_box()
    x, y = page.evaluate("(i) => window.browseMap.position(i)", index)
    return box["x"] + x, box["y"] + y


def test_the_map_draws_colours_and_filters(browser: Any, mapped_server: LiveServer) -> None:
    page = log_in(browser, mapped_server, "ana")
    drawn(page, mapped_server)
    assert page.locator("canvas#map").get_attribute("data-points") == "24"
    assert page.locator("#colour").input_value() == "correct"  # a run is shown: right and wrong first, once live
    assert {e.get_attribute("data-value") for e in page.locator(".legend-entry").all()} == \
        {"correct", "wrong", "(not set)"}
    x, y = page.evaluate("() => window.browseMap.position(0)")
    pixel = page.evaluate("([x, y]) => Array.from(document.getElementById('map').getContext('2d')"
                          ".getImageData(x * devicePixelRatio, y * devicePixelRatio, 1, 1).data)", [x, y])
    assert pixel[3] == 255 and pixel[:3] != [255, 255, 255]  # a point is painted where the map says
    page.select_option("#colour", "label")
    assert {"good", "scratch"} <= {e.get_attribute("data-value") for e in page.locator(".legend-entry").all()}
    page.select_option("#colour", "current")  # the label now, from the live columns
    page.select_option("#filter-field", "split")
    page.select_option("#filter-value", label=page.locator("#filter-value option", has_text="test").inner_text())
    assert " of 24 images shown" in page.inner_text("#status") and not page.inner_text("#status").startswith("24 ")
    page.context.close()


def test_a_click_shows_the_story_and_a_selection_goes_to_settle(browser: Any, mapped_server: LiveServer) -> None:
    workspace = mapped_server.seeded.workspace
    page = log_in(browser, mapped_server, "ana")
    drawn(page, mapped_server)
    digest = page.evaluate("() => window.browseMap.digests[3]")
    page.mouse.click(*point_on_page(page, 3))
    page.wait_for_selector(f"#detail[data-sha256='{digest}']")
    assert "import" in page.inner_text("#detail table") and VERSION in page.inner_text("#detail")
    box = page.locator("canvas#map").bounding_box()
    page.mouse.move(box["x"] + 2, box["y"] + 2)  # a box over the whole map
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, steps=4)
    page.mouse.move(box["x"] + box["width"] - 2, box["y"] + box["height"] - 2, steps=4)
    page.mouse.up()
    assert page.inner_text("#selected-count") == "24" and page.locator("#thumbs img").count() == 24
    page.check("input[name=tool][value=lasso]")  # a lasso around one point selects it alone
    x, y = point_on_page(page, 5)
    page.mouse.move(x - 3, y - 3)
    page.mouse.down()
    for dx, dy in ((3, -3), (3, 3), (-3, 3), (-3, -3)):
        page.mouse.move(x + dx, y + dy)
    page.mouse.up()
    chosen = page.evaluate("() => window.browseMap.selected()")
    assert page.evaluate("() => window.browseMap.digests[5]") in chosen and int(page.inner_text("#selected-count")) < 24
    page.click("#send-settle")
    page.wait_for_selector("#sent:has-text('sent to the settle queue')")
    sent = {c.sha256: c for c in settle_queue(workspace)}
    assert set(chosen) <= set(sent)
    colour = page.eval_on_selector("#colour", "select => select.value")
    assert sent[chosen[0]].why[0].startswith(f"sent from the browser by ana (map coloured by {colour}: ")
    page.click("#send-settle")  # again: already waiting, nothing queued twice
    page.wait_for_selector("#sent:has-text('already waiting')")
    page.context.close()


def test_a_version_without_a_map_or_a_bad_run_says_what_to_do(browser: Any, mapped_server: LiveServer) -> None:
    page = log_in(browser, mapped_server, "ana")
    page.goto(f"{mapped_server.url}/browse?version=v1")
    page.wait_for_selector("canvas#map[data-state=error]")
    assert "inspectloop dataset map v1" in page.inner_text("#status")
    page.goto(f"{mapped_server.url}/browse?version={VERSION}&run=run-1")  # a run without per-image outcomes
    page.wait_for_selector("canvas#map[data-state=drawn][data-live=error]")  # the map still draws
    assert "run run-1 has no per-image predictions" in page.inner_text("#status")
    page.context.close()
