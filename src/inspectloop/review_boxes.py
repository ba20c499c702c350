"""Review with boxes: a detector's boxes shown on a review item, the reviewer's corrected boxes recorded.

An item queued from a detector's prediction carries its boxes (``predicted_boxes``, in the stored
image's pixels) in its details under ``BOXES_DETAIL``. The reviewer keeps, deletes, moves, resizes or
adds boxes and submits the set; ``record_boxes`` then, in one transaction:

- records each submitted box as a region annotation (annotator = the reviewer, source "reviewer"),
  which the next dataset version holds; the reviewer's earlier regions on the image are superseded
  (edited, or deleted when no submitted box comes from them), other annotators' regions stay;
- records the frame's image-level label as an annotation, as a class verdict does: the worst class
  among the boxes (``frame_label``), the good class when no box is left;
- closes the item, keeping in its details how the boxes were reviewed (kept, edited, drawn, deleted):
  per item, the detector's true and false boxes as the reviewer judged them.

A submission is refused whole, with one message, when a box lies outside the image, is degenerate
(smaller than ``MIN_BOX_PIXELS`` on a side), names a class the workspace does not define or the good
class, or when the view it was drawn on is stale (``view_token``: the item was decided, or the
reviewer's regions on the image changed since the page was drawn).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from inspectloop import review
from inspectloop.domain import Annotation, Box, ClassDefinition, Region, ReviewItem, Severity
from inspectloop.errors import LabelError, ReviewError
from inspectloop.runtime.prediction import Prediction
from inspectloop.store import Transaction
from inspectloop.store.regions import RegionRepository
from inspectloop.workspace import Workspace

BOXES_DETAIL = "boxes"  # review item detail: the model's boxes, [{"class", "score", "box": [x0, y0, x1, y1]}]
OUTCOME_DETAIL = "box_review"  # closed item detail: kept / edited / drawn / deleted counts and the region ids
MIN_BOX_PIXELS = 1.0  # a box narrower or lower than this is a click, not a region
MAX_BOXES = 500  # per submission: more is a runaway script, not a reviewer
KEPT_TOLERANCE = 0.5  # pixels: a predicted box moved less than this on every side was kept as it was
SEVERITY_RANK = {Severity.critical: 0, Severity.major: 1, Severity.minor: 2, Severity.none: 3}


@dataclass(frozen=True)
class ReviewedBox:
    """One box as the reviewer submits it; ``predicted`` is the index of the model's box it started from
    (None: drawn by the reviewer)."""

    class_name: str
    box: tuple[float, float, float, float]
    predicted: int | None = None

    @classmethod
    def from_json(cls, data: Any, index: int) -> ReviewedBox:
        """A box from the page's JSON (``{"class", "box": [x0, y0, x1, y1], "predicted"}``); LabelError if malformed."""
        where = f"box {index + 1}"
        if not isinstance(data, Mapping):
            raise LabelError(f"{where} is not an object", 'send {"class": NAME, "box": [x0, y0, x1, y1]}')
        name, coordinates, predicted = data.get("class"), data.get("box"), data.get("predicted")
        if not isinstance(name, str) or not name:
            raise LabelError(f"{where} names no class", "pick the box's class with its number key")
        if not isinstance(coordinates, list) or len(coordinates) != 4 or not all(
                isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in coordinates):
            raise LabelError(f"{where}: its corners are not four finite numbers", "send [x0, y0, x1, y1] in pixels")
        if predicted is not None and (not isinstance(predicted, int) or isinstance(predicted, bool)):
            raise LabelError(f"{where}: 'predicted' is not a box index", "send the index of the model's box, or null")
        x0, y0, x1, y1 = (float(v) for v in coordinates)
        return cls(name, (x0, y0, x1, y1), predicted)


def predicted_boxes(prediction: Prediction, frame_size: tuple[int, int] | None = None) -> list[dict[str, Any]] | None:
    """The prediction's boxes for a review item (class name, score, corners in the stored frame's pixels);
    None for a model that draws no boxes (a classifier, an anomaly heatmap).

    ``frame_size`` is the stored image's (width, height): a model that decoded a smaller draft of a
    JPEG saw fewer pixels, and its boxes are scaled to the image the reviewer sees.
    """
    regions = prediction.regions
    if regions is None or regions.boxes is None or regions.class_ids is None or regions.scores is None:
        return None
    names = list(prediction.scores)
    width, height = frame_size or regions.image_size
    sx, sy = width / regions.image_size[0], height / regions.image_size[1]
    return [{"class": names[int(c)], "score": round(float(p), 4),
             "box": [round(min(max(float(v) * s, 0.0), limit), 2)
                     for v, s, limit in zip(b, (sx, sy, sx, sy), (width, height, width, height), strict=True)]}
            for c, p, b in zip(regions.class_ids, regions.scores, regions.boxes, strict=True)]


def item_boxes(item: ReviewItem) -> list[dict[str, Any]] | None:
    """The model's boxes an item was queued with; None when the item is not a box review."""
    boxes = item.details.get(BOXES_DETAIL)
    return boxes if isinstance(boxes, list) else None


def view_token(regions: RegionRepository, item: ReviewItem, reviewer: str) -> str:
    """What the page was drawn from: the item, its boxes and the reviewer's current regions on the image
    (``regions``: the workspace's, or a transaction's). A submission carrying another token was drawn on a
    view that changed since, and is refused."""
    mine = [r.id for r in regions.current([item.image_sha256]) if r.annotator == reviewer]
    content = {"item": item.id, "status": item.status, "boxes": item_boxes(item), "mine": mine}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode("utf-8")).hexdigest()[:32]


def frame_label(boxes: Sequence[ReviewedBox], classes: Mapping[str, ClassDefinition], good: str) -> str:
    """The frame's image-level class: its worst box's (most severe class, then most boxes, then name);
    ``good`` without a box. A frame is as bad as its worst region."""
    if not boxes:
        return good
    counts: dict[str, int] = {}
    for box in boxes:
        counts[box.class_name] = counts.get(box.class_name, 0) + 1
    return min(counts, key=lambda name: (SEVERITY_RANK[classes[name].severity], -counts[name], name))


def check_boxes(boxes: Sequence[ReviewedBox], classes: Mapping[str, ClassDefinition], width: int,
                height: int, predicted: int) -> None:
    """LabelError naming the first box that cannot be recorded, and how to fix it."""
    if len(boxes) > MAX_BOXES:
        raise LabelError(f"{len(boxes)} boxes on one image (at most {MAX_BOXES})", "submit the boxes you mean")
    defects = sorted(name for name, c in classes.items() if not c.is_good)
    used: set[int] = set()
    for index, reviewed in enumerate(boxes):
        where, (x0, y0, x1, y1) = f"box {index + 1}", reviewed.box
        definition = classes.get(reviewed.class_name)
        if definition is None:
            raise LabelError(f"{where}: unknown class {reviewed.class_name!r} (box classes: {', '.join(defects)})",
                             "pick one of the listed classes, or ask a quality engineer to define it")
        if definition.is_good:
            raise LabelError(f"{where} is marked {reviewed.class_name!r}, a good class: a box marks a defect",
                             "delete the box, or give it a defect class (" + ", ".join(defects) + ")")
        if x1 - x0 < MIN_BOX_PIXELS or y1 - y0 < MIN_BOX_PIXELS:
            raise LabelError(f"{where} ({x0:g}, {y0:g}, {x1:g}, {y1:g}) has no area (under {MIN_BOX_PIXELS:g} px "
                             "on a side)", "drag out a box, or delete it")
        if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
            raise LabelError(f"{where} ({x0:g}, {y0:g}, {x1:g}, {y1:g}) reaches outside the {width}x{height} image",
                             "keep the box inside the image")
        if reviewed.predicted is not None:
            if not 0 <= reviewed.predicted < predicted or reviewed.predicted in used:
                raise LabelError(f"{where} claims to come from the model's box {reviewed.predicted}, which "
                                 f"{'another box already came from' if reviewed.predicted in used else 'is not there'}",
                                 "reload the page and review the item again")
            used.add(reviewed.predicted)


def record_boxes(workspace: Workspace, item_id: int, reviewer: str, boxes: Sequence[ReviewedBox], *,
                 seen: str, note: str | None = None) -> ReviewItem:
    """Record the reviewer's boxes on a box-review item as region annotations, the frame's label as an
    annotation, and close the item, in one transaction (see the module docstring). ReviewError when the
    item cannot be decided now or the view was stale; LabelError for a box that cannot be recorded."""
    if not reviewer or not reviewer.strip():
        raise ReviewError("no reviewer named", "log in, or pass the reviewer's name")
    item = review.get_item(workspace, item_id)
    model_boxes = item_boxes(item)
    if model_boxes is None:
        raise ReviewError(f"review item #{item_id} has no boxes to review", "answer it with a class instead")
    classes = workspace.db.labels.classes()
    record = workspace.db.images.get(item.image_sha256)
    if record is None:
        raise ReviewError(f"the image of review item #{item_id} is not in this workspace",
                          "skip the item; a quality engineer will look")
    check_boxes(boxes, classes, record.width, record.height, len(model_boxes))
    label = frame_label(boxes, classes, _good_class(classes, item.suggestion))
    now = review.stamp()
    with workspace.db.transaction() as tx:
        item = review.check_decidable(tx, item_id, reviewer, now)
        if seen != view_token(tx.regions, item, reviewer):
            raise ReviewError(f"review item #{item_id} changed since your page showed it (it was decided, or your "
                              "boxes on this image were edited elsewhere)", "nothing was recorded; review it again")
        region_ids = _replace_regions(tx, item.image_sha256, reviewer, boxes, datetime.fromisoformat(now))
        annotation_id = tx.labels.add_annotation(Annotation(
            sha256=item.image_sha256, class_name=label, annotator=reviewer, source="reviewer",
            created_at=datetime.fromisoformat(now), note=note))
        outcome = {**box_outcome(boxes, model_boxes), "region_ids": region_ids}
        closed = tx.review.close(item_id, label=label, reviewer=reviewer, at=now, annotation_id=annotation_id,
                                 details={**item.details, OUTCOME_DETAIL: outcome})
        if not closed:
            raise ReviewError(f"review item #{item_id} was decided by someone else just now",
                              "nothing was recorded; go on with the next item")
    return review.get_item(workspace, item_id)


def box_outcome(boxes: Sequence[ReviewedBox], model_boxes: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """How the reviewer treated the model's boxes: kept as they were, edited (moved, resized or reclassed),
    deleted; and how many the reviewer drew that the model missed."""
    kept = edited = 0
    for reviewed in boxes:
        if reviewed.predicted is None:
            continue
        original = model_boxes[reviewed.predicted]
        same_place = all(abs(a - float(b)) <= KEPT_TOLERANCE for a, b in zip(reviewed.box, original["box"], strict=True))
        if same_place and reviewed.class_name == original.get("class"):
            kept += 1
        else:
            edited += 1
    drawn = sum(1 for b in boxes if b.predicted is None)
    return {"kept": kept, "edited": edited, "deleted": len(model_boxes) - kept - edited, "drawn": drawn}


def _good_class(classes: Mapping[str, ClassDefinition], suggestion: str | None) -> str:
    good = sorted(name for name, c in classes.items() if c.is_good)
    if not good:
        raise LabelError("this workspace defines no good class, so a frame without boxes has no label",
                         "define one: inspectloop classes add good --good")
    return suggestion if suggestion in good else good[0]


def _replace_regions(tx: Transaction, sha256: str, reviewer: str, boxes: Sequence[ReviewedBox], now: datetime) -> list[int]:
    """Record the submitted boxes as the reviewer's regions on the image; their earlier ones are superseded
    (the first ones edited into the new boxes, the rest deleted). Return the new regions' ids."""
    earlier = [r.id for r in tx.regions.current([sha256]) if r.annotator == reviewer and r.id is not None]
    ids: list[int] = []
    for index, reviewed in enumerate(boxes):
        x0, y0, x1, y1 = (round(v, 2) for v in reviewed.box)
        region = Region(sha256=sha256, class_name=reviewed.class_name, box=Box(x0=x0, y0=y0, x1=x1, y1=y1),
                        annotator=reviewer, source="reviewer", created_at=now)
        ids.append(tx.regions.replace(earlier[index], region) if index < len(earlier) else tx.regions.add([region])[0])
    for old in earlier[len(boxes):]:
        tx.regions.delete(old, annotator=reviewer, source="reviewer")
    return ids
