"""What maintenance needs from the database: which blobs rows name, SQLite's own check, row counts."""

from __future__ import annotations

from sqlalchemy import func, select, text

from inspectloop.store import schema as s
from inspectloop.store.base import Repository

# Tables whose rows are worth counting in a backup manifest (what a plant would miss first).
COUNTED = ("images", "annotations", "dataset_versions", "runs", "model_versions", "predictions", "review_items",
           "users")


class IntegrityRepository(Repository):
    """Read-only questions across tables, for ``inspectloop doctor`` and ``backup``."""

    def referenced_blobs(self) -> dict[str, str]:
        """Every blob digest a row names, with the first table that names it.

        Images always have their bytes stored; predictions only when ``image_stored``; camera
        baselines keep their flat-field and edge captures.
        """
        queries = [
            ("images", select(s.images.c.sha256)),
            ("predictions", select(s.predictions.c.image_sha256).where(s.predictions.c.image_stored.is_(True))),
            ("camera_baselines", select(s.camera_baselines.c.flat_sha256)),
            ("camera_baselines", select(s.camera_baselines.c.edge_sha256)),
        ]
        found: dict[str, str] = {}
        with self._connect() as conn:
            for table, query in queries:
                for digest in conn.execute(query.distinct()).scalars():
                    if digest:
                        found.setdefault(digest, table)
        return found

    def integrity_check(self) -> list[str] | None:
        """SQLite's ``PRAGMA integrity_check`` lines (``["ok"]`` when sound); None on other databases."""
        with self._connect() as conn:
            if conn.dialect.name != "sqlite":
                return None
            return [str(row[0]) for row in conn.execute(text("PRAGMA integrity_check"))]

    def counts(self) -> dict[str, int]:
        """Rows per counted table."""
        with self._connect() as conn:
            return {name: int(conn.execute(select(func.count()).select_from(s.metadata.tables[name])).scalar_one())
                    for name in COUNTED}

    def prediction_request_ids(self) -> set[str]:
        """The idempotency keys of every logged prediction (a restored backup is checked against them)."""
        with self._connect() as conn:
            return set(conn.execute(select(s.predictions.c.request_id)).scalars())
