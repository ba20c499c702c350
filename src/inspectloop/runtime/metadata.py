"""The model package's metadata and integrity hash, read straight from the ONNX file's bytes.

An inspectloop model is one ONNX file. Its ``metadata_props`` hold one entry, key ``inspectloop``,
whose value is :meth:`ModelMetadata.to_json`. ``weights_sha256`` is the SHA-256 of the serialized
``ModelProto`` with ``metadata_props`` cleared, so the file can carry its own hash: the runtime
recomputes it and refuses a file whose graph or weights changed after export. Hashes catch
accidents, not forgeries: a second entry, ``inspectloop.signature``, carries the site's Ed25519
signature (:mod:`inspectloop.runtime.signing`).

Everything here is stdlib: the edge reads and checks a package without the ``onnx`` package, by
walking the top level of the protobuf wire format (the metadata is field 14 of ``ModelProto``).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from typing import Any

from inspectloop.errors import ModelFileError
from inspectloop.runtime.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess

FORMAT_VERSION = 1
METADATA_KEY = "inspectloop"
CLASSIFICATION = "classification"
ANOMALY = "anomaly"
DETECTION = "detection"
# What a model file can be: the values of inspectloop.domain.Task; this version's EdgeModel runs all three.
TASKS = (CLASSIFICATION, ANOMALY, DETECTION)

METADATA_PROPS_FIELD = 14  # ModelProto.metadata_props
_ENTRY_KEY_FIELD, _ENTRY_VALUE_FIELD = 1, 2  # StringStringEntryProto.key / .value
_OPTIONAL_FIELDS = {"sha256", "task", "input_height", "temperature", "thresholds", "review", "novelty", "jpeg_draft",
                    "colour_mode", "detection", "dataset_version", "run_id", "code_version", "created_at"}
REVIEW_KEYS = {"auto_above", "reject_below", "alpha", "confidence", "certifiable", "guarantee"}
# The novelty guard: threshold on the ``novelty`` output, the review rate it was set for on held-out images of
# known classes, the neighbours averaged, the bank's rows, and the held-out images it was set on.
NOVELTY_KEYS = {"threshold", "rate", "k", "bank_size", "held_out_images"}
_REEXPORT = "re-export the model with this version of inspectloop"


def utc_timestamp() -> str:
    """Now, in UTC, as an ISO 8601 string to the second (the format of ``created_at``)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True, kw_only=True)
class ModelMetadata:
    """What the edge needs to run a model file: task, classes, preprocessing, decision settings, lineage.

    ``task`` is one of ``TASKS`` (files written before the field existed are classification).
    ``input_size`` is the model input's width, and its height unless ``input_height`` says otherwise
    (None: square; see :class:`~inspectloop.runtime.preprocess.Preprocess`).
    ``good_class`` is the class that means "pass"; ``None`` when the dataset has no good class (then
    every prediction is a reject as its class). ``temperature`` divides the logits before softmax
    (calibration). ``thresholds`` are per-class operating points and ``review`` the review band,
    both read by :class:`~inspectloop.runtime.decision.DecisionPolicy`, as is ``novelty``, a classifier's
    novelty guard (``NOVELTY_KEYS``; None: the file has none and gives no ``novelty`` output).
    ``jpeg_draft`` decodes JPEGs at a reduced DCT scale and must match the decode
    used in training. ``colour_mode`` is how images are decoded for this model: ``L`` (greyscale
    cameras; a colour JPEG is decoded straight to luma, the fast path) or ``RGB``.
    ``detection`` (detection models only) holds the tiling and box post-processing settings
    (:data:`inspectloop.runtime.detection.DEFAULTS` for any left out); a detector's ``class_names`` are
    its good class then its box classes (export checks it), and its ``thresholds`` are per-class box
    confidence thresholds.
    ``weights_sha256`` (graph and weights) and ``sha256`` (graph, weights and every other metadata
    field) are filled in by export, so editing a threshold or a class name in the file is detected.
    """

    format_version: int = FORMAT_VERSION
    task: str = CLASSIFICATION
    model_name: str
    model_version: str
    class_names: tuple[str, ...]
    good_class: str | None
    input_size: int
    input_height: int | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    temperature: float = 1.0
    thresholds: dict[str, float] = field(default_factory=dict)
    review: dict[str, Any] | None = None
    novelty: dict[str, Any] | None = None
    jpeg_draft: bool = False
    colour_mode: str = "RGB"
    detection: dict[str, Any] | None = None
    dataset_version: str | None = None
    run_id: str | None = None
    code_version: str | None = None
    created_at: str = field(default_factory=utc_timestamp)
    weights_sha256: str = ""
    sha256: str = ""

    def __post_init__(self) -> None:
        _check_format(self.format_version)
        if not isinstance(self.class_names, (tuple, list)):
            raise _bad(f"class_names must be a list of strings, got {self.class_names!r}")
        if not isinstance(self.thresholds, dict):
            raise _bad(f"thresholds must map class names to probabilities, got {self.thresholds!r}")
        object.__setattr__(self, "class_names", tuple(self.class_names))
        object.__setattr__(self, "mean", _triple("mean", self.mean))
        object.__setattr__(self, "std", _triple("std", self.std))
        object.__setattr__(self, "thresholds", dict(self.thresholds))
        _check_identity(self)
        _check_classes(self.class_names, self.good_class)
        _check_preprocessing(self)
        _check_decision(self)
        _check_detection(self)

    def preprocess(self) -> Preprocess:
        """The file's preprocessing: resize to its input shape, normalise with its mean and std."""
        return Preprocess(self.input_size, self.mean, self.std, self.input_height)

    def to_json(self) -> str:
        """The metadata as one compact JSON object with sorted keys. ``novelty`` and ``detection`` are left out
        when None, so a file without them reads (and hashes) exactly as one written before the fields existed
        (``input_height`` too: None is a square input)."""
        fields_ = asdict(self)
        for optional in ("novelty", "detection", "input_height"):
            if fields_[optional] is None:
                del fields_[optional]
        return json.dumps(fields_, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> ModelMetadata:
        """Parse and validate :meth:`to_json` output; raise ModelFileError naming what is wrong."""
        try:
            raw = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ModelFileError(f"model metadata is not valid JSON ({exc})", _REEXPORT) from exc
        if not isinstance(raw, dict):
            raise ModelFileError("model metadata is not a JSON object", _REEXPORT)
        if "format_version" not in raw:
            raise ModelFileError("model metadata has no format_version", _REEXPORT)
        _check_format(raw["format_version"])
        _check_keys(raw)
        for name in ("class_names", "mean", "std"):
            if isinstance(raw[name], list):
                raw[name] = tuple(raw[name])
        return cls(**raw)


def _check_format(version: Any) -> None:
    if type(version) is not int or version != FORMAT_VERSION:
        raise ModelFileError(
            f"model format version {version!r} is not supported (this inspectloop reads version {FORMAT_VERSION})",
            "install the inspectloop version that exported the model on this device, or " + _REEXPORT)


def _check_keys(raw: dict[str, Any]) -> None:
    known = {f.name for f in fields(ModelMetadata)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ModelFileError(f"model metadata has unknown fields: {', '.join(unknown)}",
                             "the file was written by a newer inspectloop; upgrade inspectloop on this device")
    missing = sorted(known - _OPTIONAL_FIELDS - set(raw))
    if missing:
        raise ModelFileError(f"model metadata is missing fields: {', '.join(missing)}", _REEXPORT)


def _bad(message: str) -> ModelFileError:
    return ModelFileError(f"model metadata: {message}", "fix the value passed to ModelMetadata, or " + _REEXPORT)


def _triple(name: str, values: Any) -> tuple[float, float, float]:
    if not isinstance(values, (tuple, list)) or len(values) != 3 or not all(_is_number(v) for v in values):
        raise _bad(f"{name} must be three numbers (one per RGB channel), got {values!r}")
    return (float(values[0]), float(values[1]), float(values[2]))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def _check_identity(meta: ModelMetadata) -> None:
    if meta.task not in TASKS:
        raise _bad(f"task {meta.task!r} is not supported (supported: {', '.join(TASKS)})")
    for name in ("model_name", "model_version", "created_at"):
        if not _is_text(getattr(meta, name)):
            raise _bad(f"{name} must be a non-empty string, got {getattr(meta, name)!r}")
    for name in ("dataset_version", "run_id", "code_version"):
        value = getattr(meta, name)
        if value is not None and not isinstance(value, str):
            raise _bad(f"{name} must be a string or null, got {value!r}")
    for name in ("weights_sha256", "sha256"):
        digest = getattr(meta, name)
        if not isinstance(digest, str) or (digest and (len(digest) != 64 or not _is_hex(digest))):
            raise _bad(f"{name} must be 64 hex digits (or empty before export), got {digest!r}")


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def _check_classes(class_names: tuple[Any, ...], good_class: Any) -> None:
    if len(class_names) < 2 or not all(_is_text(name) for name in class_names):
        raise _bad(f"class_names must be at least two non-empty strings, got {list(class_names)!r}")
    if len(set(class_names)) != len(class_names):
        raise _bad(f"class_names has duplicates: {list(class_names)!r}")
    if good_class is not None and good_class not in class_names:
        raise _bad(f"good_class {good_class!r} is not one of the class names ({', '.join(class_names)})")


def _check_preprocessing(meta: ModelMetadata) -> None:
    size = meta.input_size
    if type(size) is not int or not 16 <= size <= 4096:
        raise _bad(f"input_size must be an integer from 16 to 4096 pixels, got {size!r}")
    height = meta.input_height
    if height is not None and (type(height) is not int or not 16 <= height <= 4096):
        raise _bad(f"input_height must be an integer from 16 to 4096 pixels (or absent: square), got {height!r}")
    if min(meta.std) <= 0:
        raise _bad(f"std values must be positive, got {meta.std!r}")
    if not isinstance(meta.jpeg_draft, bool):
        raise _bad(f"jpeg_draft must be true or false, got {meta.jpeg_draft!r}")
    if meta.colour_mode not in ("L", "RGB"):
        raise _bad(f"colour_mode must be 'L' or 'RGB', got {meta.colour_mode!r}")


def _check_decision(meta: ModelMetadata) -> None:
    if not _is_number(meta.temperature) or meta.temperature <= 0:
        raise _bad(f"temperature must be a positive number, got {meta.temperature!r}")
    for name, value in meta.thresholds.items():
        if name not in meta.class_names:
            raise _bad(f"threshold for unknown class {name!r} (classes: {', '.join(meta.class_names)})")
        if not _is_number(value) or not 0.0 <= value <= 1.0:
            raise _bad(f"threshold for {name!r} must be a probability from 0 to 1, got {value!r}")
    if meta.review is not None:
        _check_review(meta.review)
    if meta.novelty is not None:
        _check_novelty(meta.novelty, meta.task)


def _check_novelty(novelty: Any, task: str) -> None:
    """The novelty guard: a pass whose ``novelty`` output is above ``threshold`` goes to review."""
    if task != CLASSIFICATION:
        raise _bad(f"a novelty guard belongs to a classifier, not to a {task} model")
    if not isinstance(novelty, dict) or set(novelty) != NOVELTY_KEYS:
        raise _bad(f"novelty must be an object with exactly {sorted(NOVELTY_KEYS)}, got {novelty!r}")
    if not _is_number(novelty["threshold"]) or novelty["threshold"] < 0:
        raise _bad(f"novelty.threshold must be a non-negative number, got {novelty['threshold']!r}")
    if not _is_number(novelty["rate"]) or not 0.0 <= novelty["rate"] <= 1.0:
        raise _bad(f"novelty.rate must be a number from 0 to 1, got {novelty['rate']!r}")
    for name in ("k", "bank_size", "held_out_images"):
        if type(novelty[name]) is not int or novelty[name] < (0 if name == "held_out_images" else 1):
            raise _bad(f"novelty.{name} must be a positive integer, got {novelty[name]!r}")


def _check_detection(meta: ModelMetadata) -> None:
    from inspectloop.runtime.detection import check_settings

    if meta.task != DETECTION:
        if meta.detection is not None:
            raise _bad(f"detection settings belong to detection models, not a {meta.task} model")
        return
    if meta.input_height is not None:  # a frame is tiled into squares of input_size
        raise _bad(f"a detection model's input is square (input_size), got input_height {meta.input_height}")
    try:
        object.__setattr__(meta, "detection", check_settings({} if meta.detection is None else meta.detection,
                                                                 meta.class_names[1:], meta.thresholds))
    except ValueError as exc:
        raise _bad(str(exc)) from exc


def _check_review(review: Any) -> None:
    """The review band: pass above ``auto_above``, reject below ``reject_below`` (null: never), else review."""
    if not isinstance(review, dict) or set(review) != REVIEW_KEYS:
        raise _bad(f"review must be an object with exactly {sorted(REVIEW_KEYS)}, got {review!r}")
    for name in ("auto_above", "alpha", "confidence"):
        if not _is_number(review[name]) or not 0.0 <= review[name] <= 1.0:
            raise _bad(f"review.{name} must be a number from 0 to 1, got {review[name]!r}")
    below = review["reject_below"]
    if below is not None and (not _is_number(below) or not 0.0 <= below <= 1.0):
        raise _bad(f"review.reject_below must be null or a number from 0 to 1, got {below!r}")
    if not isinstance(review["certifiable"], bool) or not isinstance(review["guarantee"], str):
        raise _bad("review.certifiable must be true or false and review.guarantee a sentence")


# --- reading the ONNX file without the onnx package -------------------------------------------------

def model_hash(model_bytes: bytes) -> str:
    """SHA-256 (hex) of a serialized ModelProto with its ``metadata_props`` left out."""
    digest = hashlib.sha256()
    view = memoryview(model_bytes)
    for number, start, end, _ in top_level_fields(view, 0, len(view)):
        if number != METADATA_PROPS_FIELD:
            digest.update(view[start:end])
    return digest.hexdigest()


def read_metadata_props(model_bytes: bytes) -> list[tuple[str, str]]:
    """All ``metadata_props`` entries of a serialized ModelProto, as (key, value) pairs in file order."""
    view = memoryview(model_bytes)
    entries = []
    for number, _, end, payload_start in top_level_fields(view, 0, len(view)):
        if number == METADATA_PROPS_FIELD:
            entries.append(_read_entry(view, payload_start, end))
    return entries


def read_model_metadata(model_bytes: bytes, label: str) -> ModelMetadata:
    """The inspectloop metadata of a model file's bytes; ModelFileError if it has none or it is bad."""
    try:
        values = [value for key, value in read_metadata_props(model_bytes) if key == METADATA_KEY]
    except ModelFileError as exc:
        raise ModelFileError(f"{label}: {exc.message}", exc.hint) from exc
    if not values:
        raise ModelFileError(
            f"{label}: not an inspectloop model (no '{METADATA_KEY}' metadata in the ONNX file)",
            "export the model with inspectloop; plain ONNX files carry no class names or preprocessing")
    if len(values) > 1:
        raise ModelFileError(f"{label}: the ONNX file carries two '{METADATA_KEY}' metadata entries", _REEXPORT)
    try:
        return ModelMetadata.from_json(values[0])
    except ModelFileError as exc:
        raise ModelFileError(f"{label}: {exc.message}", exc.hint) from exc


def content_hash(metadata: ModelMetadata | dict[str, Any]) -> str:
    """SHA-256 over every metadata field but ``sha256`` itself; it includes ``weights_sha256``.

    Computed on the fields as written in the file, so a file stays valid when a later inspectloop
    adds optional fields with defaults.
    """
    raw = json.loads(metadata.to_json()) if isinstance(metadata, ModelMetadata) else dict(metadata)
    raw["sha256"] = ""
    return hashlib.sha256(json.dumps(raw, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


def stored_metadata(model_bytes: bytes) -> dict[str, Any]:
    """The metadata JSON object exactly as the file stores it (no defaults filled in)."""
    values = [value for key, value in read_metadata_props(model_bytes) if key == METADATA_KEY]
    return json.loads(values[0]) if len(values) == 1 else {}


def verify_model_hash(model_bytes: bytes, metadata: ModelMetadata, label: str) -> None:
    """Raise ModelFileError unless graph, weights and metadata are exactly as exported."""
    fix = "copy the model file again from the registry; do not edit exported models"
    if model_hash(model_bytes) != metadata.weights_sha256:
        raise ModelFileError(f"{label}: model file was modified after export (weights hash does not match)", fix)
    if content_hash(stored_metadata(model_bytes)) != metadata.sha256:
        raise ModelFileError(f"{label}: model metadata was modified after export (metadata hash does not match)", fix)


def metadata_entry(key: str, value: str) -> bytes:
    """One ``metadata_props`` entry as it is appended to a serialised ModelProto (a protobuf record)."""
    entry = _length_delimited(_ENTRY_KEY_FIELD, key.encode("utf-8")) + \
        _length_delimited(_ENTRY_VALUE_FIELD, value.encode("utf-8"))
    return _length_delimited(METADATA_PROPS_FIELD, entry)


def _length_delimited(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _not_onnx(reason: str) -> ModelFileError:
    return ModelFileError(f"not an ONNX model file ({reason})", "check that the path points at an exported .onnx file")


def _read_varint(view: memoryview, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while pos < end and shift < 64:
        byte = view[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
    raise _not_onnx("truncated or malformed varint")


def top_level_fields(view: memoryview, pos: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """Yield (field number, record start, record end, payload start) for each field in ``view[pos:end]``."""
    while pos < end:
        start = pos
        tag, pos = _read_varint(view, pos, end)
        number, wire_type = tag >> 3, tag & 7
        if wire_type == 0:
            _, pos = _read_varint(view, pos, end)
            payload = pos
        elif wire_type == 2:
            length, payload = _read_varint(view, pos, end)
            pos = payload + length
        elif wire_type in (1, 5):
            payload = pos
            pos += 8 if wire_type == 1 else 4
        else:
            raise _not_onnx(f"unsupported protobuf wire type {wire_type}")
        if number == 0 or pos > end:
            raise _not_onnx("truncated or malformed protobuf")
        yield number, start, pos, payload


def _read_entry(view: memoryview, pos: int, end: int) -> tuple[str, str]:
    key = value = ""
    for number, _, stop, payload in top_level_fields(view, pos, end):
        if number in (_ENTRY_KEY_FIELD, _ENTRY_VALUE_FIELD):
            try:
                text = bytes(view[payload:stop]).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _not_onnx("metadata entry is not UTF-8 text") from exc
            key, value = (text, value) if number == _ENTRY_KEY_FIELD else (key, text)
    return key, value
