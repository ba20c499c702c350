"""Importing into a workspace: bad annotations are skipped with file, line and reason; the rest is kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inspectloop.datasets import SplitPlan, create_version, load_version
from inspectloop.domain import Box
from inspectloop.errors import LabelError
from inspectloop.regions.run import (
    delete_region, edit_region, export_regions, import_regions, region_agreement,
)
from inspectloop.workspace import Workspace
from tests.regions_helpers import digest_of, drawn, image_folder, sample_regions, workspace_with_images


@pytest.fixture
def images(tmp_path: Path) -> Path:
    return image_folder(tmp_path / "images")


@pytest.fixture
def ws(tmp_path: Path, images: Path) -> Workspace:
    workspace = workspace_with_images(tmp_path / "ws", images)
    yield workspace
    workspace.close()


def coco(path: Path, annotations: list[dict], categories: tuple[str, ...] = ("scratch", "pit")) -> Path:
    document = {"images": [{"id": 1, "file_name": "part_a.png", "width": 64, "height": 48}],
                "categories": [{"id": i, "name": n} for i, n in enumerate(categories, start=1)],
                "annotations": [{"id": i, "image_id": 1, "category_id": 1} | a for i, a in enumerate(annotations)]}
    path.write_text(json.dumps(document, indent=1))
    return path


def test_boxes_outside_the_image_are_clipped_or_dropped_with_a_message(ws: Workspace, images: Path,
                                                                      tmp_path: Path) -> None:
    source = coco(tmp_path / "a.json", [{"bbox": [-4, 40, 20, 20]}, {"bbox": [70, 0, 5, 5]}, {"bbox": [1, 1, 5, 5]}])
    report = import_regions(ws, source, "coco", images=images)
    assert report.regions_added == 2
    clipped, dropped = report.problems
    assert clipped.action == "clipped" and "clipped to (0, 40, 16, 48)" in clipped.message
    assert dropped.action == "dropped" and "lies outside the image" in dropped.message
    assert "annotation 1" in str(dropped) and "a.json" in str(dropped)
    assert sorted(r.box.as_tuple() for r in ws.db.regions.current()) == [(0, 40, 16, 48), (1, 1, 6, 6)]


def test_degenerate_polygons_are_dropped_and_the_rest_kept(ws: Workspace, images: Path, tmp_path: Path) -> None:
    source = coco(tmp_path / "a.json", [{"segmentation": [[1, 1, 5, 5, 9, 9]]}, {"segmentation": [[1, 1, 5, 1]]},
                                        {"segmentation": [[1, 1, 10, 1, 5, 8]]}])
    report = import_regions(ws, source, "coco", images=images)
    assert report.regions_added == 1
    assert [p.action for p in report.problems] == ["dropped", "dropped"]
    assert "no area" in report.problems[0].message and "2 distinct point" in report.problems[1].message


def test_an_unknown_class_is_refused_with_the_defined_ones_unless_added(ws: Workspace, images: Path,
                                                                        tmp_path: Path) -> None:
    source = coco(tmp_path / "a.json", [{"bbox": [1, 1, 5, 5]}, {"bbox": [2, 2, 5, 5], "category_id": 3}],
                  categories=("scratch", "pit", "dent"))
    report = import_regions(ws, source, "coco", images=images)
    assert report.regions_added == 1
    [problem] = report.problems
    assert "unknown class 'dent' (defined: good, pit, scratch; add it with --add-classes)" in problem.message
    report = import_regions(ws, source, "coco", images=images, add_classes=True)
    assert report.classes_added == ["dent"] and report.regions_added == 1 and report.duplicates == 1
    assert ws.db.labels.classes()["dent"].task == "detection"


@pytest.mark.parametrize("fmt, name, text, line", [
    ("coco", "bad.json", '{"images": [],\n "annotations": [,]}', 2),
    ("labelstudio", "bad.json", '[\n{"id": 1,\n "data": }]', 3),
    ("voc", "bad.xml", "<annotation>\n<object>\n</annotation>", 3),
    ("cvat", "bad.xml", "<annotations>\n<image name='a'>\n<box></image>", 3),
])
def test_a_file_that_does_not_parse_is_named_with_its_line(ws: Workspace, tmp_path: Path, fmt: str, name: str,
                                                           text: str, line: int) -> None:
    folder = tmp_path / "files"
    folder.mkdir()
    (folder / name).write_text(text)
    report = import_regions(ws, folder, fmt)
    [problem] = report.problems
    assert (problem.file, problem.line, problem.action) == (name, line, "file skipped")
    assert f"{name}:{line}:" in str(problem)


def test_yolo_lines_that_are_wrong_are_named_by_line(ws: Workspace, images: Path, tmp_path: Path) -> None:
    folder = tmp_path / "yolo"
    (folder / "labels").mkdir(parents=True)
    (folder / "classes.txt").write_text("scratch\npit\n")
    (folder / "labels" / "part_a.txt").write_text("0 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.1 0.1\n1 0.5 x 0.1 0.1\n"
                                                  "1 0.5 0.5 0.1\n1 0.1 0.1 0.2 0.1 0.1 0.1\n")
    report = import_regions(ws, folder, "yolo", images=images)
    assert report.regions_added == 1
    assert [(p.line, p.action) for p in report.problems] == [(2, "skipped"), (3, "skipped"), (4, "skipped"),
                                                             (5, "dropped")]
    assert "class id 7 is not one of the 2 names" in report.problems[0].message


def test_images_not_in_the_workspace_are_reported(ws: Workspace, tmp_path: Path) -> None:
    source = coco(tmp_path / "a.json", [{"bbox": [1, 1, 5, 5]}])
    other = image_folder(tmp_path / "other-images")  # same names, same bytes: found through the ingested paths
    report = import_regions(ws, source, "coco", images=other)
    assert report.regions_added == 1
    text = json.loads(source.read_text())
    text["images"][0]["file_name"] = "missing.png"
    source.write_text(json.dumps(text))
    report = import_regions(ws, source, "coco")
    assert "image 'missing.png' not found" in report.problems[0].message


def test_xml_entity_expansion_is_refused(ws: Workspace, tmp_path: Path) -> None:
    bomb = ('<?xml version="1.0"?>\n<!DOCTYPE a [<!ENTITY x "xxxxxxxxxx"><!ENTITY y "&x;&x;&x;&x;&x;">]>\n'
            "<annotation><filename>&y;</filename></annotation>")
    (tmp_path / "bomb.xml").write_text(bomb)
    report = import_regions(ws, tmp_path / "bomb.xml", "voc")
    [problem] = report.problems
    assert problem.action == "file skipped" and "refused" in problem.message


def test_a_version_holds_its_regions_and_an_edit_reaches_only_the_next_one(ws: Workspace, images: Path) -> None:
    ws.db.regions.add(sample_regions(images))
    v1 = create_version(ws, SplitPlan(val_fraction=0.3, test_fraction=0.3, group_by="none"), min_per_split=0)
    first = sorted(ws.db.regions.in_version("v1"), key=lambda r: r.id or 0)
    assert v1.summary["regions"] == 5 and [r.key() for r in first] == [r.key() for r in ws.db.regions.current()]
    edited = edit_region(ws, first[0].id or 0, annotator="rev", box=Box(x0=1, y0=1, x1=9, y1=9))
    delete_region(ws, first[1].id or 0, annotator="rev")
    v2 = create_version(ws, SplitPlan(val_fraction=0.3, test_fraction=0.3, group_by="none"), min_per_split=0)
    held = {r.id for r in ws.db.regions.in_version("v2")}
    assert edited.id in held and first[0].id not in held and first[1].id not in held and len(held) == 4
    assert {r.id for r in ws.db.regions.in_version("v1")} == {r.id for r in first}  # v1 is unchanged
    assert {i.sha256: i.split for i in v2.items} == {i.sha256: i.split for i in load_version(ws, "v1").items}
    with pytest.raises(LabelError, match="edited or deleted since"):
        edit_region(ws, first[0].id or 0, annotator="rev", class_name="pit")


def test_export_of_a_version_includes_its_images_without_regions(ws: Workspace, images: Path, tmp_path: Path) -> None:
    ws.db.regions.add(sample_regions(images)[:1])
    create_version(ws, SplitPlan(val_fraction=0.3, test_fraction=0.3, group_by="none"), min_per_split=0)
    report = export_regions(ws, tmp_path / "out", "yolo", version="v1")
    assert report.images == 3 and report.regions == 1
    assert sorted(p.name for p in (tmp_path / "out" / "images").iterdir()) == sorted(
        ["part_a.png", "part_b.jpg", "part_c.png"])
    assert (tmp_path / "out" / "labels" / "part_c.txt").read_text() == ""


def test_export_refuses_to_merge_annotators_where_the_format_cannot_keep_them_apart(
        ws: Workspace, images: Path, tmp_path: Path) -> None:
    ws.db.regions.add(sample_regions(images, "ana") + sample_regions(images, "bo"))
    with pytest.raises(LabelError, match="2 annotators drew these regions"):
        export_regions(ws, tmp_path / "out", "voc")
    assert export_regions(ws, tmp_path / "out", "voc", annotator="bo").regions == 5
    with pytest.raises(LabelError, match="not an empty folder"):
        export_regions(ws, tmp_path / "out", "voc", annotator="bo")


def test_agreement_compares_annotators_on_the_workspace(ws: Workspace, images: Path) -> None:
    with pytest.raises(LabelError, match="needs two annotators"):
        region_agreement(ws)
    ws.db.regions.add(sample_regions(images, "ana") + sample_regions(images, "bo")[:3])
    [pair] = region_agreement(ws)
    assert pair.images == 1  # bo drew nothing on part_b: not compared there
    assert pair.per_class["scratch"].matched == 2 and pair.per_class["pit"].matched == 1 and pair.overall.only_a == 0
    with pytest.raises(LabelError, match="no regions by 'cy'"):
        region_agreement(ws, annotators=["ana", "cy"])


def test_reimporting_the_same_file_adds_nothing(ws: Workspace, images: Path, tmp_path: Path) -> None:
    source = coco(tmp_path / "a.json", [{"bbox": [1, 1, 5, 5]}])
    import_regions(ws, source, "coco", images=images)
    again = import_regions(ws, source, "coco", images=images)
    assert (again.regions_added, again.duplicates) == (0, 1) and len(drawn(ws)) == 1
    assert digest_of(images, "part_a.png") == ws.db.regions.current()[0].sha256


@pytest.mark.parametrize("compressed", [True, False])
def test_coco_rle_masks_are_traced_to_outlines(ws: Workspace, images: Path, tmp_path: Path, compressed: bool) -> None:
    import numpy as np
    from pycocotools import mask as mask_utils

    mask = np.zeros((48, 64), dtype=np.uint8)
    mask[10:20, 5:30] = 1
    if compressed:
        rle = mask_utils.encode(np.asfortranarray(mask))
        rle["counts"] = rle["counts"].decode("ascii")
    else:  # column-major run lengths, starting with zeros
        flat = mask.flatten(order="F")
        changes = np.flatnonzero(np.diff(flat)) + 1
        rle = {"size": [48, 64], "counts": np.diff(np.concatenate([[0], changes, [flat.size]])).tolist()}
    source = coco(tmp_path / "a.json", [{"segmentation": rle, "iscrowd": 1, "bbox": [5, 10, 25, 10]}])
    report = import_regions(ws, source, "coco", images=images)
    assert report.problems == [] and report.regions_added == 1
    [region] = ws.db.regions.current()
    assert region.box.as_tuple() == (5, 10, 30, 20) and region.polygon is not None
