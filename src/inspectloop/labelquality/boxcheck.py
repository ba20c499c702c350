"""Boxes that are probably wrong, found by comparing one image's annotated boxes with predicted ones (pure).

The predicted boxes come from a detector (its scores) or another annotator (each box counts as sure). On
an image, each confident predicted box (score >= ``min_score``) is set against the annotated boxes:

- ``missing``: no annotated box of any class overlaps it (IoU below ``near_iou``): a defect nobody drew;
- ``wrong_class``: an annotated box of another class overlaps it more than any box of its own class does:
  drawn in the right place with the wrong class;
- ``misplaced``: an annotated box of its class overlaps it, but loosely (IoU below ``match_iou``): drawn
  off the defect or much too large or small;

and each annotated box that no predicted box (of any class, any score the source gave) overlaps is
``spurious``: possibly a box around nothing. A finding's ``confidence`` ranks it: the predicted box's
score, or for a spurious box 1 - the highest score of any predicted box touching it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from inspectloop.errors import LabelError
from inspectloop.regions.geometry import box_iou

MISSING, WRONG_CLASS, MISPLACED, SPURIOUS = "missing", "wrong_class", "misplaced", "spurious"
KINDS = (MISSING, WRONG_CLASS, MISPLACED, SPURIOUS)
DEFAULT_MIN_SCORE = 0.5
NEAR_IOU = 0.1  # below this two boxes are about different things
MATCH_IOU = 0.5  # at or above this they are the same box (the usual detection match)


@dataclass(frozen=True, eq=False)
class Boxes:
    """Boxes (K, 4) as x0, y0, x1, y1 pixels, with their class names and scores (1.0 for a person's box)."""

    boxes: np.ndarray
    classes: tuple[str, ...]
    scores: np.ndarray

    @classmethod
    def of(cls, boxes: Sequence[Sequence[float]], classes: Sequence[str],
           scores: Sequence[float] | None = None) -> Boxes:
        """Validated boxes; LabelError naming the mismatch when the three do not line up."""
        array = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) if len(boxes) else np.zeros((0, 4))
        values = np.ones(len(array)) if scores is None else np.asarray(scores, dtype=np.float64).reshape(-1)
        if not len(array) == len(classes) == len(values):
            raise LabelError(f"{len(array)} boxes, {len(classes)} classes and {len(values)} scores do not line up",
                             "give one class and one score per box")
        if len(values) and not (np.all(values >= 0) and np.all(values <= 1)):
            raise LabelError("box scores must lie in [0, 1]", "pass a detector's confidences, not logits")
        return cls(array, tuple(classes), values)

    def __len__(self) -> int:
        return len(self.classes)


@dataclass(frozen=True)
class BoxFinding:
    """One probably wrong box on an image: what kind, the annotated and predicted class and box, how sure."""

    kind: str
    confidence: float
    annotated_class: str | None = None
    annotated_box: tuple[float, float, float, float] | None = None
    predicted_class: str | None = None
    predicted_box: tuple[float, float, float, float] | None = None
    iou: float = 0.0

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "confidence": round(self.confidence, 4), "annotated_class": self.annotated_class,
                "annotated_box": _rounded(self.annotated_box), "predicted_class": self.predicted_class,
                "predicted_box": _rounded(self.predicted_box), "iou": round(self.iou, 4)}


def check_boxes(annotated: Boxes, predicted: Boxes, *, min_score: float = DEFAULT_MIN_SCORE,
                near_iou: float = NEAR_IOU, match_iou: float = MATCH_IOU) -> list[BoxFinding]:
    """The probably wrong boxes of one image, most confident first (see the module's description)."""
    check_thresholds(min_score, near_iou, match_iou)
    iou = box_iou(predicted.boxes, annotated.boxes)  # (P, A)
    findings = _spurious(annotated, predicted, iou, near_iou)
    reported_missing: list[int] = []
    for p in np.argsort(-predicted.scores, kind="stable"):
        if predicted.scores[p] < min_score:
            continue
        finding = _against_annotations(int(p), annotated, predicted, iou[p], near_iou, match_iou)
        if finding is None:
            continue
        if finding.kind == MISSING:  # two confident boxes on one undrawn defect are one finding
            if reported_missing and box_iou(predicted.boxes[[p]], predicted.boxes[reported_missing]).max() >= near_iou:
                continue
            reported_missing.append(int(p))
        findings.append(finding)
    return sorted(findings, key=lambda f: (-f.confidence, KINDS.index(f.kind)))


def check_thresholds(min_score: float, near_iou: float, match_iou: float) -> None:
    """LabelError unless the score and overlap thresholds make sense together."""
    if not 0 < min_score <= 1:
        raise LabelError(f"minimum score {min_score} is not in (0, 1]", "use a detector confidence such as 0.5")
    if not 0 < near_iou < match_iou <= 1:
        raise LabelError(f"overlaps near={near_iou}, match={match_iou} are impossible",
                         "use 0 < near < match <= 1 (default 0.1 and 0.5)")


def _against_annotations(p: int, annotated: Boxes, predicted: Boxes, ious: np.ndarray, near_iou: float,
                         match_iou: float) -> BoxFinding | None:
    name, score, box = predicted.classes[p], float(predicted.scores[p]), _tuple(predicted.boxes[p])
    same = np.array([c == name for c in annotated.classes], dtype=bool)
    best_same = int(np.argmax(np.where(same, ious, -1.0))) if same.any() else None
    best_other = int(np.argmax(np.where(~same, ious, -1.0))) if (~same).any() else None
    same_iou = float(ious[best_same]) if best_same is not None else 0.0
    other_iou = float(ious[best_other]) if best_other is not None else 0.0
    if same_iou >= match_iou:
        return None
    if other_iou >= max(same_iou, near_iou):  # a neighbour of its class grazing it does not hide a relabelled box
        return BoxFinding(WRONG_CLASS, score, annotated.classes[best_other], _tuple(annotated.boxes[best_other]),
                          name, box, other_iou)
    if same_iou >= near_iou:
        return BoxFinding(MISPLACED, score, name, _tuple(annotated.boxes[best_same]), name, box, same_iou)
    return BoxFinding(MISSING, score, None, None, name, box, max(same_iou, other_iou))


def _spurious(annotated: Boxes, predicted: Boxes, iou: np.ndarray, near_iou: float) -> list[BoxFinding]:
    findings = []
    for a in range(len(annotated)):
        overlaps = iou[:, a] if len(predicted) else np.zeros(0)
        if np.any(overlaps >= near_iou):
            continue
        touching = predicted.scores[overlaps > 0] if len(predicted) else np.zeros(0)
        confidence = 1.0 - (float(touching.max()) if len(touching) else 0.0)
        findings.append(BoxFinding(SPURIOUS, confidence, annotated.classes[a], _tuple(annotated.boxes[a])))
    return findings


def _tuple(box: np.ndarray) -> tuple[float, float, float, float]:
    return (float(box[0]), float(box[1]), float(box[2]), float(box[3]))


def _rounded(box: tuple[float, ...] | None) -> list[float] | None:
    return None if box is None else [round(v, 1) for v in box]
