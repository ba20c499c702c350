"""The labelling policy: whose word counts most when annotators disagree.

Every annotation has a role: the role its annotator is given in the policy (``annotators``), else the
role its source implies (an import is "import", a settle decision is "settled", any other source is a
person's word: "reviewer"). Only the words of the highest-ranked role present on an image are counted,
so a reviewer's correction of an imported label wins instead of tying with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import Field, field_validator

from inspectloop.domain.base import FrozenModel

SETTLED = "settled"  # the annotation source (and role) of a quality engineer's settle decision
KNOWN_ROLES = (SETTLED, "quality_engineer", "reviewer", "import")
SOURCE_ROLES = {SETTLED: SETTLED, "import": "import"}  # any other source is a person's word
# Why an image was sent to the settle queue (disagreements between annotators are read live, not sent):
SUSPECT = "suspect"  # confident learning finds its label probably wrong (labels suspects --queue)
BROWSER = "browser"  # a person selected it on the dataset browser's map (/browse)
BOXES = "boxes"  # its boxes disagree with a detector's (labels boxes --queue): missing, spurious or misplaced
SETTLE_REASONS = (SUSPECT, BROWSER, BOXES)


def _check_role(role: str, where: str) -> str:
    if role not in KNOWN_ROLES:
        raise ValueError(f"unknown role {role!r} in {where} (known: {', '.join(KNOWN_ROLES)})")
    return role


class LabellingPolicy(FrozenModel):
    """The ``labelling`` section of the workspace config: the role order, highest first, and the role of
    named annotators (``{"ana": "quality_engineer"}``). Roles left out of ``roles`` rank below all listed."""

    roles: list[str] = Field(default_factory=lambda: list(KNOWN_ROLES))
    annotators: dict[str, str] = Field(default_factory=dict)

    @field_validator("roles")
    @classmethod
    def _known_roles(cls, value: list[str]) -> list[str]:
        for role in value:
            _check_role(role, "labelling.roles")
        if len(set(value)) != len(value):
            raise ValueError(f"labelling.roles names a role twice: {', '.join(value)}")
        return value

    @field_validator("annotators")
    @classmethod
    def _known_annotator_roles(cls, value: dict[str, str]) -> dict[str, str]:
        for name, role in value.items():
            _check_role(role, f"labelling.annotators.{name}")
        return value

    def role(self, annotator: str, source: str) -> str:
        """The role of an annotation by ``annotator`` from ``source`` (a settle decision is always settled)."""
        if source == SETTLED:
            return SETTLED
        return self.annotators.get(annotator) or SOURCE_ROLES.get(source, "reviewer")

    def rank(self, role: str) -> int:
        """0 for the highest role; roles the policy leaves out come after every listed one."""
        return self.roles.index(role) if role in self.roles else len(self.roles)


@dataclass(frozen=True)
class QueuedSuspect:
    """An image sent to the settle queue, as stored: why (``reason``, one of SETTLE_REASONS), the label it had,
    the class an estimate prefers and how likely its label is (low = likely wrong), when there is one."""

    id: int
    sha256: str
    given: str | None
    suggestion: str | None
    score: float | None
    created_at: str
    details: dict[str, Any] = field(default_factory=dict)
    reason: str = SUSPECT
