"""The weights' moving average: a decay that ramps up, floats averaged, counters copied."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from inspectloop.train.average import EMA_DECAY, ema_decay, weight_average


def test_the_decay_follows_the_model_early_and_spans_epochs_late() -> None:
    assert ema_decay(1) < 0.01 and ema_decay(500) == pytest.approx(EMA_DECAY * (1 - torch.e ** -1), rel=1e-6)
    assert ema_decay(3000) > 0.99 and all(ema_decay(n) < ema_decay(n + 1) < EMA_DECAY for n in range(1, 5000, 250))


def test_weights_and_batchnorm_statistics_are_averaged_and_counters_copied() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    average = weight_average(model)
    with torch.no_grad():
        model[0].weight.fill_(0.0)
    average.update_parameters(model)  # the first update copies
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[1].running_mean.fill_(4.0)
        model[1].num_batches_tracked.fill_(7)
    average.update_parameters(model)  # the second is the first average: it keeps ema_decay(1) of the old value
    keep = ema_decay(1)
    assert torch.allclose(average.module[0].weight, torch.full((2, 2), 1.0 - keep))
    assert torch.allclose(average.module[1].running_mean, torch.full((2,), 4.0 * (1 - keep)))
    assert int(average.module[1].num_batches_tracked) == 7
    assert average.module.state_dict().keys() == model.state_dict().keys()
