"""Image quality statistics computed at ingest; the baseline that drift monitoring compares against."""

from __future__ import annotations

import numpy as np
from PIL import Image

from inspectloop.domain import QualityStats

_MAX_SIDE = 512  # statistics on a bounded view keep ingest fast on large frames


def quality_stats(image: Image.Image) -> QualityStats:
    """Brightness, contrast, sharpness, noise and clipping of an 8-bit image.

    - brightness: mean grey level (0-255); contrast: its standard deviation.
    - sharpness: variance of the 4-neighbour Laplacian (focus measure; falls with blur).
    - noise: Immerkaer's fast estimate of Gaussian noise sigma (grey levels).
    - clipped_fraction: share of pixels at 0 or 255 (over/under exposure).
    """
    return view_stats(statistics_view(image))


def statistics_view(image: Image.Image) -> np.ndarray:
    """The bounded 8-bit grey plane the statistics are measured on (at most 512 px a side), as its own copy.

    The service queues this view, not the frame, for its statistics thread: a backlog of 36 MP frames
    would hold gigabytes, the views a quarter of a megabyte each.
    """
    # Subsample the 8-bit plane before widening to float: the same numbers, without a full-frame float copy.
    return np.ascontiguousarray(_bounded(np.asarray(image if image.mode == "L" else image.convert("L"))))


def view_stats(view: np.ndarray) -> QualityStats:
    """``quality_stats`` of a view made by ``statistics_view``."""
    grey = view.astype(np.float32)
    return QualityStats(
        brightness=float(grey.mean()),
        contrast=float(grey.std()),
        sharpness=float(_laplacian(grey).var()),
        noise=_immerkaer_noise(grey),
        clipped_fraction=float(np.mean((grey <= 0) | (grey >= 255))),
    )


def _bounded(grey: np.ndarray) -> np.ndarray:
    step = max(1, int(np.ceil(max(grey.shape) / _MAX_SIDE)))
    return grey[::step, ::step] if step > 1 else grey


def _laplacian(grey: np.ndarray) -> np.ndarray:
    return (grey[1:-1, :-2] + grey[1:-1, 2:] + grey[:-2, 1:-1] + grey[2:, 1:-1] - 4 * grey[1:-1, 1:-1])


def _immerkaer_noise(grey: np.ndarray) -> float:
    """J. Immerkaer, 'Fast Noise Variance Estimation', CVIU 64(2), 1996."""
    g = grey
    conv = (g[:-2, :-2] - 2 * g[:-2, 1:-1] + g[:-2, 2:]
            - 2 * g[1:-1, :-2] + 4 * g[1:-1, 1:-1] - 2 * g[1:-1, 2:]
            + g[2:, :-2] - 2 * g[2:, 1:-1] + g[2:, 2:])
    height, width = grey.shape
    sigma = np.sum(np.abs(conv)) * np.sqrt(0.5 * np.pi) / (6.0 * (width - 2) * (height - 2))
    return float(sigma)
