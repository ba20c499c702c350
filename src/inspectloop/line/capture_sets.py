"""Capture sets: several frames of one part (two lights triggered alternately, several cameras on one
station) gathered into one inspection with one decision, the worst of its frames.

Frames are grouped by the part id the trigger gives them, not by counting frames, so a frame lost to
a disconnect leaves one part incomplete instead of shifting every later part. Their records carry the
part id, which is what keeps a set together in a dataset version (splits are grouped by ``part_id``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from PIL import Image

from inspectloop.errors import LineConfigError
from inspectloop.line.acquire.frame import Frame
from inspectloop.line.config import CaptureSetConfig
from inspectloop.line.decision import PartDecision
from inspectloop.runtime.decision import Decision
from inspectloop.runtime.prediction import Prediction



class FrameModel(Protocol):
    """What inspecting a set needs of a model: the edge runtime's ``EdgeModel.predict`` on an image."""

    def predict(self, source: Image.Image, *, name: str | None = None) -> Prediction:
        """One image's prediction."""


_RANK = {Decision.PASS: 0, Decision.REVIEW: 1, Decision.REJECT: 2}  # worse is higher


@dataclass
class CaptureSet:
    """The frames of one part, by source, in the order they came (``frames[source][i]`` is light ``i``)."""

    part_id: str
    frames: dict[str, list[Frame]] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    def ordered(self, sources: Sequence[str]) -> list[Frame]:
        """All frames, source by source in ``sources`` order, lights in order within a source."""
        return [frame for source in sources for frame in self.frames.get(source, [])]

    def metadata(self, frame: Frame) -> dict[str, object]:
        """What to store with one of its frames: its capture record plus the part and its place in the set."""
        light = self.frames[frame.source].index(frame)
        return {**frame.record(), "part_id": self.part_id, "light": light}


class CaptureSetAssembler:
    """Gathers frames into capture sets: ``add`` returns the set once every camera in ``config`` has given
    its ``frames_per_camera`` frames for that part; ``expire`` hands back sets left incomplete too long."""

    def __init__(self, config: CaptureSetConfig) -> None:
        self.config = config
        self._open: dict[str, CaptureSet] = {}

    @property
    def pending(self) -> int:
        """Parts with some but not all of their frames."""
        return len(self._open)

    def add(self, part_id: str, frame: Frame) -> CaptureSet | None:
        """Add one frame of ``part_id``; the complete set when this was its last frame, else None."""
        if frame.source not in self.config.cameras:
            raise LineConfigError(f"frame from {frame.source!r}, which is not in the capture set",
                                  f"the capture set's cameras are {', '.join(self.config.cameras)}")
        current = self._open.setdefault(part_id, CaptureSet(part_id))
        frames = current.frames.setdefault(frame.source, [])
        if len(frames) >= self.config.frames_per_camera:
            raise LineConfigError(f"part {part_id}: camera {frame.source} gave more than "
                                  f"{self.config.frames_per_camera} frame(s)",
                                  "give each trigger its own part id, or raise frames_per_camera")
        frames.append(frame)
        if sum(len(f) for f in current.frames.values()) < self.config.size:
            return None
        return self._open.pop(part_id)

    def expire(self, older_than_s: float) -> list[CaptureSet]:
        """Remove and return the sets still incomplete after ``older_than_s`` seconds (their part gets the
        fail-safe: a part never passes on the frames it happened to have)."""
        now = time.monotonic()
        stale = [part for part, s in self._open.items() if now - s.started > older_than_s]
        return [self._open.pop(part) for part in stale]


def decide_set(part_id: str, frames: Sequence[Frame], predictions: Sequence[Prediction]) -> PartDecision:
    """One decision for a part from its frames' predictions: the worst decision (reject over review over
    pass); among equally bad frames, the most confident. Its frame names the frame counter published."""
    if not frames or len(frames) != len(predictions):
        raise ValueError(f"need one prediction per frame, got {len(predictions)} for {len(frames)} frame(s)")
    worst = max(range(len(frames)), key=lambda i: (_RANK[predictions[i].decision], predictions[i].confidence))
    chosen = predictions[worst]
    classes = list(chosen.scores)  # the model's class order
    return PartDecision(part_id=part_id, decision=chosen.decision, label=chosen.label,
                        confidence=chosen.confidence, frame_counter=frames[worst].frame_counter,
                        source=frames[worst].source, frames=len(frames),
                        class_index=classes.index(chosen.label) if chosen.label in classes else None)


def inspect_set(model: FrameModel, capture_set: CaptureSet, sources: Sequence[str]) -> PartDecision:
    """Predict every frame of a complete set with ``model`` (an ``EdgeModel``) and decide the part."""
    frames = capture_set.ordered(sources)
    predictions = [model.predict(f.image(), name=f"{capture_set.part_id}/{f.source}/{f.frame_counter}")
                   for f in frames]
    return decide_set(capture_set.part_id, frames, predictions)
