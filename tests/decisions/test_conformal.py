"""Pass / reject / review: the escape guarantee holds on simulated draws, hand cases, the not-certifiable case."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from inspectloop.decisions import (
    band_policy,
    clopper_pearson,
    decision_rates,
    fit_review_band,
    min_calibration_size,
    softmax,
)
from inspectloop.decisions.conformal import allowed_count, crossfit_slack
from inspectloop.errors import InspectloopError
from inspectloop.runtime import Decision, DecisionPolicy, ModelMetadata, threshold_array
from inspectloop.train.calibrate import fit_decisions

PASS, REJECT, REVIEW = Decision.PASS, Decision.REJECT, Decision.REVIEW

DRAWS = 200


def model_output(labels: np.ndarray, rng: np.random.Generator, num_classes: int, signal: float) -> np.ndarray:
    """Probabilities of a fallible model: the true class's logit is raised by ``signal``."""
    z = rng.normal(0.0, 1.0, (labels.size, num_classes))
    z[np.arange(labels.size), labels] += signal
    return softmax(z)


def with_good(rng: np.random.Generator, defective: int, good: int) -> tuple[np.ndarray, np.ndarray]:
    labels = np.concatenate([rng.integers(1, 4, defective), np.zeros(good, dtype=np.int64)])
    return model_output(labels, rng, 4, 3.0), labels


def without_good(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, 6, n)
    return model_output(labels, rng, 6, 2.5), labels


def test_escape_guarantee_holds_with_a_good_class() -> None:
    rng = np.random.default_rng(11)
    alpha, confidence = 0.05, 0.9
    population = with_good(rng, 20_000, 20_000)  # stands for the line: its rates are the true ones
    escape, false_reject, automation = [], [], []
    for _ in range(DRAWS):
        band = fit_review_band(*with_good(rng, 300, 300), good_index=0, alpha=alpha, confidence=confidence)
        rates = decision_rates(*population, band)
        escape.append(rates.escape_rate)
        false_reject.append(rates.false_reject_rate)
        automation.append(rates.automation_rate)
    escape_rate = np.array(escape)
    assert escape_rate.mean() <= alpha
    assert (escape_rate > alpha).mean() <= (1 - confidence) + 0.05  # the high-probability statement
    assert escape_rate.mean() > alpha / 2  # not vacuous: the band does auto-pass
    assert (np.array(false_reject) > 0.02).mean() <= (1 - confidence) + 0.05
    assert np.mean(automation) > 0.9


def test_escape_guarantee_holds_without_a_good_class() -> None:
    rng = np.random.default_rng(12)
    alpha, confidence = 0.05, 0.9
    population = without_good(rng, 40_000)
    assert (population[0].argmax(axis=1) != population[1]).mean() > 2 * alpha  # the band has work to do
    escape, automation = [], []
    for _ in range(DRAWS):
        band = fit_review_band(*without_good(rng, 400), good_index=None, alpha=alpha, confidence=confidence)
        rates = decision_rates(*population, band)
        escape.append(rates.escape_rate)
        automation.append(rates.automation_rate)
    assert rates.wrong_class_rejects == rates.escapes and math.isnan(rates.false_reject_rate)
    escape_rate = np.array(escape)
    assert escape_rate.mean() <= alpha
    assert (escape_rate > alpha).mean() <= (1 - confidence) + 0.05
    assert escape_rate.mean() > alpha / 2
    assert np.mean(automation) > 0.6


def test_minimum_calibration_sizes() -> None:
    assert [min_calibration_size(a, 0.9) for a in (0.005, 0.01, 0.02)] == [460, 230, 114]
    for alpha in (0.005, 0.01, 0.02, 0.1):
        n = min_calibration_size(alpha, 0.9)
        assert (1 - alpha) ** n <= 0.1 < (1 - alpha) ** (n - 1)


def test_smallest_certifiable_split_puts_the_threshold_at_the_top_defect() -> None:
    rng = np.random.default_rng(3)
    probs, labels = with_good(rng, 45, 200)  # 0.95^45 = 0.099 <= 0.1: certifiable with no escape allowed
    band = fit_review_band(probs, labels, good_index=0, alpha=0.05)
    assert band.certifiable and band.allowed_escapes == 0
    assert band.auto_above == probs[labels != 0, 0].max()
    assert "45 defective calibration images" in band.guarantee and "90%" in band.guarantee
    assert not fit_review_band(probs[1:], labels[1:], good_index=0, alpha=0.05).certifiable


def test_not_certifiable_auto_passes_nothing() -> None:
    rng = np.random.default_rng(4)
    probs, labels = with_good(rng, 60, 300)
    band = fit_review_band(probs, labels, good_index=0, alpha=0.005)
    assert not band.certifiable and band.allowed_escapes is None and band.auto_above == 1.0
    assert "460" in band.note and "60 defective" in band.note
    test_probs, test_labels = with_good(rng, 200, 800)
    decisions = band_policy(band).decide(test_probs)
    assert not (decisions.decisions == PASS).any()
    confident_good = test_probs[:, 0] > 0.99
    assert confident_good.any() and (decisions.decisions[confident_good] == REVIEW).all()
    assert band.reject_certified and (decisions.decisions == REJECT).any()  # the reject side still works
    assert decision_rates(test_probs, test_labels, band).escapes == 0
    no_good = fit_review_band(*without_good(rng, 100), good_index=None, alpha=0.01)
    assert not no_good.certifiable and "230" in no_good.note
    assert (band_policy(no_good).decide(without_good(rng, 50)[0]).decisions == REVIEW).all()


def test_decisions_by_hand() -> None:
    rng = np.random.default_rng(5)
    band = fit_review_band(*with_good(rng, 300, 300), good_index=0, alpha=0.05)
    band = dataclasses.replace(band, auto_above=0.8, reject_below=0.3)
    probs = np.array([
        [0.90, 0.05, 0.03, 0.02],  # P(good) > 0.8: pass
        [0.50, 0.10, 0.30, 0.10],  # in between: review
        [0.20, 0.10, 0.60, 0.10],  # P(good) < 0.3: reject as class 2
        [0.29, 0.01, 0.30, 0.40],  # reject as the top *defect* class, 3
    ])
    decisions = band_policy(band).decide(probs)
    assert decisions.decisions.tolist() == [PASS, REVIEW, REJECT, REJECT]
    assert decisions.labels.tolist() == [0, 0, 2, 3]  # a review keeps the top class as the suggestion
    assert decisions.counts() == {"pass": 1, "reject": 2, "review": 1}
    overlap = dataclasses.replace(band, auto_above=0.3, reject_below=0.6)  # rejection wins where bands overlap
    assert band_policy(overlap).decide(probs).decisions.tolist() == [PASS, REJECT, REJECT, REJECT]


def test_operating_points_turn_passes_into_reviews_and_leave_the_bands_rejects() -> None:
    band = dataclasses.replace(fit_review_band(*with_good(np.random.default_rng(7), 300, 300), good_index=0,
                                               alpha=0.05), auto_above=0.85, reject_below=0.05)
    probs = np.array([[0.90, 0.08, 0.01, 0.01], [0.80, 0.02, 0.17, 0.01], [0.97, 0.01, 0.01, 0.01],
                      [0.02, 0.90, 0.07, 0.01]])
    thresholds = threshold_array(["good", "a", "b", "c"], {"a": 0.05, "b": 0.15})
    assert band_policy(band, thresholds).decide(probs).decisions.tolist() == [REVIEW, REVIEW, PASS, REJECT]
    assert band_policy(band).decide(probs).decisions.tolist() == [PASS, REVIEW, PASS, REJECT]
    with pytest.raises(InspectloopError, match="thresholds must be 4 probabilities"):
        band_policy(band, np.array([0.5, 0.5]))


@pytest.mark.parametrize("good_index", [0, None])
def test_the_model_files_band_is_the_band_that_was_measured(good_index: int | None) -> None:
    """What training writes into the model file gives the edge the policy whose rates were counted."""
    rng = np.random.default_rng(8)
    probs, labels = with_good(rng, 300, 300) if good_index is not None else without_good(rng, 400)
    names = [f"c{i}" for i in range(probs.shape[1])]
    fitted = fit_decisions(probs, labels, probs, labels, good_index=good_index, alpha=0.05, confidence=0.9,
                           targets={names[1]: 0.9}, class_names=names)
    band = fit_review_band(probs, labels, good_index=good_index, alpha=0.05, confidence=0.9)
    metadata = ModelMetadata(model_name="m", model_version="1", class_names=tuple(names), input_size=64,
                             good_class=None if good_index is None else names[good_index],
                             review=fitted.review, thresholds=fitted.thresholds)
    in_file = DecisionPolicy.from_metadata(metadata).decide(probs)
    measured = band_policy(band, threshold_array(names, fitted.thresholds)).decide(probs)
    assert in_file.decisions.tolist() == measured.decisions.tolist()
    assert in_file.labels.tolist() == measured.labels.tolist()


def test_rates_by_hand() -> None:
    rng = np.random.default_rng(6)
    band = dataclasses.replace(fit_review_band(*with_good(rng, 300, 300), good_index=0, alpha=0.05),
                               auto_above=0.8, reject_below=0.3)
    probs = np.array([[0.9, 0.1, 0, 0], [0.9, 0.1, 0, 0], [0.5, 0.5, 0, 0], [0.1, 0.9, 0, 0],
                      [0.1, 0, 0.9, 0], [0.95, 0.05, 0, 0], [0.2, 0.8, 0, 0], [0.6, 0.4, 0, 0]])
    labels = np.array([0, 1, 2, 1, 1, 0, 0, 0])
    # good parts 0, 5, 6, 7: pass, pass, reject (false reject), review
    # defective parts 1, 2, 3, 4: pass (escape), review, reject right, reject as class 2 (wrong class)
    rates = decision_rates(probs, labels, band)
    assert (rates.good, rates.defective, rates.escapes, rates.false_rejects) == (4, 4, 1, 1)
    assert (rates.good_reviews, rates.defective_reviews, rates.wrong_class_rejects) == (1, 1, 1)
    assert (rates.escape_rate, rates.false_reject_rate, rates.review_rate, rates.automation_rate) == (
        0.25, 0.25, 0.25, 0.75)
    assert rates.escape_ci == clopper_pearson(1, 4)
    assert rates.escape_verdict == "within sampling error"  # 25 % > 5 %, but 1 of 4 cannot tell
    document = json.loads(json.dumps(rates.to_dict(), allow_nan=False))
    assert document["escape_rate"] == 0.25 and document["automation_rate"] == 0.75
    json.dumps(band.to_dict(), allow_nan=False)


def test_clopper_pearson() -> None:
    assert clopper_pearson(0, 60) == (0.0, pytest.approx(1 - 0.025 ** (1 / 60)))
    low, high = clopper_pearson(3, 100)
    assert low == pytest.approx(0.0062299715, abs=1e-8) and high == pytest.approx(0.0851760530, abs=1e-8)
    assert clopper_pearson(5, 5)[1] == 1.0
    assert all(math.isnan(v) for v in clopper_pearson(0, 0))


PROBS = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]])
LABELS = np.array([0, 1])


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"alpha": 0.0}, "alpha"), ({"alpha": 0.6}, "alpha"), ({"alpha": math.nan}, "alpha"),
    ({"confidence": 1.0}, "confidence"), ({"good_index": 3}, "good_index"),
    ({"false_reject_target": 0.0}, "false_reject_target"),
])
def test_bad_settings(kwargs: dict, words: str) -> None:
    arguments = {"good_index": 0, "alpha": 0.01, **kwargs}
    with pytest.raises(InspectloopError, match=words) as info:
        fit_review_band(PROBS, LABELS, **arguments)
    assert info.value.hint


@pytest.mark.parametrize(("probs", "labels", "words"), [
    (np.array([[0.7, 0.2, 0.2], [0.1, 0.8, 0.1]]), LABELS, "sum to"),
    (PROBS, np.array([0, 1, 1]), "expected 2 labels"),
    (PROBS, np.array([0, 3]), "outside"),
    (np.empty((0, 3)), np.array([], dtype=int), "at least 1 image"),
])
def test_bad_data(probs: np.ndarray, labels: np.ndarray, words: str) -> None:
    with pytest.raises(InspectloopError, match=words):
        fit_review_band(probs, labels, good_index=0, alpha=0.01)


def test_rates_check_the_number_of_classes() -> None:
    band = fit_review_band(PROBS, LABELS, good_index=0, alpha=0.01)
    with pytest.raises(InspectloopError, match="3 classes"):
        decision_rates(np.array([[0.5, 0.5]]), np.array([0]), band)
    with pytest.raises(ValueError, match=r"shape \(N, 3\)"):
        band_policy(band).decide(np.array([[0.5, 0.5]]))


def test_marginal_guarantee_holds_on_average_with_far_fewer_calibration_parts() -> None:
    rng = np.random.default_rng(13)
    alpha = 0.02
    population = with_good(rng, 20_000, 20_000)
    escape = []
    for _ in range(DRAWS):
        band = fit_review_band(*with_good(rng, 60, 300), good_index=0, alpha=alpha, guarantee="marginal")
        assert band.certifiable and band.guarantee_kind == "marginal" and "on average" in band.guarantee
        escape.append(decision_rates(*population, band).escape_rate)
    assert np.mean(escape) <= alpha * 1.1  # the average over draws, within simulation noise
    assert np.mean(escape) > alpha / 3
    pac = fit_review_band(*with_good(rng, 60, 300), good_index=0, alpha=alpha, confidence=0.9)
    assert not pac.certifiable  # PAC at 90% needs 114 defects for 2%


def test_marginal_calibration_sizes() -> None:
    assert [min_calibration_size(a, guarantee="marginal") for a in (0.005, 0.01, 0.02)] == [199, 99, 49]
    rng = np.random.default_rng(14)
    probs, labels = with_good(rng, 98, 100)
    assert not fit_review_band(probs, labels, good_index=0, alpha=0.01, guarantee="marginal").certifiable
    probs, labels = with_good(rng, 99, 100)
    band = fit_review_band(probs, labels, good_index=0, alpha=0.01, guarantee="marginal")
    assert band.certifiable and band.allowed_escapes == 0


def test_unknown_guarantee_is_refused() -> None:
    probs, labels = with_good(np.random.default_rng(15), 50, 50)
    with pytest.raises(InspectloopError, match="unknown guarantee"):
        fit_review_band(probs, labels, good_index=0, alpha=0.01, guarantee="hopeful")


@pytest.mark.parametrize(("successes", "n"), [(0, 1), (0, 60), (1, 4), (3, 100), (2, 270), (60, 60), (37, 132)])
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_clopper_pearson_is_scipys_exact_interval(successes: int, n: int, confidence: float) -> None:
    stats = pytest.importorskip("scipy.stats")
    expected = stats.binomtest(successes, n).proportion_ci(confidence_level=confidence, method="exact")
    low, high = clopper_pearson(successes, n, confidence)
    assert (low, high) == (pytest.approx(expected.low, abs=1e-12), pytest.approx(expected.high, abs=1e-12))
    # by definition: the tails beyond the interval each hold (1 - confidence) / 2
    tail = (1 - confidence) / 2
    if successes > 0:
        assert stats.binom.sf(successes - 1, n, low) == pytest.approx(tail, rel=1e-6)
    if successes < n:
        assert stats.binom.cdf(successes, n, high) == pytest.approx(tail, rel=1e-6)


@pytest.mark.parametrize(("n", "alpha", "confidence", "k"), [
    (229, 0.01, 0.9, None), (230, 0.01, 0.9, 0), (360, 0.01, 0.9, 0), (360, 0.02, 0.9, 3), (460, 0.005, 0.9, 0),
    (1000, 0.05, 0.9, 40), (114, 0.02, 0.9, 0), (113, 0.02, 0.9, None),
])
def test_pac_count_is_the_binomial_quantile(n: int, alpha: float, confidence: float, k: int | None) -> None:
    stats = pytest.importorskip("scipy.stats")
    assert allowed_count(n, alpha, confidence=confidence) == k
    if k is not None:  # the largest k with P(Binomial(n, alpha) <= k) <= 1 - confidence
        assert stats.binom.cdf(k, n, alpha) <= 1 - confidence < stats.binom.cdf(k + 1, n, alpha)


@pytest.mark.parametrize(("n", "alpha", "k"), [(98, 0.01, None), (99, 0.01, 0), (260, 0.01, 1), (359, 0.01, 2),
                                                (260, 0.02, 4), (199, 0.005, 0)])
def test_marginal_and_crossfit_counts(n: int, alpha: float, k: int | None) -> None:
    assert allowed_count(n, alpha, guarantee="marginal") == allowed_count(n, alpha, guarantee="crossfit") == k


def test_crossfit_band_names_its_guarantee_and_its_bound() -> None:
    probs, labels = with_good(np.random.default_rng(16), 260, 600)
    band = fit_review_band(probs, labels, good_index=0, alpha=0.01, guarantee="crossfit", folds=4)
    assert band.guarantee_kind == "crossfit" and band.folds == 4 and band.allowed_escapes == 1
    assert band.min_calibration_defects == 99 and band.certifiable
    slack = crossfit_slack(260, 4)
    assert slack == pytest.approx(2 * 0.75 / 66)  # Barber et al. (2021), Theorem 4, for n = 260, K = 4
    assert "Cross-fitted over 4 folds" in band.guarantee and f"{100 * (0.02 + slack):.3g}%" in band.guarantee
    assert "refit" in band.guarantee and "No confidence over one draw (PAC) is claimed" in band.guarantee
    assert "out-of-fold" in band.guarantee and json.loads(json.dumps(band.to_dict()))["folds"] == 4
    small = fit_review_band(*with_good(np.random.default_rng(17), 50, 50), good_index=0, alpha=0.01,
                            guarantee="crossfit", folds=4)
    assert not small.certifiable and "50 defective out-of-fold labelled images" in small.note


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"guarantee": "crossfit"}, "needs the number of folds"),
    ({"guarantee": "crossfit", "folds": 1}, "needs the number of folds"),
    ({"guarantee": "pac", "folds": 4}, "folds belong to guarantee='crossfit'"),
])
def test_folds_go_with_the_crossfit_guarantee_only(kwargs: dict, words: str) -> None:
    with pytest.raises(InspectloopError, match=words) as info:
        fit_review_band(PROBS, LABELS, good_index=0, alpha=0.01, **kwargs)
    assert info.value.hint


def test_crossfit_slack_needs_folds_and_scores() -> None:
    assert crossfit_slack(10, 10) == 0.0  # leave-one-out: (1 - K/n) / (K + 1) = 0
    with pytest.raises(InspectloopError, match="at least 2 folds"):
        crossfit_slack(100, 1)
