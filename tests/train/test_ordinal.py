"""Grade-aware and soft-label training targets (pure: no images, no backbone)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inspectloop.errors import TrainingError
from inspectloop.train.ordinal import (
    cumulative_columns, graded_loss, graded_targets, joined_targets, label_distribution, ordinal_on, with_soft_label,
)

NAMES = ("critical", "dent", "good", "major", "minor")  # a dataset's classes, in name order
GRADES = {"minor": ("scratch", 1), "major": ("scratch", 2), "critical": ("scratch", 3)}
GOOD = 2


def test_cumulative_columns_count_the_classes_at_or_above_each_grade() -> None:
    columns = cumulative_columns(NAMES, GRADES)
    assert columns.shape == (5, 3)
    above = {g + 1: {NAMES[i] for i in np.flatnonzero(columns[:, g])} for g in range(3)}
    assert above == {1: {"minor", "major", "critical"}, 2: {"major", "critical"}, 3: {"critical"}}
    assert cumulative_columns(NAMES, {}).shape == (5, 0)


@pytest.mark.parametrize(("label", "expected"), [
    ("major", {"major": "most", "minor": "some", "critical": "some", "good": "little", "dent": "none"}),
    ("minor", {"minor": "most", "good": "some", "major": "some", "critical": "little", "dent": "none"}),
    ("dent", {"dent": "all"}),  # not graded: one-hot
    ("good", {"good": "all"}),
])
def test_a_graded_label_spreads_over_its_neighbouring_grades(label: str, expected: dict[str, str]) -> None:
    target = dict(zip(NAMES, label_distribution(NAMES.index(label), NAMES, GRADES, GOOD, spread=0.5)))
    assert sum(target.values()) == pytest.approx(1.0)
    for name, share in expected.items():
        value = target[name]
        assert {"all": value == 1.0, "most": value > 0.7, "some": 0.05 < value < 0.2,
                "little": 0 < value < 0.01, "none": value == 0.0}[share], (name, value)


def test_a_soft_label_shares_the_target_between_the_defect_and_the_good_class() -> None:
    one_hot = np.eye(5, dtype=np.float32)
    defect = with_soft_label(one_hot[NAMES.index("major")], NAMES.index("major"), 0.3, GOOD)
    assert defect[NAMES.index("major")] == pytest.approx(0.3) and defect[GOOD] == pytest.approx(0.7)
    good = with_soft_label(one_hot[GOOD], GOOD, 0.2, GOOD)
    assert good[GOOD] == pytest.approx(0.8) and good.sum() == pytest.approx(1.0)
    assert np.allclose(np.delete(good, GOOD), 0.05)


def test_plain_labels_need_no_targets_and_soft_labels_or_grades_do() -> None:
    labels = np.array([GOOD, NAMES.index("major")])
    plain = dict(ordinal=False, spread=0.5, weight=1.0, soft_labels=True)
    assert graded_targets(labels, [None, None], NAMES, GRADES, GOOD, **plain) is None
    soft = graded_targets(labels, [None, 0.4], NAMES, GRADES, GOOD, **plain)
    assert soft is not None and soft.cumulative.shape == (5, 0) and soft.targets[1, GOOD] == pytest.approx(0.6)
    assert graded_targets(labels, [None, 0.4], NAMES, GRADES, GOOD, **{**plain, "soft_labels": False}) is None
    graded = graded_targets(labels, [None, None], NAMES, GRADES, GOOD, **{**plain, "ordinal": True})
    assert graded is not None and graded.cumulative.shape == (5, 3)
    assert graded.take(np.array([1])).targets.shape == (1, 5)
    logits = torch.zeros(2, 5)
    assert float(graded.loss(logits, graded.batch(np.arange(2)))) == pytest.approx(
        float(graded_loss(logits, torch.from_numpy(graded.targets), torch.from_numpy(graded.cumulative))))


def test_the_loss_costs_more_for_a_grade_further_off() -> None:
    """Plain cross-entropy charges minor-for-critical like major-for-critical; the graded loss does not."""
    targets = torch.from_numpy(label_distribution(NAMES.index("critical"), NAMES, GRADES, GOOD, spread=0.5))[None]
    cumulative = torch.from_numpy(cumulative_columns(NAMES, GRADES))

    def loss_when_predicting(name: str) -> float:
        logits = torch.full((1, 5), -2.0)
        logits[0, NAMES.index(name)] = 3.0
        return float(graded_loss(logits, targets, cumulative))

    assert loss_when_predicting("critical") < loss_when_predicting("major") < loss_when_predicting("minor")
    assert loss_when_predicting("minor") < loss_when_predicting("good")


def test_the_loss_takes_sample_weights_and_smoothing() -> None:
    logits = torch.randn(4, 5, requires_grad=True)
    targets = torch.eye(5)[[0, 1, 2, 3]]
    cumulative = torch.from_numpy(cumulative_columns(NAMES, GRADES))
    weighted = graded_loss(logits, targets, cumulative, smoothing=0.1, sample_weight=torch.tensor([1.0, 0, 0, 0]))
    single = graded_loss(logits[:1], targets[:1], cumulative, smoothing=0.1)
    assert float(weighted.detach()) == pytest.approx(float(single.detach()), rel=1e-5)
    weighted.backward()
    assert logits.grad is not None and torch.all(logits.grad[1:] == 0)


@pytest.mark.parametrize(("setting", "grades", "on"), [
    ("auto", GRADES, True), ("auto", {}, False), ("off", GRADES, False), ("on", GRADES, True)])
def test_ordinal_training_is_switched_by_the_config(setting: str, grades: dict, on: bool) -> None:
    assert ordinal_on(setting, grades) is on


def test_ordinal_on_without_graded_classes_is_refused() -> None:
    with pytest.raises(TrainingError, match="no class of the dataset version is graded"):
        ordinal_on("on", {})


def test_a_split_without_soft_labels_joins_one_with_them_by_its_one_hot_labels() -> None:
    """Cross-fitting pools train and calib: soft labels in one split only must not be dropped."""
    labels = np.array([GOOD, NAMES.index("major")])
    soft = graded_targets(labels, [None, 0.4], NAMES, GRADES, GOOD, ordinal=False, spread=0.5, weight=1.0,
                          soft_labels=True)
    joined = joined_targets(None, np.array([NAMES.index("dent")]), soft, labels)
    assert joined is not None and joined.targets.shape == (3, 5)
    assert joined.targets[0, NAMES.index("dent")] == 1.0 and joined.targets[2, GOOD] == pytest.approx(0.6)
    assert joined_targets(None, labels, None, labels) is None


def test_a_training_step_moves_towards_the_graded_targets() -> None:
    from inspectloop.train.config import TrainConfig
    from inspectloop.train.loop import train_step

    torch.manual_seed(0)
    labels = np.array([GOOD, NAMES.index("minor"), NAMES.index("major"), NAMES.index("critical")])
    graded = graded_targets(labels, [None, 0.8, None, None], NAMES, GRADES, GOOD, ordinal=True, spread=0.5,
                            weight=1.0, soft_labels=True)
    model = torch.nn.Linear(4, 5)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    x, y = torch.eye(4), graded.batch(np.arange(4))
    losses = [train_step(model, x, y, optimizer, TrainConfig(label_smoothing=0.0), graded) for _ in range(30)]
    assert losses[-1] < losses[0] / 2
