"""Report files: they exist, the JSON loads, the HTML is self-contained and names what matters."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from inspectloop.evaluate.metrics import ClassificationMetrics, classification_metrics
from inspectloop.reports.evaluation import confusion_matrix_png, write_evaluation_report
from inspectloop.evaluate.slices import SliceReport, slice_metrics

pytest.importorskip("matplotlib")

NAMES = ("good", "scratch", "dent <b>")  # markup in a name must come out escaped
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _inputs() -> tuple[ClassificationMetrics, SliceReport]:
    y_true = [0, 0, 0, 0, 1, 1, 2, 2, 2, 2] * 2
    y_pred = [0, 0, 0, 1, 1, 0, 2, 2, 1, 2] + [0, 0, 0, 0, 1, 1, 2, 2, 2, 0]
    metadata = [{"camera": "cam-1"}] * 10 + [{"camera": "cam-2"}] * 9 + [{}]
    metrics = classification_metrics(y_true, y_pred, NAMES)
    slices = slice_metrics(y_true, y_pred, NAMES, metadata, min_count=5)
    return metrics, slices


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
    page = files.html.read_text()
    assert "Recall: scratch" in page and "Recall: dent" not in page
