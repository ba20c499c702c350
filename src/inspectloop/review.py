"""The review queue: images waiting for a human, and what the human decided.

Items come from uncertain predictions (the review band), shadow discrepancies, QC disagreements,
recalibration samples and drift samples. Reviewers are served by reason first (``REASONS`` order),
then by priority. A reviewer's verdict (``record_verdict``) becomes an annotation (annotator =
reviewer, source = "reviewer") that the next dataset version picks up.

An item queued from an anomaly model carries its heatmap, drawn once as a small transparent PNG blob
(``HEATMAP_DETAIL`` in its details names it) for the review page to lay over the image; the full map
is never logged. Its suggestion ("anomaly") is not a class: the reviewer answers good or a defect class,
and that answer becomes the annotation like any other.

An item queued from a detector carries its boxes; the reviewer answers it with corrected boxes instead of a
class (``review_boxes``), which become region annotations and the frame's label.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from inspectloop.domain import REASONS, Annotation, Discrepancy, LoggedPrediction, ReviewItem, ShadowResult
from inspectloop.errors import ReviewError
from inspectloop.runtime.decision import Decision
from inspectloop.runtime.prediction import Prediction
from inspectloop.store import Transaction, sha256_bytes
from inspectloop.workspace import Workspace


def enqueue(tx: Transaction, *, image_sha256: str, reason: str, prediction_id: int | None = None,
            model_version_id: int | None = None, suggestion: str | None = None,
            scores: Mapping[str, float] | None = None, details: Mapping[str, Any] | None = None,
            priority: float = 0.0) -> int | None:
    """Add an open item inside the caller's transaction; return its id, or None when the image already
    waits for the same reason (one open item per image and reason). The image must be in ``images``.
    """
    if reason not in REASONS:
        raise ValueError(f"unknown review reason {reason!r}; expected one of {REASONS}")
    return tx.review.enqueue(image_sha256=image_sha256, reason=reason, prediction_id=prediction_id,
                             model_version_id=model_version_id, suggestion=suggestion, scores=scores,
                             details=details, priority=priority)


HEATMAP_DETAIL = "heatmap_overlay"  # review item detail: the blob digest of the drawn heatmap overlay (PNG)


def heatmap_overlay(prediction: Prediction) -> bytes | None:
    """The prediction's heatmap drawn as a transparent PNG at its image's aspect ratio (None without one)."""
    regions = prediction.regions
    if regions is None or regions.heatmap is None:
        return None
    from inspectloop.reports.heatmaps import overlay_png

    return overlay_png(regions.heatmap, regions.image_size)


def prediction_details(prediction: Prediction, overlay: bytes | None = None,
                       frame_size: tuple[int, int] | None = None) -> dict[str, Any]:
    """What a review item keeps of the prediction that queued it beyond its scores: an anomaly model's raw
    score, a classifier's novelty score, the digest of the drawn heatmap (stored as a blob beside it), and a
    detector's boxes in the pixels of the stored frame (``frame_size``: its width and height), which the
    reviewer corrects (``review_boxes``)."""
    from inspectloop.review_boxes import BOXES_DETAIL, predicted_boxes

    details: dict[str, Any] = {}
    boxes = predicted_boxes(prediction, frame_size)
    if boxes is not None:
        details[BOXES_DETAIL] = boxes
    if prediction.anomaly_score is not None:
        details["anomaly_score"] = round(float(prediction.anomaly_score), 4)
    if prediction.novelty is not None:
        details["novelty"] = round(float(prediction.novelty), 4)
    if overlay is not None:
        details[HEATMAP_DETAIL] = sha256_bytes(overlay)
    return details


def heatmap_digest(workspace: Workspace, item: ReviewItem) -> str | None:
    """The blob digest of the item's heatmap overlay, when it has one and the blob is there."""
    digest = item.details.get(HEATMAP_DETAIL)
    return digest if isinstance(digest, str) and workspace.blobs.exists(digest) else None


def answerable_suggestion(workspace: Workspace, item: ReviewItem) -> str | None:
    """The item's suggestion when a reviewer can confirm it as is: a defined class (an anomaly model suggests
    "anomaly", which the reviewer must name as good or a defect class)."""
    return item.suggestion if item.suggestion in workspace.db.labels.classes() else None


DEFAULT_LEASE_SECONDS = 300  # a reviewer who walks away frees the item after five minutes
CLAIM_ATTEMPTS = 20  # each failed attempt means another reviewer took that item first; try the next
# What the reviewer sees of the prediction that queued an item: its capture fields (its scores: ``score_panels``).
_PREDICTION_SHOWN = ("camera", "line", "shift", "lighting", "part_id", "session", "received_at")


@dataclass(frozen=True)
class ScorePanel:
    """One model's scores on a review item's image, named by its role and model version."""

    role: str  # production | shadow
    model: str | None  # the model version's name (the served file's name and version); None: not recorded
    label: str | None
    decision: str | None
    confidence: float | None
    scores: list[tuple[str, float]]  # highest first


# Whose label an item's suggestion is: the shadow's for shadow discrepancies and QC disagreements
# (the candidate's label, see serve.prediction_log), production's otherwise.
SUGGESTED_BY = {"shadow": "shadow", "qc": "shadow"}


@dataclass(frozen=True)
class Backlog:
    """Open items by reason, how many of them are claimed right now, and items reviewers skipped."""

    open_by_reason: dict[str, int]
    claimed: int
    skipped: int
    done: int

    @property
    def open(self) -> int:
        return sum(self.open_by_reason.values())


@dataclass(frozen=True)
class Rates:
    """Counts of pass / reject / review decisions and their shares (0 when there are none)."""

    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def shares(self) -> dict[str, float]:
        total = self.total
        return {d.value: (self.counts.get(d, 0) / total if total else 0.0) for d in Decision}


@dataclass(frozen=True)
class DecisionShares:
    """Production decision rates, overall and per camera, since a time (None: all time)."""

    since: str | None
    overall: Rates
    per_camera: dict[str, Rates]


def claim_next(workspace: Workspace, reviewer: str, lease_seconds: int = DEFAULT_LEASE_SECONDS) -> ReviewItem | None:
    """Claim the first open item whose lease is free or expired, by reason (``REASONS`` order) then priority;
    None when the queue is empty.

    A reviewer who still holds a live claim gets that item again (a reloaded page shows the same image).
    Two reviewers never hold the same item: the claim is a conditional UPDATE that only one can win.
    """
    _check_reviewer(reviewer)
    now = stamp()
    until = stamp(lease_seconds)
    held = workspace.db.review.held_by(reviewer, now)
    if held is not None:
        return held
    for _ in range(CLAIM_ATTEMPTS):
        with workspace.db.transaction() as tx:
            candidate = tx.review.next_claimable(now)
            if candidate is None:
                return None
            won = tx.review.claim(candidate, reviewer, now, until)
        if won:
            return get_item(workspace, candidate)
    raise ReviewError("the review queue is too busy to claim an item right now",
                      "try again in a moment; if it persists, check that the database is not locked")


def get_item(workspace: Workspace, item_id: int) -> ReviewItem:
    """One review item by id; ReviewError when there is none."""
    item = workspace.db.review.get(item_id)
    if item is None:
        raise ReviewError(f"no review item #{item_id}", "reload the review page to get the next item")
    return item


def item_metadata(workspace: Workspace, item: ReviewItem) -> dict[str, str]:
    """What the reviewer sees about where the image came from: its capture fields, and those of the prediction
    that queued it. (What each model made of it: ``score_panels``.)"""
    shown: dict[str, str] = {}
    if item.prediction_id is not None:
        prediction = workspace.db.predictions.get(item.prediction_id)
        if prediction is not None:
            fields = {name: getattr(prediction, name) for name in _PREDICTION_SHOWN}
            shown = {k: str(v) for k, v in fields.items() if v is not None}
    record = workspace.db.images.get(item.image_sha256)
    if record is not None:
        shown = {**{k: v for k, v in record.meta.fields().items() if v}, **shown}
        if record.meta.captured_at is not None:
            shown["captured_at"] = record.meta.captured_at.isoformat(sep=" ", timespec="seconds")
    return shown


def suspect_camera(workspace: Workspace, item: ReviewItem) -> tuple[str, str | None] | None:
    """When the prediction that queued ``item`` is suspect (its camera had failed a health check): the camera,
    and the time of its failed check if it still fails (None: a later check passed). None otherwise."""
    if item.prediction_id is None:
        return None
    prediction = workspace.db.predictions.get(item.prediction_id)
    if prediction is None or not prediction.suspect:
        return None
    camera = prediction.camera or "its camera"
    return camera, workspace.db.cameras.failing().get(camera)


def score_panels(workspace: Workspace, item: ReviewItem) -> list[ScorePanel]:
    """Every model's scores on the item's image, production first, each named by role and version.

    From the prediction that queued the item (production's, and each shadow result logged on it); an item
    queued without one shows the scores it was queued with, attributed by its reason (``SUGGESTED_BY``).
    """
    production = workspace.db.predictions.get(item.prediction_id) if item.prediction_id is not None else None
    if production is None:
        if not item.scores:
            return []
        role = SUGGESTED_BY.get(item.reason, "production")
        version = (workspace.db.registry.find(version_id=item.model_version_id)
                   if item.model_version_id is not None else None)
        model = version.name if version is not None else item.details.get(f"{role}_model")
        return [ScorePanel(role, str(model) if model else None, item.suggestion, None, None,
                           _ranked(item.scores))]
    shadows = workspace.db.predictions.shadows_of(production.id)
    return [_panel("production", production)] + [_panel("shadow", row) for row in shadows]


def _panel(role: str, row: LoggedPrediction | ShadowResult) -> ScorePanel:
    return ScorePanel(role, row.model_name, row.label, row.decision, row.confidence, _ranked(row.scores or {}))


def _ranked(scores: Mapping[str, float]) -> list[tuple[str, float]]:
    return sorted(((name, float(score)) for name, score in scores.items()), key=lambda kv: -kv[1])


def record_verdict(workspace: Workspace, item_id: int, reviewer: str, label: str,
                   note: str | None = None) -> ReviewItem:
    """Record the reviewer's verdict (a class) as an annotation (source "reviewer") and close the item, in one
    transaction."""
    _check_reviewer(reviewer)
    classes = workspace.db.labels.classes()
    if label not in classes:
        raise ReviewError(f"unknown class {label!r} (known: {', '.join(classes) or 'none'})",
                          "pick one of the listed classes, or ask a quality engineer to define it")
    now = stamp()
    with workspace.db.transaction() as tx:
        item = check_decidable(tx, item_id, reviewer, now)
        annotation_id = tx.labels.add_annotation(Annotation(
            sha256=item.image_sha256, class_name=label, annotator=reviewer, source="reviewer",
            created_at=datetime.fromisoformat(now), note=note))
        closed = tx.review.close(item_id, label=label, reviewer=reviewer, at=now, annotation_id=annotation_id)
        if not closed:  # another transaction closed it between our check and our write
            raise ReviewError(f"review item #{item_id} was decided by someone else just now",
                              "nothing was recorded; go on with the next item")
    return get_item(workspace, item_id)


def skip(workspace: Workspace, item_id: int, reviewer: str, note: str | None = None) -> ReviewItem:
    """Set an item aside as "skipped" (the reviewer cannot tell from this image); it leaves the open queue
    and waits for a quality engineer, listed in the backlog."""
    _check_reviewer(reviewer)
    now = stamp()
    with workspace.db.transaction() as tx:
        item = check_decidable(tx, item_id, reviewer, now)
        details = {**item.details, "skipped_by": reviewer, **({"skip_note": note} if note else {})}
        tx.review.set_skipped(item_id, reviewer=reviewer, at=now, details=details)
    return get_item(workspace, item_id)


def release(workspace: Workspace, item_id: int, reviewer: str) -> bool:
    """Give back a claim this reviewer holds, so the item goes to the next reviewer; False if none was held."""
    return workspace.db.review.release(item_id, reviewer)


def backlog(workspace: Workspace) -> Backlog:
    """How much waits in the queue, by reason."""
    now = stamp()
    with workspace.db.transaction() as tx:  # one snapshot for the three counts
        by_status, by_reason = tx.review.count_by_status(), tx.review.open_by_reason()
        claimed = tx.review.count_claimed(now)
    return Backlog(open_by_reason={r: int(by_reason.get(r, 0)) for r in REASONS}, claimed=int(claimed),
                   skipped=int(by_status.get("skipped", 0)), done=int(by_status.get("done", 0)))


def recent_decisions(workspace: Workspace, limit: int = 20) -> list[ReviewItem]:
    """The latest decided or skipped items, newest first."""
    return workspace.db.review.recent_decisions(limit)


def decision_shares(workspace: Workspace, since: datetime | None = None) -> DecisionShares:
    """Shares of pass / reject / review among production predictions, overall and per camera."""
    stamp = _iso(since) if since is not None else None
    rows = workspace.db.predictions.decision_counts(stamp)
    overall: dict[str, int] = defaultdict(int)
    cameras: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for camera, decision, count in rows:
        overall[decision] += count
        cameras[camera or "(no camera)"][decision] += count
    return DecisionShares(since=stamp, overall=Rates(dict(overall)),
                         per_camera={c: Rates(dict(v)) for c, v in sorted(cameras.items())})


def recent_discrepancies(workspace: Workspace, limit: int = 20) -> list[Discrepancy]:
    """The latest shadow predictions that disagreed with production, newest first."""
    return workspace.db.predictions.discrepancies(limit)


def check_decidable(tx: Transaction, item_id: int, reviewer: str, now: str) -> ReviewItem:
    """The item when ``reviewer`` may decide it now: open, and not claimed by someone else."""
    row = tx.review.get(item_id)
    if row is None:
        raise ReviewError(f"no review item #{item_id}", "reload the review page to get the next item")
    if row.status != "open":
        raise ReviewError(f"review item #{item_id} was already {'decided' if row.status == 'done' else row.status} "
                          f"by {row.decided_by}", "nothing was recorded; go on with the next item")
    if row.claimed_by not in (None, reviewer) and row.claimed_until is not None and row.claimed_until >= now:
        raise ReviewError(f"review item #{item_id} is claimed by {row.claimed_by} until {row.claimed_until}",
                          "take the next item instead: claim_next gives you one nobody else holds")
    return row


def held_item(workspace: Workspace, reviewer: str) -> ReviewItem | None:
    """The open item whose live claim ``reviewer`` holds, if any."""
    return workspace.db.review.held_by(reviewer, stamp())


def _check_reviewer(reviewer: str) -> None:
    if not reviewer or not reviewer.strip():
        raise ReviewError("no reviewer named", "log in, or pass the reviewer's name")


def stamp(offset_seconds: float = 0.0) -> str:
    """Now (plus an offset) in the store's timestamp format, so that text order is time order."""
    return _iso(datetime.now(UTC) + timedelta(seconds=offset_seconds))


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="seconds")
