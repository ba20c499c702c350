"""The shared datasets' own annotations import: NEU-DET Pascal VOC boxes, KolektorSDD YOLO polygons, magnetic
tile masks traced to outlines (small subsets; skipped with a reason when ../shared/datasets is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from inspectloop.domain import CaptureMeta
from inspectloop.ingest import SourceItem, ingest
from inspectloop.regions.run import export_regions, import_regions
from inspectloop.workspace import Workspace, init_workspace
from tests.conftest import SHARED_DATASETS

pytestmark = pytest.mark.skipif(not SHARED_DATASETS.is_dir(), reason=f"real datasets not found at {SHARED_DATASETS}")


def workspace_of(root: Path, files: list[tuple[Path, str]]) -> Workspace:
    workspace = init_workspace(root)
    ingest(workspace, [SourceItem(path=p, label=label, meta=CaptureMeta()) for p, label in files], source="shared")
    return workspace


def link(files: list[Path], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for path in files:
        (folder / path.name).symlink_to(path)


def test_neu_det_voc_boxes(tmp_path: Path) -> None:
    neu = SHARED_DATASETS / "neu_det"
    chosen = {name: sorted((neu / "images" / name).glob("*.jpg"))[:4] for name in ("scratches", "pitted_surface")}
    with workspace_of(tmp_path / "ws", [(p, n) for n, paths in chosen.items() for p in paths]) as ws:
        for name, paths in chosen.items():  # pitted_surface's XML files name their images without ".jpg"
            link([neu / "annotations" / name / f"{p.stem}.xml" for p in paths], tmp_path / "voc" / name)
        report = import_regions(ws, tmp_path / "voc", "voc", images=neu / "images", annotator="neu")
        assert report.problems == [] and report.images == 8 and report.files == 8
        regions = ws.db.regions.current()
        assert len(regions) == report.regions_added >= 8
        assert all(0 <= r.box.x0 < r.box.x1 <= 200 and 0 <= r.box.y0 < r.box.y1 <= 200 for r in regions)
        export_regions(ws, tmp_path / "out", "voc")
    with workspace_of(tmp_path / "again", [(p, n) for n, paths in chosen.items() for p in paths]) as again:
        import_regions(again, tmp_path / "out", "voc", annotator="neu")
        assert {r.key() for r in again.db.regions.current()} == {r.key() for r in regions}


def test_kolektorsdd_yolo_polygons(tmp_path: Path) -> None:
    kolektor = SHARED_DATASETS / "kolektorsdd"
    defect = sorted((kolektor / "defect").glob("*.jpg"))[:3]
    good = sorted((kolektor / "good").glob("*.jpg"))[:2]
    with workspace_of(tmp_path / "ws", [(p, "defect") for p in defect] + [(p, "good") for p in good]) as ws:
        for folder, paths in (("defect", defect), ("good", good)):
            link([p.with_suffix(".txt") for p in paths], tmp_path / "yolo" / folder)
        report = import_regions(ws, tmp_path / "yolo", "yolo", images=kolektor, class_names=["defect"],
                                annotator="kolektor")
        assert report.problems == [] and report.images == 3
        regions = ws.db.regions.current()
        assert all(r.polygon is not None and r.class_name == "defect" for r in regions)
        sizes = {d: (rec.width, rec.height) for d, rec in ws.db.images.get_many().items()}
        assert all(r.box.x1 <= sizes[r.sha256][0] and r.box.y1 <= sizes[r.sha256][1] for r in regions)


def test_magnetic_tile_masks_become_outlines(tmp_path: Path) -> None:
    tile = SHARED_DATASETS / "magnetic_tile"
    files = []
    for name in ("Crack", "Blowhole"):
        images = sorted((tile / name / "images").glob("*.jpg"))[:3]
        link(images, tmp_path / "tiles" / name / "images")
        link([tile / name / "masks" / f"{p.stem}.png" for p in images], tmp_path / "tiles" / name / "masks")
        files += [(p, name) for p in images]
    with workspace_of(tmp_path / "ws", files) as ws:
        report = import_regions(ws, tmp_path / "tiles", "masks", annotator="mt")
        assert report.images == 6 and all(p.action == "dropped" and "speck" in p.message for p in report.problems)
        regions = ws.db.regions.current()
        assert {r.class_name for r in regions} == {"Crack", "Blowhole"}
        assert all(r.polygon is not None and r.box.area > 0 for r in regions)
