"""The inspection service: validate a request, predict with the production model, log it durably.

Each request's image is decoded once (``decode_request``, as ingest decodes it); the production model,
the shadow model and the log's statistics all read that one decode.

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

from PIL import Image, UnidentifiedImageError

from inspectloop import registry
from inspectloop.camera.run import suspect_cameras
from inspectloop.domain import MAX_FIELD_CHARS, METADATA_FIELDS, CaptureMeta, LoggedPrediction, ModelVersion, Stage
from inspectloop.errors import (
    ImageError,
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
from inspectloop.runtime.images import Decoded, decode_image
from inspectloop.runtime.model import TrustedKey
from inspectloop.runtime.signing import trusted_key_paths_from_env
from inspectloop.store import StoreError, sha256_bytes
from inspectloop.workspace import Workspace

log = logging.getLogger(__name__)
SUPPORTED_FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "PPM")  # what cameras write and ingest accepts
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
        with self._slots:
            started = time.perf_counter()
            decoded = decode_request(data)
            decode_ms = (time.perf_counter() - started) * 1000
            prediction = _with_decode_time(_predict(served.model, data, decoded), decode_ms)
        record = PredictionRecord(request_id=request_id, source=source, meta=meta, data=data, decoded=decoded,
                                  sha256=sha256_bytes(data), model_version_id=served.version_id,
                                  model_name=served.name, prediction=prediction,
                                  keep_image=random.random() < self.config.sample_rate,
                                  suspect=meta.camera in self.suspect_cameras)
        future = self.log.submit(record)
        if self.shadow is not None:
            future.add_done_callback(lambda f: self._queue_shadow(f, meta, data, decoded))
        return future

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
                      decoded: Decoded) -> None:
        if future.exception() is not None or future.result().replayed:
            return
        image = decoded.image
        try:
            if (self._shadow_queue.qsize() + 1) * image.width * image.height * len(image.getbands()) \
                    > SHADOW_QUEUE_BYTES:
                raise queue.Full
            self._shadow_queue.put_nowait((future.result(), meta, data, decoded))
        except queue.Full:  # the shadow must never hold production back; a dropped comparison is counted
            self.shadow_dropped += 1

    def _run_shadow(self) -> None:
        while not self._stop.is_set():
            item = self._shadow_queue.get()
            shadow, log_ = self.shadow, self.log
            if item is None or shadow is None or log_ is None or shadow.version_id is None:
                continue
            production, meta, data, decoded = item
            try:
                with self._slots:
                    prediction = _predict(shadow.model, data, decoded)
                log_.submit_shadow(ShadowRecord(production, meta, data, decoded, shadow.version_id, shadow.name,
                                                prediction))
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


def decode_request(data: bytes) -> Decoded:
    """A request's image decoded once, as ingest decodes it (full size, working mode), so that its statistics
    compare with the ingest baseline; RequestError for a file in no supported format, or corrupt."""
    try:
        decoded = decode_image(data)
    except ImageError as exc:
        if isinstance(exc.__cause__, UnidentifiedImageError):
            raise RequestError("not an image in a supported format", f"send {', '.join(SUPPORTED_FORMATS)}",
                               kind="unsupported") from None
        raise RequestError(exc.message.removeprefix("<bytes>: "), exc.hint, kind="corrupt") from exc
    if decoded.format not in SUPPORTED_FORMATS:
        raise RequestError(f"{decoded.format} images are not supported", f"send {', '.join(SUPPORTED_FORMATS)}",
                           kind="unsupported")
    return decoded


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
        return model.predict(source)
    except ImageError as exc:
        raise RequestError(exc.message.removeprefix("<bytes>: ").removeprefix("<image>: "), exc.hint,
                           kind="corrupt") from exc


def _with_decode_time(prediction: Prediction, decode_ms: float) -> Prediction:
    """The prediction with the service's decode counted in its ``decode`` and ``total`` latency."""
    latency = dict(prediction.latency_ms)
    latency["decode"] = round(latency.get("decode", 0.0) + decode_ms, 4)
    latency["total"] = round(latency.get("total", 0.0) + decode_ms, 4)
    return dataclasses.replace(prediction, latency_ms=latency)
