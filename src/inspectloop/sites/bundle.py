"""Sync bundles: one signed zip file that carries records (JSON lines, in batches) and blobs between a site
and its centre, over a shared folder or a USB stick.

A bundle holds ``manifest.json`` (who made it, for whom, what it covers, and the SHA-256 and size of every
other member, in the order they are applied), ``manifest.sig`` (an Ed25519 signature over the manifest by the
maker's workspace key, ``inspectloop.keys``), ``records/NNNNN-KIND.jsonl`` batches and ``blobs/SHA256``. So
the signature covers everything, and a member changed after signing fails its digest.

The file is written beside its final name and renamed into place after an fsync, so a reader (or a USB
stick pulled mid-copy) never sees half a bundle under a bundle's name; the name carries the first 16 hex
digits of the file's SHA-256, which the reader checks as well.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from inspectloop.errors import SyncError
from inspectloop.fileio import temporary_beside
from inspectloop.runtime.signing import PublicKey, public_key_of

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

FORMAT = "inspectloop-sync-bundle/1"
MANIFEST, SIGNATURE = "manifest.json", "manifest.sig"
SUFFIX = ".bundle.zip"
BATCH = 2000  # records per batch: one transaction each on the centre, so an interruption loses at most one
_PREFIX = b"inspectloop sync bundle v1\x00"
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # member times fixed: the same content makes the same bytes


def canonical(record: Mapping[str, Any]) -> bytes:
    """One record as canonical JSON (sorted keys, no spaces): what its digest is taken over."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(block)
    return hasher.hexdigest()


def bundle_name(sequence: int, sha256: str) -> str:
    return f"{sequence:06d}-{sha256[:16]}{SUFFIX}"


class BundleWriter:
    """Writes one bundle: ``add_records`` and ``add_blob`` in apply order, then ``finish`` signs and publishes."""

    def __init__(self, folder: Path, header: Mapping[str, Any], batch: int = BATCH) -> None:
        self.folder = Path(folder)
        self.header = dict(header)
        self.batch = batch
        self.members: list[dict[str, Any]] = []
        self._blobs: set[str] = set()
        try:
            descriptor, self._temporary = temporary_beside(self.folder / "bundle")
        except OSError as exc:
            raise SyncError(f"cannot write a bundle in {self.folder} ({exc.strerror or exc})",
                            "check that the exchange folder (or USB stick) is mounted and writable") from exc
        self._handle: IO[bytes] = os.fdopen(descriptor, "w+b")
        self._zip = zipfile.ZipFile(self._handle, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6)

    def add_records(self, kind: str, records: Iterable[Mapping[str, Any]]) -> int:
        """Add records of ``kind`` in batches; return how many."""
        total, pending = 0, []
        for record in records:
            pending.append(canonical(record))
            if len(pending) == self.batch:
                total += self._batch(kind, pending)
                pending = []
        return total + (self._batch(kind, pending) if pending else 0)

    def add_blob(self, sha256: str, data: bytes) -> None:
        if sha256 in self._blobs:
            return
        if digest(data) != sha256:
            raise SyncError(f"blob {sha256[:12]}... does not match its digest", "run inspectloop doctor on the workspace")
        self._blobs.add(sha256)
        self._write(f"blobs/{sha256}", data, kind="blob", records=0)

    def finish(self, private_key: Ed25519PrivateKey, sequence: int) -> tuple[Path, str]:
        """Sign the manifest, fsync and move the bundle into place; return its path and SHA-256."""
        manifest = canonical({**self.header, "format": FORMAT, "sequence": sequence, "members": self.members})
        key = public_key_of(private_key)
        signature = {"algorithm": "ed25519", "key_id": key.key_id,
                     "signature": base64.b64encode(private_key.sign(_PREFIX + manifest)).decode("ascii")}
        self._write(MANIFEST, manifest)
        self._write(SIGNATURE, canonical(signature))
        self._zip.close()
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        sha = file_sha256(self._temporary)
        path = self.folder / bundle_name(sequence, sha)
        os.replace(self._temporary, path)
        return path, sha

    def abandon(self) -> None:
        """Drop a bundle that will not be finished (nothing is left under a bundle's name)."""
        try:
            self._zip.close()
            self._handle.close()
        finally:
            self._temporary.unlink(missing_ok=True)

    def _batch(self, kind: str, lines: Sequence[bytes]) -> int:
        self._write(f"records/{len(self.members):05d}-{kind}.jsonl", b"\n".join(lines) + b"\n", kind=kind,
                    records=len(lines))
        return len(lines)

    def _write(self, name: str, data: bytes, *, kind: str | None = None, records: int = 0) -> None:
        info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
        info.compress_type = zipfile.ZIP_DEFLATED
        self._zip.writestr(info, data)
        if kind is not None:
            self.members.append({"name": name, "kind": kind, "records": records, "sha256": digest(data),
                                 "size": len(data)})


@dataclass
class Bundle:
    """An opened bundle whose signature was checked: its manifest, and its members read with their digests checked."""

    path: Path
    sha256: str
    key_id: str
    manifest: dict[str, Any]
    _zip: zipfile.ZipFile

    @property
    def members(self) -> list[dict[str, Any]]:
        return list(self.manifest["members"])

    def read(self, member: Mapping[str, Any]) -> bytes:
        data = self._zip.read(member["name"])
        if digest(data) != member["sha256"]:
            raise SyncError(f"bundle {self.path.name}: member {member['name']} does not match its digest",
                            "the bundle was damaged in transit: sync again to write a fresh one")
        return data

    def records(self, member: Mapping[str, Any]) -> list[tuple[dict[str, Any], str]]:
        """A batch's records, each with the digest of its canonical JSON."""
        return [(json.loads(line), digest(line)) for line in self.read(member).splitlines() if line]

    def blob(self, sha256: str) -> bytes:
        found = [m for m in self.members if m["name"] == f"blobs/{sha256}"]
        if not found:
            raise SyncError(f"bundle {self.path.name} lacks blob {sha256[:12]}...", "sync again to write a fresh one")
        return self.read(found[0])

    def close(self) -> None:
        self._zip.close()


class UntrustedBundle(SyncError):
    """A bundle signed by a key this workspace does not trust (or not signed, or signed badly); ``key_id`` and
    ``sha256`` say which, for the log."""

    def __init__(self, message: str, hint: str, *, key_id: str | None, sha256: str, manifest: Mapping[str, Any]):
        super().__init__(message, hint)
        self.key_id = key_id
        self.sha256 = sha256
        self.manifest = dict(manifest)


def open_bundle(path: Path, trusted: Callable[[str], PublicKey | None]) -> Bundle:
    """Open a bundle and check its name's digest, format and signature against ``trusted(key_id)``.

    SyncError for a damaged or foreign file; UntrustedBundle when the key is unknown or the signature fails.
    """
    path = Path(path)
    sha = file_sha256(path)
    if not path.name.endswith(SUFFIX) or path.name.removesuffix(SUFFIX).rsplit("-", 1)[-1] != sha[:16]:
        raise SyncError(f"bundle {path} does not match the digest in its name (sha256 {sha[:16]}...)",
                        "it was damaged or cut short in transit: copy it again, or sync again for a fresh one")
    try:
        archive = zipfile.ZipFile(path)
        manifest_bytes, signature = archive.read(MANIFEST), json.loads(archive.read(SIGNATURE))
        manifest = json.loads(manifest_bytes)
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise SyncError(f"{path} is not an inspectloop sync bundle ({exc})",
                        "give the .bundle.zip files that inspectloop site sync writes") from exc
    if manifest.get("format") != FORMAT:
        raise SyncError(f"bundle {path.name} has format {manifest.get('format')!r}, expected {FORMAT}",
                        "sync with the same inspectloop version on both ends")
    key_id = str(signature.get("key_id"))
    key = trusted(key_id)
    if key is None:
        raise UntrustedBundle(f"bundle {path.name} from {manifest.get('site')!r} is signed by key {key_id}, which "
                              "this workspace does not trust",
                              "if that is your site's key, trust it on the centre: inspectloop site trust NAME "
                              "PUBLIC_KEY_FILE --by YOU; otherwise do not apply this bundle",
                              key_id=key_id, sha256=sha, manifest=manifest)
    if not _valid(key, signature.get("signature", ""), _PREFIX + manifest_bytes):
        raise UntrustedBundle(f"bundle {path.name}: its signature does not match its manifest (key {key_id})",
                              "the bundle was changed after it was signed: do not apply it; sync again",
                              key_id=key_id, sha256=sha, manifest=manifest)
    return Bundle(path, sha, key_id, manifest, archive)


def _valid(key: PublicKey, signature: str, message: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(key.raw).verify(base64.b64decode(signature, validate=True), message)
    except (InvalidSignature, ValueError):
        return False
    return True
