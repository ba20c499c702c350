"""Two-sample tests for drift: is the current window drawn from the same distribution as the baseline?

Every test returns a :class:`TwoSampleResult` with a p-value *and* an effect size, because on a busy
line thousands of images make a trivial shift "significant"; the effect size says whether it matters.

- :func:`mmd_test`: embeddings (N, D); squared MMD with an RBF kernel, permutation p-value.
- :func:`ks_test`: one scalar per image (brightness, sharpness, confidence, ...); two-sample
  Kolmogorov-Smirnov (SciPy's ``ks_2samp``: exact p-values for small windows, asymptotic for large
  ones); effect = shift of the mean in baseline standard deviations.
- :func:`counts_test`: predicted-class counts; Pearson's chi-square (SciPy's ``chi2_contingency``),
  asymptotic when every expected count is at least 5, else exact-conditional by permutation, so
  small expected counts are fine; effect = PSI.

The p-values come from SciPy rather than hand-written series: the monitor is not the edge runtime
(which stays numpy-only), it runs where the workspace runs. SciPy is imported inside the tests
that use it, because ``scipy.stats`` takes about 0.7 s to import.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from inspectloop.errors import MonitorError

MIN_SCALAR_SAMPLES = 20  # fewer images than this say too little about a distribution to alert on
MIN_EMBEDDING_SAMPLES = 10  # fewer than this gives too few distinct permutations to reach p < 0.01
MIN_COUNT_SAMPLES = 30  # predictions per window for a class-mix comparison
MIN_EXPECTED_COUNT = 5  # Cochran's rule: below this in any cell, the chi-square distribution is poor
MMD_CAP = 500  # rows per side above which embeddings are subsampled (cost grows with the square)
PSI_FLOOR = 1e-4  # share given to a class absent on one side, so PSI stays finite


@dataclass(frozen=True)
class TwoSampleResult:
    """One two-sample test: ``statistic`` and its ``p_value``; ``effect`` in ``effect_unit`` units.

    ``measured`` names the quantity compared (``"brightness"``, ``"embedding"``, ...), ``test`` the
    method. ``n_baseline`` / ``n_current`` are the samples actually used (after any subsampling).
    """

    test: str
    measured: str
    statistic: float
    effect: float
    effect_unit: str
    p_value: float
    n_baseline: int
    n_current: int

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict of every field."""
        return asdict(self)


# --- embeddings: MMD ---------------------------------------------------------------------------------

def mmd_test(baseline: np.ndarray, current: np.ndarray, *, permutations: int = 500, seed: int = 0,
             cap: int = MMD_CAP, measured: str = "embedding") -> TwoSampleResult:
    """Unbiased squared MMD between two (N, D) samples, RBF kernel, permutation p-value.

    The kernel is ``exp(-|x - y|^2 / h)`` with ``h`` the median pairwise squared distance of the
    pooled sample (median heuristic). Each side is subsampled (seeded) to ``cap`` rows. The effect
    is ``sqrt(max(MMD^2, 0))``, a distance in kernel units that does not grow with the sample size.
    """
    x = _matrix(baseline, "baseline", measured)
    y = _matrix(current, "current", measured)
    if x.shape[1] != y.shape[1]:
        raise MonitorError(f"{measured}: baseline has {x.shape[1]} features per image, current {y.shape[1]}",
                           "compare embeddings from the same model version; record a new baseline after a model change")
    rng = np.random.default_rng(seed)
    x, y = _subsample(x, cap, rng), _subsample(y, cap, rng)
    kernel = _rbf_kernel(np.concatenate([x, y]))
    n, m = len(x), len(y)
    observed = float(_mmd2_for_splits(kernel, _first_n_mask(n, m)[None], n, m)[0])
    null = _mmd2_for_splits(kernel, _permuted_masks(rng, n, m, permutations), n, m)
    p_value = (1.0 + float(np.sum(null >= observed))) / (1.0 + permutations)
    return TwoSampleResult("mmd2-rbf-permutation", measured, observed, math.sqrt(max(observed, 0.0)),
                           "MMD", p_value, n, m)


def _matrix(values: np.ndarray, side: str, measured: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2:
        raise MonitorError(f"{measured}: the {side} embeddings must be a 2-D array (images, features), "
                           f"got shape {array.shape}", "pass one feature vector per image")
    _require(len(array), MIN_EMBEDDING_SAMPLES, side, measured)
    if not np.all(np.isfinite(array)):
        raise MonitorError(f"{measured}: the {side} embeddings contain NaN or infinite values",
                           "check the model file and the images it was given")
    return array


def _subsample(rows: np.ndarray, cap: int, rng: np.random.Generator) -> np.ndarray:
    return rows if len(rows) <= cap else rows[rng.choice(len(rows), size=cap, replace=False)]


def _rbf_kernel(z: np.ndarray) -> np.ndarray:
    squared = np.sum(z * z, axis=1)
    distances = np.maximum(squared[:, None] + squared[None, :] - 2.0 * (z @ z.T), 0.0)
    upper = distances[np.triu_indices(len(z), k=1)]
    bandwidth = float(np.median(upper))
    if bandwidth <= 0.0:  # most points identical: any positive scale gives the same (near-zero) MMD
        bandwidth = float(upper.max()) or 1.0
    return np.exp(-distances / bandwidth)


def _first_n_mask(n: int, m: int) -> np.ndarray:
    return np.concatenate([np.ones(n), np.zeros(m)])


def _permuted_masks(rng: np.random.Generator, n: int, m: int, permutations: int) -> np.ndarray:
    """(P, n + m) 0/1 rows, each marking a random n of the pooled points as 'baseline'."""
    order = np.argsort(rng.random((permutations, n + m)), axis=1)
    return (order < n).astype(np.float64)


def _mmd2_for_splits(kernel: np.ndarray, masks: np.ndarray, n: int, m: int) -> np.ndarray:
    """Unbiased MMD^2 for each split at once: three quadratic forms per mask, one matrix product in all.

    With s the 0/1 mask and K the kernel: sum Kxx = s'Ks, sum Kxy = s'K1 - s'Ks,
    sum Kyy = 1'K1 - 2 s'K1 + s'Ks. The RBF diagonal is 1, so the within sums drop n and m.
    """
    row_sums = kernel.sum(axis=1)
    total = float(row_sums.sum())
    ks = masks @ kernel  # (P, N)
    sxx = np.einsum("pi,pi->p", ks, masks)
    s1 = masks @ row_sums
    sxy = s1 - sxx
    syy = total - 2.0 * s1 + sxx
    return (sxx - n) / (n * (n - 1)) + (syy - m) / (m * (m - 1)) - 2.0 * sxy / (n * m)


# --- scalars: Kolmogorov-Smirnov ----------------------------------------------------------------------

def ks_test(baseline: Sequence[float] | np.ndarray, current: Sequence[float] | np.ndarray, *,
            measured: str = "value") -> TwoSampleResult:
    """Two-sample Kolmogorov-Smirnov test on one scalar per image (SciPy's ``ks_2samp``).

    The p-value is exact for small windows and asymptotic for large ones; ties make it conservative.
    The effect is ``(mean_current - mean_baseline) / sd_baseline`` (signed; in baseline standard
    deviations), the figure a plant engineer can compare to spec.
    """
    from scipy.stats import ks_2samp

    x = _vector(baseline, "baseline", measured)
    y = _vector(current, "current", measured)
    result = ks_2samp(x, y)
    return TwoSampleResult("kolmogorov-smirnov", measured, float(result.statistic), standardised_shift(x, y), "SD",
                           float(result.pvalue), len(x), len(y))


def standardised_shift(baseline: np.ndarray, current: np.ndarray) -> float:
    """Difference of means in baseline standard deviations; a constant baseline uses a tiny floor."""
    spread = float(np.std(baseline, ddof=1))
    floor = 1e-6 * max(1.0, abs(float(np.mean(baseline))))  # a perfectly constant statistic is rare but real
    return float((np.mean(current) - np.mean(baseline)) / max(spread, floor))


def _vector(values: Sequence[float] | np.ndarray, side: str, measured: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    array = array[np.isfinite(array)]  # a statistic that could not be computed for one image is not a shift
    _require(len(array), MIN_SCALAR_SAMPLES, side, measured)
    return array


# --- categories: class mix ------------------------------------------------------------------------------

def counts_test(baseline: Sequence[int] | np.ndarray, current: Sequence[int] | np.ndarray, *,
                permutations: int = 2000, seed: int = 0, measured: str = "prediction") -> TwoSampleResult:
    """Do two windows predict the classes in the same proportions? Counts per class, same class order.

    The statistic is Pearson's chi-square of the 2 x K table (SciPy's ``chi2_contingency``, no
    continuity correction). Its p-value is asymptotic when every expected count is at least
    ``MIN_EXPECTED_COUNT``; otherwise it is exact-conditional by ``permutations`` seeded random
    re-splits of the pooled predictions with the window sizes fixed. The effect is the population
    stability index (PSI; < 0.1 stable, 0.1-0.25 moderate, > 0.25 major shift).
    """
    from scipy.stats import PermutationMethod, chi2_contingency

    a, b = _counts(baseline, "baseline", measured), _counts(current, "current", measured)
    if a.shape != b.shape:
        raise MonitorError(f"{measured}: baseline counts {a.size} classes, current {b.size}",
                           "count predictions over the same class list (the model's class_names)")
    seen = (a + b) > 0
    a, b = a[seen], b[seen]
    if len(a) < 2:  # one class only, on both sides: nothing can have shifted
        return TwoSampleResult("chi-square", measured, 0.0, 0.0, "PSI", 1.0, int(a.sum()), int(b.sum()))
    table = np.stack([a, b])
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    exact = bool(expected.min() < MIN_EXPECTED_COUNT)
    method = PermutationMethod(n_resamples=permutations, rng=np.random.default_rng(seed)) if exact else None
    result = chi2_contingency(table, correction=False, method=method)
    return TwoSampleResult("chi-square-permutation" if exact else "chi-square", measured, float(result.statistic),
                           psi(a, b), "PSI", float(result.pvalue), int(a.sum()), int(b.sum()))


def psi(baseline_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """Population stability index sum((q - p) ln(q / p)) of the class shares; absent classes get PSI_FLOOR."""
    p = np.maximum(baseline_counts / baseline_counts.sum(), PSI_FLOOR)
    q = np.maximum(current_counts / current_counts.sum(), PSI_FLOOR)
    return float(np.sum((q - p) * np.log(q / p)))


def _counts(values: Sequence[int] | np.ndarray, side: str, measured: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1 or np.any(array < 0) or not np.all(np.equal(np.mod(array, 1), 0)):
        raise MonitorError(f"{measured}: the {side} class counts must be non-negative whole numbers, got {values!r}",
                           "pass one count per class, in the model's class order")
    counts = array.astype(np.int64)
    _require(int(counts.sum()), MIN_COUNT_SAMPLES, side, measured)
    return counts


def _require(count: int, minimum: int, side: str, measured: str) -> None:
    if count < minimum:
        raise MonitorError(f"{measured}: the {side} window has {count} images; this test needs at least {minimum}",
                           "widen the monitoring window or wait for more production images")
