"""Torch-free helpers for the runtime tests: synthetic images, the committed tiny model files, and
rewriting a model file's metadata (and hash) at the byte level, as export does.

Everything here needs only numpy, Pillow and the runtime, so the runtime tests run on an edge install.
The model files in ``fixtures/`` are made by ``fixtures/make_fixtures.py`` (which needs ``onnx``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from PIL import Image

from inspectloop.runtime.metadata import (
    METADATA_KEY, ModelMetadata, content_hash, metadata_entry, model_hash, read_metadata_props,
)
from inspectloop.runtime.signing import SIGNATURE_KEY

CLASSES = ("good", "scratch", "dark")
INPUT_SIZE = 64
FIXTURES = Path(__file__).resolve().parent / "fixtures"
TINY = FIXTURES / "tiny.onnx"  # conv -> relu -> pool -> linear: logits only
TINY_FEATURES = FIXTURES / "tiny-features.onnx"  # the same network with a second output, ``features``
CREATED_AT = "2026-01-01T00:00:00+00:00"  # fixed, so the fixtures are reproducible byte for byte

_METADATA_PROPS = 14  # ModelProto.metadata_props


def synthetic_image(label: str, seed: int, size: int = 80, mode: str = "L") -> Image.Image:
    """A noisy grey surface; 'scratch' adds a bright bar, 'dark' is underexposed."""
    rng = np.random.default_rng(seed)
    pixels = rng.normal(70 if label == "dark" else 130, 10, (size, size))
    if label == "scratch":
        row = int(rng.integers(10, size - 16))
        pixels[row:row + 6, :] = 250
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "L")
    return image.convert(mode)


def synthetic_images(per_class: int, seed: int = 0) -> tuple[list[Image.Image], list[int]]:
    """``per_class`` images of each class, with their class indices."""
    images, labels = [], []
    for index, label in enumerate(CLASSES):
        for i in range(per_class):
            images.append(synthetic_image(label, seed * 1000 + index * 100 + i))
            labels.append(index)
    return images, labels


def tiny_metadata(**changes: object) -> ModelMetadata:
    """Metadata for the tiny models; keyword arguments override fields."""
    fields: dict[str, object] = {"model_name": "tiny", "model_version": "1.0.0", "class_names": CLASSES,
                                 "good_class": "good", "input_size": INPUT_SIZE, "dataset_version": "v1",
                                 "run_id": "run-1", "code_version": "abc123", "created_at": CREATED_AT}
    return ModelMetadata(**{**fields, **changes})  # type: ignore[arg-type]


# --- model files at the byte level (the ONNX protobuf's top level) ---------------------------------------

def stamp(data: bytes, metadata: ModelMetadata) -> bytes:
    """The model with ``metadata`` embedded and both hashes filled in, exactly as export stamps a file."""
    bare = without_metadata(data)
    stamped = dataclasses.replace(metadata, weights_sha256=model_hash(bare), sha256="")
    stamped = dataclasses.replace(stamped, sha256=content_hash(stamped))
    return with_metadata_value(bare, stamped.to_json())


def restamped(tmp_path: Path, source: Path = TINY, name: str = "model.onnx", **changes: object) -> Path:
    """A copy of a fixture model at ``tmp_path / name`` with its metadata changed and re-stamped."""
    target = tmp_path / name
    target.write_bytes(stamp(source.read_bytes(), tiny_metadata(**changes)))
    return target


def without_metadata(data: bytes) -> bytes:
    """The model bytes with every ``metadata_props`` entry removed (a plain ONNX file)."""
    return b"".join(data[start:end] for number, start, end in _top_level(data) if number != _METADATA_PROPS)


def with_metadata_value(data: bytes, value: str, key: str = METADATA_KEY) -> bytes:
    """The model bytes with its metadata replaced by one ``key: value`` entry (no hash is recomputed)."""
    return without_metadata(data) + metadata_entry(key, value)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _top_level(data: bytes) -> list[tuple[int, int, int]]:
    """(field number, start, end) of every top-level protobuf record."""
    records, pos = [], 0
    while pos < len(data):
        start = pos
        tag, pos = _read_varint(data, pos)
        wire = tag & 7
        if wire == 0:
            _, pos = _read_varint(data, pos)
        elif wire == 2:
            length, pos = _read_varint(data, pos)
            pos += length
        else:
            pos += 8 if wire == 1 else 4
        records.append((tag >> 3, start, pos))
    return records


# --- signatures and forgeries ---------------------------------------------------------------------------

def forged_copy(signed: Path, target: Path, *, signature: str = "strip") -> Path:
    """The attack of issue 10: ``signed``'s weights zeroed and its classes swapped, hashes recomputed
    with the library's own functions. ``signature``: ``strip`` it, ``keep`` the original entry."""
    from tests.runtime.fixtures.make_fixtures import CONV_WEIGHT, HEAD_WEIGHT

    data = signed.read_bytes()
    for weights in (CONV_WEIGHT.tobytes(), HEAD_WEIGHT.tobytes()):
        data = data.replace(weights, bytes(len(weights)))
    meta = tiny_metadata(class_names=tuple(reversed(CLASSES)))
    forged = stamp(data, meta)  # stamp() drops every metadata entry, the signature with it
    if signature == "keep":
        original = [value for key, value in read_metadata_props(signed.read_bytes()) if key == SIGNATURE_KEY]
        forged = with_extra_entry(forged, SIGNATURE_KEY, original[0])
    target.write_bytes(forged)
    return target


def with_extra_entry(data: bytes, key: str, value: str) -> bytes:
    """The model bytes with one more ``metadata_props`` entry appended (others kept)."""
    return data + metadata_entry(key, value)
