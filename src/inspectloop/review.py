"""The review queue: images waiting for a human, and what the human decided.

Items come from uncertain predictions (the review band), shadow discrepancies, QC disagreements,
recalibration samples and drift samples. Reviewers are served by reason first (``REASONS`` order),
then by priority. A reviewer's verdict (``record_verdict``) becomes an annotation (annotator =
reviewer, source = "reviewer") that the next dataset version picks up.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, case, func, insert, select, update

from inspectloop.errors import ReviewError
from inspectloop.runtime.decision import Decision
from inspectloop.store import now_iso
from inspectloop.store import predictions as prediction_store
from inspectloop.store import schema as s
from inspectloop.workspace import Workspace

# In the order reviewers are served: a production part held for a verdict first; then items a running
# process waits on (a recalibration cycle for its labels, a candidate-vs-QC disagreement for its arbiter);
# then drift samples; shadow discrepancies last, as a candidate's results are never acted on.
REASONS = ("uncertain", "recalibration", "qc", "drift", "shadow")


def enqueue(conn: Connection, *, image_sha256: str, reason: str, prediction_id: int | None = None,
            model_version_id: int | None = None, suggestion: str | None = None,
            scores: Mapping[str, float] | None = None, details: Mapping[str, Any] | None = None,
            priority: float = 0.0) -> int | None:
    """Add an open item inside the caller's transaction; return its id, or None when the image already
    waits for the same reason (one open item per image and reason). The image must be in ``images``.
    """
    if reason not in REASONS:
        raise ValueError(f"unknown review reason {reason!r}; expected one of {REASONS}")
    open_item = conn.execute(select(s.review_items.c.id).where(
        s.review_items.c.image_sha256 == image_sha256, s.review_items.c.reason == reason,
        s.review_items.c.status == "open")).first()
    if open_item is not None:
        return None
    result = conn.execute(insert(s.review_items).values(
        image_sha256=image_sha256, reason=reason, prediction_id=prediction_id, model_version_id=model_version_id,
        suggestion=suggestion, scores=dict(scores) if scores is not None else None, details=dict(details or {}),
        priority=priority, status="open", created_at=now_iso()))
    return int(result.inserted_primary_key[0])


DEFAULT_LEASE_SECONDS = 300  # a reviewer who walks away frees the item after five minutes
CLAIM_ATTEMPTS = 20  # each failed attempt means another reviewer took that item first; try the next


@dataclass(frozen=True)
class ReviewItem:
    """An image waiting for (or given) a human decision, as the queue holds it."""

    id: int
    image_sha256: str
    reason: str
    suggestion: str | None
    scores: dict[str, float]
    details: dict[str, Any]
    priority: float
    status: str  # open | done | skipped
    claimed_by: str | None
    claimed_until: str | None
    created_at: str
    prediction_id: int | None = None
    model_version_id: int | None = None
    decided_label: str | None = None
    decided_by: str | None = None
    decided_at: str | None = None


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


@dataclass(frozen=True)
class Discrepancy:
    """A shadow model that disagreed with production on one image."""

    prediction_id: int
    at: str
    camera: str | None
    image_sha256: str
    production_label: str
    production_decision: str
    shadow_model: str
    shadow_label: str
    shadow_decision: str


def claim_next(workspace: Workspace, reviewer: str, lease_seconds: int = DEFAULT_LEASE_SECONDS) -> ReviewItem | None:
    """Claim the first open item whose lease is free or expired, by reason (``REASONS`` order) then priority;
    None when the queue is empty.

    A reviewer who still holds a live claim gets that item again (a reloaded page shows the same image).
    Two reviewers never hold the same item: the claim is a conditional UPDATE that only one can win.
    """
    _check_reviewer(reviewer)
    now = _stamp()
    until = _stamp(lease_seconds)
    held = _held_by(workspace, reviewer, now)
    if held is not None:
        return held
    for _ in range(CLAIM_ATTEMPTS):
        with workspace.db.transaction() as conn:
            candidate = conn.execute(select(s.review_items.c.id).where(_claimable(now)).order_by(
                _reason_rank(), s.review_items.c.priority.desc(), s.review_items.c.id).limit(1)).scalar()
            if candidate is None:
                return None
            won = conn.execute(update(s.review_items).where(s.review_items.c.id == candidate, _claimable(now))
                               .values(claimed_by=reviewer, claimed_until=until)).rowcount
        if won:
            return get_item(workspace, candidate)
    raise ReviewError("the review queue is too busy to claim an item right now",
                      "try again in a moment; if it persists, check that the database is not locked")


def get_item(workspace: Workspace, item_id: int) -> ReviewItem:
    """One review item by id; ReviewError when there is none."""
    with workspace.db.engine.connect() as conn:
        row = conn.execute(select(s.review_items).where(s.review_items.c.id == item_id)).first()
    if row is None:
        raise ReviewError(f"no review item #{item_id}", "reload the review page to get the next item")
    return _item(row)


def item_metadata(workspace: Workspace, item: ReviewItem) -> dict[str, str]:
    """What the reviewer sees about where the image came from: its capture fields, and those of the prediction
    that queued it. (What each model made of it: ``score_panels``.)"""
    shown: dict[str, str] = {}
    if item.prediction_id is not None:
        p = s.predictions
        with workspace.db.engine.connect() as conn:
            row = conn.execute(select(p.c.camera, p.c.line, p.c.shift, p.c.lighting, p.c.part_id, p.c.session,
                                      p.c.received_at).where(p.c.id == item.prediction_id)).first()
        if row is not None:
            shown = {k: str(v) for k, v in row._mapping.items() if v is not None}
    record = workspace.db.images([item.image_sha256]).get(item.image_sha256)
    if record is not None:
        shown = {**{k: v for k, v in record.meta.fields().items() if v}, **shown}
        if record.meta.captured_at is not None:
            shown["captured_at"] = record.meta.captured_at.isoformat(sep=" ", timespec="seconds")
    return shown


def score_panels(workspace: Workspace, item: ReviewItem) -> list[ScorePanel]:
    """Every model's scores on the item's image, production first, each named by role and version.

    From the prediction that queued the item (production's, and each shadow result logged on it); an item
    queued without one shows the scores it was queued with, attributed by its reason (``SUGGESTED_BY``).
    """
    with workspace.db.engine.connect() as conn:
        production = (prediction_store.prediction_by_id(conn, item.prediction_id)
                      if item.prediction_id is not None else None)
        if production is None:
            if not item.scores:
                return []
            role = SUGGESTED_BY.get(item.reason, "production")
            name = (prediction_store.model_version_name(conn, item.model_version_id)
                    if item.model_version_id is not None else None)
            model = name or item.details.get(f"{role}_model")
            return [ScorePanel(role, str(model) if model else None, item.suggestion, None, None,
                               _ranked(item.scores))]
        shadows = prediction_store.shadow_results(conn, production["id"])
    return [_panel("production", production)] + [_panel("shadow", row) for row in shadows]


def _panel(role: str, row: Mapping[str, Any]) -> ScorePanel:
    return ScorePanel(role, row["model_name"], row["label"], row["decision"], float(row["confidence"]),
                      _ranked(row["scores"] or {}))


def _ranked(scores: Mapping[str, float]) -> list[tuple[str, float]]:
    return sorted(((name, float(score)) for name, score in scores.items()), key=lambda kv: -kv[1])


def record_verdict(workspace: Workspace, item_id: int, reviewer: str, label: str,
                   note: str | None = None) -> ReviewItem:
    """Record the reviewer's verdict (a class) as an annotation (source "reviewer") and close the item, in one
    transaction."""
    _check_reviewer(reviewer)
    classes = workspace.db.classes()
    if label not in classes:
        raise ReviewError(f"unknown class {label!r} (known: {', '.join(classes) or 'none'})",
                          "pick one of the listed classes, or ask a quality engineer to define it")
    now = _stamp()
    with workspace.db.transaction() as conn:
        _check_decidable(conn, item_id, reviewer, now)
        image = conn.execute(select(s.review_items.c.image_sha256).where(s.review_items.c.id == item_id)).scalar_one()
        annotation_id = conn.execute(insert(s.annotations).values(
            sha256=image, class_name=label, annotator=reviewer, source="reviewer", created_at=now,
            note=note)).inserted_primary_key[0]
        closed = conn.execute(update(s.review_items).where(s.review_items.c.id == item_id,
                                                           s.review_items.c.status == "open")
                              .values(status="done", decided_label=label, decided_by=reviewer, decided_at=now,
                                      annotation_id=annotation_id, claimed_by=None, claimed_until=None)).rowcount
        if not closed:  # another transaction closed it between our check and our write
            raise ReviewError(f"review item #{item_id} was decided by someone else just now",
                              "nothing was recorded; go on with the next item")
    return get_item(workspace, item_id)


def skip(workspace: Workspace, item_id: int, reviewer: str, note: str | None = None) -> ReviewItem:
    """Set an item aside as "skipped" (the reviewer cannot tell from this image); it leaves the open queue
    and waits for a quality engineer, listed in the backlog."""
    _check_reviewer(reviewer)
    now = _stamp()
    with workspace.db.transaction() as conn:
        row = _check_decidable(conn, item_id, reviewer, now)
        details = {**(row.details or {}), "skipped_by": reviewer, **({"skip_note": note} if note else {})}
        conn.execute(update(s.review_items).where(s.review_items.c.id == item_id).values(
            status="skipped", decided_by=reviewer, decided_at=now, details=details, claimed_by=None,
            claimed_until=None))
    return get_item(workspace, item_id)


def release(workspace: Workspace, item_id: int, reviewer: str) -> bool:
    """Give back a claim this reviewer holds, so the item goes to the next reviewer; False if none was held."""
    with workspace.db.transaction() as conn:
        released = conn.execute(update(s.review_items).where(
            s.review_items.c.id == item_id, s.review_items.c.claimed_by == reviewer,
            s.review_items.c.status == "open").values(claimed_by=None, claimed_until=None)).rowcount
    return bool(released)


def backlog(workspace: Workspace) -> Backlog:
    """How much waits in the queue, by reason."""
    now = _stamp()
    items = s.review_items
    with workspace.db.engine.connect() as conn:
        by_status = dict(conn.execute(select(items.c.status, func.count()).group_by(items.c.status)).all())
        by_reason = dict(conn.execute(select(items.c.reason, func.count()).where(items.c.status == "open")
                                      .group_by(items.c.reason)).all())
        claimed = conn.execute(select(func.count()).select_from(items).where(
            items.c.status == "open", items.c.claimed_until >= now)).scalar_one()
    return Backlog(open_by_reason={r: int(by_reason.get(r, 0)) for r in REASONS}, claimed=int(claimed),
                   skipped=int(by_status.get("skipped", 0)), done=int(by_status.get("done", 0)))


def recent_decisions(workspace: Workspace, limit: int = 20) -> list[ReviewItem]:
    """The latest decided or skipped items, newest first."""
    items = s.review_items
    with workspace.db.engine.connect() as conn:
        rows = conn.execute(select(items).where(items.c.status.in_(("done", "skipped")))
                            .order_by(items.c.decided_at.desc(), items.c.id.desc()).limit(limit)).all()
    return [_item(row) for row in rows]


def decision_shares(workspace: Workspace, since: datetime | None = None) -> DecisionShares:
    """Shares of pass / reject / review among production predictions, overall and per camera."""
    p = s.predictions
    query = select(p.c.camera, p.c.decision, func.count()).group_by(p.c.camera, p.c.decision)
    stamp = _iso(since) if since is not None else None
    if stamp is not None:
        query = query.where(p.c.received_at >= stamp)
    with workspace.db.engine.connect() as conn:
        rows = conn.execute(query).all()
    overall: dict[str, int] = defaultdict(int)
    cameras: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for camera, decision, count in rows:
        overall[decision] += count
        cameras[camera or "(no camera)"][decision] += count
    return DecisionShares(since=stamp, overall=Rates(dict(overall)),
                         per_camera={c: Rates(dict(v)) for c, v in sorted(cameras.items())})


def recent_discrepancies(workspace: Workspace, limit: int = 20) -> list[Discrepancy]:
    """The latest shadow predictions that disagreed with production, newest first."""
    sp, p, mv = s.shadow_predictions, s.predictions, s.model_versions
    query = (select(p.c.id, sp.c.created_at, p.c.camera, p.c.image_sha256, p.c.label, p.c.decision, mv.c.name,
                    sp.c.label.label("shadow_label"), sp.c.decision.label("shadow_decision"))
             .join(p, p.c.id == sp.c.prediction_id).join(mv, mv.c.id == sp.c.model_version_id)
             .where(sp.c.agrees.is_(False)).order_by(sp.c.created_at.desc(), sp.c.id.desc()).limit(limit))
    with workspace.db.engine.connect() as conn:
        rows = conn.execute(query).all()
    return [Discrepancy(*row) for row in rows]


def _check_decidable(conn: Connection, item_id: int, reviewer: str, now: str) -> Any:
    """The item's row when ``reviewer`` may decide it now: open, and not claimed by someone else."""
    row = conn.execute(select(s.review_items).where(s.review_items.c.id == item_id)).first()
    if row is None:
        raise ReviewError(f"no review item #{item_id}", "reload the review page to get the next item")
    if row.status != "open":
        raise ReviewError(f"review item #{item_id} was already {'decided' if row.status == 'done' else row.status} "
                          f"by {row.decided_by}", "nothing was recorded; go on with the next item")
    if row.claimed_by not in (None, reviewer) and row.claimed_until is not None and row.claimed_until >= now:
        raise ReviewError(f"review item #{item_id} is claimed by {row.claimed_by} until {row.claimed_until}",
                          "take the next item instead: claim_next gives you one nobody else holds")
    return row


def _reason_rank() -> Any:
    """An item's place in ``REASONS`` (unknown reasons last), for the claim order."""
    return case({reason: rank for rank, reason in enumerate(REASONS)}, value=s.review_items.c.reason,
                else_=len(REASONS))


def _claimable(now: str) -> Any:
    items = s.review_items
    return (items.c.status == "open") & (items.c.claimed_until.is_(None) | (items.c.claimed_until < now))


def held_item(workspace: Workspace, reviewer: str) -> ReviewItem | None:
    """The open item whose live claim ``reviewer`` holds, if any."""
    return _held_by(workspace, reviewer, _stamp())


def _held_by(workspace: Workspace, reviewer: str, now: str) -> ReviewItem | None:
    items = s.review_items
    with workspace.db.engine.connect() as conn:
        row = conn.execute(select(items).where(items.c.status == "open", items.c.claimed_by == reviewer,
                                               items.c.claimed_until >= now).order_by(items.c.id).limit(1)).first()
    return _item(row) if row is not None else None


def _item(row: Any) -> ReviewItem:
    return ReviewItem(id=row.id, image_sha256=row.image_sha256, reason=row.reason, suggestion=row.suggestion,
                      scores=dict(row.scores or {}), details=dict(row.details or {}), priority=row.priority,
                      status=row.status, claimed_by=row.claimed_by, claimed_until=row.claimed_until,
                      created_at=row.created_at, prediction_id=row.prediction_id,
                      model_version_id=row.model_version_id, decided_label=row.decided_label,
                      decided_by=row.decided_by, decided_at=row.decided_at)


def _check_reviewer(reviewer: str) -> None:
    if not reviewer or not reviewer.strip():
        raise ReviewError("no reviewer named", "log in, or pass the reviewer's name")


def _stamp(offset_seconds: float = 0.0) -> str:
    """Now (plus an offset) in the store's timestamp format, so that text order is time order."""
    return _iso(datetime.now(UTC) + timedelta(seconds=offset_seconds))


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="seconds")
