"""Training targets for graded classes and soft labels: label distributions and a cumulative-link term.

The model keeps its one softmax head (so the exported file, the runtime and every decision downstream are
unchanged); only what it is trained towards changes:

- **label distribution**: an image of grade g on a scale puts most of its target on its own class and a
  little on the neighbouring grades of that scale (the good class is grade 0 of every scale), so
  confusing minor with major costs less than minor with critical;
- **cumulative link** (CORAL-style): for each scale and grade g, the summed probability of the classes at
  grade >= g is trained as a binary "defective at grade >= g" with its own cross-entropy: the ordered
  thresholds the plant decides on are learnt directly;
- **soft labels**: an annotator's probability p that the part is defective gives the labelled defect
  class a share p of the target and the good class the rest (for an image labelled good, p is spread
  over the defect classes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from inspectloop.domain import DatasetItem
from inspectloop.errors import TrainingError

if TYPE_CHECKING:
    from inspectloop.train.config import TrainConfig
    from inspectloop.train.data import ImageSet

EPS = 1e-6


@dataclass(frozen=True)
class GradedTargets:
    """Per-image target distributions (``targets``, N x classes) and the cumulative-link columns
    (``cumulative``, classes x K: column k is 1 for the classes of one scale at or above one grade)."""

    targets: np.ndarray
    cumulative: np.ndarray
    weight: float = 1.0  # of the cumulative-link term

    def batch(self, index: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.targets[index])

    def take(self, index: np.ndarray) -> GradedTargets:
        """The targets of the images at ``index`` (a subset of the image set)."""
        return GradedTargets(self.targets[index], self.cumulative, self.weight)

    def concat(self, other: GradedTargets) -> GradedTargets:
        return GradedTargets(np.concatenate([self.targets, other.targets]), self.cumulative, self.weight)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, *, smoothing: float = 0.0,
             sample_weight: torch.Tensor | None = None) -> torch.Tensor:
        """Soft cross-entropy towards ``targets`` plus ``weight`` x the cumulative-link cross-entropy."""
        return graded_loss(logits, targets, torch.from_numpy(self.cumulative), weight=self.weight,
                           smoothing=smoothing, sample_weight=sample_weight)


def joined_targets(first: GradedTargets | None, first_labels: np.ndarray, second: GradedTargets | None,
                   second_labels: np.ndarray) -> GradedTargets | None:
    """The targets of two image sets joined (cross-fitting's pool); a set without targets (no soft label among
    its images) joins with its one-hot labels."""
    like = first if first is not None else second
    if like is None:
        return None
    one_hot = np.eye(like.targets.shape[1], dtype=np.float32)
    parts = [targets if targets is not None else GradedTargets(one_hot[labels], like.cumulative, like.weight)
             for targets, labels in ((first, first_labels), (second, second_labels))]
    return parts[0].concat(parts[1])


def graded_loss(logits: torch.Tensor, targets: torch.Tensor, cumulative: torch.Tensor, *, weight: float = 1.0,
                smoothing: float = 0.0, sample_weight: torch.Tensor | None = None) -> torch.Tensor:
    """The training loss of :class:`GradedTargets` (``targets``: rows of class probabilities)."""
    classes = logits.shape[1]
    smoothed = targets * (1 - smoothing) + smoothing / classes
    log_p = nn.functional.log_softmax(logits, dim=1)
    per_image = -(smoothed * log_p).sum(1)
    if cumulative.shape[1] and weight:
        above = (log_p.exp() @ cumulative.to(log_p.dtype)).clamp(EPS, 1 - EPS)  # P(grade >= g), per scale
        wanted = (targets @ cumulative.to(targets.dtype)).clamp(0, 1)
        link = nn.functional.binary_cross_entropy(above, wanted.to(above.dtype), reduction="none").mean(1)
        per_image = per_image + weight * link
    if sample_weight is not None:
        return (per_image * sample_weight).sum() / sample_weight.sum()
    return per_image.mean()


def cumulative_columns(class_names: Sequence[str], grades: Mapping[str, tuple[str, int]]) -> np.ndarray:
    """classes x K: one column per (scale, grade) with the classes of that scale at that grade or above."""
    columns = []
    for scale in sorted({s for s, _ in grades.values()}):
        levels = sorted({g for s, g in grades.values() if s == scale})
        for level in levels:
            columns.append([1.0 if name in grades and grades[name][0] == scale and grades[name][1] >= level else 0.0
                            for name in class_names])
    return np.array(columns, dtype=np.float32).T.reshape(len(class_names), len(columns))


def label_distribution(label: int, class_names: Sequence[str], grades: Mapping[str, tuple[str, int]],
                       good: int | None, spread: float) -> np.ndarray:
    """The target of an image of class ``label``: one-hot, or for a graded class a discrete Gaussian of width
    ``spread`` (in grades) over its scale's classes and the good class (grade 0)."""
    target = np.zeros(len(class_names), dtype=np.float32)
    name = class_names[label]
    if name not in grades or spread <= 0:
        target[label] = 1.0
        return target
    scale, grade = grades[name]
    for j, other in enumerate(class_names):
        level = 0 if j == good else (grades[other][1] if other in grades and grades[other][0] == scale else None)
        if level is not None:
            target[j] = np.exp(-0.5 * ((level - grade) / spread) ** 2)
    return target / target.sum()


def with_soft_label(target: np.ndarray, label: int, probability: float, good: int) -> np.ndarray:
    """``target`` with an annotator's probability that the part is defective folded in."""
    defect = target.copy()
    if label == good:  # labelled good, yet p that it is not: spread p over the defect classes
        defect = np.ones_like(target)
        defect[good] = 0.0
        defect /= defect.sum()
    mixed = probability * defect
    mixed[good] += 1.0 - probability
    return mixed.astype(np.float32)


def graded_targets(labels: np.ndarray, probabilities: Sequence[float | None], class_names: Sequence[str],
                   grades: Mapping[str, tuple[str, int]], good: int | None, *, ordinal: bool, spread: float,
                   weight: float, soft_labels: bool) -> GradedTargets | None:
    """The targets of an image set (``labels``: class indices; ``probabilities``: soft labels or None),
    or None when plain one-hot cross-entropy is what they would amount to."""
    use_grades = grades if ordinal else {}
    use_soft = soft_labels and good is not None and any(p is not None for p in probabilities)
    if not use_grades and not use_soft:
        return None
    rows = []
    for label, probability in zip(labels, probabilities):
        target = label_distribution(int(label), class_names, use_grades, good, spread)
        if use_soft and probability is not None and good is not None:
            target = with_soft_label(target, int(label), probability, good)
        rows.append(target)
    cumulative = cumulative_columns(class_names, use_grades)
    return GradedTargets(np.stack(rows).astype(np.float32), cumulative, weight if use_grades else 0.0)


def ordinal_on(setting: str, grades: Mapping[str, tuple[str, int]]) -> bool:
    """Whether a run trains ordinally: ``setting`` (auto, on, off) given the dataset's graded classes."""
    if setting == "on" and not grades:
        raise TrainingError("ordinal=on, but no class of the dataset version is graded",
                            "order the defect classes first: inspectloop classes grade SCALE minor major critical "
                            "(or train with ordinal=auto)")
    return setting == "on" or (setting == "auto" and bool(grades))


def with_targets(images: ImageSet, items: Sequence[DatasetItem], class_names: Sequence[str],
                 grades: Mapping[str, tuple[str, int]], good: int | None, config: TrainConfig) -> ImageSet:
    """``images`` (loaded from ``items``, in order) with their grade-aware and soft-label targets."""
    graded = graded_targets(images.labels, [item.probability for item in items], class_names, grades, good,
                            ordinal=ordinal_on(config.ordinal, grades), spread=config.ordinal_spread,
                            weight=config.ordinal_weight, soft_labels=config.soft_labels)
    return replace(images, graded=graded)
