"""The novelty guard's fit: bank, distances, and a threshold set at a stated rate on held-out images."""

from __future__ import annotations

import numpy as np
import pytest

from inspectloop.train.novelty import conformal_rank, fit_novelty, measure_novelty, novelty_scores, unit_rows


def clusters(n: int, seed: int, centres: int = 3, dim: int = 16) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = np.random.default_rng(99).normal(0, 1, (centres, dim))
    return means[rng.integers(centres, size=n)] + rng.normal(0, 0.1, (n, dim))


def test_scores_are_distances_to_the_nearest_unit_rows() -> None:
    bank = unit_rows(np.eye(4, dtype=np.float32))
    queries = np.array([[2.0, 0, 0, 0], [1.0, 1.0, 0, 0], [0, 0, 0, -3.0]])
    expected_one = [0.0, np.sqrt(2 - np.sqrt(2)), np.sqrt(2.0)]
    np.testing.assert_allclose(novelty_scores(bank, queries, 1), expected_one, atol=1e-6)
    both = (np.sqrt(2 - np.sqrt(2)) * 2) / 2  # the two nearest rows are equally far
    assert novelty_scores(bank, queries, 2)[1] == pytest.approx(both, abs=1e-6)
    assert novelty_scores(bank, queries, 10).shape == (3,)  # k beyond the bank: every row


def test_threshold_holds_the_stated_rate_on_new_images_of_known_classes() -> None:
    guard = fit_novelty(clusters(300, 0), clusters(400, 1), rate=0.05)
    assert guard.certified and guard.bank.shape == (300, 16) and len(guard.held_out) == 400
    assert np.mean(guard.held_out > guard.threshold) <= 0.05
    fresh = guard.scores(clusters(4000, 2))
    assert np.mean(fresh > guard.threshold) == pytest.approx(0.05, abs=0.02)
    far = guard.scores(clusters(200, 3) + 3.0)  # shifted off every known cluster
    assert np.mean(far > guard.threshold) > 0.9
    assert guard.metadata == {"threshold": guard.threshold, "rate": 0.05, "k": 1, "bank_size": 300,
                              "held_out_images": 400}


@pytest.mark.parametrize(("n", "rate", "rank"), [(99, 0.01, 99), (98, 0.01, 99), (19, 0.05, 19), (200, 0.01, 199)])
def test_conformal_rank(n: int, rate: float, rank: int) -> None:
    assert conformal_rank(n, rate) == rank


def test_too_few_held_out_images_cannot_certify_the_rate() -> None:
    guard = fit_novelty(clusters(50, 0), clusters(20, 1), rate=0.01)
    assert not guard.certified and guard.threshold == pytest.approx(float(guard.held_out.max()))
    assert fit_novelty(clusters(50, 0), np.zeros((0, 16)), rate=0.01).threshold == 2.0  # none: never fires


def test_a_large_bank_is_reduced_by_coreset() -> None:
    pytest.importorskip("torch")
    guard = fit_novelty(clusters(500, 0), clusters(100, 1), rate=0.05, max_bank=64)
    assert guard.bank.shape == (64, 16) and guard.training_images == 500
    np.testing.assert_allclose(np.linalg.norm(guard.bank, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize(("changes", "message"), [({"rate": 0.0}, "rate"), ({"rate": 1.0}, "rate"), ({"k": 0}, "k")])
def test_fit_refuses_bad_settings(changes: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fit_novelty(clusters(10, 0), clusters(10, 1), **changes)  # type: ignore[arg-type]


def test_measure_counts_only_passes_the_guard_turned() -> None:
    guard = fit_novelty(clusters(100, 0), clusters(100, 1), rate=0.05)
    scores = np.array([0.0, 10.0, 10.0, 0.0])
    passed = np.array([True, True, False, False])
    measured = measure_novelty(guard, scores, passed, np.array([0, 0, 1, 1]), ["good", "dent"])
    assert measured.over_threshold == 0.5 and measured.sent_to_review == 0.25
    assert measured.per_class_sent_to_review == {"good": 0.5, "dent": 0.0}
