"""The novelty guard as graph code: an embedding's distance to a bank of training embeddings. Pure model code.

The bank and the search travel inside the exported classifier (a MatMul and a ReduceMin / TopK), so the
edge computes the guard's score in the same forward pass as the class logits. The numbers match
:func:`inspectloop.train.novelty.novelty_scores`, which fits the threshold.

The guard's embedding (:func:`guard_embedding`) is mid-level: the average and the maximum over the image
of an EfficientNet-Lite trunk's stride-32 features (before its last two blocks: :func:`guard_block`), each
unit length.
Measured on magnetic tile with one defect class left out (benchmarks/novelty.py), it catches far more
unseen defects at the same extra review of good parts than the pooled features the head reads: a small
new defect barely moves a whole-image average of high-level features, but it moves a local maximum.
Other trunks use their pooled features.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class NoveltyDistance(nn.Module):
    """Embeddings (N, D) -> mean Euclidean distance (N,) of each unit-length row to its ``k`` nearest rows of
    ``bank`` (M, D), whose rows are unit length already."""

    def __init__(self, bank: np.ndarray, k: int = 1) -> None:
        super().__init__()
        if bank.ndim != 2 or len(bank) < 1:
            raise ValueError(f"the bank must be (M, D) with at least one row, got shape {bank.shape}")
        self.k = min(int(k), len(bank))
        self.register_buffer("bank_t", torch.from_numpy(np.ascontiguousarray(bank.T, dtype=np.float32)))

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        unit = nn.functional.normalize(embeddings, dim=1, eps=1e-12)
        squared = (2.0 - 2.0 * (unit @ self.bank_t)).clamp_min(0.0)  # |q - b|^2 for unit rows
        if self.k == 1:
            return squared.amin(dim=1).sqrt()
        return squared.topk(self.k, dim=1, largest=False).values.sqrt().mean(dim=1)


def guard_block(trunk: nn.Module) -> int:
    """The block the guard's embedding is taken before: the trunk's second-to-last (Lite0: 14, so blocks 0..13
    end at stride 32 with 192 channels; Lite2: 19)."""
    return len(trunk.blocks) - 2


def features_and_embedding(trunk: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One pass of ``trunk``: its pooled features (what the head reads) and the guard's embedding."""
    if not all(hasattr(trunk, name) for name in ("forward_until", "forward_from", "blocks")):
        features = torch.flatten(trunk(x), 1)
        return features, features
    block = guard_block(trunk)
    middle = trunk.forward_until(x, block)
    embedding = torch.cat([nn.functional.normalize(middle.mean(dim=(2, 3)), dim=1, eps=1e-12),
                           nn.functional.normalize(middle.amax(dim=(2, 3)), dim=1, eps=1e-12)], dim=1)
    return trunk.forward_from(middle, block), embedding


def guard_embedding(trunk: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The guard's embedding (N, E) of a normalised image batch (see the module docstring)."""
    return features_and_embedding(trunk, x)[1]


class GuardedClassifier(nn.Module):
    """A trunk + head classifier with its novelty guard: images -> (logits, features, novelty).

    ``features`` are the pooled trunk features the head reads (drift monitoring's embeddings); the guard's
    embedding comes from the same pass, so the guard costs two poolings and one matrix product per image.
    """

    def __init__(self, trunk: nn.Module, head: nn.Module, distance: NoveltyDistance) -> None:
        super().__init__()
        self.trunk, self.head, self.distance = trunk, head, distance

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        features, embedding = features_and_embedding(self.trunk, x)
        return self.head(features), features, self.distance(embedding)
