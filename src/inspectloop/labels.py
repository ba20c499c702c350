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
from inspectloop.domain.labelling import SETTLED, LabellingPolicy
from inspectloop.errors import LabelError
from inspectloop.grades import keep_grade
from inspectloop.store import sha256_bytes
from inspectloop.workspace import Workspace


_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True)
class Disagreement:
    sha256: str
    votes: dict[str, int]  # class -> annotators who chose it
    resolved: str | None  # majority label, None on a tie or an unsettled conflict
    conflict: bool = False  # one annotator's imports gave the same bytes two classes, not yet settled
    decided_by: str | None = None  # the role whose words were counted (labelling policy)

    def to_dict(self) -> dict[str, object]:
        return {"sha256": self.sha256, "votes": self.votes, "resolved": self.resolved, "conflict": self.conflict,
                "decided_by": self.decided_by}


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
    definition = keep_grade(workspace.db.labels.classes(), definition)
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


def resolve_labels(annotations: Iterable[Annotation], policy: LabellingPolicy | None = None) -> LabelResolution:
    """One label per image: the majority of the highest-ranked role's words (``policy``). The rules:

    - An annotator's latest word counts once (a reviewer may change their mind), in the role of that word.
    - Only the words of the highest-ranked role present on the image count (default: settled >
      quality_engineer > reviewer > import), so a reviewer's correction of an import wins; a settle
      decision outranks every vote, and the latest one wins.
    - Imports are not a change of mind: when one annotator's imports put the same bytes under two
      classes (``ok/a.png`` and ``defect/b.png``), each class they gave counts, and the image is in
      *conflict*: unlabelled (left out of new dataset versions and so of training) until a word that
      outranks the imports settles it.
    - A tie among the counted words leaves the image unlabelled.

    Images whose annotators disagree (every vote counted, whatever its rank), conflicts included, are listed.
    """
    policy = policy or LabellingPolicy()
    words: dict[str, dict[str, _Word]] = defaultdict(dict)  # image -> annotator -> latest word
    for seq, annotation in enumerate(annotations):  # in creation order: later words overwrite earlier ones
        previous = words[annotation.sha256].get(annotation.annotator)
        imports = previous.imports if previous else frozenset()
        if annotation.source == "import":
            imports = imports | {annotation.class_name}
        words[annotation.sha256][annotation.annotator] = _Word(
            annotation.class_name, policy.role(annotation.annotator, annotation.source), imports,
            reviewed=annotation.source != "import" or (previous is not None and previous.reviewed), seq=seq)
    resolution = LabelResolution()
    for digest, by_annotator in sorted(words.items()):
        counter: Counter[str] = Counter()
        for word in by_annotator.values():
            counter.update(word.claims)
        winner, role, conflict = _decide(list(by_annotator.values()), policy)
        if winner is not None:
            resolution.labels[digest] = winner
        if len(counter) > 1:
            resolution.disagreements.append(Disagreement(digest, dict(counter), winner, conflict, role))
    return resolution


@dataclass(frozen=True)
class _Word:
    """One annotator's latest word on one image."""

    label: str
    role: str
    imports: frozenset[str]  # every class this annotator's imports gave the image
    reviewed: bool  # the annotator said something that is not an import
    seq: int  # position in creation order

    @property
    def claims(self) -> set[str]:
        return {self.label} if self.reviewed else set(self.imports)


def _decide(words: list[_Word], policy: LabellingPolicy) -> tuple[str | None, str, bool]:
    """(winner or None, the deciding role, open conflict) among the highest-ranked role's words."""
    top = min(policy.rank(word.role) for word in words)
    counted = [word for word in words if policy.rank(word.role) == top]
    role = counted[0].role
    if role == SETTLED:
        return max(counted, key=lambda word: word.seq).label, role, False  # the latest settle decision
    if any(len(word.claims) > 1 for word in counted):
        return None, role, True
    ranked = Counter(word.label for word in counted).most_common()
    tie = len(ranked) > 1 and ranked[0][1] == ranked[1][1]
    return (None if tie else ranked[0][0]), role, False


def label_summary(workspace: Workspace) -> dict[str, object]:
    """Counts per class, annotators, and the disagreements to settle."""
    annotations = workspace.db.labels.annotations()
    resolution = resolve_labels(annotations, workspace.config.labelling)
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
