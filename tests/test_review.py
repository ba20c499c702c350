"""The review queue: exclusive claims with expiring leases, decisions that become annotations, the dashboard's figures."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from inspectloop import review
from inspectloop.datasets import SplitPlan, create_version
from inspectloop.errors import ReviewError
from inspectloop.store import schema as s
from tests.review_helpers import OLDER, RECENT, Seeded, seed


@pytest.fixture
def seeded(tmp_path: Path) -> Seeded:
    result = seed(tmp_path, items=12)
    yield result
    result.workspace.close()


def test_claims_go_by_reason_then_priority_and_a_live_claim_is_returned_again(seeded: Seeded) -> None:
    ws = seeded.workspace
    first = review.claim_next(ws, "ana")
    assert first is not None and first.id == seeded.items[0] and first.claimed_by == "ana"
    assert review.claim_next(ws, "ana").id == first.id  # the same reviewer keeps the item they hold
    assert review.claim_next(ws, "bo").id == seeded.items[2]  # items[1] is a shadow item: it waits
    claimed = [review.claim_next(ws, f"r{i}") for i in range(len(seeded.items) - 2)]
    reasons = [item.reason for item in claimed if item is not None]
    assert reasons == sorted(reasons, key=review.REASONS.index) and reasons[-1] == "shadow"


def test_recalibration_and_qc_items_are_served_before_shadow_items(seeded: Seeded) -> None:
    """The issue's symptom: recalibration items waited behind every (higher-priority) shadow item."""
    ws = seeded.workspace
    with ws.db.engine.begin() as conn:
        conn.execute(update(s.review_items).values(status="done"))  # an empty queue, then:
    with ws.db.transaction() as tx:
        shadow = review.enqueue(tx, image_sha256=seeded.images[0], reason="shadow", priority=0.99)
        drift = review.enqueue(tx, image_sha256=seeded.images[1], reason="drift", priority=0.9)
        qc = review.enqueue(tx, image_sha256=seeded.images[2], reason="qc")
        recalibration = review.enqueue(tx, image_sha256=seeded.images[3], reason="recalibration")
        uncertain = review.enqueue(tx, image_sha256=seeded.images[4], reason="uncertain", priority=0.1)
    order = [review.claim_next(ws, f"r{i}").id for i in range(5)]  # type: ignore[union-attr]
    assert order == [uncertain, recalibration, qc, drift, shadow]


def test_threads_never_claim_the_same_item(seeded: Seeded) -> None:
    claims: list[int | None] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def worker(name: str) -> None:
        barrier.wait()
        item = review.claim_next(seeded.workspace, name)
        with lock:
            claims.append(item.id if item else None)

    threads = [threading.Thread(target=worker, args=(f"r{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert None not in claims and len(set(claims)) == 8, claims


def test_an_expired_lease_frees_the_item(seeded: Seeded) -> None:
    ws = seeded.workspace
    item = review.claim_next(ws, "ana", lease_seconds=60)
    past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat(timespec="seconds")
    with ws.db.engine.begin() as conn:
        conn.execute(update(s.review_items).where(s.review_items.c.id == item.id).values(claimed_until=past))
    assert review.claim_next(ws, "bo").id == item.id


def test_a_decision_becomes_a_reviewer_annotation_and_closes_the_item(seeded: Seeded) -> None:
    ws = seeded.workspace
    item = review.claim_next(ws, "ana")
    done = review.record_verdict(ws, item.id, "ana", "dent", note="edge of the ring")
    assert (done.status, done.decided_label, done.decided_by, done.claimed_by) == ("done", "dent", "ana", None)
    with ws.db.engine.connect() as conn:
        row = conn.execute(select(s.annotations).where(s.annotations.c.sha256 == item.image_sha256)).one()
        annotation_id = conn.execute(select(s.review_items.c.annotation_id)
                                     .where(s.review_items.c.id == item.id)).scalar_one()
    assert (row.class_name, row.annotator, row.source, row.note) == ("dent", "ana", "reviewer", "edge of the ring")
    assert annotation_id == row.id
    assert review.claim_next(ws, "ana").id != item.id


@pytest.mark.parametrize(("case", "message"), [
    ("unknown class", "unknown class 'crack'"),
    ("claimed by another", "claimed by bo"),
    ("already decided", "already decided by ana"),
    ("no such item", "no review item #9999"),
])
def test_decisions_that_cannot_stand_are_refused_with_a_fix(seeded: Seeded, case: str, message: str) -> None:
    ws = seeded.workspace
    item = review.claim_next(ws, "ana")
    label, item_id, reviewer = "good", item.id, "ana"
    if case == "unknown class":
        label = "crack"
    elif case == "claimed by another":
        item_id = review.claim_next(ws, "bo").id
    elif case == "already decided":
        review.record_verdict(ws, item.id, "ana", "good")
        reviewer = "bo"
    else:
        item_id = 9999
    with pytest.raises(ReviewError, match=message) as caught:
        review.record_verdict(ws, item_id, reviewer, label)
    assert caught.value.hint
    with ws.db.engine.connect() as conn:
        reviewer_annotations = conn.execute(select(s.annotations).where(s.annotations.c.source == "reviewer")).all()
    assert len(reviewer_annotations) == (1 if case == "already decided" else 0)


def test_skip_and_release(seeded: Seeded) -> None:
    ws = seeded.workspace
    item = review.claim_next(ws, "ana")
    assert review.release(ws, item.id, "ana") and not review.release(ws, item.id, "ana")
    assert review.claim_next(ws, "bo").id == item.id
    skipped = review.skip(ws, item.id, "bo", note="glare")
    assert skipped.status == "skipped" and skipped.details["skipped_by"] == "bo"
    queue = review.backlog(ws)
    assert queue.skipped == 1 and queue.open == len(seeded.items) - 1
    assert [d.id for d in review.recent_decisions(ws)] == [item.id]


def test_backlog_counts_open_items_by_reason(seeded: Seeded) -> None:
    review.claim_next(seeded.workspace, "ana")
    queue = review.backlog(seeded.workspace)
    shadow = sum(1 for i in range(12) if i % 4 == 1)
    assert queue.open_by_reason == {"uncertain": 12 - shadow, "shadow": shadow, "qc": 0, "recalibration": 0,
                                    "drift": 0, "selected": 0}
    assert (queue.claimed, queue.skipped, queue.done) == (1, 0, 0)


def test_decision_shares_per_camera_and_window(seeded: Seeded) -> None:
    ws = seeded.workspace
    day = review.decision_shares(ws, since=datetime.now(UTC) - timedelta(hours=24))
    assert day.per_camera["cam-A"].counts == dict(zip(("pass", "reject", "review"), RECENT["cam-A"], strict=True))
    assert day.overall.total == 14 and day.overall.shares["pass"] == pytest.approx(9 / 14)
    every = review.decision_shares(ws)
    assert every.per_camera["cam-B"].counts["reject"] == RECENT["cam-B"][1] + OLDER["cam-B"][1]
    assert every.overall.total == 18


def test_recent_discrepancies_are_the_disagreements_newest_first(seeded: Seeded) -> None:
    found = review.recent_discrepancies(seeded.workspace)
    assert len(found) == 3
    assert all((d.shadow_label, d.shadow_model) == ("dent", "line7-v2") for d in found)
    assert [d.at for d in found] == sorted((d.at for d in found), reverse=True)


def test_the_next_dataset_version_takes_the_reviewers_labels(seeded: Seeded) -> None:
    """Production images labelled only by reviewers join the next dataset version with the reviewers' label."""
    ws = seeded.workspace
    plan = SplitPlan(val_fraction=0.25, test_fraction=0.25, group_by="none")
    before = create_version(ws, plan, min_per_split=0)
    labels = ("good", "scratch", "dent", "stain")
    decided = {}
    for index in range(12):
        item = review.claim_next(ws, "ana")
        decided[item.image_sha256] = labels[index % 4]
        review.record_verdict(ws, item.id, "ana", decided[item.image_sha256])
    after = create_version(ws, plan, min_per_split=0)
    rows = {i.sha256: i.label for i in after.items}
    assert {d: rows.get(d) for d in decided} == decided
    assert {i.sha256 for i in before.items} <= set(rows)  # nothing of the parent is dropped
    assert Counter(after.summary["classes"]) == Counter(labels)


def test_item_metadata_joins_capture_fields_and_the_queuing_prediction(seeded: Seeded) -> None:
    ws = seeded.workspace
    with ws.db.transaction() as tx:
        item_id = review.enqueue(tx, image_sha256=seeded.images[0], reason="qc", prediction_id=1,
                                 suggestion="good", details={"qc_label": "scratch"})
    shown = review.item_metadata(ws, review.get_item(ws, item_id))
    assert shown["part_id"] == "P-0000" and shown["camera"] == "cam-A" and shown["line"] == "L7"
    assert "model_name" not in shown and "decision" not in shown  # each model's view is in score_panels


def test_score_panels_name_each_models_role_and_version(seeded: Seeded) -> None:
    """The issue's symptom: the shadow model's scores sat beside production's capture panel, unnamed."""
    ws = seeded.workspace
    with ws.db.transaction() as tx:  # prediction 1 was shadowed by line7-v2 (see review_helpers)
        item_id = review.enqueue(tx, image_sha256=seeded.images[0], reason="shadow", prediction_id=1,
                                 suggestion="dent", scores={"dent": 0.7})
    panels = review.score_panels(ws, review.get_item(ws, item_id))
    assert [(p.role, p.model, p.decision, p.label) for p in panels] == [
        ("production", "line7-v1", "pass", "good"), ("shadow", "line7-v2", "reject", "dent")]
    assert panels[0].scores == [("good", 0.8)] and panels[1].confidence == 0.7


@pytest.mark.parametrize(("reason", "role", "model"), [
    ("shadow", "shadow", "line7-v2"),  # from the item's details: its queuing prediction is not recorded
    ("uncertain", "production", None),
])
def test_an_item_without_its_prediction_shows_the_scores_it_was_queued_with(seeded: Seeded, reason: str,
                                                                              role: str, model: str | None) -> None:
    item = next(i for i in (review.get_item(seeded.workspace, k) for k in seeded.items) if i.reason == reason)
    [panel] = review.score_panels(seeded.workspace, item)
    assert (panel.role, panel.model, panel.label) == (role, model, item.suggestion)
    assert panel.scores[0][1] == max(item.scores.values())


# --- anomaly models and the novelty guard (issue 11) ------------------------------------------------------

def test_an_anomaly_review_item_carries_its_drawn_heatmap_and_takes_a_class_as_its_answer(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    import io

    import numpy as np
    from PIL import Image

    from inspectloop.domain import CaptureMeta
    from inspectloop.runtime import Prediction, Regions
    from inspectloop.runtime.images import decode_image
    from inspectloop.serve.prediction_log import PredictionLog, PredictionRecord
    from inspectloop.store import sha256_bytes
    from tests.service_helpers import image_bytes, line_workspace

    line = line_workspace(tmp_path / "ws")
    ws = line.workspace
    heatmap = np.zeros((64, 64), dtype=np.float32)
    heatmap[10:14, 40:44] = 2.5
    data = image_bytes("scratch", 3)
    size = Image.open(io.BytesIO(data)).size
    prediction = Prediction("anomaly", 0.6, {"good": 0.4, "anomaly": 0.6}, "review", {"total": 1.0},
                            regions=Regions(image_size=size, heatmap=heatmap), anomaly_score=2.5)
    log = PredictionLog(ws, ingest_id=ws.db.images.begin_ingest("test", "service"))
    log.start()
    try:
        log.submit(PredictionRecord(request_id="r1", source="http", meta=CaptureMeta(camera="cam1"), data=data,
                                    decoded=decode_image(data), sha256=sha256_bytes(data),
                                    model_version_id=line.production.id, model_name="anomaly v1",
                                    prediction=prediction, keep_image=False)).result(timeout=30)
    finally:
        log.stop()
    item = review.claim_next(ws, "ana")
    assert item is not None and item.suggestion == "anomaly" and item.details["anomaly_score"] == 2.5
    digest = review.heatmap_digest(ws, item)
    assert digest is not None and digest == item.details[review.HEATMAP_DETAIL]
    overlay = Image.open(ws.blobs.path_for(digest))
    assert overlay.mode == "RGBA" and overlay.size[0] / overlay.size[1] == pytest.approx(size[0] / size[1], rel=0.02)
    assert review.answerable_suggestion(ws, item) is None  # "anomaly" is not a class: the reviewer names one
    with pytest.raises(ReviewError, match="unknown class 'anomaly'"):
        review.record_verdict(ws, item.id, "ana", "anomaly")
    done = review.record_verdict(ws, item.id, "ana", "scratch")
    assert done.decided_label == "scratch"
    with ws.db.engine.connect() as conn:
        row = conn.execute(select(s.annotations).where(s.annotations.c.sha256 == item.image_sha256)).one()
    assert (row.class_name, row.source) == ("scratch", "reviewer")
    ws.close()


def test_a_classifier_review_keeps_its_novelty_and_no_heatmap() -> None:
    from inspectloop.runtime import Prediction

    prediction = Prediction("good", 0.95, {"good": 0.95, "scratch": 0.05}, "review", {"total": 1.0}, novelty=0.7123456)
    assert review.heatmap_overlay(prediction) is None
    assert review.prediction_details(prediction) == {"novelty": 0.7123}
