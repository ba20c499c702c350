"""The one decision rule: pass, reject as a class, or send to review, from image-level class scores.

Every model, whatever its task, ends in per-class scores for the whole image; this module turns
them into the plant's three outcomes. The runtime decides each image with it, and
:mod:`inspectloop.decisions` counts escapes, false rejects and reviews with the same rule, so what is
measured is what the edge does. Numpy only.

**The rule** (``C`` classes, ``top`` the most likely class of an image):

- *No review band* (``auto_above`` is None): with a good class, a part on which a defect class
  reaches its operating point (``thresholds``) is rejected as its most likely flagged class; else it
  is passed when ``top`` is the good class and rejected as ``top`` otherwise. Without a good class,
  every part is rejected as ``top`` (the operating points do not apply).
- *With a band and a good class*: reject as the most likely defect class when
  P(good) < ``reject_below`` (rejection wins); pass when P(good) > ``auto_above`` and no defect class
  is flagged; review otherwise.
- *With a band, without a good class*: reject as ``top`` when its probability is > ``auto_above`` and
  no other class is flagged; review otherwise.

*Novelty guard* (``novelty_threshold`` set, and the image's novelty score given): a part the rule above
would pass whose novelty score is above the threshold (it lies far from every training image: perhaps a
defect the model was never shown) goes to review instead. The guard never changes a reject or a review.

A review keeps ``top`` as the model's suggestion. Operating points only ever turn a pass or an
automatic assignment into a review (with a band) or a reject (without one), never the reverse, so
the band's certified escape and false-reject rates still hold (see :mod:`inspectloop.decisions.conformal`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from inspectloop.runtime.metadata import ModelMetadata


class Decision(StrEnum):
    """What happens to a part: passed, rejected (as a class), or sent to a human."""

    PASS = "pass"
    REJECT = "reject"
    REVIEW = "review"


DECISION_DTYPE = np.dtype("<U6")  # arrays of decisions hold the enum's string values
_VALUES = tuple(d.value for d in Decision)


@dataclass(frozen=True, eq=False)
class Decisions:
    """One decision per image: ``labels`` (N,) class indices and ``decisions`` (N,) :class:`Decision` values.

    A label is the class decided (the good class for a pass, the class rejected as) or, for a
    review, the model's suggestion. ``decisions == Decision.PASS`` is a boolean mask.
    """

    labels: np.ndarray
    decisions: np.ndarray

    def __post_init__(self) -> None:
        labels, decisions = np.asarray(self.labels), np.asarray(self.decisions)
        if labels.ndim != 1 or decisions.shape != labels.shape:
            raise ValueError(f"labels and decisions must be flat and of one length, got shapes {labels.shape} "
                             f"and {decisions.shape}")
        if labels.size and labels.dtype.kind not in "iu":
            raise ValueError(f"labels must be integer class indices, got values of type {labels.dtype}")
        decisions = decisions.astype(DECISION_DTYPE) if decisions.size else np.empty(0, DECISION_DTYPE)
        unknown = sorted(set(np.unique(decisions).tolist()) - set(_VALUES))
        if unknown:
            raise ValueError(f"unknown decisions {unknown}; decisions are {', '.join(_VALUES)}")
        object.__setattr__(self, "labels", labels.astype(np.int64))
        object.__setattr__(self, "decisions", decisions)

    @classmethod
    def _made(cls, labels: np.ndarray, decisions: np.ndarray) -> Decisions:
        """Arrays the rule made (int64 labels, DECISION_DTYPE values): not checked again, the per-image path."""
        made = object.__new__(cls)
        object.__setattr__(made, "labels", labels)
        object.__setattr__(made, "decisions", decisions)
        return made

    def __len__(self) -> int:
        return int(self.labels.size)

    def __getitem__(self, index: int) -> tuple[int, Decision]:
        """The label and decision of image ``index``."""
        return int(self.labels[index]), Decision(str(self.decisions[index]))

    def counts(self) -> dict[Decision, int]:
        """How many images got each decision (every decision named, zeros included)."""
        return {d: int((self.decisions == d).sum()) for d in Decision}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: decisions and labels per image, and the counts."""
        return {"decisions": self.decisions.tolist(), "labels": self.labels.tolist(),
                "counts": {d.value: n for d, n in self.counts().items()}}


@dataclass(frozen=True, eq=False)
class DecisionPolicy:
    """The decision settings of one model: what :meth:`decide` needs besides the scores.

    ``good_index`` is the good class's column (None when no class means "pass"); ``thresholds`` the
    per-class operating points, ``(C,)`` with ``inf`` for a class without one (None: none at all);
    ``auto_above`` and ``reject_below`` the review band (``auto_above`` None: no band, so nothing
    goes to review; ``reject_below`` None: the band rejects nothing). ``novelty_threshold`` is the
    novelty guard's (None: no guard): a pass whose novelty score is above it becomes a review.
    See the module docstring.
    """

    num_classes: int
    good_index: int | None = None
    thresholds: np.ndarray | None = None
    auto_above: float | None = None
    reject_below: float | None = None
    novelty_threshold: float | None = None

    def __post_init__(self) -> None:
        if type(self.num_classes) is not int or self.num_classes < 2:
            raise ValueError(f"num_classes must be an integer of at least 2, got {self.num_classes!r}")
        good = self.good_index
        if good is not None and (isinstance(good, bool) or not isinstance(good, (int, np.integer))
                                 or not 0 <= good < self.num_classes):
            raise ValueError(f"good_index must be None or a class index from 0 to {self.num_classes - 1}, got {good!r}")
        object.__setattr__(self, "good_index", None if good is None else int(good))
        object.__setattr__(self, "thresholds", _threshold_vector(self.thresholds, self.num_classes))
        for name in ("auto_above", "reject_below"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float, np.floating))
                                      or not 0.0 <= value <= 1.0):
                raise ValueError(f"{name} must be None or a probability from 0 to 1, got {value!r}")
        if self.reject_below is not None and (self.auto_above is None or good is None):
            raise ValueError("reject_below needs a review band (auto_above) and a good class")
        novelty = self.novelty_threshold
        if novelty is not None and (isinstance(novelty, bool) or not isinstance(novelty, (int, float, np.floating))
                                    or not math.isfinite(novelty) or novelty < 0):
            raise ValueError(f"novelty_threshold must be None or a finite non-negative number, got {novelty!r}")

    @classmethod
    def from_metadata(cls, metadata: ModelMetadata) -> DecisionPolicy:
        """The policy a model file carries: its good class, operating points, review band and novelty guard
        (files written before the guard existed have none)."""
        names = metadata.class_names
        review = metadata.review
        novelty = metadata.novelty
        return cls(num_classes=len(names),
                   good_index=names.index(metadata.good_class) if metadata.good_class is not None else None,
                   thresholds=threshold_array(names, metadata.thresholds),
                   auto_above=None if review is None else review["auto_above"],
                   reject_below=None if review is None or metadata.good_class is None else review["reject_below"],
                   novelty_threshold=None if novelty is None else novelty["threshold"])

    def decide(self, probabilities: np.ndarray, novelty: np.ndarray | None = None) -> Decisions:
        """The label and decision of each row of ``probabilities`` (N, C), with each image's novelty score
        (N,) when the model gives one; see the module docstring."""
        p = np.asarray(probabilities)
        if p.ndim != 2 or p.shape[1] != self.num_classes:
            raise ValueError(f"expected probabilities of shape (N, {self.num_classes}), got {p.shape}")
        top = p.argmax(axis=1).astype(np.int64, copy=False)
        flagged = p >= self.thresholds if self.thresholds is not None else None
        if self.good_index is None:
            decided = self._decide_without_good(p, top, flagged)
        else:
            if flagged is not None:
                flagged[:, self.good_index] = False
            decided = (self._decide_without_band(p, top, flagged) if self.auto_above is None
                       else self._decide_with_band(p, top, flagged))
        return self._guard(decided, novelty)

    def decide_one(self, probabilities: np.ndarray, novelty: float | None = None) -> tuple[int, Decision]:
        """The label (class index) and decision for one image's probabilities (C,) and novelty score."""
        scores = None if novelty is None else np.array([novelty], dtype=np.float64)
        return self.decide(np.asarray(probabilities).reshape(1, -1), scores)[0]

    def _guard(self, decided: Decisions, novelty: np.ndarray | None) -> Decisions:
        """Passes whose novelty score is above the guard's threshold go to review (the label stays)."""
        if self.novelty_threshold is None or novelty is None:
            return decided
        scores = np.asarray(novelty, dtype=np.float64).reshape(-1)
        if scores.shape != decided.labels.shape:
            raise ValueError(f"expected one novelty score per image ({decided.labels.size}), got shape {scores.shape}")
        novel = (decided.decisions == Decision.PASS.value) & ~(scores <= self.novelty_threshold)  # NaN: not trusted
        if novel.any():
            decided.decisions[novel] = Decision.REVIEW.value
        return decided

    def _decide_without_good(self, p: np.ndarray, top: np.ndarray, flagged: np.ndarray | None) -> Decisions:
        decisions = np.full(top.shape, Decision.REJECT.value, dtype=DECISION_DTYPE)
        if self.auto_above is None:  # no band: every part is assigned its top class
            return Decisions._made(top, decisions)
        auto = p[np.arange(p.shape[0]), top] > self.auto_above
        if flagged is not None:  # another class flagged: the assignment is not automatic
            flagged[np.arange(p.shape[0]), top] = False
            auto &= ~flagged.any(axis=1)
        decisions[~auto] = Decision.REVIEW.value
        return Decisions._made(top, decisions)

    def _decide_without_band(self, p: np.ndarray, top: np.ndarray, flagged: np.ndarray | None) -> Decisions:
        good = self.good_index
        decisions = np.where(top == good, Decision.PASS.value, Decision.REJECT.value).astype(DECISION_DTYPE)
        labels = top.copy()
        if flagged is not None:  # the operating points decide: reject as the most likely flagged class
            by_flag = flagged.any(axis=1)
            labels[by_flag] = np.where(flagged, p, -1.0)[by_flag].argmax(axis=1)
            decisions[by_flag] = Decision.REJECT.value
        return Decisions._made(labels, decisions)

    def _decide_with_band(self, p: np.ndarray, top: np.ndarray, flagged: np.ndarray | None) -> Decisions:
        good = self.good_index
        score = p[:, good]
        reject = score < self.reject_below if self.reject_below is not None else np.zeros(score.shape, dtype=bool)
        passed = ~reject & (score > self.auto_above)
        if flagged is not None:  # a flagged defect is never passed: its recall target outranks automation
            passed &= ~flagged.any(axis=1)
        decisions = np.full(top.shape, Decision.REVIEW.value, dtype=DECISION_DTYPE)
        labels = top.copy()
        decisions[passed], labels[passed] = Decision.PASS.value, good
        if reject.any():
            defects = p.copy()
            defects[:, good] = -1.0
            decisions[reject], labels[reject] = Decision.REJECT.value, defects[reject].argmax(axis=1)
        return Decisions._made(labels, decisions)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Class probabilities (float64) from logits (N, C): softmax(logits / temperature), as every backend decides."""
    scaled = logits.astype(np.float64) / temperature
    scaled -= scaled.max(axis=-1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=-1, keepdims=True)


def threshold_array(class_names: Sequence[str], thresholds: Mapping[str, float] | None) -> np.ndarray | None:
    """Per-class operating points by name as the (C,) array a policy takes (``inf`` where a class has none)."""
    if not thresholds:
        return None
    return np.array([float(thresholds.get(name, math.inf)) for name in class_names])


def _threshold_vector(thresholds: np.ndarray | None, num_classes: int) -> np.ndarray | None:
    if thresholds is None:
        return None
    t = np.array(thresholds, dtype=np.float64)  # a copy: the policy is frozen
    if t.shape != (num_classes,) or np.isnan(t).any() or (t < 0).any():
        raise ValueError(f"thresholds must be {num_classes} probabilities (inf for none), got {thresholds!r}")
    t.setflags(write=False)
    return t
