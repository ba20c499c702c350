"""Cross-fitting: folds that keep groups whole and classes balanced, the fold models' aggregate rule
(its escape rate on simulated draws, and by hand), and the stability comparison with a refit."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pytest

from inspectloop.decisions.calibration import softmax
from inspectloop.decisions.conformal import (
    band_policy, crossfit_slack, decision_rates, fit_review_band, rates_of_decisions,
)
from inspectloop.decisions.crossfit import OutOfFold, aggregate_decide, assign_folds, check_folds, stability
from inspectloop.errors import DatasetError, InspectloopError
from inspectloop.runtime.decision import Decision


def test_folds_keep_groups_whole_and_balance_classes() -> None:
    labels = ["good"] * 120 + ["scratch"] * 40 + ["dent"] * 20
    groups = [f"part{i // 2}" for i in range(180)]  # two views per part
    folds = assign_folds(labels, groups, 4, seed=3)
    by_group = defaultdict(set)
    for group, fold in zip(groups, folds):
        by_group[group].add(int(fold))
    assert all(len(f) == 1 for f in by_group.values())
    for label, count in (("good", 120), ("scratch", 40), ("dent", 20)):
        per_fold = Counter(int(f) for f, lab in zip(folds, labels) if lab == label)
        assert sorted(per_fold) == [0, 1, 2, 3] and max(per_fold.values()) - min(per_fold.values()) <= 2
        assert sum(per_fold.values()) == count
    assert np.array_equal(folds, assign_folds(labels, groups, 4, seed=3))
    assert not np.array_equal(folds, assign_folds(labels, groups, 4, seed=4))


def test_sessions_as_groups_give_one_session_per_fold() -> None:
    sessions = [f"exp{1 + i % 4}" for i in range(200)] + ["exp0"] * 2
    labels = ["Free" if i % 3 else "Crack" for i in range(202)]
    folds = assign_folds(labels, sessions, 4)
    assert len({int(f) for f, s in zip(folds, sessions) if s == "exp1"}) == 1
    assert sorted(Counter(folds.tolist()).values())[-1] <= 52  # exp0's two images join the smallest fold


@pytest.mark.parametrize(("labels", "groups", "folds", "words"), [
    (["a", "b"], ["g1", "g2"], 3, "only 2 groups"),
    (["a", "b"], ["g1"], 2, "2 labels but 1 group"),
    (["a", "b"], ["g1", "g2"], 1, "folds must be"),
    (["a", "b"], ["g1", "g2"], True, "folds must be"),
])
def test_bad_folds_are_refused(labels: list[str], groups: list[str], folds: int, words: str) -> None:
    with pytest.raises(InspectloopError, match=words) as info:
        assign_folds(labels, groups, folds)
    assert info.value.hint


def noisy_models(rng: np.random.Generator, labels: np.ndarray, folds: int, noise: float = 0.3) -> np.ndarray:
    """Probabilities of ``folds`` + 1 models on the same parts: a shared signal plus per-model noise."""
    z = rng.normal(0.0, 1.0, (labels.size, 4))
    z[np.arange(labels.size), labels] += 3.0
    z[labels == 0, 0] += 0.5  # good parts look a little more like good
    return np.stack([softmax(z + rng.normal(0.0, noise, z.shape)) for _ in range(folds + 1)])


def draw(rng: np.random.Generator, defective: int, good: int) -> np.ndarray:
    return np.concatenate([rng.integers(1, 4, defective), np.zeros(good, dtype=np.int64)])


def test_fold_models_together_escape_at_most_two_alpha_plus_slack_and_near_alpha() -> None:
    rng = np.random.default_rng(21)
    alpha, k = 0.05, 4
    escapes, refit_escapes, automation = [], [], []
    for _ in range(150):
        labels = draw(rng, 120, 120)
        folds = assign_folds([str(v) for v in labels], [str(i) for i in range(labels.size)], k, seed=0)
        models = noisy_models(rng, labels, k)
        oof = OutOfFold(models[folds, np.arange(labels.size)], labels, folds, k)
        band = fit_review_band(oof.probs, labels, good_index=0, alpha=alpha, guarantee="crossfit", folds=k)
        test = draw(rng, 400, 400)
        scored = noisy_models(rng, test, k)
        together = rates_of_decisions(aggregate_decide(scored[:k], oof, band), test, num_classes=4, good_index=0)
        escapes.append(together.escape_rate)
        automation.append(together.automation_rate)
        refit_escapes.append(decision_rates(scored[k], test, band).escape_rate)  # the "refit": one more model
    assert np.mean(escapes) <= 2 * alpha + crossfit_slack(120, k)  # what is proven
    assert np.mean(escapes) <= alpha * 1.15  # what a stable learner gives
    assert np.mean(refit_escapes) <= alpha * 1.15  # approximate for the refit, as stated
    assert np.mean(automation) > 0.5  # not vacuous


def test_the_aggregate_rule_by_hand() -> None:
    # Good class 0 of 2. Out-of-fold P(good): defects 0.30 (fold 0) and 0.40 (fold 1); good parts 0.70
    # (fold 0) and 0.60 (fold 1). Cross-fitted counts at alpha 0.5 with n = 2: k = floor(1.5) - 1 = 0.
    probs = np.array([[0.3, 0.7], [0.4, 0.6], [0.7, 0.3], [0.6, 0.4]])
    oof = OutOfFold(probs, np.array([1, 1, 0, 0]), np.array([0, 1, 0, 1]), 2)
    band = fit_review_band(probs, oof.labels, good_index=0, alpha=0.5, false_reject_target=0.5,
                           guarantee="crossfit", folds=2)
    assert band.allowed_escapes == 0
    # Part A: P(good) 0.75 under fold model 0 (> 0.30) and 0.65 under fold model 1 (> 0.40): no defect
    # score reaches it, and good scores lie below it under both: it passes. Part B: 0.25 under fold
    # model 0 (<= 0.30, so not passed) and 0.65 under fold model 1 (>= 0.60, so not rejected): review.
    # Part C: 0.10 under both, below both good scores under their own fold models: rejected.
    fold_probs = np.array([[[0.75, 0.25], [0.25, 0.75], [0.1, 0.9]],
                           [[0.65, 0.35], [0.65, 0.35], [0.1, 0.9]]])
    decisions = aggregate_decide(fold_probs, oof, band)
    assert decisions.decisions.tolist() == ["pass", "review", "reject"]
    assert decisions.labels[[0, 2]].tolist() == [0, 1]


def test_without_a_good_class_the_fold_models_must_agree() -> None:
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])  # out-of-fold: two right, one wrong (0.6)
    oof = OutOfFold(probs, np.array([0, 1, 1]), np.array([0, 1, 1]), 2)
    band = fit_review_band(probs, oof.labels, good_index=None, alpha=0.5, guarantee="crossfit", folds=2)
    fold_probs = np.array([[[0.95, 0.05], [0.9, 0.1]], [[0.9, 0.1], [0.3, 0.7]]])  # part 2: folds disagree
    decisions = aggregate_decide(fold_probs, oof, band)
    assert decisions.decisions.tolist() == [Decision.REJECT, Decision.REVIEW] and decisions.labels[0] == 0


def test_stability_of_a_refit_that_is_one_of_the_fold_models() -> None:
    rng = np.random.default_rng(5)
    labels = draw(rng, 100, 100)
    folds = assign_folds([str(v) for v in labels], [str(i) for i in range(labels.size)], 3)
    models = noisy_models(rng, labels, 3, noise=0.0)  # every model the same: perfectly stable
    oof = OutOfFold(models[0], labels, folds, 3)
    band = fit_review_band(oof.probs, labels, good_index=0, alpha=0.05, guarantee="crossfit", folds=3)
    val = noisy_models(rng, draw(rng, 50, 50), 3, noise=0.0)
    same = stability(val[3], val[:3], oof, band)
    assert same.images == 100 and same.disagreements == 0 and same.score_gap == pytest.approx(0.0, abs=1e-12)
    assert (band_policy(band).decide(val[3]).decisions == aggregate_decide(val[:3], oof, band).decisions).all()
    shaky = stability(noisy_models(rng, draw(rng, 50, 50), 3, noise=2.0)[3], val[:3], oof, band)
    assert shaky.disagreements > 0 and shaky.score_gap > 0.05
    assert shaky.to_dict()["disagreement_rate"] == shaky.disagreements / 100


def test_the_aggregate_refuses_a_band_from_other_scores() -> None:
    probs = np.array([[0.3, 0.7], [0.8, 0.2]])
    oof = OutOfFold(probs, np.array([1, 0]), np.array([0, 1]), 2)
    split_band = fit_review_band(probs, oof.labels, good_index=0, alpha=0.5, guarantee="marginal")
    with pytest.raises(InspectloopError, match="not fitted on these out-of-fold scores"):
        aggregate_decide(np.zeros((2, 1, 2)) + 0.5, oof, split_band)
    band = fit_review_band(probs, oof.labels, good_index=0, alpha=0.5, guarantee="crossfit", folds=2)
    with pytest.raises(DatasetError, match=r"shape \(2, images, 2\)"):
        aggregate_decide(np.full((3, 1, 2), 0.5), oof, band)


@pytest.mark.parametrize(("folds", "words"), [
    (np.array([0, 2]), "fold index in 0..1"), (np.array([0]), "fold index"), (np.array([0.0, 1.0]), "fold index"),
])
def test_out_of_fold_scores_need_a_fold_per_image(folds: np.ndarray, words: str) -> None:
    with pytest.raises(DatasetError, match=words):
        OutOfFold(np.array([[0.3, 0.7], [0.8, 0.2]]), np.array([1, 0]), folds, 2)


def test_check_folds() -> None:
    assert check_folds(5) == 5
    with pytest.raises(InspectloopError, match="from 2 to 20"):
        check_folds(21)
