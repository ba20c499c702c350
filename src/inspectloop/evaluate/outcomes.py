"""Per-image outcomes of an evaluation, and the hardest images among them.

Every evaluated image keeps its own record (as FiftyOne keeps per-sample TP/FP/FN outcomes): its
SHA-256, true and predicted class and, when the model's class probabilities are known, the probability
of each and the margin (the true class's probability minus the highest other class's: negative for a
mistake, small and positive for a close call). The records are persisted with the evaluation, so a
report written later (the model card) can show the images, and the review queue or drift history can
query them.

"Hardest" ranks images by how wrong they are: mistakes first, the most confident mistake first, then
the correct images with the smallest margin (borderline).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inspectloop.errors import DatasetError

HARDEST_SHOWN = 24
DIGITS = 6  # probabilities in JSON: 6 decimals tell every image apart and keep the file small


@dataclass(frozen=True)
class ImageOutcome:
    """One evaluated image. Probabilities are None when the evaluation had only the predicted classes.

    ``score`` is the probability of the predicted class, ``true_score`` that of the true class and
    ``margin`` the true class's probability minus the highest other class's. ``meta`` holds the capture
    metadata that is set (camera, shift, ...).
    """

    sha256: str
    true: str
    predicted: str
    score: float | None = None
    true_score: float | None = None
    margin: float | None = None
    meta: Mapping[str, str] = field(default_factory=dict)

    @property
    def correct(self) -> bool:
        return self.true == self.predicted

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {"sha256": self.sha256, "true": self.true, "predicted": self.predicted, "correct": self.correct,
                "score": self.score, "true_score": self.true_score, "margin": self.margin, "meta": dict(self.meta)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ImageOutcome:
        """The outcome :meth:`to_dict` wrote."""
        return cls(str(data["sha256"]), str(data["true"]), str(data["predicted"]), data.get("score"),
                   data.get("true_score"), data.get("margin"), dict(data.get("meta") or {}))


def image_outcomes(sha256s: Sequence[str], y_true: Sequence[int], y_pred: Sequence[int],
                   class_names: Sequence[str], *, scores: np.ndarray | None = None,
                   metadata: Sequence[Mapping[str, str | None]] | None = None) -> tuple[ImageOutcome, ...]:
    """One outcome per image, in input order.

    ``y_true`` and ``y_pred`` are class indices into ``class_names``; ``scores`` (optional) holds one row
    of class probabilities per image; ``metadata`` (optional) one mapping of capture fields per image.
    Raises :class:`~inspectloop.errors.DatasetError` when the lengths or shapes disagree.
    """
    n, k = len(sha256s), len(class_names)
    lengths = {"labels": len(y_true), "predictions": len(y_pred)}
    if metadata is not None:
        lengths["metadata entries"] = len(metadata)
    if scores is not None:
        scores = np.asarray(scores, dtype=np.float64)
        if scores.ndim != 2 or scores.shape[1] != k:
            raise DatasetError(f"scores must be one row of {k} class probabilities per image, got shape {scores.shape}",
                               "pass the model's probabilities (softmax of the logits), classes in class_names order")
        lengths["score rows"] = scores.shape[0]
    wrong = {what: count for what, count in lengths.items() if count != n}
    if wrong:
        raise DatasetError(f"{n} images but {', '.join(f'{c} {w}' for w, c in wrong.items())}",
                           "pass exactly one label, prediction, score row and metadata entry per image, in order")
    return tuple(
        _outcome(sha256s[i], int(y_true[i]), int(y_pred[i]), class_names,
                 None if scores is None else scores[i], {} if metadata is None else metadata[i])
        for i in range(n)
    )


def _outcome(sha256: str, true: int, predicted: int, names: Sequence[str], row: np.ndarray | None,
             meta: Mapping[str, str | None]) -> ImageOutcome:
    kept = {str(key): str(value) for key, value in meta.items() if value is not None and str(value).strip()}
    if row is None:
        return ImageOutcome(sha256, names[true], names[predicted], meta=kept)
    others = np.delete(row, true)
    margin = float(row[true] - others.max()) if others.size else 1.0
    return ImageOutcome(sha256, names[true], names[predicted], round(float(row[predicted]), DIGITS),
                        round(float(row[true]), DIGITS), round(margin, DIGITS), kept)


def hardest(outcomes: Sequence[ImageOutcome], limit: int = HARDEST_SHOWN) -> tuple[ImageOutcome, ...]:
    """Up to ``limit`` images, most wrong first: mistakes by descending confidence in the wrong class,
    then correct images by ascending margin. Without probabilities only the mistakes are ranked (in
    input order): a correct image without a margin is not known to be borderline."""
    wrong = [o for o in outcomes if not o.correct]
    wrong.sort(key=lambda o: -(o.score if o.score is not None else 0.0))
    close = [o for o in outcomes if o.correct and o.margin is not None]
    close.sort(key=lambda o: o.margin if o.margin is not None else 0.0)
    return tuple((wrong + close)[:max(0, limit)])
