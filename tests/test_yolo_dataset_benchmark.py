"""The YOLO training folder the detection benchmark writes for its Ultralytics peer (benchmarks/yolo_dataset.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from benchmarks.yolo_dataset import write_yolo_dataset
from inspectloop.datasets import SplitPlan, create_version
from inspectloop.domain import Box, CaptureMeta, ClassDefinition, Region, Task
from inspectloop.ingest import SourceItem, ingest
from inspectloop.regions.formats import yolo
from inspectloop.store import sha256_bytes
from inspectloop.workspace import init_workspace


def test_a_version_becomes_a_yolo_folder_with_its_split_and_boxes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    workspace = init_workspace(tmp_path / "ws")
    items, regions = [], []
    for i in range(12):  # 80 x 50 (not square: a width/height mix-up shows); two classes, image 11 boxless
        path = tmp_path / "images" / f"f{i:02d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (50, 80), dtype=np.uint8), "L").save(path)
        items.append(SourceItem(path=path, label="scratch", meta=CaptureMeta()))
        digest = sha256_bytes(path.read_bytes())
        regions += [Region(sha256=digest, class_name=["scratch", "pit"][j % 2], annotator="ana",
                           box=Box(x0=8.0 * j, y0=5.0 + j, x1=8.0 * j + 20, y1=25.0 + j)) for j in range(i % 3)]
    ingest(workspace, items, source="test")
    for name in ("scratch", "pit"):
        workspace.db.labels.upsert_class(ClassDefinition(name=name, task=Task.detection))
    workspace.db.regions.add(regions)
    version = create_version(workspace, SplitPlan(val_fraction=0.25, test_fraction=0.25, group_by="none"),
                             min_per_split=0)

    summary = write_yolo_dataset(workspace, version.name, tmp_path / "yolo")

    data = yaml.safe_load((tmp_path / "yolo" / "data.yaml").read_text())
    assert data["names"] == dict(enumerate(summary["classes"])) and sorted(summary["classes"]) == ["pit", "scratch"]
    assert data["path"] == str((tmp_path / "yolo").resolve())
    for split in ("train", "val", "test"):  # the version's split, image for image, bytes unchanged
        stored = {i.sha256 for i in version.split(split)}
        written = sorted((tmp_path / "yolo" / "images" / split).iterdir())
        assert {sha256_bytes(p.read_bytes()) for p in written} == stored
        assert {p.stem for p in (tmp_path / "yolo" / "labels" / split).iterdir()} == {p.stem for p in written}
    assert sum(s["images"] for s in summary["splits"].values()) == 12
    assert sum(s["boxes"] for s in summary["splits"].values()) == len(regions)
    # read back with the product's own YOLO reader: the same boxes, in image pixels
    parsed = yolo.read(tmp_path / "yolo" / "labels", class_names=summary["classes"])
    assert not parsed.problems and len(parsed.regions) == len(regions)
    by_stem = {r.sha256[:16]: r for r in regions if r.box.x0 == 0}  # each boxed image's first box (j == 0)
    for drawn in parsed.regions:
        first = by_stem.get(Path(drawn.image).name)
        if first is not None and drawn.box[0] == pytest.approx(0, abs=1e-6):
            assert np.array(drawn.box) * [80, 50, 80, 50] == pytest.approx(first.box.as_tuple(), abs=1e-3)
            assert drawn.class_name == first.class_name
