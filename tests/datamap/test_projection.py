"""Features to a 2-D map: shapes, the unit square, clusters kept apart, bad input refused."""

from __future__ import annotations

import numpy as np
import pytest

from inspectloop.datamap.projection import project, unit_square
from inspectloop.errors import BrowseError


@pytest.mark.parametrize("n", [1, 2, 4, 5, 40])
@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_any_number_of_points_lands_in_the_unit_square(n: int, method: str) -> None:
    features = np.random.default_rng(n).normal(size=(n, 8))
    xy = project(features, method)  # type: ignore[arg-type]
    assert xy.shape == (n, 2) and xy.dtype == np.float32
    assert np.all((xy >= 0) & (xy <= 1))


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_two_clusters_stay_apart(method: str) -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 30)
    features = rng.normal(size=(60, 64)) + labels[:, None] * 8.0
    xy = project(features, method)  # type: ignore[arg-type]
    centres = [xy[labels == k].mean(axis=0) for k in (0, 1)]
    spread = max(np.linalg.norm(xy[labels == k] - centres[k], axis=1).mean() for k in (0, 1))
    assert np.linalg.norm(centres[0] - centres[1]) > 2 * spread


def test_the_same_seed_gives_the_same_map() -> None:
    features = np.random.default_rng(1).normal(size=(30, 16))
    assert np.array_equal(project(features, "tsne", seed=3), project(features, "tsne", seed=3))


@pytest.mark.parametrize(("features", "method", "message"), [
    (np.zeros((0, 4)), "pca", "N >= 1"),
    (np.zeros(4), "pca", "shape"),
    (np.zeros((3, 4)), "umap", "unknown map method 'umap'"),
])
def test_bad_input_is_refused_with_a_message(features: np.ndarray, method: str, message: str) -> None:
    with pytest.raises(BrowseError, match=message):
        project(features, method)  # type: ignore[arg-type]


def test_unit_square_keeps_the_aspect_and_centres() -> None:
    xy = unit_square(np.array([[0.0, 0.0], [4.0, 1.0]]))
    assert np.allclose(xy, [[0.0, 0.375], [1.0, 0.625]])
    assert np.allclose(unit_square(np.ones((3, 2))), 0.5)  # all in one place
