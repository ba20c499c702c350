"""Input checks shared by the ``decisions`` modules: logits, probabilities and labels.

Each returns a clean float64 / int64 copy or raises a typed error naming the problem and the fix.
"""

from __future__ import annotations

import numpy as np

from inspectloop.errors import DatasetError

SUM_TOLERANCE = 1e-3
VALUE_TOLERANCE = 1e-6


def check_matrix(values: np.ndarray, what: str, hint: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] < 2:
        raise DatasetError(f"{what} must be a (images, classes) array with at least 1 image and 2 classes, "
                           f"got shape {array.shape}", hint=hint)
    if array.dtype.kind not in "fiu":
        raise DatasetError(f"{what} must be numbers, got values of type {array.dtype}", hint=hint)
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise DatasetError(f"{what} holds NaN or infinite values", hint=hint)
    return array


def check_logits(logits: np.ndarray) -> np.ndarray:
    return check_matrix(logits, "logits", "pass the model's raw outputs (before softmax), one row per image")


def check_probs(probs: np.ndarray) -> np.ndarray:
    """Float64 copy of ``probs`` clipped to [0, 1]; rows must sum to 1 within ``SUM_TOLERANCE``."""
    hint = "pass softmax probabilities, one row per image (use softmax(logits, temperature))"
    p = check_matrix(probs, "probabilities", hint)
    if p.min() < -VALUE_TOLERANCE or p.max() > 1.0 + VALUE_TOLERANCE:
        raise DatasetError(f"probabilities must lie in [0, 1], got values from {p.min():.4g} to {p.max():.4g}",
                           hint=hint)
    sums = p.sum(axis=1)
    worst = int(np.argmax(np.abs(sums - 1.0)))
    if abs(sums[worst] - 1.0) > SUM_TOLERANCE:
        raise DatasetError(f"probabilities of image {worst} sum to {sums[worst]:.6g}, not 1", hint=hint)
    return np.clip(p, 0.0, 1.0)


def check_labels(labels: np.ndarray, count: int, num_classes: int) -> np.ndarray:
    y = np.asarray(labels)
    hint = "pass one class index per image, in the same order as the probability rows"
    if y.ndim != 1 or y.shape[0] != count:
        raise DatasetError(f"expected {count} labels (one per image), got an array of shape {y.shape}", hint=hint)
    if y.dtype.kind not in "iu":
        raise DatasetError(f"labels must be integer class indices, got values of type {y.dtype}", hint=hint)
    bad = y[(y < 0) | (y >= num_classes)]
    if bad.size:
        raise DatasetError(f"label {int(bad[0])} is outside the {num_classes} classes (0..{num_classes - 1})",
                           hint="the probability columns must cover every class, in index order")
    return y.astype(np.int64)
