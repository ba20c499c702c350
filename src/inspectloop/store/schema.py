"""Database tables (SQLAlchemy Core). Only the store package touches them.

This module is the one definition of every table, as of the latest schema version. A table or
column added after version 1 says when in its ``info``: ``info=since(2)``. The migration for version
N creates exactly what ``since(N)`` marks (see ``migrations.py``), so a fresh database and an
upgraded one end up identical. Changing a table means adding a migration; never edit a released step.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON, Boolean, Column, Float, ForeignKey, Index, Integer, MetaData, PrimaryKeyConstraint, String, Table, Text,
    false, text,
)

metadata = MetaData()
SINCE = "since"


def since(version: int) -> dict[str, int]:
    """``info`` for a table or column added in schema ``version`` (everything unmarked is version 1)."""
    return {SINCE: version}


def added_in(item: Any) -> int:
    """The schema version that added a table or column."""
    return int(item.info.get(SINCE, 1))


schema_migrations = Table(
    "schema_migrations", metadata,
    Column("version", Integer, primary_key=True),
    Column("name", String, nullable=False),
    Column("applied_at", String, nullable=False),
)

ingests = Table(
    "ingests", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", Text, nullable=False),
    Column("kind", String, nullable=False),  # folder | manifest
    Column("started_at", String, nullable=False),
    Column("finished_at", String),
    Column("summary", JSON),
)

images = Table(
    "images", metadata,
    Column("sha256", String(64), primary_key=True),
    Column("format", String, nullable=False),
    Column("original_mode", String, nullable=False),
    Column("working_mode", String, nullable=False),  # L or RGB
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("size_bytes", Integer, nullable=False),
    Column("camera", String), Column("line", String), Column("shift", String), Column("lighting", String),
    Column("part_id", String), Column("session", String), Column("captured_at", String),
    Column("source", String, nullable=False),  # collection | production | review
    Column("extra", JSON, nullable=False, default=dict),
    Column("brightness", Float), Column("contrast", Float), Column("sharpness", Float),
    Column("noise", Float), Column("clipped_fraction", Float),
    Column("ingest_id", Integer, ForeignKey("ingests.id"), nullable=False),
    Column("ingested_at", String, nullable=False),
)

# Every path an image arrived from: duplicates are kept as provenance, the bytes once.
image_sources = Table(
    "image_sources", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("sha256", String(64), ForeignKey("images.sha256"), nullable=False, index=True),
    Column("original_path", Text, nullable=False),
    Column("ingest_id", Integer, ForeignKey("ingests.id"), nullable=False),
)

classes = Table(
    "classes", metadata,
    Column("name", String, primary_key=True),
    Column("task", String, nullable=False),
    Column("criterion", Text, nullable=False),
    Column("severity", String, nullable=False),
    Column("is_good", Integer, nullable=False, default=0),
    Column("created_at", String, nullable=False),
    Column("updated_at", String, nullable=False),
    Column("scale", String, info=since(7)),  # graded defects: the ordered scale and the class's grade on it
    Column("grade", Integer, info=since(7)),
)

class_references = Table(
    "class_references", metadata,
    Column("class_name", String, ForeignKey("classes.name"), nullable=False),
    Column("sha256", String(64), ForeignKey("images.sha256"), nullable=False),
    Column("note", Text),
    PrimaryKeyConstraint("class_name", "sha256"),
)

annotations = Table(
    "annotations", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("sha256", String(64), ForeignKey("images.sha256"), nullable=False, index=True),
    Column("class_name", String, ForeignKey("classes.name"), nullable=False),
    Column("annotator", String, nullable=False),
    Column("source", String, nullable=False),  # import | reviewer | recalibration
    Column("created_at", String, nullable=False),
    Column("note", Text),
    Column("probability", Float, info=since(7)),  # soft label: probability that the part is defective
)

dataset_versions = Table(
    "dataset_versions", metadata,
    Column("name", String, primary_key=True),
    Column("parent", String, ForeignKey("dataset_versions.name")),
    Column("created_at", String, nullable=False),
    Column("params", JSON, nullable=False),
    Column("summary", JSON, nullable=False),
)

dataset_items = Table(
    "dataset_items", metadata,
    Column("version", String, ForeignKey("dataset_versions.name"), nullable=False),
    Column("sha256", String(64), ForeignKey("images.sha256"), nullable=False),
    Column("label", String, ForeignKey("classes.name"), nullable=False),
    Column("split", String, nullable=False),  # train | val | test
    Column("group_key", String, nullable=False),
    Column("probability", Float, info=since(7)),  # the image's soft label when the version was made
    PrimaryKeyConstraint("version", "sha256"),
)

runs = Table(
    "runs", metadata,
    Column("id", String, primary_key=True),
    Column("kind", String, nullable=False),  # train
    Column("status", String, nullable=False),  # running | finished | failed
    Column("dataset_version", String, ForeignKey("dataset_versions.name"), nullable=False),
    Column("config", JSON, nullable=False),
    Column("code_version", String, nullable=False),
    Column("metrics", JSON),
    Column("artifacts", Text, nullable=False),
    Column("started_at", String, nullable=False),
    Column("finished_at", String),
    Column("error", Text),
    # The acceptance criteria this run will be judged by (locked before it started).
    Column("criteria_id", Integer, ForeignKey("criteria.id"), info=since(2)),
    # The training process (while running): a run whose process is gone, or whose heartbeat (each epoch) is
    # stale on another host, was interrupted and can be resumed.
    Column("pid", Integer, info=since(7)),
    Column("host", String, info=since(7)),
    Column("heartbeat_at", String, info=since(7)),
)

models = Table(
    "models", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String, ForeignKey("runs.id"), nullable=False),
    Column("variant", String, nullable=False),  # fp32 | int8
    Column("path", Text, nullable=False),
    Column("file_sha256", String(64), nullable=False),
    Column("weights_sha256", String(64), nullable=False),
    Column("created_at", String, nullable=False),
    Column("metadata", JSON, nullable=False),
)

# -- version 2: acceptance criteria and the model registry ------------------------------------------

# Acceptance criteria, locked (hash + time + who) before the training runs they judge.
criteria = Table(
    "criteria", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String, nullable=False, index=True),
    Column("sha256", String(64), nullable=False, unique=True),  # of the canonical YAML
    Column("yaml", Text, nullable=False),  # the file as the quality engineer wrote it, comments included
    Column("spec", JSON, nullable=False),  # the validated criteria
    Column("locked_at", String, nullable=False),
    Column("locked_by", String, nullable=False),
    info=since(2),
)

model_versions = Table(
    "model_versions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String, nullable=False, unique=True),
    Column("run_id", String, ForeignKey("runs.id"), nullable=False),
    Column("model_id", Integer, ForeignKey("models.id"), nullable=False, unique=True),
    Column("variant", String, nullable=False),  # fp32 | int8
    Column("path", Text, nullable=False),
    Column("file_sha256", String(64), nullable=False),
    Column("stage", String, nullable=False),  # candidate | shadow | production | retired
    Column("created_at", String, nullable=False),
    Column("lineage", JSON, nullable=False),
    # At most one version is in production, whatever two processes try at once.
    Index("ux_model_versions_one_production", "stage", unique=True,
          sqlite_where=text("stage = 'production'"), postgresql_where=text("stage = 'production'")),
    info=since(2),
)

# One evaluation of a model version against locked criteria (written by ``accept``).
acceptance_reports = Table(
    "acceptance_reports", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_version_id", Integer, ForeignKey("model_versions.id"), nullable=False, index=True),
    Column("criteria_id", Integer, ForeignKey("criteria.id"), nullable=False),
    Column("passed", Boolean, nullable=False),
    Column("report", JSON, nullable=False),
    Column("created_at", String, nullable=False),
    info=since(2),
)

# Every stage change: promotions, demotions, rollbacks, overrides. Append-only.
stage_events = Table(
    "stage_events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_version_id", Integer, ForeignKey("model_versions.id"), nullable=False, index=True),
    Column("action", String, nullable=False),  # promote | demote | rollback
    Column("from_stage", String, nullable=False),
    Column("to_stage", String, nullable=False),
    Column("actor", String, nullable=False),
    Column("reason", Text),
    Column("acceptance_report_id", Integer, ForeignKey("acceptance_reports.id")),
    Column("override", Boolean, nullable=False),
    Column("at", String, nullable=False),
    info=since(2),
)

# -- version 3: people, the prediction log, shadow results, human QC and the review queue -----------

# Who may write through the service. Tokens are stored as SHA-256 only; the token itself is shown once.
users = Table(
    "users", metadata,
    Column("name", String, primary_key=True),
    Column("role", String, nullable=False),  # reviewer | admin
    Column("token_sha256", String(64), nullable=False, unique=True),
    Column("created_at", String, nullable=False),
    Column("disabled", Boolean, nullable=False, server_default=false()),
    Column("token_expires_at", String, info=since(5)),  # after it the token gets 401 (v4 tokens: set by step 5)
    Column("token_revoked_at", String, info=since(5)),  # revoked without a replacement
    info=since(3),
)

# Every production prediction, once. ``request_id`` is the idempotency key: a retried or replayed
# request finds its row instead of adding a second one.
predictions = Table(
    "predictions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String, nullable=False, unique=True),
    Column("received_at", String, nullable=False),
    Column("source", String, nullable=False),  # http | watch
    Column("camera", String), Column("line", String), Column("shift", String), Column("lighting", String),
    Column("part_id", String), Column("session", String), Column("captured_at", String),
    Column("extra", JSON, nullable=False, default=dict),
    Column("image_sha256", String(64), nullable=False, index=True),
    Column("image_stored", Boolean, nullable=False),  # bytes kept in the blob store (sampled or needed)
    Column("model_version_id", Integer, ForeignKey("model_versions.id"), index=True),  # None: a bare file
    Column("model_name", String, nullable=False),  # the model file's name and version, as served
    Column("label", String, nullable=False),
    Column("decision", String, nullable=False),  # pass | reject | review
    Column("confidence", Float, nullable=False),
    Column("scores", JSON, nullable=False),
    Column("latency_ms", JSON, nullable=False),
    Column("stats", JSON),  # image statistics (brightness, contrast, sharpness, noise, clipping) for drift
    Column("suspect", Boolean, nullable=False, server_default=false()),  # its camera failed a health check
    # SHA-256 over the image digest and every metadata field: a reused request id with other content is a
    # conflict, not a replay (NULL on rows logged before version 5: compared field by field instead)
    Column("content_sha256", String(64), info=since(5)),
    Index("ix_predictions_camera_time", "camera", "received_at"),
    info=since(3),
)

# A candidate model's output on a production input: logged, compared, never acted on.
shadow_predictions = Table(
    "shadow_predictions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("prediction_id", Integer, ForeignKey("predictions.id"), nullable=False),
    Column("model_version_id", Integer, ForeignKey("model_versions.id"), nullable=False, index=True),
    Column("label", String, nullable=False),
    Column("decision", String, nullable=False),
    Column("confidence", Float, nullable=False),
    Column("scores", JSON, nullable=False),
    Column("latency_ms", JSON, nullable=False),
    Column("agrees", Boolean, nullable=False),  # same fate as production (shadow.same_fate)
    Column("created_at", String, nullable=False),
    # Two detectors' boxes matched by IoU (shadow.compare_boxes): pairs, and boxes only one drew. NULL: no boxes.
    Column("boxes", JSON, info=since(8)),
    Index("ux_shadow_once", "prediction_id", "model_version_id", unique=True),
    info=since(3),
)

# A human QC inspector's verdict on a part, recorded through the service beside the model's.
qc_decisions = Table(
    "qc_decisions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("prediction_id", Integer, ForeignKey("predictions.id"), nullable=False, index=True),
    Column("label", String, ForeignKey("classes.name"), nullable=False),
    Column("inspector", String, nullable=False),
    Column("created_at", String, nullable=False),
    info=since(3),
)

# An image waiting for a human. One open item per (image, reason); a claim is a lease that expires.
review_items = Table(
    "review_items", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("image_sha256", String(64), ForeignKey("images.sha256"), nullable=False, index=True),
    Column("reason", String, nullable=False),  # uncertain | shadow | qc | recalibration | drift
    Column("prediction_id", Integer, ForeignKey("predictions.id"), index=True),
    Column("model_version_id", Integer, ForeignKey("model_versions.id")),
    Column("suggestion", String),  # the model's label, shown to the reviewer
    Column("scores", JSON),
    Column("details", JSON, nullable=False, default=dict),  # e.g. the shadow's disagreeing label
    Column("priority", Float, nullable=False, server_default=text("0")),
    Column("status", String, nullable=False),  # open | done | skipped
    Column("claimed_by", String),
    Column("claimed_until", String),
    Column("decided_label", String, ForeignKey("classes.name")),
    Column("decided_by", String),
    Column("decided_at", String),
    Column("annotation_id", Integer, ForeignKey("annotations.id")),
    Column("created_at", String, nullable=False),
    Index("ix_review_items_queue", "status", "priority", "id"),
    Index("ux_review_items_open", "image_sha256", "reason", unique=True,
          sqlite_where=text("status = 'open'"), postgresql_where=text("status = 'open'")),
    info=since(3),
)

# -- version 4: drift monitoring, camera health, recalibration cycles --------------------------------

# What "normal" looked like for one camera when a model version was deployed (DriftBaseline.to_dict).
drift_baselines = Table(
    "drift_baselines", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("camera", String, nullable=False),
    Column("model_version_id", Integer, ForeignKey("model_versions.id"), nullable=False, index=True),
    Column("source", String, nullable=False),  # test | calib | production
    Column("images", Integer, nullable=False),
    Column("baseline", JSON, nullable=False),
    Column("recorded_at", String, nullable=False),
    Index("ix_drift_baselines_camera", "camera", "model_version_id"),
    info=since(4),
)

# One ``inspectloop monitor`` run and how it ended (ok | alert | no_baseline | too_few | no_production).
monitor_runs = Table(
    "monitor_runs", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("started_at", String, nullable=False),
    Column("window_start", String, nullable=False),
    Column("window_end", String, nullable=False),
    Column("model_version_id", Integer, ForeignKey("model_versions.id")),
    Column("outcome", String, nullable=False),
    Column("message", Text),
    Column("summary", JSON, nullable=False, default=dict),
    info=since(4),
)

# Every signal of every camera's check: the history the dashboard charts.
drift_checks = Table(
    "drift_checks", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("monitor_run_id", Integer, ForeignKey("monitor_runs.id"), nullable=False, index=True),
    Column("camera", String, nullable=False),
    Column("checked_at", String, nullable=False),  # the window's end
    Column("signal", String, nullable=False),
    Column("effect", Float, nullable=False),
    Column("effect_unit", String, nullable=False),
    Column("p_value", Float, nullable=False),
    Column("raw_p_value", Float, nullable=False),
    Column("fired", Boolean, nullable=False),
    Column("n_baseline", Integer, nullable=False),
    Column("n_current", Integer, nullable=False),
    Column("message", Text, nullable=False),
    Index("ix_drift_checks_camera_time", "camera", "checked_at"),
    info=since(4),
)

# Alerts sent (after rate limiting): drift signals and failed camera checks, in plant language.
alerts = Table(
    "alerts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String, nullable=False),  # drift | camera
    Column("camera", String, nullable=False),
    Column("signal", String, nullable=False),
    Column("effect", Float),
    Column("p_value", Float),
    Column("message", Text, nullable=False),
    Column("monitor_run_id", Integer, ForeignKey("monitor_runs.id")),
    Column("created_at", String, nullable=False),
    Index("ix_alerts_time", "created_at"),
    info=since(4),
)

# Small named state that outlives a process, e.g. the alert limiter's last alert per (camera, signal).
monitor_state = Table(
    "monitor_state", metadata,
    Column("key", String, primary_key=True),
    Column("value", JSON, nullable=False),
    Column("updated_at", String, nullable=False),
    info=since(4),
)

# A camera's health baseline (flat field, slanted edge, lighting) recorded at deployment.
camera_baselines = Table(
    "camera_baselines", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("camera", String, nullable=False, index=True),
    Column("baseline", JSON, nullable=False),
    Column("flat_sha256", String(64)),
    Column("edge_sha256", String(64)),
    Column("recorded_at", String, nullable=False),
    info=since(4),
)

# Every camera health check; a failed one marks the camera's predictions suspect until one passes.
camera_checks = Table(
    "camera_checks", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("camera", String, nullable=False),
    Column("baseline_id", Integer, ForeignKey("camera_baselines.id")),
    Column("status", String, nullable=False),  # pass | warn | fail | error
    Column("report", JSON, nullable=False),
    Column("marked_suspect", Integer, nullable=False, server_default=text("0")),
    Column("checked_at", String, nullable=False),
    Index("ix_camera_checks_camera_time", "camera", "checked_at"),
    info=since(4),
)

# One recalibration cycle: sample -> re-annotation -> comparison -> (retraining, acceptance, shadow).
recalibration_cycles = Table(
    "recalibration_cycles", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("status", String, nullable=False),  # awaiting_labels | done
    Column("outcome", String),  # no_predictions | no_drop | shadow | failed_acceptance | failed_training
    Column("trigger_source", String, nullable=False),  # manual | calendar | drift
    Column("model_version_id", Integer, ForeignKey("model_versions.id")),
    Column("window_start", String, nullable=False),
    Column("window_end", String, nullable=False),
    Column("params", JSON, nullable=False),
    Column("sample", JSON, nullable=False, default=dict),  # prediction ids and review item ids
    Column("result", JSON, nullable=False, default=dict),
    Column("message", Text),
    Column("report_path", Text),
    Column("created_at", String, nullable=False),
    Column("updated_at", String, nullable=False),
    info=since(4),
)


# -- version 5: browser sessions and the account audit trail ---------------------------------------

# A browser's login: the cookie holds a random session id, the table only its SHA-256 (never the API token).
sessions = Table(
    "sessions", metadata,
    Column("id_sha256", String(64), primary_key=True),
    Column("user_name", String, ForeignKey("users.name"), nullable=False, index=True),
    Column("created_at", String, nullable=False),
    Column("expires_at", String, nullable=False),
    Column("last_seen_at", String, nullable=False),
    info=since(5),
)

# Every change to an account or its token (add, rotate, revoke, disable), who made it and when. Append-only.
# ``token_sha256`` names the token an event ended, so that a revoked or rotated token gets a clear 401.
user_events = Table(
    "user_events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_name", String, nullable=False, index=True),
    Column("action", String, nullable=False),  # add | token-rotate | token-revoke | disable
    Column("actor", String, nullable=False),
    Column("token_sha256", String(64), index=True),
    Column("detail", Text),
    Column("at", String, nullable=False),
    info=since(5),
)


# -- version 6: region annotations (boxes and outlines) and the dataset versions that hold them -------

# One annotator's box (and optional polygon) of one class on one image. Rows are never changed: an edit
# adds a row that ``supersedes`` the old one, a deletion adds a ``deleted`` row that supersedes it.
regions = Table(
    "regions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("sha256", String(64), ForeignKey("images.sha256"), nullable=False, index=True),
    Column("class_name", String, ForeignKey("classes.name"), nullable=False),
    Column("annotator", String, nullable=False),
    Column("source", String, nullable=False),  # import | reviewer | model
    Column("x0", Float, nullable=False), Column("y0", Float, nullable=False),
    Column("x1", Float, nullable=False), Column("y1", Float, nullable=False),
    Column("polygon", JSON),  # [[x, y], ...] in image pixels, or NULL for a box alone
    Column("supersedes", Integer, ForeignKey("regions.id"), index=True),
    Column("deleted", Boolean, nullable=False, server_default=false()),
    Column("created_at", String, nullable=False),
    info=since(6),
)

# Which region annotations a dataset version holds (a snapshot by id: later edits never reach it).
dataset_regions = Table(
    "dataset_regions", metadata,
    Column("version", String, ForeignKey("dataset_versions.name"), nullable=False),
    Column("region_id", Integer, ForeignKey("regions.id"), nullable=False),
    PrimaryKeyConstraint("version", "region_id"),
    info=since(6),
)


# -- version 7: the settle queue (suspected label errors waiting for a quality engineer) and ---------
# -- perceptual image hashes (near-duplicate search across dataset splits) ----------------------------

# An image sent to be settled: a suspected label error (``suspect``). Disagreements between annotators are
# read live from ``annotations`` and are not stored here. Settling adds an annotation (source "settled").
settle_items = Table(
    "settle_items", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("sha256", String(64), ForeignKey("images.sha256"), nullable=False, index=True),
    Column("reason", String, nullable=False),  # suspect | browser | boxes (domain.labelling.SETTLE_REASONS)
    Column("given", String),  # the label the image had when it was queued
    Column("suggestion", String),  # the class the estimate finds more likely
    Column("score", Float),  # label quality when queued: low = likely wrong (queue order)
    Column("details", JSON),
    Column("status", String, nullable=False, server_default=text("'open'")),  # open | settled
    Column("created_at", String, nullable=False),
    Column("settled_at", String),
    Column("settled_by", String),
    Column("annotation_id", Integer, ForeignKey("annotations.id")),
    info=since(7),
)

# One perceptual hash per image and hash kind, computed once from the stored bytes (never changes).
image_hashes = Table(
    "image_hashes", metadata,
    Column("sha256", String(64), ForeignKey("images.sha256"), nullable=False),
    Column("kind", String, nullable=False),  # e.g. "dct64": 64-bit DCT hash of the 32x32 grey thumbnail
    Column("value", String(16), nullable=False),  # hex; an unsigned 64-bit value does not fit a SQL integer
    PrimaryKeyConstraint("sha256", "kind"),
    info=since(7),
)


# -- version 8: sites that work offline and sync with a central workspace -----------------------------

# The other end of a sync and the key it signs bundles with: on the centre, each trusted site; on a site,
# its centre. A bundle signed by a key not listed here (or revoked) is refused and the refusal logged.
sync_peers = Table(
    "sync_peers", metadata,
    Column("name", String, primary_key=True),
    Column("role", String, nullable=False),  # site (trusted by this centre) | central (this site's centre)
    Column("key_id", String(16), nullable=False, unique=True),
    Column("public_key", Text, nullable=False),  # PEM
    Column("added_at", String, nullable=False),
    Column("added_by", String, nullable=False),
    Column("revoked_at", String),
    info=since(8),
)

# Every bundle written, applied or refused, in both directions: what moved, when, from which site, digests.
sync_log = Table(
    "sync_log", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("direction", String, nullable=False),  # up | down
    Column("action", String, nullable=False),  # wrote | applied | refused
    Column("peer", String, nullable=False),  # the site (on the centre) or the centre (on a site)
    Column("key_id", String(16)),
    Column("bundle", Text, nullable=False),  # the bundle file's name
    Column("bundle_sha256", String(64), nullable=False, index=True),
    Column("sequence", Integer),
    Column("status", String, nullable=False),  # started | done | interrupted | refused
    Column("counts", JSON, nullable=False, default=dict),  # records per kind: new, known, conflicts
    Column("message", Text),
    Column("started_at", String, nullable=False),
    Column("finished_at", String),
    info=since(8),
)

# On the centre, every record a site sent, once: (site, kind, the site's id) -> the centre's row and the
# record's digest. Re-applying a bundle finds its records here and changes nothing.
sync_records = Table(
    "sync_records", metadata,
    Column("site", String, nullable=False),
    Column("kind", String, nullable=False),  # classes | images | predictions | annotations | review_items | ...
    Column("remote_id", String, nullable=False),
    Column("local_id", String),  # the centre's row id (None for records kept only as summaries)
    Column("digest", String(64), nullable=False),
    Column("sync_log_id", Integer, ForeignKey("sync_log.id"), nullable=False),
    PrimaryKeyConstraint("site", "kind", "remote_id"),
    info=since(8),
)

# On the centre, the summaries sites send: drift (one per monitor run) and daily metrics (per day and camera).
site_summaries = Table(
    "site_summaries", metadata,
    Column("site", String, nullable=False),
    Column("kind", String, nullable=False),  # drift | metrics
    Column("key", String, nullable=False),  # drift: the site's monitor run id; metrics: DAY/CAMERA
    Column("payload", JSON, nullable=False),
    Column("digest", String(64), nullable=False),
    Column("updated_at", String, nullable=False),
    PrimaryKeyConstraint("site", "kind", "key"),
    info=since(8),
)

# On a site: how far the centre has confirmed each kind of record (sent again until confirmed).
sync_cursors = Table(
    "sync_cursors", metadata,
    Column("peer", String, nullable=False),
    Column("kind", String, nullable=False),
    Column("value", String, nullable=False),
    Column("updated_at", String, nullable=False),
    PrimaryKeyConstraint("peer", "kind"),
    info=since(8),
)
