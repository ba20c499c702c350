"""Evaluating on a workspace's split: every image's outcome is kept, with its capture metadata, and the report
shows the hardest images from the blob store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from inspectloop.datasets import SplitPlan, create_version, load_version
from inspectloop.domain import CaptureMeta
from inspectloop.errors import DatasetError
from inspectloop.evaluate.outcomes import hardest
from inspectloop.evaluate.run import evaluate_model_file, evaluate_predictions
from inspectloop.ingest import SourceItem, ingest
from inspectloop.workspace import Workspace, init_workspace
from tests.conftest import save
from tests.registry_helpers import tiny_model_bytes
from tests.test_export import CLASSES, synthetic_image


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    """The tiny CNN's three classes, 8 parts each, on two cameras and two shifts; 30% of parts in test."""
    items = []
    for label in CLASSES:
        for part in range(8):
            image = synthetic_image(label, seed=100 * CLASSES.index(label) + part)
            path = save(image, tmp_path / "src" / f"{label}-{part}.png")
            items.append(SourceItem(path, label, CaptureMeta(part_id=f"{label}-{part}", camera=f"cam{part % 2 + 1}",
                                                             shift="night" if part % 3 else "day")))
    workspace = init_workspace(tmp_path / "ws")
    ingest(workspace, items, source="parts")
    create_version(workspace, SplitPlan(test_fraction=0.3, seed=1))
    yield workspace
    workspace.close()


def test_a_model_file_is_evaluated_image_by_image(ws: Workspace, tmp_path: Path) -> None:
    model = tmp_path / "tiny.onnx"
    model.write_bytes(tiny_model_bytes())
    result = evaluate_model_file(ws, model, split="test", out_dir=tmp_path / "eval")
    outcomes = result.outcomes
    assert len(outcomes) == result.metrics.count >= 6
    assert sum(o.correct for o in outcomes) == int(np.trace(result.metrics.confusion))
    assert all(o.score is not None and o.margin is not None and 0 <= o.score <= 1 for o in outcomes)
    assert all(o.meta["camera"] in ("cam1", "cam2") and o.meta["shift"] in ("day", "night") for o in outcomes)
    assert [o.sha256 for o in outcomes] == [item.sha256 for item in load_version(ws, "v1").split("test")]
    stored = json.loads(result.files.json.read_text())["outcomes"]
    assert [o["sha256"] for o in stored] == [o.sha256 for o in outcomes]
    page = result.files.html.read_text()
    assert page.count('<img class="thumb" src="data:image/jpeg;base64,') == len(hardest(outcomes))
    assert "image not available" not in page


def test_predictions_without_probabilities_still_keep_outcomes(ws: Workspace, tmp_path: Path) -> None:
    items = load_version(ws, "v1").split("test")
    predicted = np.array([CLASSES.index(item.label) for item in items])
    predicted[0] = (predicted[0] + 1) % len(CLASSES)
    result = evaluate_predictions(ws, items, list(CLASSES), predicted, tmp_path / "eval", title="t", context={})
    assert [o.correct for o in result.outcomes] == [False] + [True] * (len(items) - 1)
    assert all(o.score is None for o in result.outcomes)
    assert result.files.html.read_text().count('<img class="thumb"') == 1  # the one mistake


def test_labels_the_model_does_not_know_are_refused(ws: Workspace, tmp_path: Path) -> None:
    items = load_version(ws, "v1").split("test")
    with pytest.raises(DatasetError, match="not classes of the model"):
        evaluate_predictions(ws, items, ["good", "other"], np.zeros(len(items), dtype=int), tmp_path, title="t",
                             context={})


def test_the_report_is_titled_with_the_model_and_the_dataset_version_not_the_workspace(ws: Workspace,
                                                                                       tmp_path: Path) -> None:
    from inspectloop.runtime import EdgeModel

    model = tmp_path / "model_int8.onnx"
    model.write_bytes(tiny_model_bytes())
    metadata = EdgeModel(model).metadata
    result = evaluate_model_file(ws, model, split="test", out_dir=tmp_path / "eval")
    title = f"{metadata.model_version} (model_int8.onnx) on v1/test"
    assert json.loads(result.files.json.read_text())["title"] == title
    page = result.files.html.read_text()
    assert f"<h1>{title}</h1>" in page and f"<title>{title}</title>" in page
    assert f"{metadata.model_name} on" not in page  # was "ws on v1/test": the workspace's name
