"""What the line hears about one part: the message every publisher sends (OPC UA, MQTT, Modbus)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from inspectloop.runtime.decision import Decision


@dataclass(frozen=True)
class PartDecision:
    """The decision for one part: ``decision`` (pass / reject / review), ``label`` (the class decided, or
    the model's suggestion for a review; ``fail_safe`` when the deadline passed), ``part_id``, and the
    ``frame_counter`` of the frame that decided it (its source's counter, see :class:`~.acquire.Frame`).

    ``late`` marks a fail-safe given because the answer was not ready by the part's deadline;
    ``frames`` is how many frames the part's capture set held. ``class_index`` is ``label``'s place in the
    model's class list (for registers that hold numbers only); None for a fail-safe or a hand-made decision.
    ``suspect`` marks a part seen by a camera whose latest health check failed (``inspectloop camera check``):
    its image may not show the part as the model was trained to see it.
    """

    part_id: str
    decision: Decision
    label: str
    frame_counter: int
    confidence: float | None = None
    source: str | None = None
    frames: int = 1
    late: bool = False
    class_index: int | None = None
    suspect: bool = False
    decided_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        object.__setattr__(self, "decision", Decision(self.decision))
        if not self.part_id:
            raise ValueError("part_id must not be empty")
        if self.frame_counter < 0:
            raise ValueError(f"frame_counter must be >= 0, got {self.frame_counter}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as published."""
        return {"part_id": self.part_id, "decision": self.decision.value, "label": self.label,
                "frame_counter": self.frame_counter, "confidence": self.confidence, "source": self.source,
                "frames": self.frames, "late": self.late, "class_index": self.class_index, "suspect": self.suspect,
                "decided_at": self.decided_at.isoformat()}

    def to_json(self) -> str:
        """The published message: one JSON object."""
        return json.dumps(self.to_dict(), separators=(",", ":"))
