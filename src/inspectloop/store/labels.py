"""Classes, their reference images, and annotations."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import insert, select, update

from inspectloop.domain import Annotation, ClassDefinition
from inspectloop.store import schema as s
from inspectloop.store.base import Repository, insert_new, now_iso


class LabelRepository(Repository):
    """The ``classes``, ``class_references`` and ``annotations`` tables."""

    def upsert_class(self, definition: ClassDefinition) -> None:
        """Add a class, or replace the definition of the class of that name."""
        values = dict(task=definition.task.value, criterion=definition.criterion,
                      severity=definition.severity.value, is_good=int(definition.is_good), updated_at=now_iso(),
                      scale=definition.scale, grade=definition.grade)
        with self._connect() as conn:
            exists = conn.execute(select(s.classes.c.name).where(s.classes.c.name == definition.name)).first()
            if exists:
                conn.execute(update(s.classes).where(s.classes.c.name == definition.name).values(**values))
            else:
                conn.execute(insert(s.classes).values(name=definition.name, created_at=now_iso(), **values))

    def classes(self) -> dict[str, ClassDefinition]:
        """Every class by name, in name order."""
        with self._connect() as conn:
            rows = conn.execute(select(s.classes).order_by(s.classes.c.name)).all()
        return {row.name: ClassDefinition(name=row.name, criterion=row.criterion, severity=row.severity,
                                          task=row.task, is_good=bool(row.is_good), scale=row.scale,
                                          grade=row.grade) for row in rows}

    def class_names(self) -> set[str]:
        with self._connect() as conn:
            return set(conn.execute(select(s.classes.c.name)).scalars())

    def good_classes(self) -> set[str]:
        with self._connect() as conn:
            return set(conn.execute(select(s.classes.c.name).where(s.classes.c.is_good == 1)).scalars())

    def add_reference(self, class_name: str, digest: str, note: str | None = None) -> None:
        """Make an image a reference of a class (once)."""
        with self._connect() as conn:
            insert_new(conn, s.class_references, [{"class_name": class_name, "sha256": digest, "note": note}])

    def references(self, class_name: str) -> list[str]:
        with self._connect() as conn:
            return list(conn.execute(select(s.class_references.c.sha256)
                                     .where(s.class_references.c.class_name == class_name)).scalars())

    def add_annotations(self, annotations: Sequence[Annotation]) -> None:
        if annotations:
            with self._connect() as conn:
                conn.execute(insert(s.annotations), [_annotation_row(a) for a in annotations])

    def add_annotation(self, annotation: Annotation) -> int:
        """Record one annotation; return its id."""
        with self._connect() as conn:
            return int(conn.execute(insert(s.annotations).values(**_annotation_row(annotation)))
                       .inserted_primary_key[0])

    def existing_annotations(self, digests: Sequence[str]) -> set[tuple[str, str, str]]:
        """``(sha256, class, annotator)`` triples already recorded for these images."""
        query = select(s.annotations.c.sha256, s.annotations.c.class_name, s.annotations.c.annotator)
        with self._connect() as conn:
            rows = conn.execute(query.where(s.annotations.c.sha256.in_(list(set(digests)))))
            return {(row.sha256, row.class_name, row.annotator) for row in rows}

    def annotations(self, sha256: str | None = None) -> list[Annotation]:
        """Every annotation (of one image, when named), oldest first."""
        query = select(s.annotations).order_by(s.annotations.c.id)
        if sha256 is not None:
            query = query.where(s.annotations.c.sha256 == sha256)
        with self._connect() as conn:
            rows = conn.execute(query).all()
        return [Annotation(sha256=r.sha256, class_name=r.class_name, annotator=r.annotator, source=r.source,
                           created_at=datetime.fromisoformat(r.created_at), note=r.note,
                           probability=r.probability) for r in rows]


def _annotation_row(annotation: Annotation) -> dict[str, object]:
    return {"sha256": annotation.sha256, "class_name": annotation.class_name, "annotator": annotation.annotator,
            "source": annotation.source, "note": annotation.note, "probability": annotation.probability,
            "created_at": annotation.created_at.isoformat() if annotation.created_at else now_iso()}
