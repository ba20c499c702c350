"""Dataset versions: immutable snapshots of (image, label, split)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Split(StrEnum):
    train = "train"
    val = "val"
    test = "test"


@dataclass(frozen=True)
class DatasetItem:
    """One image of a version: its label, its split and the group that keeps near-duplicates together."""

    sha256: str
    label: str
    split: str
    group_key: str
    probability: float | None = None  # soft label: the annotators' probability that the part is defective


@dataclass(frozen=True)
class DatasetVersionInfo:
    """A stored version without its items: what listing versions needs."""

    name: str
    parent: str | None
    created_at: str
    params: dict[str, Any]
    summary: dict[str, Any]


@dataclass(frozen=True)
class DatasetVersion:
    """A version with its items."""

    name: str
    parent: str | None
    params: dict[str, Any]
    summary: dict[str, Any]
    items: tuple[DatasetItem, ...]

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.summary["classes"])

    def split(self, split: Split | str) -> list[DatasetItem]:
        return [item for item in self.items if item.split == str(split)]
