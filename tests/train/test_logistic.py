"""The probe's head: the same fit as scikit-learn's balanced, L2-regularised logistic regression, and, folded
into the classifier's linear layer, the same logits as standardise-then-head."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from inspectloop.models.backbones import backbone_spec, load_backbone
from inspectloop.models.classifier import Classifier
from inspectloop.runtime.preprocess import Preprocess
from inspectloop.train import loop
from inspectloop.train.config import TrainConfig
from inspectloop.train.data import ImageSet
from inspectloop.train.logistic import LogisticProbe
from tests.train.test_loop import images


def features(count: int = 300, dims: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.choice(4, size=count, p=[0.6, 0.2, 0.15, 0.05])  # one rare class: the balance matters
    x = rng.normal(size=(count, dims))
    x[np.arange(count), labels] += 1.5
    return x, labels


def test_the_fit_is_scikit_learns_balanced_regularised_logistic_regression() -> None:
    x, labels = features()
    for c in (0.01, 0.1, 10.0):
        reference = LogisticRegression(C=c, class_weight="balanced", max_iter=10_000, tol=1e-10).fit(x, labels)
        probe = LogisticProbe(4, 1.0 / (c * len(x)))
        history = probe.fit(torch.from_numpy(x), torch.from_numpy(labels), None, None, lambda: 0.0, None)
        ours = torch.softmax(probe.logits(torch.from_numpy(x)), 1).numpy()
        assert np.abs(ours - reference.predict_proba(x)).max() < 1e-4, c
        assert history[-1]["loss"] <= history[0]["loss"]


def test_a_stronger_penalty_gives_smaller_weights() -> None:
    x, labels = features()
    norms = []
    for c in (0.01, 1.0):
        probe = LogisticProbe(4, 1.0 / (c * len(x)))
        probe.fit(torch.from_numpy(x), torch.from_numpy(labels), None, None, lambda: 0.0, None)
        norms.append(float(probe.weight.norm()))
    assert norms[0] < norms[1] / 3


def probed(config: TrainConfig) -> tuple[Classifier, ImageSet, ImageSet, Preprocess, loop.TrainResult]:
    """A small classifier whose head ``loop.probe`` fitted on two separable surfaces, with its data."""
    torch.manual_seed(0)
    model = Classifier(load_backbone(input_size=64), backbone_spec("efficientnet-lite0").feature_dim, 2)
    train, val = images(16, 0), images(8, 100)
    preprocess = Preprocess(64)
    return model, train, val, preprocess, loop.probe(model, train, val, preprocess, config)


def test_the_probe_folds_standardisation_into_the_linear_layer() -> None:
    model, train, _, preprocess, result = probed(TrainConfig(mode="probe", input_size=64, augment="none"))
    raw = loop._features(model.trunk, train, preprocess, None, None).astype(np.float64)
    mean, scale = raw.mean(0), loop.feature_scale(torch.from_numpy(raw)).numpy()
    head = model.head[1]
    folded = head(torch.from_numpy(raw).float()).detach().numpy()
    # the same logits as the head fitted on standardised features: refit it here and compare
    refit = LogisticProbe(2, 1.0 / (0.1 * len(raw)))
    refit.fit(torch.from_numpy((raw - mean) / scale).double(), torch.from_numpy(train.labels), None, None,
              lambda: 0.0, None)
    assert np.allclose(folded, refit.logits(torch.from_numpy((raw - mean) / scale).double()).numpy(), atol=1e-3)
    assert (folded.argmax(1) == train.labels).mean() == 1.0  # two separable surfaces: learned
    assert result.history and result.best_epoch == len(result.history) - 1


def test_the_scale_keeps_a_nearly_constant_feature_from_a_huge_weight() -> None:
    x, _ = features()
    x[:, 0] = 5.0 + 1e-5 * np.random.default_rng(1).normal(size=len(x))  # nearly constant in training
    scale = loop.feature_scale(torch.from_numpy(x)).numpy()
    assert scale[0] > 0.2  # a tenth of the mean variance, not 1e-5
    assert np.allclose(scale[1:], x[:, 1:].std(0), rtol=0.1)  # the others: close to their own spread


def test_head_refit_ends_a_finetune_with_the_probes_head_on_the_tuned_trunk(tmp_path) -> None:
    import copy

    from inspectloop.train import fit
    from tests.train.test_loop import FAST

    spec = backbone_spec("efficientnet-lite0")
    torch.manual_seed(0)
    model = Classifier(load_backbone(input_size=64), spec.feature_dim, 2)
    train, val, preprocess = images(16, 0), images(8, 100), Preprocess(64)
    config = TrainConfig(**FAST | {"epochs": 1}, head_refit=True)
    result = fit._train_one(model, train, val, preprocess, config, tmp_path / "checkpoint.pt", lambda record: None)
    again = copy.deepcopy(result.model)
    loop.probe(again, train, val, preprocess, config)  # the probe's fit on the same, fine-tuned trunk
    assert torch.allclose(again.head[1].weight, result.model.head[1].weight, atol=1e-5)
    assert torch.allclose(again.head[1].bias, result.model.head[1].bias, atol=1e-5)


def test_head_blend_keeps_a_share_of_the_fine_tuned_head(tmp_path) -> None:
    """head_blend=1 ships the fine-tuned head as trained; 0.5 the mean of its logits and the refitted head's."""
    from inspectloop.train import fit
    from tests.train.test_loop import FAST

    spec = backbone_spec("efficientnet-lite0")
    train, val, preprocess = images(16, 0), images(8, 100), Preprocess(64)
    heads = {}
    for refit, share in ((False, 0.0), (True, 0.0), (True, 0.5), (True, 1.0)):
        torch.manual_seed(0)
        model = Classifier(load_backbone(input_size=64), spec.feature_dim, 2)
        config = TrainConfig(**FAST | {"epochs": 1}, head_refit=refit, head_blend=share)
        heads[refit, share] = fit._train_one(model, train, val, preprocess, config, tmp_path / f"{refit}{share}.pt",
                                             lambda record: None).model.head[1]
    x = torch.randn(5, spec.feature_dim)
    tuned, refitted = heads[False, 0.0](x), heads[True, 0.0](x)
    assert not torch.allclose(tuned, refitted, atol=1e-3)
    assert torch.allclose(heads[True, 1.0](x), tuned, atol=1e-4)
    assert torch.allclose(heads[True, 0.5](x), (tuned + refitted) / 2, atol=1e-4)


def test_cached_features_give_the_probes_own_head() -> None:
    """``fit_probe_head`` on features computed once (as benchmarks cache them) is the head ``loop.probe`` ships."""
    config = TrainConfig(mode="probe", input_size=64, augment="none", probe_c=0.5)
    model, train, val, preprocess, result = probed(config)
    cached = {part: loop._features(model.trunk, data, preprocess, None, None) for part, data in
              (("train", train), ("val", val))}
    head = torch.nn.Linear(model.head[1].in_features, 2)
    history = loop.fit_probe_head(head, cached["train"], train.labels, cached["val"], val.labels, config)
    assert torch.allclose(head.weight, model.head[1].weight) and torch.allclose(head.bias, model.head[1].bias)
    assert history == result.history


def test_the_cached_features_head_is_the_standardised_regression() -> None:
    x, labels = features()
    head = torch.nn.Linear(x.shape[1], 4)
    loop.fit_probe_head(head, x, labels, x[:50], labels[:50], TrainConfig(mode="probe", probe_c=1.0))
    x64 = torch.from_numpy(x)
    mean, scale = x64.mean(0), loop.feature_scale(x64)
    reference = LogisticRegression(C=1.0, class_weight="balanced", max_iter=10_000, tol=1e-10).fit(
        ((x64 - mean) / scale).numpy(), labels)
    ours = torch.softmax(head(torch.from_numpy(x).float()), 1).detach().numpy()
    assert np.abs(ours - reference.predict_proba(((x64 - mean) / scale).numpy())).max() < 1e-3
