"""One prediction type for every task: image-level scores, a decision, optional regions; JSON-ready."""

from __future__ import annotations

import json

import numpy as np
import pytest

from inspectloop.runtime import Decision, Prediction, Regions

SCORES = {"good": 0.1, "scratch": 0.7, "dark": 0.2}
LATENCY = {"decode": 1.0, "preprocess": 0.5, "infer": 2.0, "total": 3.5}


def boxes() -> Regions:
    return Regions(image_size=(100, 80), class_ids=np.array([1]), scores=np.array([0.7]),
                   boxes=np.array([[10.0, 5.0, 40.0, 20.0]]))


def test_a_classifier_prediction_serialises_as_before() -> None:
    prediction = Prediction("scratch", 0.7, SCORES, "reject", LATENCY)  # a plain string is taken as a Decision
    assert prediction.decision is Decision.REJECT and prediction.regions is None
    assert prediction.to_dict() == {"label": "scratch", "confidence": 0.7, "scores": SCORES, "decision": "reject",
                                    "latency_ms": LATENCY, "regions": None, "warnings": []}
    assert type(prediction.to_dict()["decision"]) is str


def test_a_prediction_with_regions_is_json_ready_and_reads_back() -> None:
    prediction = Prediction("scratch", 0.7, SCORES, Decision.REVIEW, LATENCY, regions=boxes())
    document = json.loads(json.dumps(prediction.to_dict()))
    assert document["decision"] == "review" and document["regions"]["boxes"] == [[10.0, 5.0, 40.0, 20.0]]
    again = Regions.from_dict(document["regions"])
    np.testing.assert_array_equal(again.boxes, boxes().boxes)  # type: ignore[arg-type]


@pytest.mark.parametrize(("changes", "error", "message"), [
    ({"decision": "maybe"}, ValueError, "'maybe' is not a valid Decision"),
    ({"label": "dent"}, ValueError, "label 'dent' is not one of the scored classes"),
    ({"regions": {"boxes": []}}, TypeError, "regions must be Regions or None"),
    ({"regions": Regions(image_size=(100, 80), class_ids=np.array([3]), scores=np.array([0.5]),
                         boxes=np.array([[0.0, 0.0, 1.0, 1.0]]))}, ValueError, "region class id 3 is outside the 3"),
])
def test_a_prediction_refuses_inconsistent_fields(changes: dict[str, object], error: type[Exception],
                                                  message: str) -> None:
    fields = {"label": "scratch", "confidence": 0.7, "scores": SCORES, "decision": "reject", "latency_ms": LATENCY,
              **changes}
    with pytest.raises(error, match=message):
        Prediction(**fields)  # type: ignore[arg-type]
