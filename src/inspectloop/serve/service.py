"""The inspection service: validate a request, predict with the production model, log it durably.

Each request's image is decoded once (``decode_request``, as ingest decodes it); the production model,
the shadow model and the log's statistics all read that one decode. Memory stays bounded whatever the
mix of requests: a frame over ``max_pixels`` is refused from its header (413) before any pixel is
decoded, and decoded frames hold a share of a pixel budget (``decode_pixels``) until their answer is
logged, so a burst of large frames waits for room instead of decoding all at once.

The production model comes from the registry (or a pinned file); a shadow candidate (the registry's
version in stage "shadow", or a pinned version) runs on the same inputs in a background thread after
the production answer is decided, so it never delays production: its results are logged and compared,
never acted on. Promotions and rollbacks (through the API, or the CLI in another process: the registry
is polled) swap the model reference atomically; a request in flight keeps the model it started with.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import random
import re
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from inspectloop import registry
from inspectloop.camera.run import suspect_cameras
from inspectloop.domain import MAX_FIELD_CHARS, METADATA_FIELDS, CaptureMeta, LoggedPrediction, ModelVersion, Stage
from inspectloop.errors import (
    ImageError,
    ImageTooLargeError,
    ModelFileError,
    RegistryError,
    RequestError,
    ServiceError,
)
from inspectloop.serve.prediction_log import (
    PredictionLog,
    PredictionRecord,
    QcResult,
    ShadowRecord,
    record_qc,
    request_conflict,
)
from inspectloop.runtime import EdgeModel, Prediction
from inspectloop.runtime.model import TrustedKey
from inspectloop.runtime.signing import trusted_key_paths_from_env
from inspectloop.runtime.images import FORMATS, MAX_PIXELS, Decoded, decode_opened, open_image
from inspectloop.store import StoreError, sha256_bytes
from inspectloop.workspace import Workspace

log = logging.getLogger(__name__)
SUPPORTED_FORMATS = FORMATS  # the one decode policy's formats: the service accepts what ingest accepts
# Frame size limit when the configuration gives none: twice the largest frame in the workspace (a newer
# camera, a wider crop), within these bounds; DEFAULT_MAX_PIXELS for a workspace without images.
DEFAULT_MAX_PIXELS = 40_000_000
MIN_AUTO_PIXELS = 4_000_000
REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$")
SHADOW_QUEUE = 1000
# Decoded images waiting for the shadow model, at most: frames on one line share a size, so the queue's
# length times the newest frame's size bounds the memory they hold.
SHADOW_QUEUE_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class ServiceConfig:
    """How the service runs; ``inspectloop serve`` surfaces every field (``--set KEY=VALUE``), help included."""

    model_file: Path | None = field(default=None, metadata={
        "help": "serve this .onnx file instead of the registry's production version"})
    shadow: str | None = field(default=None, metadata={
        "help": "shadow this registry version (none: the version in stage shadow, if any)"})
    sample_rate: float = field(default=0.05, metadata={"help": "share of images kept for recalibration"})
    max_upload_mb: float = field(default=20.0, metadata={"help": "largest image accepted, in MB"})
    cameras: tuple[str, ...] = field(default=(), metadata={
        "help": "known cameras beside those in the workspace's images (--camera is repeatable)"})
    threads: int = field(default=1, metadata={"help": "CPU threads per inference"})
    workers: int = field(default_factory=lambda: os.cpu_count() or 1, metadata={
        "help": "inferences at once (default: this machine's CPU count)"})
    poll_seconds: float = field(default=2.0, metadata={
        "help": "how often the registry is checked for promotions made elsewhere, in seconds"})
    trusted_keys: tuple[Path, ...] = field(default_factory=trusted_key_paths_from_env, metadata={
        "help": "public keys (PEM) a model must be signed by (--trusted-key is repeatable; default: "
                "$INSPECTLOOP_TRUSTED_KEYS); registry versions signed at registration also need the workspace's key"})
    max_pixels: int | None = field(default=None, metadata={
        "help": "largest frame accepted, in pixels, checked on the header before decoding (none: twice the "
                f"largest frame in the workspace, {MIN_AUTO_PIXELS:,} to {MAX_PIXELS:,}; "
                f"{DEFAULT_MAX_PIXELS:,} without images)"})
    decode_pixels: int | None = field(default=None, metadata={
        "help": "pixels decoded and held at once over all requests until each answer is logged; larger "
                "frames wait their turn (none: twice max_pixels, about 6 bytes of memory per pixel)"})

    def __post_init__(self) -> None:
        if not 0.0 <= self.sample_rate <= 1.0:
            raise ServiceError(f"sample rate {self.sample_rate} is not between 0 and 1", "e.g. --sample-rate 0.05")
        if self.max_upload_mb <= 0:
            raise ServiceError(f"max upload {self.max_upload_mb} MB is not positive", "e.g. --set max_upload_mb=20")
        if self.threads < 1 or self.workers < 1:
            raise ServiceError(f"threads and workers must be at least 1, got {self.threads} and {self.workers}",
                               "e.g. --set threads=1")
        if self.poll_seconds <= 0:
            raise ServiceError(f"poll interval {self.poll_seconds} s is not positive", "e.g. --set poll_seconds=2")
        if self.max_pixels is not None and not 1 <= self.max_pixels <= MAX_PIXELS:
            raise ServiceError(f"max_pixels {self.max_pixels} is not between 1 and {MAX_PIXELS:,}",
                               "e.g. --set max_pixels=20000000 (20 MP), or none for the default")
        if self.decode_pixels is not None and self.decode_pixels < (self.max_pixels or 1):
            raise ServiceError(f"decode_pixels {self.decode_pixels} is below max_pixels {self.max_pixels}: "
                               "the largest frame could never be decoded", "set decode_pixels >= max_pixels")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


@dataclass(frozen=True)
class ServedModel:
    """A loaded model and what it is in the registry (``version_id`` None for a pinned file)."""

    model: EdgeModel
    name: str
    version_id: int | None
    stage: str

    def describe(self) -> dict[str, Any]:
        meta = self.model.metadata
        return {"name": self.name, "version_id": self.version_id, "stage": self.stage, "file": self.model.path.name,
                "model_version": meta.model_version, "classes": list(meta.class_names),
                "signature": self.model.signature.to_dict()}


class InspectionService:
    """Production and shadow models, the prediction log and the background threads that serve them."""

    def __init__(self, workspace: Workspace, config: ServiceConfig | None = None) -> None:
        self.workspace = workspace
        self.config = config or ServiceConfig()
        self.production: ServedModel = self._load_production()
        self.shadow: ServedModel | None = self._load_shadow()
        self.cameras = self._known_cameras()
        # cameras whose latest health check failed (with its time): refreshed with the registry poll
        self.suspect_cameras: dict[str, str] = suspect_cameras(workspace)
        self.log: PredictionLog | None = None
        self.shadow_dropped = 0
        self._slots = threading.BoundedSemaphore(self.config.workers)
        self.max_pixels = self.config.max_pixels or default_max_pixels(workspace)
        self.decode_budget = PixelBudget(self.config.decode_pixels or 2 * self.max_pixels)
        self._swap_lock = threading.Lock()
        self._shadow_queue: queue.Queue[Any] = queue.Queue(SHADOW_QUEUE)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- life cycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Open this run's ingest record and start the log writer, the shadow runner and the registry poller."""
        if self.log is not None:
            return
        ingest_id = self.workspace.db.images.begin_ingest(f"inspection service (pid {os.getpid()})", "service")
        self.log = PredictionLog(self.workspace, ingest_id=ingest_id)
        self.log.start()
        self._stop.clear()
        for target, name in ((self._run_shadow, "shadow"), (self._poll_registry, "registry-poll")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop the background threads; queued predictions are written first."""
        self._stop.set()
        self._shadow_queue.put(None)
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()
        if self.log is not None:
            self.log.stop()
            self.workspace.db.images.finish_ingest(self.log.ingest_id, {"predictions": self.log.written})
            self.log = None

    # -- requests -----------------------------------------------------------------------------
    def submit(self, data: bytes, fields: dict[str, str | None], *, request_id: str | None = None,
               source: str = "http") -> Future[LoggedPrediction]:
        """Predict and log one image; the future resolves once the row is committed.

        A request id already logged with the same image and metadata returns its stored result (nothing
        predicted, nothing added); with other content it is a conflict (RequestError, kind "conflict").
        Bad input raises RequestError before anything is logged.
        """
        if self.log is None:
            raise ServiceError("the service is not started", "start it with InspectionService.start()")
        request_id = _request_id(request_id)
        meta = self._meta(fields)
        _check_size(data, self.config.max_upload_bytes)
        logged = self.log.find(request_id)
        if logged is not None:
            conflict = request_conflict(logged, sha256_bytes(data), meta)
            if conflict is not None:
                raise conflict
            done: Future[LoggedPrediction] = Future()
            done.set_result(logged)
            return done
        served = self.production  # this request finishes on this model, whatever is promoted meanwhile
        decoded, prediction, held = self._decode_and_predict(data, served)
        record = PredictionRecord(request_id=request_id, source=source, meta=meta, data=data, decoded=decoded,
                                  sha256=sha256_bytes(data), model_version_id=served.version_id,
                                  model_name=served.name, prediction=prediction,
                                  keep_image=random.random() < self.config.sample_rate,
                                  suspect=meta.camera in self.suspect_cameras)
        future = _with_warnings(self._log_holding(self.log, record, held), decoded.warnings, _outputs(prediction))
        if self.shadow is not None:
            future.add_done_callback(lambda f: self._queue_shadow(f, meta, data, decoded, prediction))
        return future

    def _decode_and_predict(self, data: bytes, served: ServedModel) -> tuple[Decoded, Prediction, int]:
        """Decode the request's image once and predict; also the pixels it holds of the decode budget
        (released by ``_log_holding`` once its answer is logged, or here if anything fails)."""
        started = time.perf_counter()
        opened = open_request(data, self.max_pixels)  # 413 from the header, before any pixel is decoded
        held = self.decode_budget.acquire(opened.width * opened.height)  # waits while large frames are in flight
        try:
            with self._slots:
                decoded = decode_request(data, self.max_pixels, opened=opened)
                decode_ms = (time.perf_counter() - started) * 1000
                return decoded, _with_decode_time(_predict(served.model, data, decoded), decode_ms), held
        except BaseException:
            self.decode_budget.release(held)
            raise

    def _log_holding(self, log_: PredictionLog, record: PredictionRecord, held: int) -> Future[LoggedPrediction]:
        """Queue the record; its ``held`` pixels go back to the decode budget once it is logged (or fails)."""
        try:
            return self.decode_budget.release_when_done(log_.submit(record), held)
        except BaseException:
            self.decode_budget.release(held)
            raise

    def record_qc(self, *, label: str, inspector: str, prediction_id: int | None = None,
                  request_id: str | None = None) -> QcResult:
        """A human QC verdict on a logged prediction, compared with the shadow's (see ``prediction_log.record_qc``)."""
        return record_qc(self.workspace, label=label, inspector=inspector, prediction_id=prediction_id,
                         request_id=request_id)

    def health(self, details: bool = False) -> dict[str, Any]:
        """Liveness; with ``details`` (for authenticated callers) also the models, cameras and log counters.
        No secrets, no database writes."""
        log_ = self.log
        status = "ok" if log_ is not None else "stopped"
        if not details:
            return {"status": status}
        return {"status": status, "production": self.production.describe(),
                "shadow": self.shadow.describe() if self.shadow else None,
                "cameras": sorted(self.cameras) or "any",
                "logged": log_.written if log_ else 0, "shadow_dropped": self.shadow_dropped}

    # -- models -------------------------------------------------------------------------------
    def promote(self, version: str, stage: str, *, actor: str, reason: str | None, override: bool) -> dict[str, Any]:
        """Promote through the registry, then serve what it now says."""
        promoted = registry.promote(self.workspace, version, stage, actor=actor, reason=reason, override=override)
        self.refresh_models()
        return {"version": promoted.name, "stage": promoted.stage.value, **self.serving()}

    def rollback(self, *, actor: str, reason: str) -> dict[str, Any]:
        restored = registry.rollback(self.workspace, actor=actor, reason=reason)
        self.refresh_models()
        return {"version": restored.name, "stage": restored.stage.value, **self.serving()}

    def serving(self) -> dict[str, Any]:
        return {"production": self.production.describe(), "shadow": self.shadow.describe() if self.shadow else None}

    def refresh_models(self) -> bool:
        """Load what the registry now puts in production and shadow; swap atomically. True if anything changed."""
        with self._swap_lock:
            changed = False
            if self.config.model_file is None:
                current = registry.production_model(self.workspace)
                if current is not None and current.id != self.production.version_id:
                    self.production = self._load_version(current)  # one reference assignment: atomic
                    log.info("production model is now %s", self.production.name)
                    changed = True
            if self.config.shadow is None:
                wanted = self.workspace.db.registry.find(stage=Stage.shadow)
                if (wanted.id if wanted else None) != (self.shadow.version_id if self.shadow else None):
                    self.shadow = self._load_version(wanted) if wanted else None
                    log.info("shadow model is now %s", self.shadow.name if self.shadow else "none")
                    changed = True
            return changed

    def _load_production(self) -> ServedModel:
        if self.config.model_file is not None:
            model = _edge_model(self.config.model_file, self.config.threads, self.config.trusted_keys)
            return ServedModel(model, f"{self.config.model_file.name} {model.metadata.model_version}", None, "pinned")
        version = registry.production_model(self.workspace)
        if version is None:
            raise ServiceError("no model version is in production",
                               "promote one (inspectloop models promote VERSION production --actor NAME) "
                               "or serve a file with --model FILE")
        return self._load_version(version)

    def _load_shadow(self) -> ServedModel | None:
        if self.config.shadow is not None:
            return self._load_version(registry.get_version(self.workspace, self.config.shadow))
        version = self.workspace.db.registry.find(stage=Stage.shadow)
        return self._load_version(version) if version else None

    def _load_version(self, version: ModelVersion) -> ServedModel:
        registry.verify_file(version, self.workspace)
        keys = (*self.config.trusted_keys, *registry.trusted_keys_for(self.workspace, version))
        return ServedModel(_edge_model(version.path, self.config.threads, keys), version.name, version.id,
                           version.stage.value)

    def _known_cameras(self) -> set[str]:
        return self.workspace.db.images.cameras() | set(self.config.cameras)

    def _meta(self, fields: dict[str, str | None]) -> CaptureMeta:
        for name, value in fields.items():
            if len(name) > MAX_FIELD_CHARS or len(value or "") > MAX_FIELD_CHARS:
                raise RequestError(f"metadata field {name[:40]!r} is over {MAX_FIELD_CHARS} characters",
                                   f"send field names and values of at most {MAX_FIELD_CHARS} characters",
                                   kind="bad_field")
        camera = fields.get("camera")
        if self.cameras and camera not in self.cameras:
            raise RequestError(f"unknown camera {camera!r}" if camera else "no camera given",
                               f"send camera as one of: {', '.join(sorted(self.cameras))} "
                               "(or start the service with --camera NAME)", kind="unknown_camera")
        known = {name: (fields.get(name) or None) for name in METADATA_FIELDS}
        extra = {k: str(v) for k, v in fields.items() if k not in METADATA_FIELDS and v}
        try:
            return CaptureMeta(**known, extra=extra)
        except ValueError as exc:
            raise RequestError(f"bad metadata: {str(exc).splitlines()[-1].strip()}",
                               "send captured_at as ISO 8601, e.g. 2025-05-01T08:30:00", kind="bad_field") from None

    # -- background threads --------------------------------------------------------------------
    def _queue_shadow(self, future: Future[LoggedPrediction], meta: CaptureMeta, data: bytes,
                      decoded: Decoded, prediction: Prediction) -> None:
        if future.exception() is not None or future.result().replayed:
            return
        image = decoded.image
        try:
            if (self._shadow_queue.qsize() + 1) * image.width * image.height * len(image.getbands()) \
                    > SHADOW_QUEUE_BYTES:
                raise queue.Full
            self._shadow_queue.put_nowait((future.result(), meta, data, decoded, prediction))
        except queue.Full:  # the shadow must never hold production back; a dropped comparison is counted
            self.shadow_dropped += 1

    def _run_shadow(self) -> None:
        while not self._stop.is_set():
            item = self._shadow_queue.get()
            shadow, log_ = self.shadow, self.log
            if item is None or shadow is None or log_ is None or shadow.version_id is None:
                continue
            production, meta, data, decoded, production_prediction = item
            try:
                with self._slots:
                    prediction = _predict(shadow.model, data, decoded)
                log_.submit_shadow(ShadowRecord(production, meta, data, decoded, shadow.version_id, shadow.name,
                                                prediction, production_prediction))
            except Exception:  # a failing candidate must not stop the service
                log.exception("shadow model %s failed on prediction %s", shadow.name, production.id)

    def refresh_camera_status(self) -> None:
        """Reload which cameras failed their latest health check.

        A camera that newly fails gets the predictions logged since its check (while this cache was
        stale) marked suspect too; the check itself marked those before it.
        """
        failing = suspect_cameras(self.workspace)
        with self.workspace.db.transaction() as tx:
            for name, checked_at in failing.items():
                if self.suspect_cameras.get(name) != checked_at:
                    tx.predictions.mark_suspect(name, checked_at)
        self.suspect_cameras = failing  # one reference assignment: atomic for the request threads

    def _poll_registry(self) -> None:
        while not self._stop.wait(self.config.poll_seconds):
            try:
                self.refresh_models()
                self.refresh_camera_status()
            except (RegistryError, ModelFileError, StoreError) as exc:  # keep serving the model we have
                log.warning("registry check failed, still serving %s: %s", self.production.name, exc)


def _edge_model(path: Path, threads: int, trusted_keys: Sequence[TrustedKey]) -> EdgeModel:
    return EdgeModel(path, threads=threads, trusted_keys=trusted_keys)


def _request_id(value: str | None) -> str:
    if value is None or not value.strip():
        return uuid.uuid4().hex
    value = value.strip()
    if not REQUEST_ID.match(value):
        raise RequestError(f"bad request id {value[:40]!r}",
                           "use 1-128 letters, digits, '.', '_', ':' or '-' (a UUID is fine)", kind="bad_field")
    return value


def _check_size(data: bytes, limit: int) -> None:
    """Refuse empty and oversized files before anything decodes them."""
    if not data:
        raise RequestError("the image file is empty", "send the image bytes as the 'image' field", kind="empty")
    if len(data) > limit:
        raise RequestError(f"image is {len(data) / 1048576:.1f} MB, over the {limit / 1048576:.1f} MB limit",
                           "send a smaller image, or start the service with a larger --set max_upload_mb=MB",
                           kind="too_large")


def default_max_pixels(workspace: Workspace) -> int:
    """The frame size limit when none is configured: twice the workspace's largest frame, within bounds."""
    largest = workspace.db.images.largest_frame()
    if largest is None:
        return DEFAULT_MAX_PIXELS
    return max(MIN_AUTO_PIXELS, min(MAX_PIXELS, 2 * largest))


def open_request(data: bytes, max_pixels: int) -> Image.Image:
    """A request's image opened from its header only (nothing decoded); RequestError when it is not
    one of ``SUPPORTED_FORMATS`` (415), its header is corrupt (422) or it is over ``max_pixels`` (413)."""
    try:
        return open_image(data, name="image", max_pixels=max_pixels)
    except ImageError as exc:
        raise _request_error(exc) from exc


def decode_request(data: bytes, max_pixels: int = MAX_PIXELS, *, opened: Image.Image | None = None) -> Decoded:
    """A request's image decoded once, as ingest decodes it (full size, working mode, EXIF orientation
    applied, the decoder's warnings kept), so that its statistics compare with the ingest baseline.

    ``opened`` is its :func:`open_request` when the caller already read the header. RequestError as
    ``open_request``, or 422 for pixel data that is corrupt.
    """
    image = opened if opened is not None else open_request(data, max_pixels)
    try:
        return decode_opened(image, name="image")
    except ImageError as exc:
        raise _request_error(exc) from exc


def _request_error(exc: ImageError) -> RequestError:
    """The decoder's error as the API's: same message as ingest and ``predict`` give, its kind for the status."""
    message = exc.message.removeprefix("image: ")
    if isinstance(exc, ImageTooLargeError):
        return RequestError(message, "send a smaller frame, or start the service with a larger "
                                     f"--set max_pixels=N (at most {MAX_PIXELS:,})", kind="too_large")
    if message.startswith("not an image file"):
        return RequestError(message, f"send {', '.join(SUPPORTED_FORMATS)}", kind="unsupported")
    return RequestError(message, exc.hint, kind="corrupt")


def _predict(model: EdgeModel, data: bytes, decoded: Decoded) -> Prediction:
    """``model.predict`` on the request's decode; RequestError if the model cannot use the image.

    A JPEG that the model decodes its own way, as it was trained (at reduced DCT scale with ``jpeg_draft``,
    or colour straight to luma for a greyscale model), goes to the model as bytes, so that serving sees
    training's pixels: a second decode for those files only. Every other file gives the model the same
    pixels as its own decode would.
    """
    meta = model.metadata
    own_decode = decoded.format == "JPEG" and (meta.jpeg_draft or (meta.colour_mode == "L"
                                                                   and decoded.original_mode != "L"))
    source: bytes | Image.Image = data if own_decode else decoded.image
    try:
        return model.predict(source, name="image")
    except ImageError as exc:
        raise _request_error(exc) from exc


def _outputs(prediction: Prediction) -> dict[str, Any]:
    """What the answer carries beside the scores: an anomaly model's score and heatmap summary (its coarse grid
    and peak, never the full map), a classifier's novelty score."""
    record = prediction.to_dict()
    return {name: record[name] for name in ("anomaly_score", "novelty", "regions") if record.get(name) is not None}


def _with_warnings(future: Future[LoggedPrediction], warnings: tuple[str, ...],
                   outputs: dict[str, Any] | None = None) -> Future[LoggedPrediction]:
    """The logged answer with the decoder's warnings and the model's other ``outputs`` (they are returned, not
    stored: a replay has none)."""
    if not warnings and not outputs:
        return future
    answer: Future[LoggedPrediction] = Future()

    def settle(done: Future[LoggedPrediction]) -> None:
        error = done.exception()
        if error is not None:
            answer.set_exception(error)
        else:
            answer.set_result(dataclasses.replace(done.result(), warnings=warnings, outputs=dict(outputs or {})))

    future.add_done_callback(settle)
    return answer


class PixelBudget:
    """A counting semaphore in pixels: a decoded frame holds its pixels until its answer is logged.

    A frame never asks for more than ``total`` (it would wait forever); ``max_pixels`` <= ``total``
    is checked by the configuration, so that clamp is only a guard.
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self.used = 0
        self._changed = threading.Condition()

    def acquire(self, pixels: int) -> int:
        """Wait until ``pixels`` fit, take them; return what was taken (to release later)."""
        pixels = min(pixels, self.total)
        with self._changed:
            self._changed.wait_for(lambda: self.used + pixels <= self.total)
            self.used += pixels
        return pixels

    def release(self, pixels: int) -> None:
        with self._changed:
            self.used -= pixels
            self._changed.notify_all()

    def release_when_done(self, future: Future[Any], pixels: int) -> Future[Any]:
        """``future``, with ``pixels`` released once it resolves (its answer logged, or failed)."""
        future.add_done_callback(lambda _: self.release(pixels))
        return future


def _with_decode_time(prediction: Prediction, decode_ms: float) -> Prediction:
    """The prediction with the service's decode counted in its ``decode`` and ``total`` latency."""
    latency = dict(prediction.latency_ms)
    latency["decode"] = round(latency.get("decode", 0.0) + decode_ms, 4)
    latency["total"] = round(latency.get("total", 0.0) + decode_ms, 4)
    return dataclasses.replace(prediction, latency_ms=latency)
