"""The reports a quality engineer reads, opened in headless Chromium: the evaluation report, the
acceptance report and the model card render whole (every picture decodes, the thumbnails of the hardest
test images included), fetch nothing, and fit the page.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inspectloop.accept.run import accept
from inspectloop.evaluate.outcomes import HARDEST_SHOWN
from inspectloop.reports.model_card import write_model_card
from inspectloop.registry import register
from tests.acceptance_helpers import TrainedNeu, copy_run
from tests.registry_helpers import seeded_workspace
from tests.reports.test_model_card import add_evaluated_run


def open_report(browser: Any, path: Path, screenshot: Path) -> tuple[Any, list[str]]:
    """The page at ``path`` and every request it made beyond the file itself."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    requests: list[str] = []
    errors: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    page.screenshot(path=str(screenshot), full_page=True)
    assert not errors, errors
    return page, [url for url in requests if url != path.as_uri() and not url.startswith("data:")]


def assert_reads_whole(page: Any, fetched: list[str], headings: tuple[str, ...]) -> None:
    assert fetched == []  # self-contained: nothing from the network or the disk
    images = page.eval_on_selector_all("img", "els => els.map(e => [e.alt, e.complete && e.naturalWidth > 0])")
    assert images and all(ok for _, ok in images), images
    assert all(alt for alt, _ in images)  # every picture says what it shows
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"the page is {overflow}px wider than the window"
    shown = page.inner_text("body")
    for heading in headings:
        assert heading in shown, heading


def rendered_thumbnails(page: Any) -> list[tuple[int, int]]:
    """Natural and displayed width of every thumbnail: both above zero when it decoded and shows."""
    return page.eval_on_selector_all(
        "img.thumb", "els => els.map(e => [e.complete ? e.naturalWidth : 0, e.getBoundingClientRect().width])")


def test_the_model_card_renders_whole_in_a_browser(browser: Any, tmp_path: Path) -> None:
    with seeded_workspace(tmp_path / "ws") as ws:
        add_evaluated_run(ws, "run-card", band=True)
        card = write_model_card(ws, register(ws, "run-card").name, parts_per_hour=3600, defect_rate=0.01)
    page, fetched = open_report(browser, card, tmp_path / "card.png")
    assert_reads_whole(page, fetched, ("What this means", "Lineage", "Per class", "Confusion matrix", "Calibration",
                                       "Operating points and decisions", "At line rate", "Acceptance"))
    assert page.locator("table").count() >= 5
    thumbnails = rendered_thumbnails(page)
    assert len(thumbnails) == HARDEST_SHOWN and all(natural > 0 and shown > 0 for natural, shown in thumbnails)
    page.close()


def test_a_real_runs_reports_render_whole_in_a_browser(browser: Any, neu_probe_run: TrainedNeu,
                                                      tmp_path: Path) -> None:
    ws = neu_probe_run.workspace
    run_id = copy_run(neu_probe_run, criteria_id=neu_probe_run.pass_id)
    source = Path(ws.db.runs.get(neu_probe_run.run_id).artifacts)
    shutil.copytree(source / "report", ws.runs_dir / run_id / "report")
    report = accept(ws, run_id)
    card = write_model_card(ws, report.model_version, parts_per_hour=600, defect_rate=0.05)
    for path, headings in ((ws.runs_dir / run_id / "report" / "report.html", ("Confusion matrix",)),
                           (report.html_path, ("PASSED",)),
                           (card, ("What this means", "Calibration", "Acceptance", "At line rate"))):
        page, fetched = open_report(browser, path, tmp_path / f"{path.stem}.png")
        if path == report.html_path:  # the acceptance report is tables and words: no pictures to check
            assert fetched == [] and "PASSED" in page.inner_text("body")
        else:
            assert_reads_whole(page, fetched, headings)
            thumbnails = rendered_thumbnails(page)  # a real run's mistakes and close calls, from its blob store
            assert thumbnails and all(natural > 0 and shown > 0 for natural, shown in thumbnails), thumbnails
        text = re.sub(r"\s+", " ", page.inner_text("body"))
        assert "nan" not in text.lower().split() and "None" not in text.split()
        page.close()


def wide_slice_report(folder: Path, classes: int) -> Path:
    """An evaluation report whose slice tables have one recall column per class (NEU's long class names first)."""
    from inspectloop.evaluate.metrics import classification_metrics
    from inspectloop.evaluate.slices import slice_metrics
    from inspectloop.reports.evaluation import write_evaluation_report

    names = ["crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches",
             *(f"defect_class_{i}" for i in range(classes - 6))][:classes]
    rng = np.random.default_rng(0)
    truth = rng.integers(0, classes, 900)
    predicted = np.where(rng.random(900) < 0.8, truth, rng.integers(0, classes, 900))
    metadata = [{"camera": f"camera-{i % 3}", "lighting": "dome" if i % 2 else "ring-light-long-name"}
                for i in range(900)]
    metrics = classification_metrics(truth, predicted, names)
    slices = slice_metrics(truth, predicted, names, metadata)
    return write_evaluation_report(folder, title="wide", metrics=metrics, slices=slices, context={}).html


@pytest.mark.parametrize(("classes", "fits"), [(6, True), (14, False)])
def test_slice_tables_never_clip_at_1280_px(browser: Any, tmp_path: Path, classes: int, fits: bool) -> None:
    page, _ = open_report(browser, wide_slice_report(tmp_path, classes), tmp_path / "wide.png")
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"the page is {overflow}px wider than the window"
    boxes = page.eval_on_selector_all("table.slices", "els => els.map(t => [t.parentElement.className, "
                                      "t.parentElement.scrollWidth - t.parentElement.clientWidth, "
                                      "getComputedStyle(t.parentElement).overflowX])")
    assert len(boxes) == 2 and all(css == "scroll" and style == "auto" for css, _, style in boxes)
    # Six classes (NEU) fit whole; fourteen scroll inside their box, which the page stays within.
    assert all((extra <= 0) is fits for _, extra, _ in boxes), boxes
    page.close()
