"""Images, where they came from, and the ingests that brought them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update

from inspectloop.domain import CaptureMeta, ImageRecord, QualityStats
from inspectloop.store import schema as s
from inspectloop.store.base import Repository, chunks, insert_new, now_iso


class ImageRepository(Repository):
    """The ``images``, ``image_sources`` and ``ingests`` tables."""

    def begin_ingest(self, source: str, kind: str) -> int:
        """Record the start of an ingest; return its id."""
        with self._connect() as conn:
            result = conn.execute(insert(s.ingests).values(source=source, kind=kind, started_at=now_iso()))
            return int(result.inserted_primary_key[0])

    def finish_ingest(self, ingest_id: int, summary: dict[str, Any]) -> None:
        with self._connect() as conn:
            conn.execute(update(s.ingests).where(s.ingests.c.id == ingest_id)
                         .values(finished_at=now_iso(), summary=summary))

    def existing(self, digests: Iterable[str]) -> set[str]:
        """Which of ``digests`` are recorded images."""
        found: set[str] = set()
        with self._connect() as conn:
            for chunk in chunks(list(set(digests))):
                found.update(conn.execute(select(s.images.c.sha256).where(s.images.c.sha256.in_(chunk))).scalars())
        return found

    def exists(self, digest: str) -> bool:
        return bool(self.existing([digest]))

    def add(self, records: Sequence[ImageRecord], ingest_id: int) -> None:
        """Record images, skipping any another writer recorded since they were found new (the line's collector
        and its inspection service keep the same frames at once: the first record stays)."""
        if records:
            stamp = now_iso()
            with self._connect() as conn:
                insert_new(conn, s.images, [image_row(r, ingest_id, stamp) for r in records])

    def complete_meta(self, metas: Sequence[tuple[str, CaptureMeta]]) -> int:
        """Fill in the metadata recorded images lack from ``(sha256, meta)`` pairs: a field with no value, an
        extra key not there. A value already recorded is never replaced, and an image in a dataset version is
        left as it is (its slices stay what they were). How many images gained a field."""
        wanted = dict(metas)
        changed = 0
        in_versions = select(s.dataset_items.c.sha256).distinct()
        with self._connect() as conn:
            for chunk in chunks(list(wanted)):
                rows = conn.execute(select(s.images).where(s.images.c.sha256.in_(chunk),
                                                           s.images.c.sha256.not_in(in_versions))).all()
                for row in rows:
                    values = _missing_meta(row, wanted[row.sha256])
                    if values:
                        conn.execute(update(s.images).where(s.images.c.sha256 == row.sha256).values(**values))
                        changed += 1
        return changed

    def add_once(self, record: ImageRecord, ingest_id: int) -> None:
        """Record an image unless it is recorded already (its blob must already be stored and synced)."""
        self.add([record], ingest_id)  # two services may keep the same image at once

    def add_sources(self, sources: Sequence[tuple[str, str]], ingest_id: int) -> None:
        """Record ``(sha256, original_path)`` pairs: every path an image arrived from."""
        if sources:
            with self._connect() as conn:
                conn.execute(insert(s.image_sources),
                             [{"sha256": d, "original_path": p, "ingest_id": ingest_id} for d, p in sources])

    def get_many(self, digests: Sequence[str] | None = None) -> dict[str, ImageRecord]:
        """The records of ``digests`` that exist (all images when None), by digest."""
        query = select(s.images)
        rows: list[Any] = []
        with self._connect() as conn:
            if digests is None:
                rows = list(conn.execute(query))
            else:
                for chunk in chunks(list(digests)):
                    rows += conn.execute(query.where(s.images.c.sha256.in_(chunk))).all()
        return {row.sha256: image_record(row) for row in rows}

    def get(self, digest: str) -> ImageRecord | None:
        return self.get_many([digest]).get(digest)

    def sources(self, digest: str) -> list[str]:
        """Every path the image arrived from."""
        with self._connect() as conn:
            return list(conn.execute(select(s.image_sources.c.original_path)
                                     .where(s.image_sources.c.sha256 == digest)).scalars())

    def count(self) -> int:
        with self._connect() as conn:
            return int(conn.execute(select(func.count()).select_from(s.images)).scalar_one())

    def cameras(self) -> set[str]:
        """Cameras seen in the workspace's images."""
        with self._connect() as conn:
            return {c for c in conn.execute(select(s.images.c.camera).distinct()).scalars() if c}

    def largest_frame(self) -> int | None:
        """The most pixels (width x height) of any image in the workspace; None when it holds none."""
        with self._connect() as conn:
            value = conn.execute(select(func.max(s.images.c.width * s.images.c.height))).scalar_one()
        return int(value) if value is not None else None


def image_row(record: ImageRecord, ingest_id: int, stamp: str) -> dict[str, Any]:
    return dict(
        sha256=record.sha256, format=record.format, original_mode=record.original_mode,
        working_mode=record.working_mode, width=record.width, height=record.height, size_bytes=record.size_bytes,
        **_meta_columns(record.meta), source=record.source.value, ingest_id=ingest_id, ingested_at=stamp,
        **record.quality.model_dump())


def _missing_meta(row: Any, meta: CaptureMeta) -> dict[str, Any]:
    """The column values ``meta`` gives that ``row`` lacks (its extra gains only keys it does not have)."""
    given = _meta_columns(meta)
    values = {k: v for k, v in given.items() if k != "extra" and v is not None and getattr(row, k) is None}
    extra = dict(row.extra or {})
    added = {k: v for k, v in meta.extra.items() if k not in extra}
    if added:
        values["extra"] = extra | added
    return values


def _meta_columns(meta: CaptureMeta) -> dict[str, Any]:
    """The ``images`` columns that hold an image's capture metadata."""
    return dict(camera=meta.camera, line=meta.line, shift=meta.shift, lighting=meta.lighting, part_id=meta.part_id,
                session=meta.session, captured_at=meta.captured_at.isoformat() if meta.captured_at else None,
                extra=meta.extra)


def image_record(row: Any) -> ImageRecord:
    captured = datetime.fromisoformat(row.captured_at) if row.captured_at else None
    meta = CaptureMeta(camera=row.camera, line=row.line, shift=row.shift, lighting=row.lighting,
                       part_id=row.part_id, session=row.session, captured_at=captured, extra=row.extra or {})
    quality = QualityStats(brightness=row.brightness, contrast=row.contrast, sharpness=row.sharpness,
                           noise=row.noise, clipped_fraction=row.clipped_fraction)
    return ImageRecord(sha256=row.sha256, format=row.format, original_mode=row.original_mode,
                       working_mode=row.working_mode, width=row.width, height=row.height,
                       size_bytes=row.size_bytes, meta=meta, quality=quality, source=row.source)
