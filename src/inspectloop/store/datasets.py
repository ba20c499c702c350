"""Dataset versions and their items."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from sqlalchemy import insert, select

from inspectloop.domain import DatasetItem, DatasetVersionInfo
from inspectloop.store import schema as s
from inspectloop.store.base import Repository, as_row, now_iso


class DatasetRepository(Repository):
    """The ``dataset_versions`` and ``dataset_items`` tables."""

    def add(self, name: str, parent: str | None, params: dict[str, Any], summary: dict[str, Any],
            items: Sequence[DatasetItem]) -> None:
        """Store a version and its items together."""
        with self._connect() as conn:
            conn.execute(insert(s.dataset_versions).values(
                name=name, parent=parent, created_at=now_iso(), params=params, summary=summary))
            rows = [{"version": name, "sha256": i.sha256, "label": i.label, "split": i.split,
                     "group_key": i.group_key, "probability": i.probability} for i in items]
            for start in range(0, len(rows), 1000):
                conn.execute(insert(s.dataset_items), rows[start:start + 1000])

    def get(self, name: str) -> DatasetVersionInfo | None:
        with self._connect() as conn:
            row = conn.execute(select(s.dataset_versions).where(s.dataset_versions.c.name == name)).first()
        return as_row(DatasetVersionInfo, row) if row else None

    def list(self) -> list[DatasetVersionInfo]:
        """Every version, oldest first."""
        with self._connect() as conn:
            rows = conn.execute(select(s.dataset_versions).order_by(s.dataset_versions.c.created_at)).all()
        return [as_row(DatasetVersionInfo, r) for r in rows]

    def items(self, name: str) -> list[DatasetItem]:
        """A version's items, by image digest."""
        t = s.dataset_items
        with self._connect() as conn:
            rows = conn.execute(select(t.c.sha256, t.c.label, t.c.split, t.c.group_key, t.c.probability)
                                .where(t.c.version == name).order_by(t.c.sha256)).all()
        return [as_row(DatasetItem, r) for r in rows]
