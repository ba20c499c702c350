"""Graded defects: ordered classes (a grade scale) and soft labels.

A plant grades severity: scratch minor < major < critical. Each graded class is an ordinary class
(the model, its thresholds and the runtime are unchanged) whose definition carries its ``scale`` and
its ``grade`` on it; the good class sits below every scale (grade 0). Training reads the order to
learn that confusing minor with critical is worse than minor with major (``train.ordinal``), and
reports roll grades up into "defective at grade >= g" (``evaluate.graded``).

A soft label is an annotator's probability that the part is defective (a manifest's
``defect_probability``): stored with the annotation, carried by the dataset version, used as the
training target.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from inspectloop.domain import Annotation, ClassDefinition
from inspectloop.errors import LabelError
from inspectloop.workspace import Workspace

SEVERITY_RANK = {"none": 0, "minor": 1, "major": 2, "critical": 3}


@dataclass(frozen=True)
class GradeScale:
    """One ordered scale: its classes from the lowest grade (1) to the highest."""

    name: str
    classes: tuple[str, ...]

    def at_least(self, grade: int) -> tuple[str, ...]:
        """The classes of grade ``grade`` or higher (what "defective at grade >= g" counts)."""
        return self.classes[grade - 1:]


def grade_scales(classes: Iterable[ClassDefinition], only: Iterable[str] | None = None) -> list[GradeScale]:
    """The scales the graded ``classes`` form (restricted to the class names ``only``, e.g. a model's)."""
    keep = None if only is None else set(only)
    by_scale: dict[str, list[ClassDefinition]] = {}
    for c in classes:
        if c.scale is not None and (keep is None or c.name in keep):
            by_scale.setdefault(c.scale, []).append(c)
    return [GradeScale(name, tuple(c.name for c in sorted(members, key=lambda c: c.grade or 0)))
            for name, members in sorted(by_scale.items())]


def class_grades(classes: Mapping[str, ClassDefinition], names: Sequence[str]) -> dict[str, tuple[str, int]]:
    """``name -> (scale, grade)`` for each graded class among ``names``."""
    return {n: (classes[n].scale, classes[n].grade) for n in names  # type: ignore[misc]
            if n in classes and classes[n].scale is not None}


def check_grade_order(scale: str, ordered: Sequence[str], classes: Mapping[str, ClassDefinition]) -> None:
    """Refuse an order of ``scale``'s classes (lowest grade first) that cannot be a grade scale, naming the class.

    Refused: an unknown class, a class listed twice, the good class (it is below every scale), a class
    already graded on another scale, fewer than two grades, and grades out of order: a class whose
    severity is lower than that of a class graded below it (critical below minor).
    """
    if len(ordered) < 2:
        raise LabelError(f"scale {scale!r} needs at least two grades (got {len(ordered)})",
                         f"list its classes, lowest grade first: inspectloop classes grade {scale} minor major "
                         "critical")
    seen: set[str] = set()
    for position, name in enumerate(ordered, start=1):
        if name not in classes:
            raise LabelError(f"grade {position} of {scale!r}: unknown class {name!r}",
                             f"define it first: inspectloop classes add {name!r} --severity major")
        if name in seen:
            raise LabelError(f"grades out of order: {name!r} is listed twice on scale {scale!r}",
                             "list each class once, lowest grade first")
        seen.add(name)
        definition = classes[name]
        if definition.is_good:
            raise LabelError(f"grade {position} of {scale!r}: {name!r} is the good class, used both as graded and "
                             "not (the good class is below every scale)", f"leave {name!r} out of the list")
        if definition.scale not in (None, scale):
            raise LabelError(f"grade {position} of {scale!r}: {name!r} is already graded on scale "
                             f"{definition.scale!r}: a class is graded on one scale",
                             f"remove it there first: inspectloop classes grade {definition.scale} --clear")
    for lower, higher in zip(ordered, ordered[1:]):
        below, above = classes[lower].severity.value, classes[higher].severity.value
        if SEVERITY_RANK[above] < SEVERITY_RANK[below]:
            raise LabelError(f"grades out of order on scale {scale!r}: {higher!r} (severity {above}) is graded above "
                             f"{lower!r} (severity {below})",
                             "list the classes lowest grade first, or change a severity: inspectloop classes add "
                             f"{higher!r} --severity {below}")


def keep_grade(classes: Mapping[str, ClassDefinition], definition: ClassDefinition) -> ClassDefinition:
    """``definition`` keeping the grade its class already has (redefining a criterion does not ungrade it),
    refused when its new severity puts the scale out of order."""
    existing = classes.get(definition.name)
    if existing is None or not existing.graded or definition.graded or definition.is_good:
        return definition
    kept = definition.model_copy(update={"scale": existing.scale, "grade": existing.grade})
    scale = next(s for s in grade_scales(classes.values()) if s.name == existing.scale)
    check_grade_order(scale.name, scale.classes, {**classes, kept.name: kept})
    return kept


def set_grade_order(workspace: Workspace, scale: str, ordered: Sequence[str]) -> list[ClassDefinition]:
    """Make ``ordered`` (lowest grade first) the grades of ``scale``; classes no longer listed are ungraded.

    An empty ``ordered`` clears the scale. Returns the updated definitions.
    """
    classes = workspace.db.labels.classes()
    if ordered:
        check_grade_order(scale, ordered, classes)
    rank = {name: grade for grade, name in enumerate(ordered, start=1)}
    changed = []
    for definition in classes.values():
        if definition.name in rank:
            changed.append(definition.model_copy(update={"scale": scale, "grade": rank[definition.name]}))
        elif definition.scale == scale:
            changed.append(definition.model_copy(update={"scale": None, "grade": None}))
    if not changed and not ordered:
        raise LabelError(f"no scale {scale!r} to clear", "see the scales: inspectloop classes list")
    with workspace.db.transaction() as tx:
        for definition in changed:
            tx.labels.upsert_class(definition)
    return changed


def soft_labels(annotations: Iterable[Annotation], labels: Mapping[str, str]) -> dict[str, float]:
    """Each labelled image's soft label: the latest probability given with its resolved label.

    A probability given with another class than the one the image resolved to was said about
    another reading of the image, so it does not count.
    """
    found: dict[str, float] = {}
    for annotation in annotations:  # oldest first: later words overwrite earlier ones
        if annotation.probability is not None and labels.get(annotation.sha256) == annotation.class_name:
            found[annotation.sha256] = annotation.probability
    return found
