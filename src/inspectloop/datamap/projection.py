"""Features to a 2-D map (pure: arrays in, arrays out), with scikit-learn.

``tsne``: PCA to at most 50 dimensions (removes noise and makes t-SNE's neighbour search cheap), then
Barnes-Hut t-SNE; neighbourhoods survive, so clusters of one class, mislabelled images inside another
class's cluster and near-duplicates show. ``pca``: the two leading principal components, in seconds
but clusters overlap more. Measured (``benchmarks/browser.py``): on 300 NEU-DET images through the frozen
backbone, 96% of each image's 10 nearest neighbours on the t-SNE map share its class (94% in the
features themselves), 60% on the PCA map; 10,000 points take 212 s with t-SNE, 6 s with PCA, on the
shared 2-core machine. umap-learn is not used: it is not installed and pulls in numba and pynndescent,
while scikit-learn is already a dependency; the map is computed once per dataset version.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from inspectloop.errors import BrowseError, require

Method = Literal["tsne", "pca"]
METHODS: tuple[Method, ...] = ("tsne", "pca")
PCA_DIMS = 50
TSNE_ITERATIONS = 500  # 250 of early exaggeration + 250 more: the layout has settled by then on our data
_TSNE_MIN_POINTS = 5  # below this t-SNE's perplexity is meaningless: PCA instead


def check_method(method: str) -> Method:
    """``method`` when it names a projection; BrowseError naming the known ones otherwise."""
    if method not in METHODS:
        raise BrowseError(f"unknown map method {method!r}", f"use one of: {', '.join(METHODS)}")
    return method  # type: ignore[return-value]


def project(features: np.ndarray, method: Method = "tsne", *, seed: int = 0) -> np.ndarray:
    """(N, 2) float32 map coordinates of (N, D) features, scaled into [0, 1] (aspect kept, centred)."""
    check_method(method)
    x = np.asarray(features, dtype=np.float32)
    if x.ndim != 2 or len(x) == 0:
        raise BrowseError(f"expected features of shape (N, D) with N >= 1, got {x.shape}",
                          "map a dataset version that has images")
    if len(x) == 1:
        return np.full((1, 2), 0.5, dtype=np.float32)
    require("sklearn", "train")
    from sklearn.decomposition import PCA

    dims = min(PCA_DIMS if method == "tsne" else 2, len(x) - 1, x.shape[1])
    reduced = PCA(n_components=dims, random_state=seed).fit_transform(x) if dims >= 1 else np.zeros((len(x), 1))
    if method == "tsne" and len(x) >= _TSNE_MIN_POINTS:
        from sklearn.manifold import TSNE

        perplexity = float(min(30.0, (len(x) - 1) / 3))
        reduced = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed,
                       max_iter=TSNE_ITERATIONS).fit_transform(reduced)
    return unit_square(reduced)


def unit_square(points: np.ndarray) -> np.ndarray:
    """Points (N, 1 or 2) as (N, 2) float32 inside [0, 1], one scale for both axes, centred."""
    xy = np.zeros((len(points), 2), dtype=np.float64)
    xy[:, :min(2, points.shape[1])] = points[:, :2]
    low, high = xy.min(axis=0), xy.max(axis=0)
    span = float((high - low).max())
    if span <= 0:
        return np.full((len(xy), 2), 0.5, dtype=np.float32)
    return ((xy - (low + high) / 2) / span + 0.5).astype(np.float32)
