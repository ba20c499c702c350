"""Two-sample tests: calibrated under no change, sensitive to a real one, clear about tiny samples."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy import stats

from inspectloop.errors import MonitorError
from inspectloop.monitor.statistics import (
    counts_test,
    ks_test,
    mmd_test,
    psi,
    standardised_shift,
)


def _normal(seed: int, shape: tuple[int, ...], shift: float = 0.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(shift, 1.0, shape)


def test_mmd_detects_a_shift_in_embeddings() -> None:
    result = mmd_test(_normal(1, (60, 32)), _normal(2, (60, 32), shift=0.5), permutations=200)
    assert result.p_value < 0.01
    assert result.effect > 0.1 and result.effect_unit == "MMD"
    assert (result.n_baseline, result.n_current, result.measured) == (60, 60, "embedding")


def test_mmd_false_positive_rate_is_near_alpha() -> None:
    fired = sum(mmd_test(_normal(100 + s, (30, 8)), _normal(200 + s, (30, 8)), permutations=200, seed=s).p_value < 0.05
                for s in range(50))
    assert fired <= 7  # Binomial(50, 0.05): P(> 7) ~ 0.001


def test_mmd_is_seeded() -> None:
    x, y = _normal(1, (20, 4)), _normal(2, (20, 4))
    assert mmd_test(x, y, seed=3) == mmd_test(x, y, seed=3)


def test_mmd_subsamples_above_the_cap_and_is_fast() -> None:
    x, y = _normal(1, (700, 512)), _normal(2, (600, 512), shift=0.1)
    start = time.perf_counter()
    result = mmd_test(x, y, permutations=500)
    assert time.perf_counter() - start < 5.0  # about 0.2 s alone on one core
    assert (result.n_baseline, result.n_current) == (500, 500)
    assert result.p_value < 0.01


@pytest.mark.parametrize(("x", "y", "message"), [
    (np.zeros((5, 3)), np.zeros((40, 3)), "baseline window has 5 images; this test needs at least 10"),
    (np.zeros((40, 3)), np.zeros((40, 4)), "baseline has 3 features per image, current 4"),
    (np.zeros(40), np.zeros((40, 3)), "must be a 2-D array"),
    (np.full((40, 3), np.nan), np.zeros((40, 3)), "NaN"),
])
def test_mmd_refuses_bad_input(x: np.ndarray, y: np.ndarray, message: str) -> None:
    with pytest.raises(MonitorError, match=message):
        mmd_test(x, y)


@pytest.mark.parametrize(("n", "m", "method"), [(20, 25, "exact"), (400, 600, "exact"), (2000, 11000, "asymp")])
def test_ks_gives_scipys_answer_and_reports_the_shift_in_sds(n: int, m: int, method: str) -> None:
    for seed in range(3):
        x, y = _normal(seed, (n,)), _normal(seed + 10, (m,), shift=0.4)
        result = ks_test(x, y, measured="brightness")
        reference = stats.ks_2samp(x, y, method=method)  # up to 10000 a side: exact
        assert (result.statistic, result.p_value) == pytest.approx((reference.statistic, reference.pvalue), rel=1e-9)
        assert result.effect == pytest.approx((y.mean() - x.mean()) / x.std(ddof=1))


def test_ks_effect_is_signed_and_scale_free() -> None:
    base = 100 + 5 * _normal(1, (200,))
    darker = 90 + 5 * _normal(2, (200,))
    result = ks_test(base, darker, measured="brightness")
    assert result.effect == pytest.approx(-2.0, abs=0.3)
    assert result.p_value < 1e-6
    assert standardised_shift(np.full(30, 5.0), np.full(30, 5.0)) == 0.0


def test_ks_is_calibrated_under_no_change() -> None:
    fired = sum(ks_test(_normal(s, (40,)), _normal(1000 + s, (40,))).p_value < 0.05 for s in range(200))
    assert fired <= 16  # KS is slightly conservative: about 0.03-0.05 of 200


def test_ks_p_value_edges() -> None:
    values = _normal(1, (50,))
    assert ks_test(values, values).p_value == 1.0
    assert ks_test(values, values + 100.0).p_value < 1e-10


def test_ks_refuses_tiny_windows_and_ignores_nan() -> None:
    with pytest.raises(MonitorError, match="current window has 19 images; this test needs at least 20") as caught:
        ks_test(np.zeros(30), np.zeros(19), measured="sharpness")
    assert "widen the monitoring window" in (caught.value.hint or "")
    values = np.concatenate([_normal(1, (25,)), [np.nan]])
    assert ks_test(values, values).n_baseline == 25


def test_counts_test_detects_a_class_mix_change_with_psi() -> None:
    result = counts_test([900, 60, 40], [700, 200, 100])
    assert result.p_value < 0.001
    assert result.effect > 0.1 and result.effect_unit == "PSI"
    steady = counts_test([900, 60, 40], [905, 55, 40])
    assert steady.p_value > 0.5 and steady.effect < 0.01


def test_counts_test_is_scipys_chi_square_on_large_counts() -> None:
    table = [[300, 120, 80], [270, 140, 90]]
    result = counts_test(*table)
    reference = stats.chi2_contingency(table, correction=False)
    assert (result.statistic, result.p_value) == pytest.approx((reference.statistic, reference.pvalue), rel=1e-12)
    assert result.test == "chi-square"


def test_counts_test_is_exact_conditional_with_small_expected_counts() -> None:
    table = [[30, 5, 2], [28, 4, 6]]  # expected counts of 4 in the last column: the chi-square curve is poor
    result = counts_test(*table, permutations=4000, seed=1)
    method = stats.PermutationMethod(n_resamples=4000, rng=np.random.default_rng(1))
    reference = stats.chi2_contingency(table, correction=False, method=method)
    assert (result.statistic, result.p_value) == pytest.approx((reference.statistic, reference.pvalue))
    assert result.test == "chi-square-permutation"
    assert counts_test(*table, permutations=4000, seed=1) == result  # seeded


def test_counts_test_is_calibrated_with_small_expected_counts() -> None:
    shares = [0.85, 0.1, 0.05]
    fired = sum(counts_test(np.random.default_rng(s).multinomial(40, shares),
                            np.random.default_rng(500 + s).multinomial(40, shares),
                            permutations=400, seed=s).p_value < 0.05 for s in range(60))
    assert fired <= 8


def test_counts_test_handles_absent_classes_and_one_class() -> None:
    assert counts_test([50, 0, 0], [50, 0, 0]).p_value == 1.0
    assert np.isfinite(counts_test([50, 10, 0], [40, 10, 10]).effect)
    assert psi(np.array([50, 50]), np.array([50, 50])) == 0.0


@pytest.mark.parametrize(("a", "b", "message"), [
    ([10, 5], [40, 40], "baseline window has 15 images; this test needs at least 30"),
    ([40, -1], [40, 40], "non-negative whole numbers"),
    ([40, 40], [40, 40, 1], "baseline counts 2 classes, current 3"),
])
def test_counts_test_refuses_bad_counts(a: list[int], b: list[int], message: str) -> None:
    with pytest.raises(MonitorError, match=message):
        counts_test(a, b)
