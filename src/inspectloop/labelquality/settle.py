"""The settle queue: images whose label a quality engineer should decide, and that decision.

An image is in the queue when its annotators disagree (read live from the annotations) or when it was
sent there: as a suspected label error (``inspectloop labels suspects --queue``), by a person from the
dataset browser's map, or because its boxes disagree with a detector's (``inspectloop labels boxes
--queue``), until someone settles it. Each case says why, in words (:func:`reason_text`). Settling
records an annotation with source "settled", which outranks every vote (labelling policy). Each case is
shown with a fingerprint of the image's votes; a decision made on a view whose votes have changed since is
refused as stale, so nobody overrules a vote they have not seen.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from inspectloop.domain import Annotation, Role, User
from inspectloop.domain.labelling import BOXES, BROWSER, SETTLED, SUSPECT
from inspectloop.errors import LabelError
from inspectloop.labels import find_image, resolve_labels
from inspectloop.workspace import Workspace


@dataclass(frozen=True)
class SettleCase:
    """One image to settle: why, every annotator's latest word, the label it has now, and the votes' fingerprint."""

    sha256: str
    reasons: tuple[str, ...]  # disagreement, and/or one of SETTLE_REASONS (suspect, browser, boxes)
    votes: dict[str, str]  # annotator -> class (their latest word)
    current: str | None  # the label the policy gives it now (None: tie or conflict)
    suggestion: str | None = None  # the class a suspect's estimate prefers
    score: float | None = None  # a suspect's label quality (low = likely wrong)
    seen: str = ""  # fingerprint of the votes shown: pass it back to settle
    details: dict[str, object] = field(default_factory=dict)

    @property
    def why(self) -> list[str]:
        """Each reason in words, with who sent it and what they saw."""
        return [reason_text(reason, self.details) for reason in self.reasons]

    def to_dict(self) -> dict[str, object]:
        return {"sha256": self.sha256, "reasons": list(self.reasons), "why": self.why, "votes": self.votes,
                "current": self.current, "suggestion": self.suggestion, "score": self.score, "seen": self.seen,
                "details": self.details}


def reason_text(reason: str, details: Mapping[str, object]) -> str:
    """A reason for the settle page and CLI: ``browser`` says who sent it and the field the map was coloured by."""
    if reason == BROWSER:
        colour = details.get("colour_by")
        value = details.get("colour_value")
        seen = f" (map coloured by {colour}{f': {value}' if value not in (None, '') else ''})" if colour else ""
        return f"sent from the browser by {details.get('sent_by') or 'someone'}{seen}"
    if reason == BOXES:
        counts = details.get("counts")
        found = ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in counts.items()) if isinstance(counts, dict) \
            else ""
        return f"boxes disagree with {details.get('predicted_by') or 'a detector'}" + (f": {found}" if found else "")
    if reason == SUSPECT:
        return "suspected label error"
    if reason == "disagreement":
        return "annotators disagree"
    return reason


def votes_fingerprint(annotations: Iterable[Annotation]) -> str:
    """A short digest of an image's annotations: it changes whenever anyone adds a word about the image."""
    rows = sorted(f"{a.annotator}\t{a.class_name}\t{a.source}\t{a.created_at.isoformat() if a.created_at else ''}"
                  for a in annotations)
    return hashlib.sha256("\n".join(rows).encode("utf-8")).hexdigest()[:12]


def settle_queue(workspace: Workspace) -> list[SettleCase]:
    """Open cases: unlabelled disagreements (ties, conflicts) first, then those with a score (suspects and box
    disagreements, most likely wrong first), then the rest (browser selections, disagreements the labelling
    policy already decides)."""
    annotations = workspace.db.labels.annotations()
    by_image: dict[str, list[Annotation]] = defaultdict(list)
    for annotation in annotations:
        by_image[annotation.sha256].append(annotation)
    resolution = resolve_labels(annotations, workspace.config.labelling)
    settled = {digest for digest, notes in by_image.items() if any(a.source == SETTLED for a in notes)}
    cases: dict[str, SettleCase] = {}
    for disagreement in resolution.disagreements:
        if disagreement.sha256 not in settled:
            cases[disagreement.sha256] = _case(disagreement.sha256, ("disagreement",), by_image, resolution.labels)
    for sent in workspace.db.settle.open_suspects():
        reasons = cases[sent.sha256].reasons + (sent.reason,) if sent.sha256 in cases else (sent.reason,)
        cases[sent.sha256] = _case(sent.sha256, reasons, by_image, resolution.labels,
                                   sent.suggestion, sent.score, dict(sent.details))
    return sorted(cases.values(), key=_queue_order)


def settle(workspace: Workspace, image: str, label: str, *, by: str, seen: str, note: str | None = None) -> str:
    """Record ``by``'s settle decision that ``image`` (path or sha256) shows ``label``; return the image's sha256.

    ``seen`` is the fingerprint the case was shown with; LabelError (stale) when the votes changed since.
    """
    if not by.strip():
        raise LabelError("no quality engineer named", "pass who settles it: --by NAME")
    classes = workspace.db.labels.classes()
    if label not in classes:
        raise LabelError(f"unknown class {label!r} (known: {', '.join(classes) or 'none yet'})",
                         "settle on one of the defined classes")
    sha256 = find_image(workspace, image)
    with workspace.db.transaction() as tx:  # the check and the write see the same votes
        now = votes_fingerprint(tx.labels.annotations(sha256))
        if now != seen:
            raise LabelError(f"stale settle: the votes on {sha256[:12]}... changed since they were shown "
                             f"(shown {seen or 'none'}, now {now})",
                             "nothing was recorded; look at the new votes: inspectloop labels queue")
        annotation_id = tx.labels.add_annotation(Annotation(
            sha256=sha256, class_name=label, annotator=by, source=SETTLED, note=note,
            created_at=datetime.now(UTC).replace(microsecond=0)))
        tx.settle.close(sha256, by=by, annotation_id=annotation_id)
    return sha256


def may_settle(workspace: Workspace, user: User) -> bool:
    """Whether a service user may settle labels: an admin, or a quality engineer by the labelling policy."""
    return user.role == Role.ADMIN or workspace.config.labelling.annotators.get(user.name) == "quality_engineer"


def _case(sha256: str, reasons: tuple[str, ...], by_image: dict[str, list[Annotation]], labels: dict[str, str],
          suggestion: str | None = None, score: float | None = None,
          details: dict[str, object] | None = None) -> SettleCase:
    notes = by_image.get(sha256, [])
    votes = {a.annotator: a.class_name for a in notes}  # oldest first: each annotator's latest word stays
    return SettleCase(sha256, reasons, votes, labels.get(sha256), suggestion, score, votes_fingerprint(notes),
                      details or {})


def _queue_order(case: SettleCase) -> tuple[int, float, str]:
    if "disagreement" in case.reasons and case.current is None:
        return 0, 0.0, case.sha256
    if case.score is not None:
        return 1, case.score, case.sha256
    return 2, 0.0, case.sha256
