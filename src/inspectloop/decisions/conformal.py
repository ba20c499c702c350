"""Three-way decisions (pass, reject as class X, review) with a certified escape rate.

**Escape.** With a good class, an escape is a defective part auto-passed as good, counted per
defective part. Without one (e.g. NEU, where every image is a defect), an escape is a part
automatically assigned a wrong class, counted per part (every part is defective there).

**Method: a high-probability (PAC) conformal threshold.** Each calibration part that can escape gets
an *escape score*: P(good) with a good class; without one, the top-class probability when the top
class is wrong, and -1 (below any probability) when it is right, since a right answer cannot escape.
A new part escapes exactly when its escape score is strictly above the threshold ``lambda``, which
is the (k+1)-th largest of the ``n`` calibration scores, with ``k`` the largest count such that
``P(Binomial(n, alpha) <= k) <= 1 - confidence``. For any score distribution (ties included), over
the draw of the calibration split,

    P( escape rate of the fitted band > alpha ) <= P(Binomial(n, alpha) <= k) <= 1 - confidence.

(The escape rate exceeds alpha only if fewer than k+1 calibration scores reach the (1 - alpha)
quantile; that count is Binomial(n, >= alpha).) This is the order-statistic form of Learn-then-Test
with a monotone loss, i.e. a training-conditional conformal guarantee. It is chosen over the
marginal split-conformal guarantee because a plant deploys *one* band: the marginal guarantee only
bounds the average over calibration draws, and with a few hundred images one band's true escape
rate scatters widely around alpha. The price is data: even k = 0 needs
``(1 - alpha)^n <= 1 - confidence`` (see :func:`min_calibration_size`). When the split is smaller,
nothing is automated on the escape side (``certifiable=False``) and the note says how many
calibration images would be needed.

Without a good class this is selective classification: the prediction set is {top class} when the
top-class probability is above ``lambda`` and "review" otherwise. Thresholding the escape event
itself is tighter than a LAC/APS set, whose miscoverage also counts parts that go to review anyway.

**Reject side (good class only).** A part is rejected as its most likely defect class when P(good)
is below ``reject_below``, fitted the same way on the *good* calibration parts so that, with the same
confidence, at most ``false_reject_target`` (default 2 %) of good parts are auto-rejected. If the two
bands overlap, rejection wins (safety first); both guarantees still hold, each with ``confidence``,
both together with at least ``2 * confidence - 1``. Everything else goes to review.

**The marginal option** (``guarantee="marginal"``) is classic split conformal: the threshold is the
(k+1)-th largest escape score with ``k = floor(alpha (n + 1)) - 1``, so that the escape probability
of a new part, *averaged over calibration draws*, is at most ``(k+1)/(n+1) <= alpha``. It needs far
fewer calibration parts (``1/alpha - 1``: 99 for 1 %) but says nothing about the one band a plant
deploys, whose true escape rate scatters around alpha (roughly Beta(n+1-k-1, k+1)). Reports name the
guarantee in force.

**The cross-fitted option** (``guarantee="crossfit"``, see :mod:`inspectloop.decisions.crossfit`)
fits the band on *out-of-fold* scores: the labelled images are dealt into K folds and each is scored
by a model trained without its fold, so every labelled defect serves calibration. The threshold is
the cross-conformal one (Vovk 2015): the (k+1)-th largest out-of-fold escape score with
``k = floor(alpha (n + 1)) - 1``. What is proven (Barber, Candes, Ramdas, Tibshirani 2021, "Predictive
inference with the jackknife+", Theorem 4) holds for the *K fold models used together* (a part passes
only when its score under each fold model clears that fold's calibration scores, see
:func:`inspectloop.decisions.crossfit.aggregate_decide`): on average over data draws, a defective
part escapes with probability at most ``2 alpha + 2 (1 - 1/K) / (n/K + 1)``; the factor 2 is a worst
case, stable learners come close to alpha. The model a plant deploys is refit on all folds, and for it
the bound is approximate: it holds as far as the refit scores a new part like the fold models scored
their held-out folds (algorithmic stability), which the training run measures on the validation
split. No training-conditional (PAC) statement is claimed for cross-fitting.

**The rule** that applies a band (and the per-class operating points) is the runtime's
:class:`~inspectloop.runtime.decision.DecisionPolicy`: :func:`band_policy` builds it, so the rates
counted here are those of the decisions the edge makes.

**Assumption.** Production parts are exchangeable with the calibration split: same process, cameras,
lighting and, since the escape rate pools defect classes, the same mix of defect classes. A class
that is rarer in calibration than on the line weighs less in the guarantee.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from inspectloop.decisions.inputs import check_labels, check_probs
from inspectloop.errors import DatasetError, InspectloopError, require
from inspectloop.evaluate.metrics import json_float
from inspectloop.runtime.decision import Decision, DecisionPolicy, Decisions

DEFAULT_CONFIDENCE = 0.9
DEFAULT_FALSE_REJECT = 0.02
GUARANTEES = ("pac", "marginal", "crossfit")
INTERVAL_CONFIDENCE = 0.95
_NEVER_ABOVE = 1.0  # no probability is above 1: automate nothing on that side
_NEVER_BELOW = 0.0  # no probability is below 0: reject nothing


@dataclass(frozen=True)
class ReviewBand:
    """Where the runtime passes, rejects or asks a human, and what the calibration split certifies.

    With a good class: pass when P(good) > ``auto_above``, reject as the top defect class when
    P(good) < ``reject_below`` (rejection wins), review otherwise. Without one: decide the top class
    when its probability is > ``auto_above``, review otherwise. ``auto_above == 1.0`` automates
    nothing; ``reject_below == 0.0`` rejects nothing.
    """

    good_index: int | None
    num_classes: int
    alpha: float
    confidence: float
    auto_above: float
    reject_below: float | None
    false_reject_target: float | None
    calibration_defects: int
    calibration_good: int
    allowed_escapes: int | None
    min_calibration_defects: int
    certifiable: bool
    reject_certified: bool | None
    guarantee: str
    note: str
    guarantee_kind: str = "pac"  # pac | marginal | crossfit (see the module docstring)
    folds: int | None = None  # crossfit only: how many folds the out-of-fold scores came from

    @property
    def score(self) -> str:
        """What ``auto_above`` is compared with."""
        return "P(good)" if self.good_index is not None else "top-class probability"

    def to_dict(self) -> dict[str, object]:
        """JSON-safe form."""
        return {"score": self.score, **{k: getattr(self, k) for k in self.__dataclass_fields__}}


@dataclass(frozen=True)
class DecisionRates:
    """What a band did on a labelled set (use the frozen test set): escapes, false rejects, reviews.

    ``escape_rate`` is per defective part (every part is defective without a good class);
    ``false_reject_rate`` is per good part (``nan`` without good parts). Intervals are 95 %
    Clopper-Pearson. ``wrong_class_rejects`` counts defective parts rejected as another defect class
    (not an escape with a good class; the escapes themselves without one). ``alpha`` is ``nan`` when
    the rates were counted without an escape rate to judge them against.
    """

    alpha: float
    has_good_class: bool
    count: int
    defective: int
    good: int
    escapes: int
    escape_ci: tuple[float, float]
    false_rejects: int
    false_reject_ci: tuple[float, float]
    defective_reviews: int
    good_reviews: int
    wrong_class_rejects: int
    escape_verdict: str
    note: str

    @property
    def escape_rate(self) -> float:
        """Escapes per defective part."""
        return _ratio(self.escapes, self.defective)

    @property
    def false_reject_rate(self) -> float:
        """Good parts auto-rejected per good part (``nan`` without good parts)."""
        return _ratio(self.false_rejects, self.good)

    @property
    def reviews(self) -> int:
        """Parts sent to a human."""
        return self.defective_reviews + self.good_reviews

    @property
    def review_rate(self) -> float:
        """Share of all parts sent to review."""
        return _ratio(self.reviews, self.count)

    @property
    def automation_rate(self) -> float:
        """Share of all parts decided without a human."""
        return 1.0 - self.review_rate

    @property
    def defective_review_rate(self) -> float:
        """Share of defective parts sent to review."""
        return _ratio(self.defective_reviews, self.defective)

    @property
    def good_review_rate(self) -> float:
        """Share of good parts sent to review (``nan`` without good parts)."""
        return _ratio(self.good_reviews, self.good)

    def to_dict(self) -> dict[str, object]:
        """JSON-safe form with the rates; undefined values become ``None``."""
        fields = {k: getattr(self, k) for k in self.__dataclass_fields__}
        fields["alpha"] = json_float(self.alpha)
        for key in ("escape_ci", "false_reject_ci"):
            fields[key] = [json_float(v) for v in fields[key]]
        rates = ("escape_rate", "false_reject_rate", "review_rate", "automation_rate", "defective_review_rate",
                 "good_review_rate")
        return {**fields, **{k: json_float(getattr(self, k)) for k in rates}, "reviews": self.reviews,
                "interval_confidence": INTERVAL_CONFIDENCE}


def fit_review_band(
    probs: np.ndarray,
    labels: np.ndarray,
    *,
    good_index: int | None,
    alpha: float,
    confidence: float = DEFAULT_CONFIDENCE,
    false_reject_target: float = DEFAULT_FALSE_REJECT,
    guarantee: str = "pac",
    folds: int | None = None,
) -> ReviewBand:
    """Fit the pass / reject / review band on the calibration split (see the module docstring).

    ``probs`` are calibrated probabilities of calibration images that training never saw, ``labels``
    their true classes, ``good_index`` the good class's column (``None`` when there is none).
    ``false_reject_target`` is used only with a good class. ``guarantee`` is ``"pac"`` (with
    ``confidence`` over the calibration draw), ``"marginal"`` (on average over calibration draws;
    ``confidence`` is then unused) or ``"crossfit"`` (``probs`` are out-of-fold probabilities from
    ``folds`` fold models; ``confidence`` is unused).
    """
    p = check_probs(probs)
    y = check_labels(labels, p.shape[0], p.shape[1])
    alpha = _check_share(alpha, "alpha", "the escape rate you accept, e.g. 0.01 for 1 %")
    confidence = _check_confidence(confidence)
    kind = _check_guarantee(guarantee)
    folds = _check_folds(folds, kind)
    if good_index is None:
        return _fit_without_good(p, y, alpha, confidence, kind, folds)
    good = _check_good_index(good_index, p.shape[1])
    beta = _check_share(false_reject_target, "false_reject_target", "e.g. 0.02 for 2 % of good parts")
    return _fit_with_good(p, y, good, alpha, confidence, beta, kind, folds)


def band_policy(band: ReviewBand, thresholds: np.ndarray | None = None) -> DecisionPolicy:
    """The runtime's decision rule with ``band`` and the per-class operating-point ``thresholds``
    (one per class, ``inf`` for none; see :func:`inspectloop.runtime.threshold_array`).

    A flagged part is never decided automatically against its flag: passes and assignments only
    shrink, so both of the band's guarantees (escapes, and false rejects) still hold.
    """
    return DecisionPolicy(num_classes=band.num_classes, good_index=band.good_index,
                          thresholds=_check_thresholds(thresholds, band.num_classes, band.good_index),
                          auto_above=band.auto_above,
                          reject_below=band.reject_below if band.good_index is not None else None)


def decision_rates(probs: np.ndarray, labels: np.ndarray, band: ReviewBand,
                   thresholds: np.ndarray | None = None) -> DecisionRates:
    """Escapes, false rejects, reviews and automation of ``band`` (and ``thresholds``) on a labelled set."""
    p = _check_band_probs(probs, band)
    y = check_labels(labels, p.shape[0], p.shape[1])
    return _rates(band_policy(band, thresholds).decide(p), y, band.good_index, band.alpha)


def rates_of_decisions(decisions: Decisions, labels: np.ndarray, *, num_classes: int, good_index: int | None,
                       alpha: float | None = None) -> DecisionRates:
    """The rates of decisions made elsewhere (e.g. by the edge runtime), counted as :func:`decision_rates` does.

    ``decisions`` holds one decision per labelled image (a reject's label is the class rejected as);
    ``alpha`` (the escape rate to judge against) only words ``escape_verdict`` and may be left out
    (then ``alpha`` is ``nan`` and nothing is judged).
    """
    y = check_labels(labels, len(decisions), num_classes)
    good = None if good_index is None else _check_good_index(good_index, num_classes)
    if alpha is not None:
        alpha = _check_share(alpha, "alpha", "the escape rate you accept, e.g. 0.01 for 1 %")
    return _rates(decisions, y, good, alpha)


def _rates(d: Decisions, y: np.ndarray, good_index: int | None, alpha: float | None) -> DecisionRates:
    is_good = y == good_index if good_index is not None else np.zeros(y.shape, dtype=bool)
    defective = ~is_good
    passed, rejected, reviewed = (d.decisions == Decision.PASS, d.decisions == Decision.REJECT,
                                  d.decisions == Decision.REVIEW)
    wrong_reject = rejected & defective & (d.labels != y)
    escapes = int((passed & defective).sum()) if good_index is not None else int(wrong_reject.sum())
    false_rejects = int((rejected & is_good).sum())
    n_defective, n_good = int(defective.sum()), int(is_good.sum())
    escape_ci = clopper_pearson(escapes, n_defective)
    verdict, note = _escape_verdict(escapes, n_defective, alpha, escape_ci)
    return DecisionRates(
        alpha=math.nan if alpha is None else alpha,
        has_good_class=good_index is not None,
        count=int(y.size),
        defective=n_defective,
        good=n_good,
        escapes=escapes,
        escape_ci=escape_ci,
        false_rejects=false_rejects,
        false_reject_ci=clopper_pearson(false_rejects, n_good),
        defective_reviews=int((reviewed & defective).sum()),
        good_reviews=int((reviewed & is_good).sum()),
        wrong_class_rejects=int(wrong_reject.sum()),
        escape_verdict=verdict,
        note=note,
    )


def min_calibration_size(alpha: float, confidence: float = DEFAULT_CONFIDENCE, guarantee: str = "pac") -> int:
    """The fewest calibration parts (defective parts, with a good class) that can certify ``alpha``.

    PAC: the smallest ``n`` with ``(1 - alpha)^n <= 1 - confidence``: then the threshold sits at the
    largest calibration escape score and none of them may escape. Marginal and cross-fitted (``n``
    out-of-fold scores): ``ceil(1/alpha - 1)``.
    """
    alpha = _check_share(alpha, "alpha", "the escape rate you accept, e.g. 0.01 for 1 %")
    if _check_guarantee(guarantee) != "pac":
        return max(1, math.ceil(1.0 / alpha - 1.0 - 1e-9))
    log_delta, log_keep = math.log1p(-_check_confidence(confidence)), math.log1p(-alpha)
    n = max(1, math.ceil(log_delta / log_keep))
    while n > 1 and (n - 1) * log_keep <= log_delta:
        n -= 1
    while n * log_keep > log_delta:
        n += 1
    return n


def allowed_count(n: int, share: float, *, confidence: float = DEFAULT_CONFIDENCE, guarantee: str = "pac") -> int | None:
    """How many of ``n`` calibration scores a threshold may let through to certify ``share`` (escapes,
    or false rejects on good parts) under ``guarantee``; ``None`` when ``n`` cannot certify it."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise InspectloopError(f"n must be a count of calibration images, got {n!r}", hint="e.g. 260")
    share = _check_share(share, "share", "the rate to certify, e.g. 0.01 for 1 %")
    return _allowed_escapes(int(n), share, _check_confidence(confidence), _check_guarantee(guarantee))


def crossfit_slack(n: int, folds: int) -> float:
    """The finite-sample term of the cross-fitted (CV+) bound: escape probability <= 2 alpha + this.

    ``min(2 (1 - 1/K) / (n/K + 1), (1 - K/n) / (K + 1))`` for ``n`` scores in ``K`` folds (Barber,
    Candes, Ramdas, Tibshirani 2021, Theorem 4).
    """
    if n <= 0 or folds < 2:
        raise InspectloopError(f"a cross-fitted bound needs scores and at least 2 folds, got {n} scores in {folds}",
                               hint="cross-fit with 2 or more folds")
    return min(2.0 * (1.0 - 1.0 / folds) / (n / folds + 1.0), max(0.0, 1.0 - folds / n) / (folds + 1.0))


def _saturation_note(k: int | None, auto_above: float) -> str:
    if k is None or auto_above < _NEVER_ABOVE:
        return ""
    return ("The threshold sits at a probability of 1.0, so nothing is automated: the scores saturate; "
            "fit a temperature on the calibration split first.")


def _escape_verdict(escapes: int, n: int, alpha: float | None, ci: tuple[float, float]) -> tuple[str, str]:
    if n == 0:
        return "undefined", "no defective parts in this set, so the escape rate is undefined"
    rate, (low, high) = escapes / n, ci
    counts = (f"{escapes} escapes among {n} defective parts ({_pct(rate)}); 95% Clopper-Pearson interval "
              f"{_pct(low)} to {_pct(high)}")
    if alpha is None:
        return "not judged", f"{counts}: no escape rate given to judge it against"
    if rate <= alpha:
        return "within alpha", f"{counts}: at or below alpha = {_pct(alpha)}"
    if low <= alpha:
        return "within sampling error", f"{counts}: above alpha = {_pct(alpha)} but within sampling error"
    return "above alpha", f"{counts}: above alpha = {_pct(alpha)} beyond sampling error"


def _pct(value: float) -> str:
    return f"{100.0 * value:.3g}%"


def clopper_pearson(successes: int, n: int, confidence: float = INTERVAL_CONFIDENCE) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval for a proportion ``successes / n``; ``(nan, nan)`` when ``n`` is 0.

    SciPy's ``binomtest(...).proportion_ci(method="exact")``.
    """
    if n < 0 or not 0 <= successes <= n:
        raise InspectloopError(f"cannot compute an interval for {successes} out of {n}",
                               hint="successes must be between 0 and n")
    confidence = _check_confidence(confidence)
    if n == 0:
        return (math.nan, math.nan)
    interval = _stats().binomtest(int(successes), int(n)).proportion_ci(confidence_level=confidence,
                                                                        method="exact")
    return (float(interval.low), float(interval.high))


# --- fitting ------------------------------------------------------------------------------------


def _fit_with_good(p: np.ndarray, y: np.ndarray, g: int, alpha: float, confidence: float, beta: float,
                   kind: str, folds: int | None) -> ReviewBand:
    score, is_good = p[:, g], y == g
    n, m = int((~is_good).sum()), int(is_good.sum())
    k, k_reject = _allowed_escapes(n, alpha, confidence, kind), _allowed_escapes(m, beta, confidence, kind)
    auto_above = _kth_largest(score[~is_good], k) if k is not None else _NEVER_ABOVE
    reject_below = -_kth_largest(-score[is_good], k_reject) if k_reject is not None else _NEVER_BELOW
    needed = min_calibration_size(alpha, confidence, kind)
    images = _population(kind)
    escape = _Escape(n, k, alpha, confidence, needed, kind, f"defective {images}",
                     "of defective parts are auto-passed as good",
                     "Nothing is auto-passed: every part that would have passed goes to review.", folds)
    words = _kind_words(kind, confidence)
    if k_reject is None:
        reject = (f"Good parts are never auto-rejected: {m} good {images} cannot certify a false-reject "
                  f"rate of {_pct(beta)} ({words}; at least {min_calibration_size(beta, confidence, kind)} are "
                  f"needed); parts that look defective go to review.")
    else:
        reject = (f"Likewise ({words}), at most {_pct(beta)} of good parts are auto-rejected "
                  f"({m} good {images}, at most {k_reject} of them below the reject threshold).")
    return ReviewBand(
        good_index=g, num_classes=p.shape[1], alpha=alpha, confidence=confidence, auto_above=auto_above,
        reject_below=reject_below, false_reject_target=beta, calibration_defects=n, calibration_good=m,
        allowed_escapes=k, min_calibration_defects=needed, certifiable=k is not None,
        reject_certified=k_reject is not None,
        guarantee=f"{escape.guarantee()} {reject if k_reject is not None else ''}".strip(),
        note=" ".join(s for s in (escape.shortfall(), reject if k_reject is None else "",
                                  _saturation_note(k, auto_above)) if s),
        guarantee_kind=kind, folds=folds,
    )


def _fit_without_good(p: np.ndarray, y: np.ndarray, alpha: float, confidence: float, kind: str,
                      folds: int | None) -> ReviewBand:
    top = p.argmax(axis=1)
    escape_score = np.where(top != y, p.max(axis=1), -1.0)  # a right answer never escapes
    n = int(y.size)
    k = _allowed_escapes(n, alpha, confidence, kind)
    auto_above = max(0.0, _kth_largest(escape_score, k)) if k is not None else _NEVER_ABOVE
    needed = min_calibration_size(alpha, confidence, kind)
    escape = _Escape(n, k, alpha, confidence, needed, kind, _population(kind),
                     "of parts are auto-assigned a wrong class",
                     "Nothing is decided automatically: every part goes to review.", folds)
    return ReviewBand(
        good_index=None, num_classes=p.shape[1], alpha=alpha, confidence=confidence, auto_above=auto_above,
        reject_below=None, false_reject_target=None, calibration_defects=n, calibration_good=0,
        allowed_escapes=k, min_calibration_defects=needed, certifiable=k is not None, reject_certified=None,
        guarantee=escape.guarantee(),
        note=" ".join(s for s in (escape.shortfall(), _saturation_note(k, auto_above)) if s),
        guarantee_kind=kind, folds=folds,
    )


def _allowed_escapes(n: int, alpha: float, confidence: float, kind: str = "pac") -> int | None:
    """PAC: the largest k with P(Binomial(n, alpha) <= k) <= 1 - confidence. Marginal and cross-fitted:
    the largest k with (k + 1) / (n + 1) <= alpha. ``None`` when even k = 0 fails."""
    if n == 0:
        return None
    if kind != "pac":
        k = math.floor(alpha * (n + 1) + 1e-9) - 1
        return k if k >= 0 else None
    cdf = _stats().binom.cdf(np.arange(n + 1), n, alpha)
    k = int(np.searchsorted(cdf, 1.0 - confidence, side="right")) - 1
    return k if k >= 0 else None


def _kth_largest(values: np.ndarray, k: int) -> float:
    """The (k+1)-th largest value (k = 0 is the maximum)."""
    return float(np.partition(values, values.size - 1 - k)[values.size - 1 - k])


# --- words --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Escape:
    """The numbers behind the escape-side sentences."""

    n: int
    k: int | None
    alpha: float
    confidence: float
    needed: int
    kind: str
    population: str
    what: str
    fallback: str
    folds: int | None = None

    def guarantee(self) -> str:
        if self.k is None:
            return (f"No escape rate is certified: {self.n} {self.population} cannot certify {_pct(self.alpha)} "
                    f"({_kind_words(self.kind, self.confidence)}), so nothing is decided automatically on the "
                    f"escape side.")
        if self.kind == "crossfit":
            return self._crossfit()
        if self.kind == "marginal":
            return (f"On average over calibration draws (marginal split-conformal guarantee, not a bound on this "
                    f"one band), at most {_pct(self.alpha)} {self.what} (the threshold lets {self.k} of the "
                    f"{self.n} {self.population} through), provided production parts are exchangeable with the "
                    f"calibration split.")
        return (f"With {_pct(self.confidence)} confidence over the draw of the {self.n} {self.population}, at most "
                f"{_pct(self.alpha)} {self.what} (the threshold lets at most {self.k} of the {self.n} through), "
                f"provided production parts are exchangeable with the calibration split.")

    def _crossfit(self) -> str:
        folds = self.folds or 2
        bound = 2.0 * self.alpha + crossfit_slack(self.n, folds)
        return (f"Cross-fitted over {folds} folds: the threshold lets {self.k} of the {self.n} {self.population} "
                f"through, each scored by a fold model that never trained on it. Proven for the {folds} fold models "
                f"used together (cross-conformal / CV+ rule): on average over data draws, at most {_pct(bound)} "
                f"{self.what} (2 x alpha plus {_pct(bound - 2.0 * self.alpha)} for {folds} folds: a worst case; "
                f"stable models come close to alpha = {_pct(self.alpha)}; Barber et al. 2021). The deployed model "
                f"is refit on all folds: for it, about {_pct(self.alpha)} holds only as far as it scores new parts "
                f"like the fold models scored their held-out folds (stability). No confidence over one draw "
                f"(PAC) is claimed. Provided production parts are exchangeable with the labelled images.")

    def shortfall(self) -> str:
        if self.k is not None:
            return ""
        return (f"{self.n} {self.population} cannot certify an escape rate of {_pct(self.alpha)} "
                f"({_kind_words(self.kind, self.confidence)}): at least {self.needed} are needed. {self.fallback}")


def _kind_words(kind: str, confidence: float) -> str:
    if kind == "crossfit":
        return "cross-fitted, on average over data draws"
    return "on average over calibration draws" if kind == "marginal" else f"at {_pct(confidence)} confidence"


def _population(kind: str) -> str:
    return "out-of-fold labelled images" if kind == "crossfit" else "calibration images"


# --- numbers and checks -------------------------------------------------------------------------


def _stats():  # noqa: ANN202 - the scipy.stats module
    """SciPy's statistics, imported when a statistic is computed (keeps ``import decisions`` light)."""
    return require("scipy.stats", "app")


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else math.nan


def _check_share(value: float, name: str, hint: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not 0.0 < value <= 0.5:
        raise InspectloopError(f"{name} must lie in (0, 0.5], got {value!r}", hint=hint)
    return float(value)


def _check_thresholds(thresholds: np.ndarray | None, num_classes: int, good_index: int | None) -> np.ndarray | None:
    if thresholds is None:
        return None
    t = np.asarray(thresholds, dtype=np.float64)
    if t.shape != (num_classes,) or np.isnan(t).any() or (t[np.isfinite(t)] < 0).any():
        raise InspectloopError(f"thresholds must be {num_classes} probabilities (inf for none), got {thresholds!r}",
                               hint="build them with inspectloop.runtime.threshold_array(class_names, thresholds)")
    return t


def _check_guarantee(guarantee: str) -> str:
    if guarantee not in GUARANTEES:
        raise InspectloopError(f"unknown guarantee {guarantee!r}",
                               hint="use 'pac' (with a confidence over the calibration draw), 'marginal', or "
                                    "'crossfit' (out-of-fold scores)")
    return guarantee


def _check_folds(folds: int | None, kind: str) -> int | None:
    if kind != "crossfit":
        if folds is not None:
            raise InspectloopError(f"folds={folds!r} given for a {kind} band",
                                   hint="folds belong to guarantee='crossfit' (out-of-fold scores)")
        return None
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 2:
        raise InspectloopError(f"a cross-fitted band needs the number of folds (2 or more), got {folds!r}",
                               hint="pass folds=K, the number of fold models the out-of-fold scores came from")
    return int(folds)


def _check_confidence(confidence: float) -> float:
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float, np.floating)) \
            or not 0.0 < confidence < 1.0:
        raise InspectloopError(f"confidence must lie strictly between 0 and 1, got {confidence!r}",
                               hint="e.g. 0.9 for 90 %")
    return float(confidence)


def _check_band_probs(probs: np.ndarray, band: ReviewBand) -> np.ndarray:
    p = check_probs(probs)
    if p.shape[1] != band.num_classes:
        raise DatasetError(f"the band was fitted on {band.num_classes} classes but got {p.shape[1]} columns",
                           hint="use the band fitted for this model")
    return p


def _check_good_index(good_index: int, num_classes: int) -> int:
    if isinstance(good_index, bool) or not isinstance(good_index, (int, np.integer)) \
            or not 0 <= good_index < num_classes:
        raise DatasetError(f"good_index {good_index!r} is outside the {num_classes} classes (0..{num_classes - 1})",
                           hint="pass the good class's column, or None for a dataset without a good class")
    return int(good_index)
