"""Every format round-trips: regions exported, imported, exported and imported again are the same regions."""

from __future__ import annotations

from pathlib import Path

import pytest

from inspectloop.regions.formats import FORMATS
from inspectloop.regions.run import export_regions, import_regions
from tests.regions_helpers import drawn, image_folder, sample_regions, workspace_with_images

# (format, keeps outlines, keeps annotator names)
CASES = [("coco", True, True), ("voc", False, False), ("yolo", True, False), ("cvat", True, False),
         ("labelstudio", True, True)]


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return image_folder(tmp_path_factory.mktemp("images"))


@pytest.mark.parametrize("fmt, outlines, annotators", CASES, ids=[c[0] for c in CASES])
def test_round_trip_is_lossless(tmp_path: Path, images: Path, fmt: str, outlines: bool, annotators: bool) -> None:
    original = workspace_with_images(tmp_path / "a", images)
    original.db.regions.add(sample_regions(images, annotator="ana"))
    export_regions(original, tmp_path / "first", fmt)
    given = None if annotators else "ana"  # formats without annotator names get it from --annotator
    first = workspace_with_images(tmp_path / "b", images)
    report = import_regions(first, tmp_path / "first", fmt, annotator=given)
    assert report.problems == [] and report.regions_added == 5
    export_regions(first, tmp_path / "second", fmt)
    second = workspace_with_images(tmp_path / "c", images)
    import_regions(second, tmp_path / "second", fmt, annotator=given)
    assert drawn(first) == drawn(second)
    expected = drawn(original) if outlines else {key[:4] + (None,) for key in drawn(original)}
    assert drawn(first) == expected


@pytest.mark.parametrize("fmt", ["coco", "labelstudio"])
def test_formats_that_name_annotators_keep_several_apart(tmp_path: Path, images: Path, fmt: str) -> None:
    original = workspace_with_images(tmp_path / "a", images)
    original.db.regions.add(sample_regions(images, "ana") + sample_regions(images, "bo")[:2])
    export_regions(original, tmp_path / "out", fmt)
    copy = workspace_with_images(tmp_path / "b", images)
    import_regions(copy, tmp_path / "out", fmt)
    assert drawn(copy) == drawn(original)


def test_every_format_module_declares_what_it_holds() -> None:
    for name, module in FORMATS.items():
        assert module.NAME == name and callable(module.read) and callable(module.write)
        assert isinstance(module.CARRIES_ANNOTATOR, bool) and isinstance(module.HOLDS_POLYGONS, bool)
