"""Review with boxes: a detector's boxes on a review item, the reviewer's corrections as region annotations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from inspectloop import review
from inspectloop.datasets import SplitPlan, create_version
from inspectloop.errors import LabelError, ReviewError
from inspectloop.review_boxes import (
    BOXES_DETAIL, OUTCOME_DETAIL, ReviewedBox, box_outcome, frame_label, predicted_boxes, record_boxes, view_token,
)
from inspectloop.runtime import Prediction, Regions
from inspectloop.store import schema as s
from tests.review_helpers import Seeded, seed

SIZE = 96  # the seeded production images are 96 x 96
# A detector's classes: the good class first, then its box classes (as runtime.model orders them).
SCORES = {"good": 0.2, "scratch": 0.8, "dent": 0.6, "stain": 0.1}
BOXES = np.array([[10, 10, 30, 20], [50, 40, 70, 80], [5, 60, 25, 90]], dtype=np.float32)


def detector_prediction(image_size: tuple[int, int] = (SIZE, SIZE), boxes: np.ndarray = BOXES) -> Prediction:
    return Prediction("scratch", 0.8, SCORES, "review", {}, regions=Regions(
        image_size=image_size, class_ids=np.array([1, 2, 1]), scores=np.array([0.8, 0.6, 0.45]), boxes=boxes))


@pytest.fixture
def seeded(tmp_path: Path) -> Seeded:
    result = seed(tmp_path, items=6)
    yield result
    result.workspace.close()


def box_item(seeded: Seeded, image: int = -1) -> review.ReviewItem:
    """A box-review item queued from the detector's prediction, claimed by ana."""
    prediction = detector_prediction()
    with seeded.workspace.db.transaction() as tx:
        item_id = review.enqueue(tx, image_sha256=seeded.images[image], reason="uncertain", suggestion="scratch",
                                 scores=prediction.scores, details=review.prediction_details(prediction),
                                 priority=999.0)
    claimed = review.claim_next(seeded.workspace, "ana")
    assert claimed is not None and claimed.id == item_id
    return claimed


def counts(seeded: Seeded) -> tuple[int, int]:
    with seeded.workspace.db.engine.connect() as conn:
        return (conn.execute(select(func.count()).select_from(s.regions)).scalar_one(),
                conn.execute(select(func.count()).select_from(s.annotations)
                             .where(s.annotations.c.source == "reviewer")).scalar_one())


def test_a_detectors_boxes_ride_on_its_review_item_in_the_stored_frames_pixels() -> None:
    boxes = predicted_boxes(detector_prediction())
    assert boxes == [{"class": "scratch", "score": 0.8, "box": [10.0, 10.0, 30.0, 20.0]},
                     {"class": "dent", "score": 0.6, "box": [50.0, 40.0, 70.0, 80.0]},
                     {"class": "scratch", "score": 0.45, "box": [5.0, 60.0, 25.0, 90.0]}]
    # The model saw a half-size draft of the JPEG: its boxes are scaled to the frame the reviewer sees.
    draft = detector_prediction((48, 48), BOXES / 2)
    assert [b["box"] for b in predicted_boxes(draft, (SIZE, SIZE))] == [b["box"] for b in boxes]
    assert review.prediction_details(detector_prediction())[BOXES_DETAIL] == boxes
    classifier = Prediction("good", 0.7, {"good": 0.7, "scratch": 0.3}, "review", {})
    assert predicted_boxes(classifier) is None and BOXES_DETAIL not in review.prediction_details(classifier)


def test_the_frames_label_is_its_worst_box_and_good_without_one(seeded: Seeded) -> None:
    classes = seeded.workspace.db.labels.classes()
    scratch, dent, stain = (ReviewedBox(name, (0, 0, 5, 5)) for name in ("scratch", "dent", "stain"))
    assert frame_label([], classes, "good") == "good"
    assert frame_label([stain, scratch, scratch], classes, "good") == "scratch"  # major beats minor
    assert frame_label([scratch, scratch, dent], classes, "good") == "dent"  # critical beats a majority


def test_kept_edited_deleted_and_drawn_boxes_are_counted_against_the_models() -> None:
    model = predicted_boxes(detector_prediction())
    reviewed = [ReviewedBox("scratch", (10.2, 10, 30, 20), 0), ReviewedBox("stain", (50, 40, 70, 80), 1),
                ReviewedBox("dent", (1, 1, 9, 9))]
    assert box_outcome(reviewed, model) == {"kept": 1, "edited": 1, "deleted": 1, "drawn": 1}


def test_the_reviewers_boxes_become_region_annotations_and_the_frames_label_in_one_step(seeded: Seeded) -> None:
    ws = seeded.workspace
    item = box_item(seeded)
    seen = view_token(ws.db.regions, item, "ana")
    boxes = [ReviewedBox("scratch", (10, 10, 30, 20), 0),  # kept as the model drew it
             ReviewedBox("dent", (48, 38, 75, 85), 1),  # resized
             ReviewedBox("stain", (70, 5, 90, 25))]  # drawn; the model's third box was deleted
    done = record_boxes(ws, item.id, "ana", boxes, seen=seen, note="two marks")
    assert (done.status, done.decided_label, done.decided_by) == ("done", "dent", "ana")
    assert done.details[OUTCOME_DETAIL]["kept"] == 1 and done.details[OUTCOME_DETAIL]["deleted"] == 1
    regions = [r for r in ws.db.regions.current([item.image_sha256])]
    assert [(r.class_name, r.box.as_tuple(), r.annotator, r.source) for r in regions] == [
        ("scratch", (10, 10, 30, 20), "ana", "reviewer"), ("dent", (48, 38, 75, 85), "ana", "reviewer"),
        ("stain", (70, 5, 90, 25), "ana", "reviewer")]
    assert done.details[OUTCOME_DETAIL]["region_ids"] == [r.id for r in regions]
    with ws.db.engine.connect() as conn:
        note = conn.execute(select(s.annotations.c.note).where(s.annotations.c.id == select(
            s.review_items.c.annotation_id).where(s.review_items.c.id == item.id).scalar_subquery())).scalar_one()
    assert note == "two marks"
    version = create_version(ws, SplitPlan(val_fraction=0.25, test_fraction=0.25, group_by="none"), min_per_split=0)
    held = {r.id for r in ws.db.regions.in_version(version.name)}
    assert {r.id for r in regions} <= held
    assert {i.sha256: i.label for i in version.items}[item.image_sha256] == "dent"


def test_deleting_every_box_labels_the_frame_good_and_draws_no_region(seeded: Seeded) -> None:
    ws = seeded.workspace
    item = box_item(seeded)
    done = record_boxes(ws, item.id, "ana", [], seen=view_token(ws.db.regions, item, "ana"))
    assert done.decided_label == "good" and done.details[OUTCOME_DETAIL]["deleted"] == 3
    assert ws.db.regions.current([item.image_sha256]) == []


def test_a_second_review_of_the_image_supersedes_the_reviewers_earlier_boxes_only(seeded: Seeded) -> None:
    ws = seeded.workspace
    first = box_item(seeded)
    record_boxes(ws, first.id, "ana", [ReviewedBox("scratch", (1, 1, 9, 9)), ReviewedBox("dent", (20, 20, 30, 30))],
                 seen=view_token(ws.db.regions, first, "ana"))
    again = box_item(seeded)  # the same image queued once more
    record_boxes(ws, again.id, "ana", [ReviewedBox("stain", (2, 2, 8, 8))], seen=view_token(ws.db.regions, again, "ana"))
    current = ws.db.regions.current([again.image_sha256])
    assert [(r.class_name, r.annotator) for r in current] == [("stain", "ana")]


@pytest.mark.parametrize(("box", "message"), [
    (ReviewedBox("scratch", (80, 80, 100, 90)), "reaches outside the 96x96 image"),
    (ReviewedBox("scratch", (-1, 0, 10, 10)), "reaches outside"),
    (ReviewedBox("crack", (0, 0, 10, 10)), "unknown class 'crack' (box classes: dent, scratch, stain)"),
    (ReviewedBox("good", (0, 0, 10, 10)), "a good class: a box marks a defect"),
    (ReviewedBox("scratch", (10, 10, 10.5, 30)), "has no area"),
    (ReviewedBox("scratch", (10, 10, 20, 20), 7), "the model's box 7, which is not there"),
])
def test_a_box_that_cannot_be_recorded_refuses_the_whole_submission(seeded: Seeded, box: ReviewedBox,
                                                                    message: str) -> None:
    ws = seeded.workspace
    item = box_item(seeded)
    before = counts(seeded)
    good = ReviewedBox("scratch", (10, 10, 30, 20), 0)
    with pytest.raises(LabelError, match=message.replace("(", r"\(").replace(")", r"\)")):
        record_boxes(ws, item.id, "ana", [good, box], seen=view_token(ws.db.regions, item, "ana"))
    assert counts(seeded) == before and review.get_item(ws, item.id).status == "open"


def test_one_model_box_cannot_become_two(seeded: Seeded) -> None:
    item = box_item(seeded)
    twice = [ReviewedBox("scratch", (10, 10, 30, 20), 0), ReviewedBox("scratch", (40, 10, 60, 20), 0)]
    with pytest.raises(LabelError, match="another box already came from"):
        record_boxes(seeded.workspace, item.id, "ana", twice, seen=view_token(seeded.workspace.db.regions, item, "ana"))


def test_a_stale_view_is_refused_and_writes_nothing(seeded: Seeded) -> None:
    ws = seeded.workspace
    item = box_item(seeded)
    seen = view_token(ws.db.regions, item, "ana")
    # Meanwhile ana's boxes on this image change elsewhere (another tab, the regions CLI).
    from inspectloop.domain import Box, Region

    ws.db.regions.add([Region(sha256=item.image_sha256, class_name="dent", box=Box(x0=1, y0=1, x1=5, y1=5),
                              annotator="ana", source="reviewer")])
    before = counts(seeded)
    with pytest.raises(ReviewError, match="changed since your page showed it"):
        record_boxes(ws, item.id, "ana", [ReviewedBox("scratch", (10, 10, 30, 20), 0)], seen=seen)
    assert counts(seeded) == before and review.get_item(ws, item.id).status == "open"


def test_a_decided_item_or_one_held_by_another_reviewer_is_refused(seeded: Seeded) -> None:
    ws = seeded.workspace
    item = box_item(seeded)
    seen = view_token(ws.db.regions, item, "ana")
    with pytest.raises(ReviewError, match="claimed by ana"):
        record_boxes(ws, item.id, "bo", [], seen=seen)
    record_boxes(ws, item.id, "ana", [], seen=seen)
    with pytest.raises(ReviewError, match="already decided by ana"):
        record_boxes(ws, item.id, "ana", [], seen=seen)


def test_an_item_without_boxes_is_answered_with_a_class(seeded: Seeded) -> None:
    item = review.claim_next(seeded.workspace, "ana")
    with pytest.raises(ReviewError, match="has no boxes to review"):
        record_boxes(seeded.workspace, item.id, "ana", [], seen="")


@pytest.mark.parametrize(("data", "message"), [
    ("scratch", "box 1 is not an object"),
    ({"box": [0, 0, 1, 1]}, "box 1 names no class"),
    ({"class": "scratch", "box": [0, 0, 1]}, "not four finite numbers"),
    ({"class": "scratch", "box": [0, 0, "1", 1]}, "not four finite numbers"),
    ({"class": "scratch", "box": [0, 0, 1, float("nan")]}, "not four finite numbers"),
    ({"class": "scratch", "box": [0, 0, 1, 1], "predicted": "0"}, "not a box index"),
])
def test_malformed_boxes_from_the_page_are_named(data: object, message: str) -> None:
    with pytest.raises(LabelError, match=message):
        ReviewedBox.from_json(data, 0)
