"""Acceptance criteria as locked, and the acceptance reports written against them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CriteriaRecord:
    """Criteria as locked: the file as written, its validated spec, its hash, when and by whom."""

    id: int
    name: str
    sha256: str  # of the canonical YAML
    yaml: str
    spec: dict[str, Any]
    locked_at: str
    locked_by: str


@dataclass(frozen=True)
class AcceptanceRecord:
    """One stored evaluation of a model version against locked criteria."""

    id: int
    model_version_id: int
    criteria_id: int
    passed: bool
    report: dict[str, Any]
    created_at: str
