"""Per-image outcomes: probabilities and margin per image, and the hardest images ranked by how wrong they are."""

from __future__ import annotations

import numpy as np
import pytest

from inspectloop.errors import DatasetError
from inspectloop.evaluate.outcomes import ImageOutcome, hardest, image_outcomes

NAMES = ("good", "scratch", "dent")
SCORES = np.array([
    [0.90, 0.05, 0.05],  # good, right, sure
    [0.48, 0.47, 0.05],  # good, right by a hair
    [0.10, 0.85, 0.05],  # good called scratch, confidently
    [0.30, 0.60, 0.10],  # dent called scratch, less sure
    [0.05, 0.40, 0.55],  # dent, right, margin 0.15
])
TRUE = [0, 0, 0, 2, 2]
PREDICTED = [0, 0, 1, 1, 2]


def outcomes() -> tuple[ImageOutcome, ...]:
    meta = [{"camera": "c1", "shift": None}, {"camera": "c2", "shift": " "}, {"shift": "night"}, {}, {"line": "3"}]
    return image_outcomes([f"sha{i}" for i in range(5)], TRUE, PREDICTED, NAMES, scores=SCORES, metadata=meta)


def test_each_image_keeps_its_probabilities_margin_and_set_metadata() -> None:
    first, close, wrong, _, _ = outcomes()
    assert (first.true, first.predicted, first.correct) == ("good", "good", True)
    assert first.score == first.true_score == 0.9 and first.margin == pytest.approx(0.85)
    assert close.margin == pytest.approx(0.01)
    assert (wrong.predicted, wrong.correct, wrong.score, wrong.true_score) == ("scratch", False, 0.85, 0.1)
    assert wrong.margin == pytest.approx(-0.75)
    assert first.meta == {"camera": "c1"} and close.meta == {"camera": "c2"}  # unset fields are left out
    assert wrong.meta == {"shift": "night"}


def test_the_hardest_are_the_confident_mistakes_then_the_closest_calls() -> None:
    ranked = [o.sha256 for o in hardest(outcomes())]
    assert ranked == ["sha2", "sha3", "sha1", "sha4", "sha0"]
    assert [o.sha256 for o in hardest(outcomes(), limit=3)] == ["sha2", "sha3", "sha1"]
    assert hardest(outcomes(), limit=0) == ()


def test_without_probabilities_only_the_mistakes_are_ranked() -> None:
    plain = image_outcomes([f"sha{i}" for i in range(5)], TRUE, PREDICTED, NAMES)
    assert all(o.score is None and o.margin is None for o in plain)
    assert [o.sha256 for o in hardest(plain)] == ["sha2", "sha3"]  # in input order


def test_an_outcome_survives_json() -> None:
    for outcome in outcomes():
        assert ImageOutcome.from_dict(outcome.to_dict()) == outcome
    assert outcomes()[2].to_dict()["correct"] is False


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"y_pred": [0, 0, 1]}, "5 images but 3 predictions"),
    ({"metadata": [{}]}, "5 images but 1 metadata entries"),
    ({"scores": SCORES[:4]}, "5 images but 4 score rows"),
    ({"scores": SCORES[:, :2]}, r"one row of 3 class probabilities per image, got shape \(5, 2\)"),
    ({"scores": SCORES.ravel()}, r"got shape \(15,\)"),
])
def test_mismatched_input_is_refused(kwargs: dict, message: str) -> None:
    arguments = {"sha256s": [f"sha{i}" for i in range(5)], "y_true": TRUE, "y_pred": PREDICTED,
                 "class_names": NAMES, **kwargs}
    with pytest.raises(DatasetError, match=message):
        image_outcomes(**arguments)
