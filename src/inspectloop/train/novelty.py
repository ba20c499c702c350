"""The novelty guard of a classifier: how far an image lies from everything the classifier trained on.

A classifier only knows the classes it was shown; a new defect type gets whichever known class it looks
least unlike, often the good one. The guard keeps a bank of the training images' embeddings (reduced by
greedy k-center coreset when large, so a rare good variant keeps a representative) and scores an image
by the mean distance of its embedding to the ``k`` nearest bank rows, on unit-length embeddings. The
threshold is set on held-out images of known classes (images not in the bank) at a stated review rate:
with ``n`` held-out scores it is the ceil((n + 1)(1 - rate))-th smallest, so a new image of a known
class exceeds it with probability at most ``rate`` (split-conformal, exchangeable images). The runtime
sends a part the classifier would pass to review when its score is above the threshold
(:class:`~inspectloop.runtime.decision.DecisionPolicy`); the exported graph computes the score itself
(:mod:`inspectloop.models.novelty`).

Pure numpy fitting and measuring: embeddings in, a :class:`NoveltyGuard` out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_RATE = 0.01  # the guard's review rate on known classes: ~1% more reviews
DEFAULT_K = 1
MAX_BANK = 4096  # bank rows: bounds the model file (4096 x 1280 float32 = 21 MB) and the per-image cost
_BLOCK = 512  # query rows per distance block


@dataclass(frozen=True, eq=False)
class NoveltyGuard:
    """A fitted guard: the bank (M, D) of unit-length training embeddings, ``k``, and the threshold set at
    ``rate`` on ``held_out`` scores (their ``source`` named). ``certified`` is False when there were too
    few held-out images for the rate (then the threshold is their largest score and the rate is not
    guaranteed)."""

    bank: np.ndarray
    k: int
    threshold: float
    rate: float
    held_out: np.ndarray
    source: str
    training_images: int

    @property
    def certified(self) -> bool:
        """Enough held-out images for the threshold to guarantee ``rate`` (at least 1/rate - 1)."""
        return conformal_rank(len(self.held_out), self.rate) <= len(self.held_out)

    @property
    def metadata(self) -> dict[str, Any]:
        """The model file's ``novelty`` field."""
        return {"threshold": self.threshold, "rate": self.rate, "k": self.k, "bank_size": int(self.bank.shape[0]),
                "held_out_images": int(len(self.held_out))}

    def scores(self, embeddings: np.ndarray) -> np.ndarray:
        """The novelty score (N,) of each embedding row (as the exported graph computes it)."""
        return novelty_scores(self.bank, embeddings, self.k)


def unit_rows(embeddings: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32); an all-zero row stays zero."""
    x = np.asarray(embeddings, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def novelty_scores(bank: np.ndarray, embeddings: np.ndarray, k: int = DEFAULT_K) -> np.ndarray:
    """Mean Euclidean distance of each unit-length embedding row to its ``k`` nearest ``bank`` rows.

    The bank rows must be unit length already (as :func:`fit_novelty` keeps them). Computed in blocks
    of queries, so the full (queries x bank) matrix is never held.
    """
    queries = unit_rows(embeddings)
    out = np.empty(len(queries), dtype=np.float32)
    k = min(k, len(bank))
    for start in range(0, len(queries), _BLOCK):
        block = queries[start:start + _BLOCK]
        squared = np.maximum(2.0 - 2.0 * (block @ bank.T), 0.0)  # |q - b|^2 for unit rows
        nearest = np.partition(squared, k - 1, axis=1)[:, :k]
        out[start:start + _BLOCK] = np.sqrt(nearest).mean(axis=1)
    return out


def conformal_rank(n: int, rate: float) -> int:
    """The rank (1-based) of the held-out score that bounds a new score's exceedance by ``rate``."""
    return math.ceil((n + 1) * (1.0 - rate))


def fit_novelty(train_embeddings: np.ndarray, held_out_embeddings: np.ndarray, *, rate: float = DEFAULT_RATE,
                k: int = DEFAULT_K, max_bank: int = MAX_BANK, source: str = "validation split",
                seed: int = 0) -> NoveltyGuard:
    """Bank the training embeddings (coreset-reduced above ``max_bank`` rows) and set the threshold at
    ``rate`` on the held-out embeddings (images of known classes that are not in the bank)."""
    if not 0.0 < rate < 1.0:
        raise ValueError(f"rate must be between 0 and 1, got {rate!r}")
    if type(k) is not int or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    bank = unit_rows(train_embeddings)
    if len(bank) == 0:
        raise ValueError("the novelty guard needs training embeddings, got none")
    if len(bank) > max_bank:
        from inspectloop.anomaly.coreset import greedy_coreset  # torch: only when a bank must shrink

        bank = bank[np.sort(greedy_coreset(bank, max_bank, seed=seed))]
    held = novelty_scores(bank, held_out_embeddings, k) if len(held_out_embeddings) else np.zeros(0, np.float32)
    return NoveltyGuard(np.ascontiguousarray(bank), k, conformal_threshold(held, rate), rate, held, source,
                        len(train_embeddings))


def conformal_threshold(held: np.ndarray, rate: float) -> float:
    """The conformal quantile of the held-out scores; their largest when there are too few; with none,
    the largest distance two unit vectors can have (the guard then never fires)."""
    if len(held) == 0:
        return 2.0
    ordered = np.sort(held.astype(np.float64))
    rank = min(conformal_rank(len(ordered), rate), len(ordered))
    return float(ordered[rank - 1])


@dataclass(frozen=True)
class NoveltyMeasure:
    """What the guard did on the frozen test set: the share of test images over the threshold, and the share
    it sent to review (parts the classifier alone would have passed), overall and per class."""

    rate: float
    threshold: float
    over_threshold: float
    sent_to_review: float
    per_class_sent_to_review: dict[str, float]
    images: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form, for the run's metrics and the model card."""
        return {"rate": self.rate, "threshold": round(self.threshold, 6), "over_threshold": self.over_threshold,
                "sent_to_review": self.sent_to_review, "per_class_sent_to_review": self.per_class_sent_to_review,
                "images": self.images}


def measure_novelty(guard: NoveltyGuard, test_scores: np.ndarray, passed_without_guard: np.ndarray,
                    labels: np.ndarray, class_names: tuple[str, ...] | list[str]) -> NoveltyMeasure:
    """The guard on the test set: ``test_scores`` (N,), which images the classifier alone passed, their labels."""
    over = np.asarray(test_scores) > guard.threshold
    sent = over & np.asarray(passed_without_guard, dtype=bool)
    per_class = {name: float(sent[labels == i].mean()) for i, name in enumerate(class_names) if (labels == i).any()}
    return NoveltyMeasure(guard.rate, guard.threshold, float(over.mean()) if len(over) else 0.0,
                          float(sent.mean()) if len(sent) else 0.0, per_class, int(len(over)))
