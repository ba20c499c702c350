"""The prediction log: every production prediction written once, durably, before its answer leaves.

One writer thread owns the database writes. Requests queue their record and wait; the writer takes
everything queued, stores the needed image blobs (synced), writes all rows in one transaction with
``synchronous=FULL`` and then wakes every waiting request (group commit: one fsync for many requests).
``request_id`` is the idempotency key: a retried request gets the stored row back, never a second row.
Images are kept (blob + ``images`` row, source production) when the decision is review, when the
shadow's decision would change the part's fate (``shadow.same_fate``), or for a random sample used
later for recalibration; their statistics commit with them. The other images' statistics (for drift
monitoring) are measured by a second thread after the answer has left, so no request waits for them;
a crash in between leaves those statistics empty. Statistics are measured on the request's one decode
(``PredictionRecord.decoded``): the log never decodes an image again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from inspectloop import review
from inspectloop.domain import METADATA_FIELDS, CaptureMeta, ImageRecord, ImageSource, LoggedPrediction
from inspectloop.errors import RequestError
from inspectloop.ingest import measure_decoded
from inspectloop.quality import statistics_view, view_stats
from inspectloop.runtime import Prediction
from inspectloop.runtime.images import Decoded
from inspectloop.review_boxes import BOXES_DETAIL, predicted_boxes
from inspectloop.shadow import anomaly_good_class, compare_boxes, same_class, same_fate
from inspectloop.store import DurableWriter, Transaction, now_iso
from inspectloop.workspace import Workspace

log = logging.getLogger(__name__)
MAX_BATCH = 128
_STOP = object()


@dataclass
class PredictionRecord:
    """What the service hands the log for one request."""

    request_id: str
    source: str  # http | watch
    meta: CaptureMeta
    data: bytes
    decoded: Decoded  # the request's one decode (``decode_image`` without options), measured for statistics
    sha256: str
    model_version_id: int | None
    model_name: str
    prediction: Prediction
    keep_image: bool  # sampled for recalibration (review decisions are always kept)
    received_at: str = field(default_factory=now_iso)
    suspect: bool = False  # its camera's latest health check failed
    content_sha256: str = ""  # ``content_digest(sha256, meta)``: a reused request id must carry the same content

    def __post_init__(self) -> None:
        self.content_sha256 = self.content_sha256 or content_digest(self.sha256, self.meta)


def content_digest(image_sha256: str, meta: CaptureMeta) -> str:
    """SHA-256 over a request's image digest and every metadata field (named and extra), canonically ordered."""
    content = {"image_sha256": image_sha256, **meta.model_dump(mode="json")}
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


def request_conflict(logged: LoggedPrediction, image_sha256: str, meta: CaptureMeta) -> RequestError | None:
    """None when a request reusing ``logged``'s id carries the same image and metadata (a retry to replay);
    otherwise the error (kind "conflict": HTTP 409) naming what differs."""
    stored = _stored_meta(logged)
    digest = logged.content_sha256 or content_digest(logged.image_sha256, stored)  # rows from before schema v5
    if digest == content_digest(image_sha256, meta):
        return None
    differing = ["image bytes"] if logged.image_sha256 != image_sha256 else []
    ours, theirs = stored.model_dump(mode="json"), meta.model_dump(mode="json")
    differing += [name for name in METADATA_FIELDS if ours.get(name) != theirs.get(name)]
    extra_ours, extra_theirs = ours.get("extra") or {}, theirs.get("extra") or {}
    differing += sorted(k for k in extra_ours.keys() | extra_theirs.keys() if extra_ours.get(k) != extra_theirs.get(k))
    return RequestError(f"request id {logged.request_id!r} was already used for a different request "
                        f"(differs in: {', '.join(differing) or 'metadata'}); its logged answer is prediction "
                        f"{logged.id}", "send a new request id for a new image or part; a retry must resend the "
                        "same image and fields", kind="conflict")


def _stored_meta(logged: LoggedPrediction) -> CaptureMeta:
    return CaptureMeta(camera=logged.camera, line=logged.line, shift=logged.shift, lighting=logged.lighting,
                       part_id=logged.part_id, session=logged.session, captured_at=logged.captured_at,
                       extra=dict(logged.extra))


@dataclass
class ShadowRecord:
    """A shadow model's output on a logged production input."""

    production: LoggedPrediction
    meta: CaptureMeta
    data: bytes
    decoded: Decoded
    model_version_id: int
    model_name: str
    prediction: Prediction
    production_prediction: Prediction | None = None  # production's, in memory: its boxes are not logged

    @property
    def boxes(self) -> dict[str, Any] | None:
        """Production's and the shadow's boxes matched by IoU (``shadow.compare_boxes``), in the frame's pixels;
        None unless both models are detectors."""
        size = (self.decoded.image.width, self.decoded.image.height)
        production = None if self.production_prediction is None else predicted_boxes(self.production_prediction, size)
        shadow = predicted_boxes(self.prediction, size)
        return None if production is None or shadow is None else compare_boxes(production, shadow)

    @property
    def agrees(self) -> bool:
        """Whether the shadow would do the same to the part (``shadow.same_fate``); only a disagreement is kept
        and queued for review. An anomaly model's "anomaly" matches any class but its good one."""
        good = {name for name in (anomaly_good_class(self.production.scores),
                                  anomaly_good_class(self.prediction.scores)) if name is not None}
        return same_fate(self.production.label, self.production.decision, self.prediction.label,
                         self.prediction.decision, good=good)


@dataclass
class _Job:
    record: PredictionRecord | ShadowRecord
    future: Future[Any]
    image: ImageRecord | None = None  # measured in the writer (from the request's decode)
    keep: bool = False
    overlay: bytes | None = None  # a review item's heatmap, drawn (review.heatmap_overlay) and stored as a blob


class PredictionLog:
    """The durable, idempotent prediction log with its single group-committing writer thread."""

    def __init__(self, workspace: Workspace, *, ingest_id: int, max_batch: int = MAX_BATCH) -> None:
        self.workspace = workspace
        self.ingest_id = ingest_id
        self.max_batch = max_batch
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._stats_queue: queue.Queue[Any] = queue.Queue()
        self._stats_thread: threading.Thread | None = None
        self.batches = 0
        self.written = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
            self._thread.start()
            self._stats_thread = threading.Thread(target=self._run_stats, name="prediction-stats", daemon=True)
            self._stats_thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the writer."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout)
            self._thread = None
        if self._stats_thread is not None:
            self._stats_queue.put(_STOP)
            self._stats_thread.join(timeout)
            self._stats_thread = None

    def find(self, request_id: str) -> LoggedPrediction | None:
        """The logged prediction of ``request_id``, if any."""
        return self.workspace.db.predictions.by_request(request_id)

    def submit(self, record: PredictionRecord) -> Future[LoggedPrediction]:
        """Queue a prediction; the future resolves once its row is committed (or found already logged)."""
        return self._put(record)

    def submit_shadow(self, record: ShadowRecord) -> Future[int | None]:
        """Queue a shadow result; the future resolves to its row id (None if it was logged before)."""
        return self._put(record)

    def _put(self, record: PredictionRecord | ShadowRecord) -> Future[Any]:
        if self._thread is None:
            raise RuntimeError("the prediction log is not started")
        future: Future[Any] = Future()
        self._queue.put(_Job(record, future))
        return future

    # -- the writer thread ------------------------------------------------------------------------
    def _run(self) -> None:
        # Commits reach the disk before any request is answered (see Database.durable_writer).
        with self.workspace.db.durable_writer() as writer:
            stopping = False
            while not stopping:
                batch, stopping = _drain(self._queue, self.max_batch)
                if batch:
                    self._write(writer, batch)

    def _write(self, writer: DurableWriter, batch: list[_Job]) -> None:
        for job in batch:
            _measure(job)
        try:
            for job in batch:  # blobs are synced before the rows that name them
                if job.keep:
                    # put (fsync of the file) rather than put_many: its os.sync() flushes the whole machine's
                    # dirty pages, which stalls every waiting request behind other programs' writes
                    self.workspace.blobs.put(job.record.data)
                if job.overlay is not None:
                    self.workspace.blobs.put(job.overlay)
            with writer.transaction() as tx:
                results = [self._apply(tx, job) for job in batch]
        except Exception:  # one bad job must not fail the others: retry each alone
            log.exception("batch of %d failed; writing one by one", len(batch))
            return self._write_each(writer, batch)
        self.batches += 1
        self.written += sum(not isinstance(result, Exception) for result in results)
        for job, result in zip(batch, results, strict=True):
            _settle(job, result)
            self._measure_later(job, result)

    def _measure_later(self, job: _Job, result: Any) -> None:
        """Queue the image statistics of a prediction logged without them (its image was not kept)."""
        if isinstance(job.record, PredictionRecord) and isinstance(result, LoggedPrediction) and job.image is None \
                and not result.replayed:
            self._stats_queue.put((result.id, statistics_view(job.record.decoded.image)))

    # -- the statistics thread: image statistics for drift, after the answer, never in its way ----
    def _run_stats(self) -> None:
        while True:
            batch, stopping = _drain(self._stats_queue, self.max_batch)
            if batch:
                try:
                    rows = [(prediction_id, view_stats(view).model_dump()) for prediction_id, view in batch]
                    self.workspace.db.predictions.set_stats(rows)
                except Exception:  # a database hiccup costs these rows' drift statistics, never the thread:
                    log.exception("image statistics of %d prediction(s) not recorded", len(batch))  # it drains the queue
            if stopping:
                return

    def _write_each(self, writer: DurableWriter, batch: list[_Job]) -> None:
        for job in batch:
            try:
                if job.keep:
                    self.workspace.blobs.put(job.record.data)
                if job.overlay is not None:
                    self.workspace.blobs.put(job.overlay)
                with writer.transaction() as tx:
                    result = self._apply(tx, job)
                _settle(job, result)
            except Exception as exc:
                job.future.set_exception(exc)

    def _apply(self, tx: Transaction, job: _Job) -> Any:
        if isinstance(job.record, ShadowRecord):
            return _apply_shadow(tx, job, self.ingest_id)
        return _apply_prediction(tx, job, self.ingest_id)


def _settle(job: _Job, result: Any) -> None:
    """Resolve a job's future: a conflict found by the writer is that request's error, not the batch's."""
    if isinstance(result, Exception):
        job.future.set_exception(result)
    else:
        job.future.set_result(result)


def _drain(source: queue.Queue[Any], most: int) -> tuple[list[Any], bool]:
    """Block for one item, then take what else is queued (up to ``most``); True once ``_STOP`` is seen."""
    first = source.get()
    if first is _STOP:
        return [], True
    batch = [first]
    while len(batch) < most:
        try:
            item = source.get_nowait()
        except queue.Empty:
            break
        if item is _STOP:
            return batch, True
        batch.append(item)
    return batch, False


def _measure(job: _Job) -> None:
    """Measure an image the log keeps (its ``images`` row and statistics commit with the prediction).
    Other images are measured after the answer, by the statistics thread: a request never waits for
    statistics that only monitoring reads."""
    record = job.record
    if isinstance(record, PredictionRecord):
        keep, sha256 = record.keep_image or record.prediction.decision == "review", record.sha256
    else:  # a shadow result needs the image only when it changes the part's fate and production did not keep it
        keep, sha256 = not record.agrees and not record.production.image_stored, record.production.image_sha256
    if keep:
        job.image = measure_decoded(record.decoded, sha256, len(record.data), record.meta, ImageSource.production)
        job.keep = True
        if isinstance(record, PredictionRecord) and record.prediction.decision == "review":
            job.overlay = review.heatmap_overlay(record.prediction)


def _apply_prediction(tx: Transaction, job: _Job, ingest_id: int) -> LoggedPrediction | RequestError:
    record = job.record
    assert isinstance(record, PredictionRecord)
    existing = tx.predictions.by_request(record.request_id)
    if existing is not None:  # a retry that raced its first attempt here, or the same id with other content
        return request_conflict(existing, record.sha256, record.meta) or existing
    if job.keep and job.image is not None:
        tx.images.add_once(job.image, ingest_id)
    p = record.prediction
    values = dict(request_id=record.request_id, received_at=record.received_at, source=record.source,
                  image_sha256=record.sha256, image_stored=job.keep, model_version_id=record.model_version_id,
                  model_name=record.model_name,
                  label=p.label, decision=p.decision, confidence=p.confidence, scores=p.scores,
                  latency_ms=p.latency_ms, stats=job.image.quality.model_dump() if job.image else None,
                  suspect=record.suspect, content_sha256=record.content_sha256)
    logged = tx.predictions.add(values, record.meta)
    if logged is None:  # another service (same database) logged this request id since the check above
        existing = tx.predictions.by_request(record.request_id)
        assert existing is not None  # the unique request_id refused our row, so its row is there
        return request_conflict(existing, record.sha256, record.meta) or existing
    if p.decision == "review" and job.keep:
        review.enqueue(tx, image_sha256=record.sha256, reason="uncertain", prediction_id=logged.id,
                       model_version_id=record.model_version_id, suggestion=p.label, scores=p.scores,
                       details=review.prediction_details(p, job.overlay, (job.image.width, job.image.height)), priority=1.0 - p.confidence)
    return logged


def _apply_shadow(tx: Transaction, job: _Job, ingest_id: int) -> int | None:
    record = job.record
    assert isinstance(record, ShadowRecord)
    p, production = record.prediction, record.production
    shadow_id = tx.predictions.add_shadow(dict(
        prediction_id=production.id, model_version_id=record.model_version_id, label=p.label, decision=p.decision,
        confidence=p.confidence, scores=p.scores, latency_ms=p.latency_ms, agrees=record.agrees, boxes=record.boxes))
    if shadow_id is None:
        return None
    if job.keep and job.image is not None:
        tx.images.add_once(job.image, ingest_id)
        tx.predictions.mark_image_stored(production.id)
    stored = production.image_stored or job.keep
    if not record.agrees and stored:
        review.enqueue(tx, image_sha256=production.image_sha256, reason="shadow", prediction_id=production.id,
                       model_version_id=record.model_version_id, suggestion=p.label, scores=p.scores,
                       details=_disagreement(production, record), priority=p.confidence)
    for qc_label in tx.predictions.qc_labels(production.id):
        if not same_class(qc_label, p.label, tx.labels.good_classes()) and stored:
            enqueue_qc(tx, production, record.model_version_id, p.label, qc_label)
    return shadow_id


def _disagreement(production: LoggedPrediction, shadow: ShadowRecord) -> dict[str, Any]:
    """A shadow item's details; a detector's boxes too (the shadow's, as its label is the suggestion), for the
    reviewer to correct."""
    details: dict[str, Any] = {
        "production_label": production.label, "production_decision": production.decision,
        "production_model": production.model_name, "shadow_label": shadow.prediction.label,
        "shadow_decision": shadow.prediction.decision, "shadow_model": shadow.model_name}
    boxes = predicted_boxes(shadow.prediction, (shadow.decoded.image.width, shadow.decoded.image.height))
    if boxes is not None:
        details[BOXES_DETAIL] = boxes
    return details


def enqueue_qc(tx: Transaction, production: LoggedPrediction, model_version_id: int, shadow_label: str,
               qc_label: str) -> int | None:
    """Send a candidate-vs-human-QC disagreement to review (reason "qc")."""
    return review.enqueue(tx, image_sha256=production.image_sha256, reason="qc", prediction_id=production.id,
                          model_version_id=model_version_id, suggestion=shadow_label,
                          details={"qc_label": qc_label, "shadow_label": shadow_label,
                                   "production_label": production.label})


@dataclass(frozen=True)
class QcResult:
    """A recorded QC verdict and the review items its disagreements with shadow models opened."""

    id: int
    prediction_id: int
    label: str
    production_agrees: bool
    shadow_disagreements: list[int]  # model version ids whose label differs from the inspector's
    review_items: list[int]


def record_qc(workspace: Workspace, *, label: str, inspector: str, prediction_id: int | None = None,
              request_id: str | None = None) -> QcResult:
    """Record a human QC verdict on a logged prediction and compare it with every shadow result on it."""
    with workspace.db.transaction() as tx:
        production = _qc_target(tx, prediction_id, request_id)
        known = tx.labels.class_names()
        if label not in known:
            raise RequestError(f"unknown class {label!r}", f"use one of: {', '.join(sorted(known))}",
                               kind="unknown_class")
        qc_id = tx.predictions.add_qc(production.id, label, inspector)
        differing, items = [], []
        for shadow in tx.predictions.shadows_of(production.id):
            if same_class(shadow.label, label, tx.labels.good_classes()):
                continue
            differing.append(shadow.model_version_id)
            if production.image_stored:
                item = enqueue_qc(tx, production, shadow.model_version_id, shadow.label, label)
                items += [item] if item is not None else []
    return QcResult(qc_id, production.id, label, production.label == label, differing, items)


def _qc_target(tx: Transaction, prediction_id: int | None, request_id: str | None) -> LoggedPrediction:
    if prediction_id is None and not request_id:
        raise RequestError("no prediction named", "give prediction_id or request_id", kind="bad_field")
    row = (tx.predictions.get(prediction_id) if prediction_id is not None
           else tx.predictions.by_request(str(request_id)))
    if row is None:
        raise RequestError(f"no logged prediction {prediction_id if prediction_id is not None else request_id!r}",
                           "use the prediction_id or request_id the inspect answer gave", kind="not_found")
    return row
