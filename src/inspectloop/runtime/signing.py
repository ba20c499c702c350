"""Model authenticity: Ed25519 signatures inside the model file, and their check against trusted keys.

The hashes in the metadata (``weights_sha256``, ``sha256``) catch accidental change, not a forgery:
anyone can edit a file and recompute them. A signature made with the site's private key can only be
made by whoever holds that key. Export appends one more ``metadata_props`` entry, key
``inspectloop.signature``, whose value is a JSON object::

    {"algorithm": "ed25519", "key_id": "<16 hex>", "public_key": "<base64>", "signature": "<base64>"}

The signed message is a fixed prefix, the SHA-256 of the model with ``metadata_props`` left out (the
graph and weights: what ``weights_sha256`` covers) and the SHA-256 of the metadata JSON exactly as
stored, so one file carries everything and runtimes that predate signing ignore the extra entry.

With trusted keys, a file must carry a valid signature by one of them (else ModelFileError). Without,
a signed file is checked against the public key it names (a bad signature is still refused) and
reported as *unverified*, an unsigned one as *unsigned*: it runs, and the caller says so.

``cryptography`` is imported only when a signature is made or checked, so importing the runtime stays light.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal

from inspectloop.errors import ModelFileError
from inspectloop.runtime.metadata import (
    METADATA_KEY, METADATA_PROPS_FIELD, metadata_entry, model_hash, read_metadata_props, top_level_fields,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

SIGNATURE_KEY = "inspectloop.signature"
ALGORITHM = "ed25519"
TRUSTED_KEYS_ENV = "INSPECTLOOP_TRUSTED_KEYS"  # public key files, separated like PATH
_PREFIX = b"inspectloop model signature v1\x00"
_HOW_TO_TRUST = f"--trusted-key FILE or ${TRUSTED_KEYS_ENV}"
_RECOPY = "copy the model file again from the workspace that exported it; never edit an exported model"

SignatureState = Literal["verified", "unverified", "unsigned"]


@dataclass(frozen=True)
class PublicKey:
    """An Ed25519 public key (32 raw bytes) and where it came from; ``key_id`` identifies it in messages."""

    raw: bytes
    source: str = ""

    def __post_init__(self) -> None:
        if len(self.raw) != 32:
            raise ValueError(f"an Ed25519 public key has 32 bytes, got {len(self.raw)}")

    @property
    def key_id(self) -> str:
        """The first 16 hex digits of the SHA-256 of the raw key (the fingerprint ``inspectloop keys`` shows)."""
        return fingerprint(self.raw)[:16]


@dataclass(frozen=True)
class SignatureStatus:
    """What a model file's signature says: ``verified`` (by a trusted key), ``unverified`` (signed, but no
    trusted keys were configured) or ``unsigned``; ``key_id`` is the signing key's id when signed."""

    state: SignatureState
    key_id: str | None = None

    def describe(self) -> str:
        """One line for health pages, model cards and logs."""
        if self.state == "verified":
            return f"signed by trusted key {self.key_id}, verified"
        if self.state == "unverified":
            return f"signed by key {self.key_id}, not verified: no trusted keys configured ({_HOW_TO_TRUST})"
        return f"unsigned: anyone could have made or changed this file; no trusted keys configured ({_HOW_TO_TRUST})"

    def warning(self) -> str | None:
        """A one-line warning for a file whose origin was not verified; None when it was."""
        return None if self.state == "verified" else f"model file is {self.describe()}"

    def to_dict(self) -> dict[str, Any]:
        """State, key id and the :meth:`describe` line, for JSON (health details)."""
        return {"state": self.state, "key_id": self.key_id, "detail": self.describe()}


def fingerprint(raw_public_key: bytes) -> str:
    """SHA-256 (hex) of a raw 32-byte public key."""
    return hashlib.sha256(raw_public_key).hexdigest()


def signed_message(model_bytes: bytes) -> bytes:
    """What a signature covers: the graph and weights (metadata left out) and the stored metadata JSON."""
    values = [value for key, value in read_metadata_props(model_bytes) if key == METADATA_KEY]
    if len(values) != 1:
        raise ModelFileError("cannot sign or check a model file without exactly one inspectloop metadata entry",
                             "export the model with inspectloop")
    graph = bytes.fromhex(model_hash(model_bytes))
    return _PREFIX + graph + hashlib.sha256(values[0].encode("utf-8")).digest()


def sign_model(model_bytes: bytes, private_key: Ed25519PrivateKey) -> bytes:
    """The model bytes with one signature entry appended (any earlier signature is replaced)."""
    bare = strip_signature(model_bytes)
    raw = public_key_of(private_key).raw
    entry = {"algorithm": ALGORITHM, "key_id": PublicKey(raw).key_id,
             "public_key": base64.b64encode(raw).decode("ascii"),
             "signature": base64.b64encode(private_key.sign(signed_message(bare))).decode("ascii")}
    value = json.dumps(entry, sort_keys=True, separators=(",", ":"))
    return bare + metadata_entry(SIGNATURE_KEY, value)


def strip_signature(model_bytes: bytes) -> bytes:
    """The model bytes without their signature entries (everything else byte for byte)."""
    view = memoryview(model_bytes)
    kept = []
    for number, start, end, payload in top_level_fields(view, 0, len(view)):
        if number == METADATA_PROPS_FIELD and _entry_key(model_bytes[payload:end]) == SIGNATURE_KEY:
            continue
        kept.append(model_bytes[start:end])
    return b"".join(kept)


def check_signature(model_bytes: bytes, trusted_keys: Sequence[PublicKey], label: str) -> SignatureStatus:
    """Check a model file's signature; with ``trusted_keys``, it must be a valid one by one of them.

    ModelFileError (naming the file, the problem and the fix) for a bad signature, a key that is not
    trusted, or an unsigned file when keys are trusted.
    """
    entry = _signature_entry(model_bytes, label)
    if entry is None:
        if trusted_keys:
            raise ModelFileError(
                f"{label}: model file is not signed, and only models signed by a trusted key may run here "
                f"(trusted: {_ids(trusted_keys)})",
                "use the model as exported by a workspace whose key you trust (inspectloop export signs it), "
                "or run without trusted keys to accept unsigned files")
        return SignatureStatus("unsigned")
    key_id, claimed, signature = entry
    if trusted_keys:
        matching = [key for key in trusted_keys if key.key_id == key_id]
        if not matching:
            raise ModelFileError(
                f"{label}: model file is signed by key {key_id}, which is not trusted here "
                f"(trusted: {_ids(trusted_keys)})",
                "if that key is your site's, trust its public key (inspectloop keys export PATH, then "
                f"{_HOW_TO_TRUST}); otherwise do not run this file")
        key = matching[0]
    else:
        key = claimed
    if not _valid(key.raw, signature, signed_message(model_bytes)):
        raise ModelFileError(
            f"{label}: model signature does not match the file's content (key {key_id}): the file was "
            "changed after it was signed", _RECOPY)
    return SignatureStatus("verified" if trusted_keys else "unverified", key_id)


def load_public_key(path: str | Path) -> PublicKey:
    """An Ed25519 public key from a PEM file (as ``inspectloop keys export`` writes); ModelFileError otherwise."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelFileError(f"trusted key {path} cannot be read ({exc.strerror or exc})",
                             "check the path; export the key with: inspectloop keys export PATH") from exc
    if b"PRIVATE KEY" in data:
        raise ModelFileError(f"trusted key {path} is a private key",
                             "give the public key (inspectloop keys export PATH); keep the private key in the "
                             "workspace that signs")
    serialization = _crypto("serialization")
    ed25519 = _crypto("asymmetric.ed25519")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise ModelFileError(f"trusted key {path} is not a PEM public key ({exc})",
                             "export it with: inspectloop keys export PATH") from exc
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise ModelFileError(f"trusted key {path} is not an Ed25519 key", "export it with: inspectloop keys export PATH")
    return PublicKey(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw), str(path))


def load_trusted_keys(paths: Iterable[str | Path]) -> tuple[PublicKey, ...]:
    """The public keys in ``paths``, in order (see :func:`load_public_key`)."""
    return tuple(load_public_key(path) for path in paths)


def trusted_key_paths_from_env() -> tuple[Path, ...]:
    """The key files named by ``$INSPECTLOOP_TRUSTED_KEYS`` (separated like PATH); none when unset."""
    value = os.environ.get(TRUSTED_KEYS_ENV, "")
    return tuple(Path(part) for part in value.split(os.pathsep) if part.strip())


def public_key_pem(raw: bytes) -> bytes:
    """A raw Ed25519 public key as a PEM (SubjectPublicKeyInfo) file's bytes."""
    serialization = _crypto("serialization")
    key = _crypto("asymmetric.ed25519").Ed25519PublicKey.from_public_bytes(raw)
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def public_key_of(private_key: Ed25519PrivateKey, source: str = "") -> PublicKey:
    """The public half of an Ed25519 private key."""
    serialization = _crypto("serialization")
    raw = private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return PublicKey(raw, source)


# --- helpers ------------------------------------------------------------------------------------------

def _crypto(module: str) -> ModuleType:
    """``cryptography.hazmat.primitives.<module>``, or a ModelFileError saying how to install it."""
    import importlib

    try:
        return importlib.import_module(f"cryptography.hazmat.primitives.{module}")
    except ImportError as exc:
        raise ModelFileError("checking model signatures needs the 'cryptography' package, which is not installed",
                             "pip install cryptography (a dependency of inspectloop: reinstall inspectloop)") from exc


def _valid(raw_key: bytes, signature: bytes, message: bytes) -> bool:
    ed25519 = _crypto("asymmetric.ed25519")
    from cryptography.exceptions import InvalidSignature  # installed: _crypto has just imported cryptography

    try:
        ed25519.Ed25519PublicKey.from_public_bytes(raw_key).verify(signature, message)
    except InvalidSignature:
        return False
    return True


def _signature_entry(model_bytes: bytes, label: str) -> tuple[str, PublicKey, bytes] | None:
    """(key id, the public key the entry names, signature) of the file's one signature entry, or None."""
    values = [value for key, value in read_metadata_props(model_bytes) if key == SIGNATURE_KEY]
    if not values:
        return None
    bad = f"{label}: the model file's signature entry is malformed"
    if len(values) > 1:
        raise ModelFileError(f"{label}: the model file carries {len(values)} signature entries", _RECOPY)
    try:
        raw = json.loads(values[0])
        if not isinstance(raw, dict) or raw.get("algorithm") != ALGORITHM:
            raise ModelFileError(f"{bad} (algorithm {raw.get('algorithm') if isinstance(raw, dict) else None!r}, "
                                 f"expected {ALGORITHM!r})", _RECOPY)
        key = PublicKey(base64.b64decode(raw["public_key"], validate=True))
        signature = base64.b64decode(raw["signature"], validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise ModelFileError(f"{bad} ({exc})", _RECOPY) from exc
    if raw.get("key_id") != key.key_id:
        raise ModelFileError(f"{bad} (key id {raw.get('key_id')!r} is not that of its public key)", _RECOPY)
    return key.key_id, key, signature


def _entry_key(entry: bytes) -> str | None:
    """The key of one serialized StringStringEntryProto, or None if it has none."""
    view = memoryview(entry)
    for number, _, end, payload in top_level_fields(view, 0, len(view)):
        if number == 1:
            return bytes(view[payload:end]).decode("utf-8", errors="replace")
    return None


def _ids(keys: Sequence[PublicKey]) -> str:
    return ", ".join(key.key_id for key in keys)
