"""Feature-statistics alignment: aligned features take the reference's statistics, and the alignment folded into a
linear head decides exactly as standardise-then-head."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from inspectloop.adapt.features import align_features, fold_into_classifier, fold_into_linear, pooled_features
from inspectloop.models.classifier import Classifier
from inspectloop.runtime.preprocess import Preprocess

PRE = Preprocess(16, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def sets(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A reference set and a drifted one: every dimension shifted and rescaled differently."""
    rng = np.random.default_rng(seed)
    reference = rng.normal(1.0, 0.5, (300, 8))
    drifted = rng.normal(1.0, 0.5, (200, 8)) * rng.uniform(0.5, 2.0, 8) + rng.uniform(-1, 1, 8)
    return reference, drifted


def test_mean_std_alignment_gives_the_reference_statistics() -> None:
    reference, drifted = sets()
    aligned = align_features(drifted, reference).apply(drifted)
    assert np.allclose(aligned.mean(0), reference.mean(0), atol=1e-4)
    assert np.allclose(aligned.std(0), reference.std(0), rtol=1e-3)


def test_mean_alignment_moves_means_only_and_weight_goes_part_way() -> None:
    reference, drifted = sets()
    mean_only = align_features(drifted, reference, match="mean")
    assert np.all(mean_only.scale == 1) and np.allclose(mean_only.apply(drifted).mean(0), reference.mean(0), atol=1e-4)
    full, half = align_features(drifted, reference), align_features(drifted, reference, weight=0.5)
    assert np.allclose(half.apply(drifted), 0.5 * (drifted + full.apply(drifted)), atol=1e-4)


def test_dead_dimensions_do_not_blow_up() -> None:
    reference, drifted = sets()
    reference[:, 0], drifted[:, 1] = 0.0, 3.0  # constant in one set or the other
    alignment = align_features(drifted, reference)
    assert np.all(np.isfinite(alignment.scale)) and alignment.scale.max() <= 4.0 and alignment.scale.min() >= 0.25


def test_folded_linear_equals_align_then_linear() -> None:
    reference, drifted = sets()
    rng = np.random.default_rng(1)
    weight, bias = rng.normal(size=(3, 8)), rng.normal(size=3)
    alignment = align_features(drifted, reference)
    folded_w, folded_b = fold_into_linear(weight, bias, alignment)
    assert np.allclose(drifted @ folded_w.T + folded_b, alignment.apply(drifted) @ weight.T + bias, atol=1e-5)


@pytest.mark.parametrize(("target", "reference", "kwargs", "message"), [
    (np.zeros((5, 4)), np.zeros((5, 3)), {}, "equal D"),
    (np.zeros((1, 4)), np.zeros((5, 4)), {}, "at least 2 images"),
    (np.zeros((5, 4)), np.zeros((5, 4)), {"weight": 0.0}, "weight must be in"),
    (np.zeros((5, 4)), np.zeros((5, 4)), {"match": "median"}, "match must be"),
])
def test_refusals(target: np.ndarray, reference: np.ndarray, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        align_features(target, reference, **kwargs)


def tiny() -> Classifier:
    torch.manual_seed(0)
    trunk = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten())
    return Classifier(trunk, 6, 3).eval()


def images(level: int, count: int = 40) -> list[Image.Image]:
    rng = np.random.default_rng(level)
    return [Image.fromarray(np.clip(rng.normal(level, 30, (16, 16, 3)), 0, 255).astype(np.uint8)) for _ in range(count)]


def test_classifier_with_folded_head_equals_standardise_then_head() -> None:
    from inspectloop.train.data import to_batch

    model = tiny()
    camera, training = images(60), images(140)
    alignment = align_features(pooled_features(model, camera, PRE), pooled_features(model, training, PRE))
    with torch.no_grad():
        expected = model.head(torch.from_numpy(alignment.apply(model.trunk(to_batch(camera, PRE)).numpy())))
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    fold_into_classifier(model, alignment)
    with torch.no_grad():
        folded = model(to_batch(camera, PRE))
    assert torch.allclose(folded, expected, atol=1e-4)
    assert {k: v.shape for k, v in model.state_dict().items()} == shapes  # same shape: exports as before


def test_head_that_is_not_linear_is_refused() -> None:
    model = tiny()
    model.head = nn.Sequential(nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 3))
    before = [p.clone() for p in model.head.parameters()]
    alignment = align_features(np.arange(24.0).reshape(4, 6), np.zeros((4, 6)))
    with pytest.raises(ValueError, match="linear head behind dropout only"):
        fold_into_classifier(model, alignment)
    assert all(torch.equal(a, b) for a, b in zip(before, model.head.parameters()))  # left as it was
