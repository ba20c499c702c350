"""The image classifier: a pretrained trunk and a small head. Pure model code."""

from __future__ import annotations

import torch
from torch import nn


class Classifier(nn.Module):
    """Normalised images (N, 3, H, W) -> class logits (N, C)."""

    def __init__(self, trunk: nn.Module, feature_dim: int, num_classes: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.trunk = trunk
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(feature_dim, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))
