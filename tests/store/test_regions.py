"""The regions repository: rows are append-only; edits and deletions supersede, versions hold ids."""

from __future__ import annotations

from pathlib import Path

from inspectloop.domain import Box, Polygon, Region
from tests.regions_helpers import digest_of, image_folder, workspace_with_images


def test_current_regions_skip_superseded_and_deleted_rows_and_versions_keep_theirs(tmp_path: Path,
                                                                                  database_url: str) -> None:
    images = image_folder(tmp_path / "images")
    with workspace_with_images(tmp_path / "ws", images, database=database_url) as ws:
        digest = digest_of(images, "part_a.png")
        first, second = ws.db.regions.add([
            Region(sha256=digest, class_name="pit", box=Box(x0=1, y0=1, x1=5, y1=5), annotator="ana"),
            Region(sha256=digest, class_name="scratch", annotator="ana", box=None,
                   polygon=Polygon(points=[(1, 1), (9, 1), (5, 7.125)]))])
        ws.db.datasets.add("v1", None, {}, {}, [])
        ws.db.regions.snapshot("v1", [first, second])
        edited = ws.db.regions.replace(first, Region(sha256=digest, class_name="pit", annotator="bo",
                                                     box=Box(x0=2, y0=2, x1=6, y1=6), source="reviewer"))
        tombstone = ws.db.regions.delete(second, annotator="bo")
        assert [r.id for r in ws.db.regions.current()] == [edited]
        assert ws.db.regions.current([digest_of(images, "part_b.jpg")]) == []
        assert ws.db.regions.get(tombstone) is None and ws.db.regions.get(first) is not None
        held = ws.db.regions.in_version("v1")
        assert [r.id for r in held] == [first, second]
        assert held[1].polygon is not None and held[1].polygon.points[2] == (5.0, 7.125)
        assert ws.db.regions.get(edited).supersedes == first  # type: ignore[union-attr]
