import numpy as np
import pytest

from inspectloop.errors import LabelError
from inspectloop.labelquality.confident import by_class, by_noise_rate, confident_joint, find_label_issues, label_quality
from inspectloop.labelquality.probabilities import out_of_fold_probabilities


def blobs(n_per_class: int = 120, classes: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4, size=(classes, 8))
    x = np.concatenate([rng.normal(c, 1.0, size=(n_per_class, 8)) for c in centres])
    return x, np.repeat(np.arange(classes), n_per_class)


def flip(labels: np.ndarray, rate: float, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    flipped = rng.choice(len(labels), size=int(rate * len(labels)), replace=False)
    noisy = labels.copy()
    noisy[flipped] = (labels[flipped] + rng.integers(1, labels.max() + 1, size=len(flipped))) % (labels.max() + 1)
    truth = np.zeros(len(labels), dtype=bool)
    truth[flipped] = True
    return noisy, truth


@pytest.mark.parametrize("rate", [0.05, 0.10])
def test_flipped_labels_are_found_on_a_separable_problem(rate: float) -> None:
    x, y = blobs()
    noisy, truth = flip(y, rate)
    probabilities = out_of_fold_probabilities(x, noisy, 3, seed=0)
    issues = find_label_issues(noisy, probabilities)
    found = issues.mask
    precision = (found & truth).sum() / max(found.sum(), 1)
    recall = (found & truth).sum() / truth.sum()
    assert precision >= 0.9 and recall >= 0.9, (precision, recall)
    # Ranked most likely wrong first: the quality score never decreases along the ranking.
    assert np.all(np.diff(issues.quality[issues.flagged]) >= 0)
    assert set(issues.suggested[issues.flagged]) <= {0, 1, 2}


def test_clean_labels_flag_nothing() -> None:
    x, y = blobs()
    issues = find_label_issues(y, out_of_fold_probabilities(x, y, 3))
    assert len(issues.flagged) == 0
    assert np.isclose(issues.noise_matrix.sum(), 1.0) and np.trace(issues.noise_matrix) > 0.99


def test_thresholds_are_the_mean_self_confidence_and_the_joint_counts_confident_examples() -> None:
    labels = np.array([0, 0, 1, 1])
    probabilities = np.array([[0.9, 0.1], [0.7, 0.3], [0.2, 0.8], [0.9, 0.1]])  # the last is labelled 1, looks 0
    thresholds, joint = confident_joint(labels, probabilities)
    assert np.allclose(thresholds, [0.8, 0.45])
    # [0.7, 0.3] reaches neither threshold, so it is not counted; the last example counts as a confident 0.
    assert joint.tolist() == [[1, 0], [1, 1]]


def test_an_example_is_flagged_only_when_both_prunings_pick_it() -> None:
    labels = np.array([0, 0, 0, 1, 2])
    probabilities = np.array([[0.35, 0.05, 0.60],   # A: labelled 0, looks 2 most
                              [0.20, 0.45, 0.35],   # B: labelled 0, least confident in 0, looks 1
                              [0.90, 0.05, 0.05], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]])
    given = probabilities[np.arange(5), labels]
    one_to_two = np.zeros((3, 3), dtype=np.int64)
    one_to_two[0, 2] = 1  # the estimate: one example labelled 0 is truly 2
    # Noise rate picks A (largest p_2 - p_0); by class picks B (lowest p_0): they disagree, nothing is flagged.
    assert by_noise_rate(labels, probabilities, given, one_to_two).tolist() == [True, False, False, False, False]
    assert by_class(labels, given, one_to_two).tolist() == [False, True, False, False, False]
    two = one_to_two.copy()
    two[0, 1] = 1  # and one more truly 1: noise rate picks B for it, by class takes the two least confident
    both = by_noise_rate(labels, probabilities, given, two) & by_class(labels, given, two)
    assert both.tolist() == [True, True, False, False, False]


@pytest.mark.parametrize("rank_by, expected", [("self_confidence", [0.9, 0.2, 0.6]),
                                               ("normalized_margin", [0.9, 0.2, 0.65])])
def test_quality_scores(rank_by: str, expected: list[float]) -> None:
    labels = np.array([0, 1, 2])
    probabilities = np.array([[0.9, 0.1, 0.0], [0.8, 0.2, 0.0], [0.1, 0.3, 0.6]])
    assert np.allclose(label_quality(labels, probabilities, rank_by), expected)  # type: ignore[arg-type]


@pytest.mark.parametrize("labels, probabilities, message", [
    (np.array([0, 1]), np.array([[0.5, 0.5]]), "expected labels"),
    (np.array([0, 2]), np.array([[0.5, 0.5], [0.5, 0.5]]), "class indices"),
    (np.array([0, 1]), np.array([[0.5, 0.9], [0.5, 0.5]]), "sum to 1"),
])
def test_bad_probabilities_are_refused(labels: np.ndarray, probabilities: np.ndarray, message: str) -> None:
    with pytest.raises(LabelError, match=message):
        find_label_issues(labels, probabilities)


def test_a_class_with_one_image_cannot_be_scored_out_of_fold() -> None:
    x, y = blobs(10, 2)
    y[-10:] = 1
    y[-1] = 2
    with pytest.raises(LabelError, match="two images each"):
        out_of_fold_probabilities(x, y, 3)
