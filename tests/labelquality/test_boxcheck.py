"""Probably wrong boxes on one image, constructed case by case: missing, wrong class, misplaced, spurious."""

from __future__ import annotations

import re

import pytest

from inspectloop.errors import LabelError
from inspectloop.labelquality.boxcheck import Boxes, check_boxes

A = (10, 10, 50, 50)
B = (100, 100, 140, 150)
NEAR_A = (20, 20, 60, 60)  # IoU with A: 900 / 2300 = 0.39, loosely over it
FAR = (200, 10, 230, 40)


def boxes(*drawn: tuple[tuple[float, ...], str] | tuple[tuple[float, ...], str, float]) -> Boxes:
    return Boxes.of([d[0] for d in drawn], [d[1] for d in drawn],
                    [d[2] if len(d) > 2 else 1.0 for d in drawn])  # type: ignore[misc]


@pytest.mark.parametrize(("annotated", "predicted", "expected"), [
    # the detector agrees: nothing to say
    (boxes((A, "scratch"), (B, "pit")), boxes((A, "scratch", 0.9), (B, "pit", 0.8)), []),
    # a confident box where nobody drew: missing, as sure as the detector is
    (boxes((A, "scratch")), boxes((A, "scratch", 0.9), (FAR, "pit", 0.8)), [("missing", None, "pit", 0.8)]),
    # an unsure box where nobody drew is not a finding
    (boxes((A, "scratch")), boxes((A, "scratch", 0.9), (FAR, "pit", 0.3)), []),
    # drawn in the right place with another class
    (boxes((A, "scratch")), boxes((A, "pit", 0.7)), [("wrong_class", "scratch", "pit", 0.7)]),
    # relabelled, though a neighbour of the predicted class grazes it: still the wrong class, not misplaced
    (boxes((A, "pit"), (NEAR_A, "scratch")), boxes((A, "scratch", 0.7), (NEAR_A, "scratch", 0.9)),
     [("wrong_class", "pit", "scratch", 0.7)]),
    # drawn off the defect: its class overlaps, but loosely
    (boxes((A, "scratch")), boxes((NEAR_A, "scratch", 0.6)), [("misplaced", "scratch", "scratch", 0.6)]),
    # a box nothing predicted is near: possibly spurious (sure: nothing touches it)
    (boxes((A, "scratch"), (B, "pit")), boxes((A, "scratch", 0.9)), [("spurious", "pit", None, 1.0)]),
    # an unsure predicted box over the drawn one keeps it from being spurious
    (boxes((B, "pit")), boxes((B, "pit", 0.2)), []),
    # a predicted box barely touching it makes the spurious finding less sure
    (boxes((B, "pit")), boxes(((138, 148, 160, 170), "pit", 0.4)), [("spurious", "pit", None, 0.6)]),
    # an image nobody drew on: every confident box is missing, most confident first
    (boxes(), boxes((FAR, "pit", 0.55), (A, "scratch", 0.95)),
     [("missing", None, "scratch", 0.95), ("missing", None, "pit", 0.55)]),
])
def test_each_kind_of_wrong_box(annotated: Boxes, predicted: Boxes, expected: list[tuple[object, ...]]) -> None:
    found = check_boxes(annotated, predicted)
    assert [(f.kind, f.annotated_class, f.predicted_class, pytest.approx(f.confidence)) for f in found] == expected


def test_two_boxes_on_one_undrawn_defect_are_one_finding() -> None:
    found = check_boxes(boxes(), boxes((A, "pit", 0.9), ((12, 12, 52, 52), "pit", 0.8), (B, "pit", 0.7)))
    assert [(f.kind, f.predicted_box) for f in found] == [("missing", A), ("missing", B)]


def test_findings_carry_both_boxes_and_their_overlap() -> None:
    [finding] = check_boxes(boxes((A, "scratch")), boxes((NEAR_A, "scratch", 0.6)))
    assert finding.annotated_box == A and finding.predicted_box == NEAR_A
    assert finding.iou == pytest.approx(900 / 2300)
    assert finding.to_dict()["annotated_box"] == [10, 10, 50, 50]


def test_a_stricter_score_or_match_changes_what_counts() -> None:
    annotated, predicted = boxes((A, "scratch")), boxes((NEAR_A, "scratch", 0.6), (FAR, "pit", 0.6))
    assert [f.kind for f in check_boxes(annotated, predicted, min_score=0.7)] == []
    assert [f.kind for f in check_boxes(annotated, predicted, match_iou=0.3)] == ["missing"]


@pytest.mark.parametrize(("call", "message"), [
    (lambda: Boxes.of([A, B], ["scratch"]), "2 boxes, 1 classes and 2 scores do not line up"),
    (lambda: Boxes.of([A], ["scratch"], [3.2]), "box scores must lie in [0, 1]"),
    (lambda: check_boxes(boxes(), boxes(), min_score=0), "minimum score 0 is not in (0, 1]"),
    (lambda: check_boxes(boxes(), boxes(), near_iou=0.6, match_iou=0.5), "overlaps near=0.6, match=0.5"),
])
def test_bad_input_is_named(call: object, message: str) -> None:
    with pytest.raises(LabelError, match=re.escape(message)):
        call()  # type: ignore[operator]
