"""Figures of top-class decisions on one held-out group: false rejects, escapes, recall per class."""

from __future__ import annotations

import numpy as np
import pytest

from inspectloop.evaluate.groups import group_figures

NAMES = ("good", "crack", "dent")


@pytest.mark.parametrize(("labels", "predicted", "good", "expected"), [
    # every image right
    ([0, 0, 1, 2], [0, 0, 1, 2], 0, {"macro_recall": 1.0, "good_rejects": 0, "escapes": 0}),
    # a good image rejected as crack, a dent passed as good
    ([0, 0, 1, 2], [1, 0, 1, 0], 0, {"macro_recall": (0.5 + 1 + 0) / 3, "good_rejects": 1, "good_reject_rate": 0.5,
                                     "escapes": 1, "escape_rate": 0.5}),
    # a dent called crack is neither a false reject nor an escape
    ([0, 2], [0, 1], 0, {"good_rejects": 0, "escapes": 0, "macro_recall": 0.5}),
    # no dent in the group: its recall is absent, the macro recall averages the classes present
    ([0, 1], [0, 1], 0, {"per_class_recall": {"good": 1.0, "crack": 1.0, "dent": None}, "macro_recall": 1.0}),
    # only good images: no escape rate
    ([0, 0], [0, 1], 0, {"escape_rate": None, "good_reject_rate": 0.5, "defective": 0}),
    # no good class: nothing is a false reject or an escape
    ([1, 2], [2, 2], None, {"good": 0, "defective": 0, "good_reject_rate": None, "escape_rate": None}),
])
def test_group_figures(labels: list[int], predicted: list[int], good: int | None, expected: dict[str, object]) -> None:
    figures = group_figures(np.array(labels), np.array(predicted), NAMES, good).to_dict()
    for key, value in expected.items():
        assert figures[key] == pytest.approx(value) if isinstance(value, float) else figures[key] == value, key


def test_missing_classes_are_named() -> None:
    assert group_figures(np.array([0, 1]), np.array([0, 1]), NAMES, 0).missing_classes == ["dent"]


def test_shapes_must_match() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        group_figures(np.array([0, 1]), np.array([0]), NAMES, 0)
