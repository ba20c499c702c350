"""Graded evaluation: curves per defect class and per grade roll-up, the decision's operating point, grade steps."""

from __future__ import annotations

import numpy as np
import pytest

from inspectloop.evaluate.graded import graded_evaluation
from inspectloop.reports.graded import graded_figures, graded_table

NAMES = ("critical", "good", "major", "minor")
GRADES = {"minor": ("scratch", 1), "major": ("scratch", 2), "critical": ("scratch", 3)}
GOOD = 1


def _scores(truth: list[int], noise: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    logits = np.eye(4)[truth] * 3 + rng.normal(0, noise, size=(len(truth), 4))
    return np.exp(logits) / np.exp(logits).sum(1, keepdims=True)


def test_every_defect_class_and_every_roll_up_gets_a_curve() -> None:
    truth = [0, 1, 2, 3] * 25
    scores = _scores(truth, 1.0)
    evaluation = graded_evaluation(truth, scores, scores.argmax(1), NAMES, GRADES, GOOD)
    assert evaluation is not None
    names = [c.name for c in evaluation.curves]
    assert names == ["critical vs good", "major vs good", "minor vs good",
                     "scratch >= minor", "scratch >= major", "scratch >= critical"]
    major_up = evaluation.curves[4]
    assert (major_up.positives, major_up.negatives) == (50, 50)
    assert 0.5 < major_up.auroc <= 1 and 0.5 < major_up.average_precision <= 1
    point = major_up.operating_point
    chosen = scores.argmax(1)
    assert point.recall == pytest.approx(np.mean(np.isin(chosen[np.isin(truth, [0, 2])], [0, 2])))
    brief = evaluation.brief()
    assert "roc" not in brief["curves"][0] and len(evaluation.to_dict()["curves"][0]["roc"]["true_positive_rate"]) <= 60


@pytest.mark.parametrize(("truth", "predicted", "steps"), [
    ([3, 3, 2, 0], [3, 2, 3, 2], (3, 0)),  # minor->major, major->critical, critical->major: one step each
    ([3, 1, 0, 1], [0, 0, 1, 2], (0, 4)),  # minor->critical, good->critical, critical->good, good->major
    ([1, 1], [1, 1], (0, 0)),
])
def test_wrong_grades_are_counted_by_how_many_steps_they_are_off(truth: list[int], predicted: list[int],
                                                                 steps: tuple[int, int]) -> None:
    evaluation = graded_evaluation(truth, np.full((len(truth), 4), 0.25), predicted, NAMES, GRADES, GOOD)
    assert (evaluation.off_by_one, evaluation.off_by_more) == steps


def test_no_graded_class_or_no_good_class_means_no_graded_evaluation() -> None:
    scores = np.full((2, 4), 0.25)
    assert graded_evaluation([0, 1], scores, [0, 1], NAMES, {}, GOOD) is None
    assert graded_evaluation([0, 1], scores, [0, 1], NAMES, GRADES, None) is None


def test_a_curve_with_one_side_empty_has_no_auroc_and_no_figure() -> None:
    truth = [1, 1, 3, 3]
    evaluation = graded_evaluation(truth, _scores(truth, 0.5), [1, 1, 3, 3], NAMES, GRADES, GOOD)
    critical = evaluation.curves[0]
    assert critical.positives == 0 and critical.auroc is None and critical.operating_point is None
    figures = graded_figures(evaluation)
    assert [f.title for f in figures] == ["Each defect class against the good class",
                                          "Defective at grade >= g, against everything below"]
    assert figures[0].png.startswith(b"\x89PNG") and "critical vs good" not in figures[0].caption
    assert "minor vs good: AUROC 1" in figures[0].caption and "Wrong grades: 0 one step off" in figures[1].caption
    table = graded_table(evaluation.brief())
    assert table.count("<tr>") == 7 and "scratch &gt;= major" in table
