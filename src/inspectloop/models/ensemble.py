"""Several classifiers as one: their class probabilities averaged. Pure model code.

The ensemble keeps the trunk + head shape every classifier has, so export, the novelty guard, scoring and
calibration take it as they take one model: the trunk runs each member's trunk and concatenates their
pooled features; the head reads each member's share of them with that member's head and returns the log
of the members' mean probability (softmax of it is the mean; temperature scaling then applies as usual).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from inspectloop.models.classifier import Classifier


class EnsembleTrunk(nn.Module):
    """Members' trunks side by side: images -> their pooled features, concatenated (N, members x D).

    ``forward_until`` / ``forward_from`` concatenate and split along channels, so the novelty guard's mid-level
    embedding (:func:`inspectloop.models.novelty.features_and_embedding`) covers every member in one pass.
    """

    def __init__(self, trunks: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(trunks)

    @property
    def blocks(self) -> nn.ModuleList:
        return self.members[0].blocks

    def forward_until(self, x: torch.Tensor, stop_block: int) -> torch.Tensor:
        return torch.cat([trunk.forward_until(x, stop_block) for trunk in self.members], dim=1)

    def forward_from(self, x: torch.Tensor, start_block: int) -> torch.Tensor:
        parts = torch.chunk(x, len(self.members), dim=1)
        return torch.cat([trunk.forward_from(part, start_block) for trunk, part in zip(self.members, parts)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.flatten(trunk(x), 1) for trunk in self.members], dim=1)


class EnsembleHead(nn.Module):
    """Concatenated member features (N, members x D) -> log of the members' mean class probability (N, C)."""

    def __init__(self, heads: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(heads)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        parts = torch.chunk(features, len(self.members), dim=1)
        log_probs = torch.stack([torch.log_softmax(head(part), dim=1) for head, part in zip(self.members, parts)])
        return torch.logsumexp(log_probs, dim=0) - math.log(len(self.members))


class Ensemble(nn.Module):
    """Classifiers of one architecture and class list as one: normalised images (N, 3, H, W) -> the log of
    their mean class probability (N, C). The same ``trunk`` and ``head`` shape as a
    :class:`~inspectloop.models.classifier.Classifier`."""

    def __init__(self, members: list[Classifier]) -> None:
        super().__init__()
        self.trunk = EnsembleTrunk([member.trunk for member in members])
        self.head = EnsembleHead([member.head for member in members])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))
