"""Perceptual hashes of stored images, computed once and kept (the bytes behind a digest never change)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import insert, select

from inspectloop.store import schema as s
from inspectloop.store.base import Repository, chunks


class ImageHashRepository(Repository):
    """The ``image_hashes`` table: one value per (image, hash kind)."""

    def get_many(self, digests: Sequence[str], kind: str) -> dict[str, int]:
        """The stored ``kind`` hashes of ``digests`` (those not computed yet are absent)."""
        found: dict[str, int] = {}
        with self._connect() as conn:
            for chunk in chunks(sorted(set(digests))):
                rows = conn.execute(select(s.image_hashes.c.sha256, s.image_hashes.c.value)
                                    .where(s.image_hashes.c.kind == kind, s.image_hashes.c.sha256.in_(chunk)))
                found.update({digest: int(value, 16) for digest, value in rows})
        return found

    def add(self, hashes: Mapping[str, int], kind: str) -> None:
        """Record ``kind`` hashes of images not hashed yet (an image already hashed keeps its row)."""
        if not hashes:
            return
        known = self.get_many(list(hashes), kind)
        rows = [{"sha256": d, "kind": kind, "value": f"{v:016x}"} for d, v in sorted(hashes.items()) if d not in known]
        if rows:
            with self._connect() as conn:
                conn.execute(insert(s.image_hashes), rows)
