"""Class definitions and annotations; resolving several annotators' votes into one label.

Disagreement is data: every annotation is kept, and images whose annotators disagree are listed
so a quality engineer can settle them (or the class definition can be sharpened).
"""

from __future__ import annotations

from collections import Counter, defaultdict
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from inspectloop.domain import Annotation, ClassDefinition
from inspectloop.errors import LabelError
from inspectloop.store import sha256_bytes
from inspectloop.workspace import Workspace


_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True)
class Disagreement:
    sha256: str
    votes: dict[str, int]  # class -> annotators who chose it
    resolved: str | None  # majority label, None on a tie or an unsettled conflict
    conflict: bool = False  # one annotator's imports gave the same bytes two classes, not yet settled

    def to_dict(self) -> dict[str, object]:
        return {"sha256": self.sha256, "votes": self.votes, "resolved": self.resolved, "conflict": self.conflict}


@dataclass
class LabelResolution:
    labels: dict[str, str] = field(default_factory=dict)  # sha256 -> label
    disagreements: list[Disagreement] = field(default_factory=list)

    @property
    def ties(self) -> list[Disagreement]:
        return [d for d in self.disagreements if d.resolved is None and not d.conflict]

    @property
    def conflicts(self) -> list[Disagreement]:
        """Images left unlabelled until someone settles their conflicting imports."""
        return [d for d in self.disagreements if d.conflict]


def define_class(workspace: Workspace, definition: ClassDefinition) -> None:
    """Add a class or update its criterion and severity (names are stable identifiers)."""
    if definition.is_good and any(c.is_good and c.name != definition.name for c in workspace.db.labels.classes().values()):
        good = next(c.name for c in workspace.db.labels.classes().values() if c.is_good)
        raise LabelError(f"class {good!r} is already the good (pass) class",
                         f"unmark it first: inspectloop classes add {good} --no-good")
    workspace.db.labels.upsert_class(definition)


def add_reference_image(workspace: Workspace, class_name: str, image: str, note: str | None = None) -> str:
    """Attach an ingested image, named by its file path or its sha256, as a reference of a class.

    Returns the image's sha256.
    """
    _require_class(workspace, class_name)
    sha256 = find_image(workspace, image)
    workspace.db.labels.add_reference(class_name, sha256, note)
    return sha256


def find_image(workspace: Workspace, image: str) -> str:
    """The sha256 of a stored image named by a file path (its bytes are hashed) or by its sha256."""
    path = Path(image)
    if path.is_file():
        digest = sha256_bytes(path.read_bytes())
        if not workspace.db.images.exists(digest):
            raise LabelError(f"{image} is not in this workspace (sha256 {digest[:12]}... is not stored)",
                             f"ingest it first: inspectloop ingest {path.parent}")
        return digest
    if not _SHA256.fullmatch(image):
        raise LabelError(f"no file {image!r}, and it is not a sha256 either",
                         "give the path of an ingested image file or its 64-character sha256")
    _require_image(workspace, image.lower())
    return image.lower()


def annotate(workspace: Workspace, sha256: str, class_name: str, *, annotator: str, source: str = "reviewer",
             note: str | None = None) -> None:
    """Record that ``annotator`` says image ``sha256`` shows ``class_name``."""
    _require_class(workspace, class_name)
    _require_image(workspace, sha256)
    if not annotator.strip():
        raise LabelError("annotator is empty", "name the person (or tool) making the annotation")
    workspace.db.labels.add_annotations([Annotation(sha256=sha256, class_name=class_name, annotator=annotator,
                                                   source=source, note=note)])


def resolve_labels(annotations: Iterable[Annotation]) -> LabelResolution:
    """One label per image by majority of annotators. The rules:

    - An annotator's latest word counts once (a reviewer may change their mind).
    - Imports are not a change of mind: when one annotator's imports put the same bytes under two
      classes (``ok/a.png`` and ``defect/b.png``), each class they gave counts, and the image is in
      *conflict*: unlabelled (left out of new dataset versions and so of training) until someone
      settles it with an annotation that is not an import (``inspectloop label``); then majority rules.
    - A tie leaves the image unlabelled.

    Images whose annotators disagree, conflicts included, are listed.
    """
    latest: dict[tuple[str, str], str] = {}
    imported: dict[tuple[str, str], set[str]] = defaultdict(set)
    reviewed: set[tuple[str, str]] = set()  # (image, annotator) with a word that is not an import
    for annotation in annotations:  # in creation order, so later annotations overwrite earlier ones
        key = (annotation.sha256, annotation.annotator)
        latest[key] = annotation.class_name
        if annotation.source == "import":
            imported[key].add(annotation.class_name)
        else:
            reviewed.add(key)
    votes: dict[str, Counter[str]] = defaultdict(Counter)
    conflicted: set[str] = set()
    for key, label in latest.items():
        claims = {label} if key in reviewed else imported[key]
        if len(claims) > 1:
            conflicted.add(key[0])
        votes[key[0]].update(claims)
    settled = {digest for digest, _ in reviewed}
    resolution = LabelResolution()
    for digest, counter in sorted(votes.items()):
        ranked = counter.most_common()
        tie = len(ranked) > 1 and ranked[0][1] == ranked[1][1]
        open_conflict = digest in conflicted and digest not in settled
        winner = None if tie or open_conflict else ranked[0][0]
        if winner is not None:
            resolution.labels[digest] = winner
        if len(ranked) > 1:
            resolution.disagreements.append(Disagreement(digest, dict(counter), winner, open_conflict))
    return resolution


def label_summary(workspace: Workspace) -> dict[str, object]:
    """Counts per class, annotators, and the disagreements to settle."""
    annotations = workspace.db.labels.annotations()
    resolution = resolve_labels(annotations)
    per_class = Counter(resolution.labels.values())
    annotated = {a.sha256 for a in annotations}
    return {
        "images": workspace.db.images.count(),
        "labelled": len(resolution.labels),
        "unlabelled": workspace.db.images.count() - len(annotated),
        "per_class": dict(sorted(per_class.items())),
        "annotators": sorted({a.annotator for a in annotations}),
        "disagreements": [d.to_dict() for d in resolution.disagreements],
        "ties": len(resolution.ties),
        "conflicts": len(resolution.conflicts),
    }


def _require_class(workspace: Workspace, class_name: str) -> None:
    classes = workspace.db.labels.classes()
    if class_name not in classes:
        known = ", ".join(classes) or "none yet"
        raise LabelError(f"unknown class {class_name!r} (known: {known})",
                         f"define it first: inspectloop classes add {class_name!r} --criterion '...'")


def _require_image(workspace: Workspace, sha256: str) -> None:
    if not workspace.db.images.exists(sha256):
        raise LabelError(f"no image with sha256 {sha256[:12]}... in this workspace", "ingest the image first")
