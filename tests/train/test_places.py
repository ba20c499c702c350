"""Where training images' defects lie (pose=zoom): from region annotations, refused without them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from inspectloop.datasets import SplitPlan, create_version, load_version
from inspectloop.domain import Box, CaptureMeta, ClassDefinition, DatasetItem, Region
from inspectloop.errors import TrainingError
from inspectloop.ingest import SourceItem, ingest
from inspectloop.store import sha256_bytes
from inspectloop.train.config import TrainConfig
from inspectloop.train.places import defect_places, version_places
from inspectloop.train.run import train
from inspectloop.workspace import Workspace, init_workspace
from tests.conftest import save, surface

ZOOM = TrainConfig(mode="finetune", pose="zoom", input_size=64, epochs=1, batch_size=8, threads=1, seed=0)


def _item(digest: str, label: str) -> DatasetItem:
    return DatasetItem(sha256=digest, label=label, split="train", group_key=digest)


def test_places_are_fractions_of_the_image_empty_for_good_and_none_when_unknown() -> None:
    items = [_item("a", "good"), _item("b", "scratch"), _item("c", "scratch")]
    boxes = {"b": np.array([[60, 10, 130, 20], [-5, 0, 10, 50]], np.float32), "a": np.array([[0, 0, 5, 5]], np.float32)}
    places = defect_places(items, boxes, {"b": (120, 40), "a": (10, 10)}, "good")
    assert places[0] is not None and places[0].shape == (0, 4)  # good: zoom anywhere, whatever was drawn on it
    assert np.allclose(places[1], [[0.5, 0.25, 1.0, 0.5], [0.0, 0.0, 10 / 120, 1.0]])  # clipped to the image
    assert places[2] is None  # a defect with no region is never zoomed
    assert defect_places([_item("d", "good")], {}, {}, None) == [None]  # no good class: nothing is known good


def _workspace(root: Path, annotate: bool) -> Workspace:
    """12 good surfaces and 12 with a dark bar; with ``annotate``, 8 of the bars drawn as regions."""
    sources, bars = [], {}
    for i in range(24):
        defect = i >= 12
        pixels = surface(i, size=64, defect=defect)
        path = save(Image.fromarray(pixels, "L"), root / "tree" / ("scratch" if defect else "good") / f"{i}.png")
        sources.append(SourceItem(path=path, label="scratch" if defect else "good", meta=CaptureMeta()))
        if annotate and defect and i < 20:
            row = int(np.argmin(pixels[:, 32]))  # the bar's darkest row
            bars[sha256_bytes(path.read_bytes())] = (4, max(row - 3, 0), 60, min(row + 4, 64))
    workspace = init_workspace(root / "ws")
    ingest(workspace, sources, source="test")
    workspace.db.labels.upsert_class(ClassDefinition(name="good", is_good=True))
    workspace.db.regions.add([Region(sha256=digest, class_name="scratch", box=Box(x0=b[0], y0=b[1], x1=b[2], y1=b[3]),
                                     annotator="ana") for digest, b in bars.items()])
    create_version(workspace, SplitPlan(val_fraction=0.25, test_fraction=0.25, group_by="none"), min_per_split=0)
    return workspace


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    workspace = _workspace(tmp_path, annotate=True)
    yield workspace
    workspace.close()


def test_a_version_gives_each_image_its_place_and_names_the_unplaced(ws: Workspace) -> None:
    version = load_version(ws, "latest")
    items = list(version.items)
    warnings: list[str] = []
    places = version_places(ws, version, items, "good", warnings.append)
    for item, place in zip(items, places, strict=True):
        if item.label == "good":
            assert place is not None and place.shape == (0, 4)
        elif place is not None:
            assert place.shape == (1, 4) and place[0, 0] == pytest.approx(4 / 64) and place[0, 2] == pytest.approx(60 / 64)
    assert sum(p is None for p in places) == 4
    assert warnings == ["pose=zoom: 4 of 12 defect images have no region annotation; they are never zoomed "
                        "(the whole image stays in view)"]


def test_pose_zoom_without_regions_is_refused_before_a_run_starts(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path, annotate=False)
    with pytest.raises(TrainingError, match="holds no region annotations") as refused:
        train(workspace, ZOOM)
    assert "inspectloop regions import" in refused.value.hint and "pose=contain" in refused.value.hint
    assert workspace.db.runs.list() == []  # nothing half-started
    workspace.close()


@pytest.mark.slow
def test_a_zoom_run_trains_and_says_which_defects_it_cannot_place(ws: Workspace) -> None:
    seen: list[dict[str, Any]] = []
    result = train(ws, ZOOM, progress=lambda stage, info: seen.append(info) if stage == "warning" else None)
    assert ws.db.runs.get(result.run_id).status == "finished" and result.model_path.exists()
    assert any("have no region annotation" in w["message"] for w in seen)
