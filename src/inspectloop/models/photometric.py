"""Per-image photometric standardisation, inside the model graph. Pure model code.

Capture sessions differ in exposure, gain and lighting far more than in the defects themselves: on
magnetic tile a frozen-feature probe trained on sessions exp0-exp4 rejected 7.5% of the good tiles of
exp5+exp6, and 1.3% once every image was standardised first (``benchmarks.shift_study``). Done in the
graph, the exported model carries it and the edge runtime needs nothing new.
"""

from __future__ import annotations

import torch

# Every image is mapped to this mean and standard deviation (in the backbone's normalised units: grey
# 110 +- 40 on a 0-255 scale), whatever its exposure.
STANDARD_MEAN = (110.0 - 127.0) / 128.0
STANDARD_STD = 40.0 / 128.0
MIN_STD = 1.0 / 128.0  # one grey level: a flat image is not blown up into noise


def standardise(x: torch.Tensor) -> torch.Tensor:
    """Each image (N, C, H, W) shifted and scaled to mean ``STANDARD_MEAN`` and std ``STANDARD_STD``."""
    flat = x.flatten(1)
    mean = flat.mean(dim=1)[:, None, None, None]
    std = flat.std(dim=1, unbiased=False).clamp_min(MIN_STD)[:, None, None, None]
    return (x - mean) / std * STANDARD_STD + STANDARD_MEAN
