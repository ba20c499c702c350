"""The settle page in a real headless Chromium: a quality engineer settles a disagreement with the mouse."""

from __future__ import annotations

from typing import Any

from inspectloop.labels import annotate, resolve_labels
from tests.web.conftest import LiveServer
from tests.web.test_review_browser import log_in


def test_an_admin_settles_a_disagreement_in_the_browser(browser: Any, server16: LiveServer) -> None:
    workspace, digest = server16.seeded.workspace, server16.seeded.images[0]
    annotate(workspace, digest, "scratch", annotator="ana")
    annotate(workspace, digest, "dent", annotator="bo")
    page = log_in(browser, server16, "cy")
    page.goto(f"{server16.url}/settle")
    case = page.locator(f"article[data-sha256='{digest}']")
    assert "ana" in case.inner_text() and "dent" in case.inner_text()
    assert page.locator("aside.classes img").count() > 0  # the class definitions' reference images
    case.locator("select[name=label]").select_option("dent")
    case.locator("button[type=submit]").click()
    page.wait_for_selector("text=Nothing to settle")
    assert resolve_labels(workspace.db.labels.annotations()).labels[digest] == "dent"
    page.context.close()
