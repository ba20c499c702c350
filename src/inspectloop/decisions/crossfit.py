"""Cross-fitting: every labelled image both trains and calibrates.

The labelled pool (training images, and the calibration split when there is one) is dealt into K
folds, stratified by class and grouped (a part's or a session's views share a fold). Fold model k
trains on the other folds and scores fold k, so each labelled image gets an *out-of-fold* score from
a model that never saw it. The temperature, the review band (``guarantee="crossfit"``) and the
per-class operating points are fitted on those scores; the model a plant deploys is refit on the
whole pool. See :mod:`inspectloop.decisions.conformal` for what is proven and what is approximate.

:func:`aggregate_decide` is the rule the proof covers: the K fold models used together, a part
passing only when its score under each fold model clears that fold's own out-of-fold scores (CV+,
Barber et al. 2021; cross-conformal, Vovk 2015). :func:`stability` compares it with the deployed
refit on images no model trained on, which is what the refit's approximate guarantee rests on.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from inspectloop.decisions.conformal import ReviewBand, allowed_count, band_policy
from inspectloop.decisions.inputs import check_labels, check_probs
from inspectloop.errors import DatasetError, InspectloopError
from inspectloop.runtime.decision import Decision, Decisions

MIN_FOLDS = 2
MAX_FOLDS = 20


def assign_folds(labels: Sequence[str], groups: Sequence[str], folds: int, seed: int = 0) -> np.ndarray:
    """The fold (0..folds-1) of each image: stratified by class, grouped by ``groups``.

    A group goes whole to one fold (so views of one part or session never straddle folds); groups
    are dealt class by class (a group's class is its majority label), largest first, each to the fold
    holding the fewest images of that class so far. Deterministic for a given ``seed``.
    """
    folds = check_folds(folds)
    if len(labels) != len(groups):
        raise DatasetError(f"{len(labels)} labels but {len(groups)} group keys",
                           hint="pass one label and one group key per image")
    members: dict[str, list[int]] = defaultdict(list)
    for index, key in enumerate(groups):
        members[key].append(index)
    if len(members) < folds:
        raise DatasetError(f"only {len(members)} groups to deal into {folds} folds",
                           hint=f"cross-fit with at most {len(members)} folds, or group by a finer key")
    by_class: dict[str, list[str]] = defaultdict(list)
    for key in sorted(members):
        by_class[Counter(labels[i] for i in members[key]).most_common(1)[0][0]].append(key)
    rng = random.Random(seed)
    fold_of = np.empty(len(labels), dtype=np.int64)
    sizes = [0] * folds
    for _label, keys in sorted(by_class.items()):
        rng.shuffle(keys)
        in_class = [0] * folds
        for key in sorted(keys, key=lambda k: -len(members[k])):  # stable sort keeps the shuffle among equals
            fold = min(range(folds), key=lambda f: (in_class[f], sizes[f], f))
            fold_of[members[key]] = fold
            in_class[fold] += len(members[key])
            sizes[fold] += len(members[key])
    return fold_of


def check_folds(folds: int) -> int:
    """``folds`` as an int in [2, 20], or a typed error."""
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or not MIN_FOLDS <= folds <= MAX_FOLDS:
        raise InspectloopError(f"folds must be a whole number from {MIN_FOLDS} to {MAX_FOLDS}, got {folds!r}",
                               hint="5 is usual; fewer folds cost less training time")
    return int(folds)


@dataclass(frozen=True, eq=False)
class OutOfFold:
    """Out-of-fold probabilities of the labelled pool: row i scored by the model trained without fold ``folds[i]``."""

    probs: np.ndarray
    labels: np.ndarray
    folds: np.ndarray
    num_folds: int

    def __post_init__(self) -> None:
        p = check_probs(self.probs)
        y = check_labels(self.labels, p.shape[0], p.shape[1])
        f = np.asarray(self.folds)
        k = check_folds(self.num_folds)
        if f.shape != y.shape or f.dtype.kind not in "iu" or f.min() < 0 or f.max() >= k:
            raise DatasetError(f"out-of-fold scores need one fold index in 0..{k - 1} per image",
                               hint="pass the folds assign_folds returned, in the order of the probability rows")
        for name, value in (("probs", p), ("labels", y), ("folds", f.astype(np.int64))):
            value.setflags(write=False)
            object.__setattr__(self, name, value)


def aggregate_decide(fold_probs: np.ndarray, oof: OutOfFold, band: ReviewBand) -> Decisions:
    """Pass, reject or review by the K fold models used together (the rule the cross-fitted bound covers).

    ``fold_probs`` has shape (folds, images, classes): every fold model's probabilities for the
    images to decide. With a good class, a part passes when at most ``allowed_escapes`` out-of-fold
    defect scores reach its own P(good) *under the same fold model*, and is rejected (rejection wins)
    when at most the allowed count of good out-of-fold scores lie at or below it. Without one, the
    fold models must agree on the top class and the same count is taken over wrong-answer scores.
    Per-class operating points are not applied here (the band alone). A review's label is the top
    class of the fold models' mean probabilities (the suggestion).
    """
    probs = _check_fold_probs(fold_probs, oof, band)
    num_folds = oof.num_folds
    decisions = np.full(probs.shape[1], Decision.REVIEW.value, dtype=object)
    labels = probs.mean(axis=0).argmax(axis=1).astype(np.int64) if probs.shape[1] else np.zeros(0, np.int64)
    if band.good_index is None:
        top = probs.argmax(axis=2)
        agree = (top == top[0]).all(axis=0)
        score = probs.max(axis=2)  # the agreed class's probability under each fold model
        right = oof.probs.argmax(axis=1) == oof.labels
        escape = np.where(right, -1.0, oof.probs.max(axis=1))
        auto = agree & _at_most(_reaching(escape, oof.folds, score, num_folds), band.allowed_escapes)
        decisions[auto], labels[auto] = Decision.REJECT.value, top[0][auto]
        return Decisions(labels, decisions.astype(str))
    g = band.good_index
    score = probs[:, :, g]
    is_good = oof.labels == g
    passes = _at_most(_reaching(oof.probs[~is_good, g], oof.folds[~is_good], score, num_folds), band.allowed_escapes)
    k_reject = allowed_count(int(is_good.sum()), band.false_reject_target or 0.0, confidence=band.confidence,
                             guarantee=band.guarantee_kind)
    below = _reaching(-oof.probs[is_good, g], oof.folds[is_good], -score, num_folds)
    reject = _at_most(below, k_reject)
    defects = probs.mean(axis=0)
    defects[:, g] = -1.0
    decisions[passes & ~reject], labels[passes & ~reject] = Decision.PASS.value, g
    decisions[reject], labels[reject] = Decision.REJECT.value, defects.argmax(axis=1)[reject]
    return Decisions(labels, decisions.astype(str))


@dataclass(frozen=True)
class Stability:
    """How far the deployed refit decides like the fold models' aggregate, on images no model trained on."""

    images: int
    disagreements: int
    score_gap: float  # mean |deployed score - mean fold-model score| (P(good), or the top-class probability)

    @property
    def disagreement_rate(self) -> float:
        """Share of images the two decide differently (nan without images)."""
        return self.disagreements / self.images if self.images else float("nan")

    def to_dict(self) -> dict[str, object]:
        """JSON-safe form."""
        return {"images": self.images, "disagreements": self.disagreements,
                "disagreement_rate": self.disagreement_rate if self.images else None, "score_gap": self.score_gap}


def stability(deployed_probs: np.ndarray, fold_probs: np.ndarray, oof: OutOfFold, band: ReviewBand) -> Stability:
    """Compare the deployed model (``deployed_probs``, images x classes) with the fold models' aggregate
    (``fold_probs``, folds x images x classes) on the same held-out images (the validation split)."""
    folds = _check_fold_probs(fold_probs, oof, band)
    deployed = check_probs(deployed_probs)
    if deployed.shape != folds.shape[1:]:
        raise DatasetError(f"deployed probabilities have shape {deployed.shape}, fold models' {folds.shape[1:]}",
                           hint="score the same images with the deployed model and every fold model")
    mine, theirs = band_policy(band).decide(deployed), aggregate_decide(folds, oof, band)
    automatic = mine.decisions != Decision.REVIEW  # a review's label is only a suggestion
    differ = (mine.decisions != theirs.decisions) | (automatic & (mine.labels != theirs.labels))
    if band.good_index is not None:
        gap = np.abs(deployed[:, band.good_index] - folds[:, :, band.good_index].mean(axis=0))
    else:
        gap = np.abs(deployed.max(axis=1) - folds.max(axis=2).mean(axis=0))
    return Stability(int(deployed.shape[0]), int(differ.sum()), float(gap.mean()))


def _reaching(calibration: np.ndarray, calibration_folds: np.ndarray, score: np.ndarray, num_folds: int) -> np.ndarray:
    """For each new image, how many calibration scores are >= its score under the calibration score's fold model."""
    total = np.zeros(score.shape[1], dtype=np.int64)
    for fold in range(num_folds):
        ordered = np.sort(calibration[calibration_folds == fold])
        total += ordered.size - np.searchsorted(ordered, score[fold], side="left")
    return total


def _at_most(counts: np.ndarray, allowed: int | None) -> np.ndarray:
    return counts <= allowed if allowed is not None else np.zeros(counts.shape, dtype=bool)


def _check_fold_probs(fold_probs: np.ndarray, oof: OutOfFold, band: ReviewBand) -> np.ndarray:
    probs = np.asarray(fold_probs)
    hint = "stack every fold model's probabilities for the same images: shape (folds, images, classes)"
    if probs.ndim != 3 or probs.shape[0] != oof.num_folds or probs.shape[2] != band.num_classes:
        raise DatasetError(f"expected fold probabilities of shape ({oof.num_folds}, images, {band.num_classes}), "
                           f"got {probs.shape}", hint=hint)
    if band.guarantee_kind != "crossfit" or band.folds != oof.num_folds:
        raise InspectloopError("the band was not fitted on these out-of-fold scores",
                               hint="fit it with guarantee='crossfit' and folds=oof.num_folds")
    return np.stack([check_probs(p) for p in probs]) if probs.shape[1] else probs.astype(np.float64)
