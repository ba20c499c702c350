"""Suspected label errors of a dataset version: frozen features (kept in the workspace, shared with the dataset
map), out-of-fold probabilities, confident learning."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from inspectloop.datasets import load_version
from inspectloop.domain.labelling import QueuedSuspect
from inspectloop.embeddings import MAP_INPUT_SIZE, image_embeddings
from inspectloop.errors import LabelError
from inspectloop.labelquality.confident import RankBy, check_ranking, find_label_issues
from inspectloop.labelquality.probabilities import DEFAULT_FOLDS, out_of_fold_probabilities
from inspectloop.workspace import Workspace


@dataclass(frozen=True)
class Suspect:
    """An image whose label is probably wrong: its label, the class the estimate prefers, and how sure."""

    sha256: str
    split: str
    given: str
    suggestion: str
    self_confidence: float  # out-of-fold probability of the given label
    score: float  # the ranking score: low = likely wrong

    def to_dict(self) -> dict[str, object]:
        return {"sha256": self.sha256, "split": self.split, "given": self.given, "suggestion": self.suggestion,
                "self_confidence": round(self.self_confidence, 4), "score": round(self.score, 4)}


@dataclass(frozen=True)
class SuspectReport:
    """Suspects of a version, most likely wrong first, and the estimate behind them."""

    version: str
    images: int
    suspects: list[Suspect]
    estimated_noise: float  # share of labels the confident joint estimates wrong
    oof_accuracy: float  # how often the out-of-fold prediction matches the given label


def find_suspects(workspace: Workspace, version: str = "latest", *, folds: int = DEFAULT_FOLDS, seed: int = 0,
                  rank_by: RankBy = "self_confidence",
                  progress: Callable[[int, int], None] | None = None) -> SuspectReport:
    """Rank the images of a dataset version (every split) whose label is probably wrong."""
    check_ranking(rank_by)  # before minutes of embedding, not after
    dataset = load_version(workspace, version)
    classes = list(dataset.class_names)
    items = [item for item in dataset.items if item.label in classes]
    if len(items) < 2 * len(classes):
        raise LabelError(f"dataset {dataset.name} has {len(items)} images for {len(classes)} classes: too few to "
                         "estimate label errors", "label at least a few images of every class first")
    labels = np.array([classes.index(item.label) for item in items])
    # the dataset map's own embeddings: an image mapped or checked before is not embedded again
    embedded = image_embeddings(workspace, [item.sha256 for item in items], input_size=MAP_INPUT_SIZE, progress=progress)
    features = np.stack([embedded[item.sha256] for item in items])
    probabilities = out_of_fold_probabilities(features, labels, len(classes), folds=folds, seed=seed)
    issues = find_label_issues(labels, probabilities, rank_by=rank_by)
    suspects = [Suspect(items[i].sha256, items[i].split, items[i].label, classes[int(issues.suggested[i])],
                        float(probabilities[i, labels[i]]), float(issues.quality[i])) for i in issues.flagged]
    noise = float(issues.noise_matrix.sum() - np.trace(issues.noise_matrix))
    accuracy = float(np.mean(probabilities.argmax(axis=1) == labels))
    return SuspectReport(dataset.name, len(items), suspects, noise, accuracy)


def queue_suspects(workspace: Workspace, suspects: Sequence[Suspect]) -> int:
    """Send suspects to the settle queue (an image already waiting there is not queued twice); return how many."""
    return workspace.db.settle.enqueue_suspects([
        QueuedSuspect(id=0, sha256=s.sha256, given=s.given, suggestion=s.suggestion, score=s.score, created_at="",
                      details={"self_confidence": round(s.self_confidence, 4), "split": s.split}) for s in suspects])
