"""Report files: they exist, the JSON loads, the HTML is self-contained and names what matters."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

import numpy as np

from inspectloop.evaluate.metrics import ClassificationMetrics, classification_metrics
from inspectloop.evaluate.outcomes import ImageOutcome, hardest, image_outcomes
from inspectloop.evaluate.slices import SliceReport, slice_metrics
from inspectloop.reports.evaluation import confusion_matrix_png, write_evaluation_report
from tests.conftest import jpeg_bytes
from tests.reports.page_parts import parse

pytest.importorskip("matplotlib")

NAMES = ("good", "scratch", "dent <b>")  # markup in a name must come out escaped
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


Y_TRUE = [0, 0, 0, 0, 1, 1, 2, 2, 2, 2] * 2
Y_PRED = [0, 0, 0, 1, 1, 0, 2, 2, 1, 2] + [0, 0, 0, 0, 1, 1, 2, 2, 2, 0]
METADATA = [{"camera": "cam-1", "shift": "night"}] * 10 + [{"camera": "cam-2"}] * 9 + [{"camera": "<i>"}]


def _inputs() -> tuple[ClassificationMetrics, SliceReport]:
    metrics = classification_metrics(Y_TRUE, Y_PRED, NAMES)
    slices = slice_metrics(Y_TRUE, Y_PRED, NAMES, METADATA, min_count=5)
    return metrics, slices


def _outcomes(scored: bool = True) -> tuple[ImageOutcome, ...]:
    """The same 20 images, the predicted class given 0.5 to 0.88 of the probability (image i: 0.5 + 0.02 i)."""
    scores = np.zeros((20, 3))
    for i, p in enumerate(Y_PRED):
        scores[i] = (0.5 - 0.02 * i) / 2
        scores[i, p] = 0.5 + 0.02 * i
    return image_outcomes([f"{i:02d}" * 32 for i in range(20)], Y_TRUE, Y_PRED, NAMES,
                          scores=scores if scored else None, metadata=METADATA)


def test_report_files(tmp_path: Path) -> None:
    metrics, slices = _inputs()
    context = {"dataset_version": "ds-0003", "run_id": "run-42", "model": "efficientnet_lite0",
               "workspace": tmp_path, "ece": math.nan}
    files = write_evaluation_report(tmp_path / "out", title="Bracket line 2", metrics=metrics,
                                    slices=slices, context=context)
    for path in (files.json, files.html, files.confusion_png):
        assert path.is_file() and path.parent == tmp_path / "out"
    assert files.confusion_png.read_bytes().startswith(PNG_MAGIC)
    assert sorted(p.name for p in files.json.parent.iterdir()) == [
        "confusion_matrix.png", "metrics.json", "report.html"]  # no temporary files left behind

    document = json.loads(files.json.read_text())
    assert document["title"] == "Bracket line 2"
    assert document["context"]["run_id"] == "run-42"
    assert document["context"]["workspace"] == str(tmp_path)
    assert document["context"]["ece"] is None
    assert document["metrics"]["class_names"] == list(NAMES)
    assert document["slices"]["worst"]["value"] == "cam-1"
    assert document["format_version"] == 2 and document["outcomes"] == []


def test_the_json_keeps_every_images_outcome(tmp_path: Path) -> None:
    metrics, slices = _inputs()
    files = write_evaluation_report(tmp_path, title="t", metrics=metrics, slices=slices, context={},
                                    outcomes=_outcomes())
    stored = json.loads(files.json.read_text())["outcomes"]
    assert len(stored) == 20 and [ImageOutcome.from_dict(o) for o in stored] == list(_outcomes())
    assert stored[3] == {"sha256": "03" * 32, "true": "good", "predicted": "scratch", "correct": False,
                         "score": 0.56, "true_score": 0.22, "margin": -0.34,
                         "meta": {"camera": "cam-1", "shift": "night"}}


def test_the_page_shows_the_hardest_images_most_wrong_first(tmp_path: Path) -> None:
    metrics, slices = _inputs()
    outcomes = _outcomes()
    files_of = {o.sha256: jpeg_bytes(n) for n, o in enumerate(outcomes)}
    del files_of["19" * 32]  # the most confident mistake's file is gone
    files = write_evaluation_report(tmp_path, title="t", metrics=metrics, slices=slices, context={},
                                    outcomes=outcomes, images=files_of.__getitem__)
    page = files.html.read_text()
    ranked = hardest(outcomes)
    assert [o.sha256[:2] for o in ranked[:5]] == ["19", "08", "05", "03", "00"]  # 4 mistakes, surest first
    positions = [page.index(f'title="{o.sha256}"') for o in ranked]
    assert positions == sorted(positions) and len(ranked) == 20
    assert page.count('<img class="thumb" src="data:image/jpeg;base64,') == 19
    assert page.count("image not available") == 1 and page.count('<span class="badge">wrong</span>') == 4
    assert page.count("close call") == 16
    assert "4 of 20 images misclassified" in page and "then the 16 correct images with the smallest margin" in page
    assert "camera &lt;i&gt;" in page and "<i>" not in page
    assert ('<span class="field">camera cam-1</span> &middot; <span class="field">shift night</span>') in page and "margin -34 points" in page
    assert page.index("Confusion matrix") < page.index("Misclassified and borderline images")


def test_without_probabilities_the_page_shows_the_mistakes_only(tmp_path: Path) -> None:
    metrics, slices = _inputs()
    files = write_evaluation_report(tmp_path, title="t", metrics=metrics, slices=slices, context={},
                                    outcomes=_outcomes(scored=False), images=None)
    page = files.html.read_text()
    assert page.count("image not available") == 4 and 'class="badge near"' not in page
    assert "cannot be ranked" in page


def test_html_is_self_contained_and_ordered(tmp_path: Path) -> None:
    metrics, slices = _inputs()
    files = write_evaluation_report(tmp_path, title="Bracket line 2", metrics=metrics, slices=slices,
                                    context={"run_id": "run-42"})
    page = files.html.read_text()
    for name in ("good", "scratch", "dent &lt;b&gt;"):
        assert name in page
    assert "dent <b>" not in page
    assert 'src="data:image/png;base64,' in page
    assert "<script" not in page.lower()
    assert "http://" not in page and "https://" not in page
    assert "run-42" in page
    assert "Worst slice: camera = cam-1" in page
    assert page.index("Macro recall") < page.index("Accuracy")  # accuracy never first
    assert 'class="worst"' in page


def test_rewriting_replaces_files(tmp_path: Path) -> None:
    metrics, slices = _inputs()
    write_evaluation_report(tmp_path, title="first", metrics=metrics, slices=slices, context={})
    files = write_evaluation_report(tmp_path, title="second", metrics=metrics, slices=slices, context={})
    assert json.loads(files.json.read_text())["title"] == "second"
    assert len(list(tmp_path.iterdir())) == 3


@pytest.mark.parametrize("normalise", [True, False])
def test_confusion_png_with_an_empty_row(tmp_path: Path, normalise: bool) -> None:
    # "dent" has no test images: its row cannot be normalised and is drawn grey.
    metrics = classification_metrics([0, 0, 1], [0, 2, 1], NAMES)
    path = confusion_matrix_png(metrics, tmp_path / "cm.png", normalise=normalise)
    assert path.read_bytes().startswith(PNG_MAGIC)


def test_files_get_ordinary_permissions(tmp_path: Path) -> None:
    # Bug seen in the first version: files made via NamedTemporaryFile kept mode 0o600 after os.replace.
    metrics, slices = _inputs()
    files = write_evaluation_report(tmp_path, title="t", metrics=metrics, slices=slices, context={})
    reference = tmp_path / "reference"
    reference.write_bytes(b"")
    for path in (files.json, files.html, files.confusion_png):
        assert path.stat().st_mode & 0o777 == reference.stat().st_mode & 0o777


def test_slice_tables_skip_classes_without_test_images(tmp_path: Path) -> None:
    y_true, y_pred = [0, 0, 1, 1] * 3, [0, 1, 1, 1] * 3
    metrics = classification_metrics(y_true, y_pred, NAMES)  # "dent <b>" has no test images
    slices = slice_metrics(y_true, y_pred, NAMES, [{"camera": "a"}, {"camera": "b"}] * 6, min_count=1)
    files = write_evaluation_report(tmp_path, title="t", metrics=metrics, slices=slices, context={})
    table = parse(files.html.read_text()).find_all("table", "slices")[0]
    assert [th.text() for th in table.find_all("th")][-3:] == ["Recall by true class", "good", "scratch"]
