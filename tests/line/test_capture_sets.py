"""Capture sets: frames grouped by part, one decision per part (the worst of its frames)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from inspectloop.errors import LineConfigError
from inspectloop.line.acquire.frame import Frame
from inspectloop.line.capture_sets import CaptureSetAssembler, decide_set, inspect_set
from inspectloop.line.config import CaptureSetConfig
from inspectloop.runtime.decision import Decision
from inspectloop.runtime.prediction import Prediction


def _frame(source: str, counter: int) -> Frame:
    return Frame(pixels=np.zeros((4, 4), np.uint8), source=source, frame_counter=counter,
                 captured_at=datetime.now(UTC))


def _prediction(decision: str, label: str, confidence: float) -> Prediction:
    return Prediction(label=label, confidence=confidence, scores={"good": 0.5, "scratch": 0.5, "dent": 0.5},
                      decision=Decision(decision), latency_ms={"total": 1.0})


def test_two_lights_on_two_cameras_make_one_set_per_part() -> None:
    assembler = CaptureSetAssembler(CaptureSetConfig(cameras=["top", "side"], frames_per_camera=2))
    arrivals = [("p1", "top", 1), ("p1", "side", 1), ("p2", "top", 3), ("p1", "top", 2), ("p2", "side", 3),
                ("p2", "top", 4)]
    done = [s for part, source, n in arrivals if (s := assembler.add(part, _frame(source, n))) is not None]
    assert done == [] and assembler.pending == 2
    last = assembler.add("p1", _frame("side", 2))
    assert last is not None and last.part_id == "p1" and assembler.pending == 1
    assert [(f.source, f.frame_counter) for f in last.ordered(["top", "side"])] == [
        ("top", 1), ("top", 2), ("side", 1), ("side", 2)]
    assert last.metadata(last.frames["top"][1])["light"] == 1
    assert last.metadata(last.frames["top"][1])["part_id"] == "p1"


def test_incomplete_sets_expire_for_the_fail_safe() -> None:
    assembler = CaptureSetAssembler(CaptureSetConfig(cameras=["top", "side"]))
    assembler.add("p1", _frame("top", 1))
    assert assembler.expire(older_than_s=60) == []
    time.sleep(0.02)
    stale = assembler.expire(older_than_s=0.01)
    assert [s.part_id for s in stale] == ["p1"] and assembler.pending == 0


@pytest.mark.parametrize(("part", "source", "says"), [
    ("p1", "bottom", "not in the capture set"),
    ("p1", "top", "gave more than 1 frame"),
])
def test_frames_that_do_not_belong_are_refused(part: str, source: str, says: str) -> None:
    assembler = CaptureSetAssembler(CaptureSetConfig(cameras=["top", "side"]))
    assembler.add("p1", _frame("top", 1))
    with pytest.raises(LineConfigError, match=says):
        assembler.add(part, _frame(source, 2))


@pytest.mark.parametrize(("frames", "expected"), [
    ([("pass", "good", 0.99), ("pass", "good", 0.9)], ("pass", "good", 0)),
    ([("pass", "good", 0.99), ("review", "scratch", 0.6)], ("review", "scratch", 1)),
    ([("review", "scratch", 0.6), ("reject", "dent", 0.7), ("pass", "good", 0.99)], ("reject", "dent", 1)),
    ([("reject", "dent", 0.7), ("reject", "scratch", 0.95)], ("reject", "scratch", 1)),  # most confident of equals
])
def test_a_set_gets_the_worst_decision_of_its_frames(frames: list[tuple[str, str, float]],
                                                     expected: tuple[str, str, int]) -> None:
    captured = [_frame("top", 10 + i) for i in range(len(frames))]
    decision = decide_set("p7", captured, [_prediction(*f) for f in frames])
    assert (decision.decision.value, decision.label, decision.frame_counter - 10) == expected
    assert decision.frames == len(frames) and decision.part_id == "p7"


def test_one_prediction_per_frame_is_required() -> None:
    with pytest.raises(ValueError, match="one prediction per frame"):
        decide_set("p1", [_frame("top", 1)], [])


def test_a_set_is_inspected_frame_by_frame_by_the_edge_runtime(tmp_path: Path) -> None:
    from inspectloop.runtime import EdgeModel
    from tests.runtime.helpers import restamped, synthetic_image

    model = EdgeModel(restamped(tmp_path))
    config = CaptureSetConfig(cameras=["top", "side"])
    assembler = CaptureSetAssembler(config)
    for source, label in (("top", "good"), ("side", "scratch")):
        pixels = np.asarray(synthetic_image(label, seed=3, mode="RGB"))
        done = assembler.add("p1", Frame(pixels=pixels, source=source, frame_counter=5,
                                         captured_at=datetime.now(UTC)))
    assert done is not None
    decision = inspect_set(model, done, config.cameras)
    singles = [model.predict(f.image()) for f in done.ordered(config.cameras)]
    expected = decide_set("p1", done.ordered(config.cameras), singles)
    assert (decision.decision, decision.label, decision.source, decision.frames) == (
        expected.decision, expected.label, expected.source, 2)
