"""Region annotations (boxes, polygons) and the dataset versions that hold them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import exists, insert, select
from sqlalchemy.orm import aliased

from inspectloop.domain import Box, Polygon, Region
from inspectloop.store import schema as s
from inspectloop.store.base import Repository, chunks, now_iso


class RegionRepository(Repository):
    """The ``regions`` and ``dataset_regions`` tables. Rows are append-only: edits and deletions add rows."""

    def add(self, regions: Sequence[Region]) -> list[int]:
        """Record regions; return their ids in order."""
        ids: list[int] = []
        with self._connect() as conn:
            for region in regions:  # one by one: SQLite returns no ids for a multi-row insert
                ids.append(int(conn.execute(insert(s.regions).values(**region_row(region))).inserted_primary_key[0]))
        return ids

    def replace(self, old_id: int, region: Region) -> int:
        """Record ``region`` as the edit of region ``old_id``; return the new id."""
        return self.add([region.model_copy(update={"supersedes": old_id})])[0]

    def delete(self, old_id: int, *, annotator: str, source: str = "reviewer") -> int:
        """Record that ``annotator`` deleted region ``old_id`` (a tombstone row); return the tombstone's id."""
        old = self.get(old_id)
        if old is None:
            raise KeyError(old_id)
        row = region_row(old.model_copy(update={"annotator": annotator, "source": source, "created_at": None,
                                                "supersedes": old_id}))
        with self._connect() as conn:
            return int(conn.execute(insert(s.regions).values(**row, deleted=True)).inserted_primary_key[0])

    def get(self, region_id: int) -> Region | None:
        """A region by id, current or not (None for an unknown id or a tombstone)."""
        with self._connect() as conn:
            row = conn.execute(select(s.regions).where(s.regions.c.id == region_id, s.regions.c.deleted.is_(False))
                               ).first()
        return region_from_row(row) if row else None

    def current(self, digests: Sequence[str] | None = None) -> list[Region]:
        """Regions neither edited nor deleted since (of ``digests`` only, when given), oldest first."""
        later = aliased(s.regions)
        query = (select(s.regions).where(s.regions.c.deleted.is_(False))
                 .where(~exists().where(later.c.supersedes == s.regions.c.id)).order_by(s.regions.c.id))
        rows: list[Any] = []
        with self._connect() as conn:
            if digests is None:
                rows = conn.execute(query).all()
            else:
                for chunk in chunks(sorted(set(digests))):
                    rows += conn.execute(query.where(s.regions.c.sha256.in_(chunk))).all()
        return sorted((region_from_row(r) for r in rows), key=lambda r: r.id or 0)

    def snapshot(self, version: str, region_ids: Sequence[int]) -> None:
        """Record that dataset ``version`` holds these regions."""
        rows = [{"version": version, "region_id": i} for i in sorted(set(region_ids))]
        with self._connect() as conn:
            for start in range(0, len(rows), 1000):
                conn.execute(insert(s.dataset_regions), rows[start:start + 1000])

    def in_version(self, version: str) -> list[Region]:
        """The regions a dataset version holds, by id."""
        query = (select(s.regions).join(s.dataset_regions, s.dataset_regions.c.region_id == s.regions.c.id)
                 .where(s.dataset_regions.c.version == version).order_by(s.regions.c.id))
        with self._connect() as conn:
            return [region_from_row(r) for r in conn.execute(query).all()]

    def image_sources(self) -> list[tuple[str, str]]:
        """Every ``(sha256, original path)`` an image was ingested from: how annotation files name images."""
        with self._connect() as conn:
            rows = conn.execute(select(s.image_sources.c.sha256, s.image_sources.c.original_path)
                                .order_by(s.image_sources.c.id)).all()
        return [(row.sha256, row.original_path) for row in rows]


def region_row(region: Region) -> dict[str, Any]:
    box = region.box
    return {"sha256": region.sha256, "class_name": region.class_name, "annotator": region.annotator,
            "source": region.source, "x0": box.x0, "y0": box.y0, "x1": box.x1, "y1": box.y1,
            "polygon": [list(p) for p in region.polygon.points] if region.polygon else None,
            "supersedes": region.supersedes,
            "created_at": region.created_at.isoformat() if region.created_at else now_iso()}


def region_from_row(row: Any) -> Region:
    return Region(id=row.id, sha256=row.sha256, class_name=row.class_name, annotator=row.annotator,
                  source=row.source, box=Box(x0=row.x0, y0=row.y0, x1=row.x1, y1=row.y1),
                  polygon=Polygon(points=row.polygon) if row.polygon else None, supersedes=row.supersedes,
                  created_at=datetime.fromisoformat(row.created_at))
