"""Sync bundles: signed, checked member by member, written atomically, the same bytes for the same content."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from inspectloop.errors import SyncError
from inspectloop.runtime.signing import public_key_of
from inspectloop.sites.bundle import SUFFIX, BundleWriter, UntrustedBundle, digest, open_bundle

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
RECORDS = [{"id": n, "value": f"v{n}", "nested": {"b": 1, "a": [n]}} for n in range(5)]


def _write(folder: Path, batch: int = 2) -> Path:
    writer = BundleWriter(folder, {"direction": "up", "site": "s1"}, batch=batch)
    writer.add_records("things", RECORDS)
    writer.add_blob(digest(b"bytes"), b"bytes")
    path, _ = writer.finish(KEY, 1)
    return path


def test_records_and_blobs_come_back_checked_against_the_signing_key(tmp_path: Path) -> None:
    path = _write(tmp_path)
    assert path.name.startswith("000001-") and path.name.endswith(SUFFIX)
    bundle = open_bundle(path, lambda key_id: public_key_of(KEY) if key_id == public_key_of(KEY).key_id else None)
    batches = [m for m in bundle.members if m["kind"] == "things"]
    assert [m["records"] for m in batches] == [2, 2, 1]
    assert [r for m in batches for r, _ in bundle.records(m)] == RECORDS
    assert bundle.blob(digest(b"bytes")) == b"bytes"
    assert bundle.manifest["site"] == "s1"
    bundle.close()


def test_a_bundle_signed_by_another_key_is_untrusted(tmp_path: Path) -> None:
    other = public_key_of(Ed25519PrivateKey.generate())
    with pytest.raises(UntrustedBundle, match="does not trust") as caught:
        open_bundle(_write(tmp_path), lambda key_id: None)
    assert caught.value.key_id == public_key_of(KEY).key_id
    with pytest.raises(UntrustedBundle, match="signature does not match"):  # a key id that lies about its key
        open_bundle(_write(tmp_path / "again"), lambda key_id: other)


def test_the_same_content_makes_the_same_file(tmp_path: Path) -> None:
    assert _write(tmp_path / "a").name == _write(tmp_path / "b").name


def test_a_bundle_cut_short_or_abandoned_leaves_nothing_under_a_bundle_name(tmp_path: Path) -> None:
    path = _write(tmp_path / "whole")
    cut = tmp_path / "cut" / path.name
    cut.parent.mkdir()
    cut.write_bytes(path.read_bytes()[:-100])  # a USB stick pulled mid-copy
    with pytest.raises(SyncError, match="does not match the digest in its name"):
        open_bundle(cut, lambda key_id: public_key_of(KEY))
    writer = BundleWriter(tmp_path / "abandoned", {"direction": "up", "site": "s1"})
    writer.add_records("things", RECORDS)
    writer.abandon()
    assert list((tmp_path / "abandoned").iterdir()) == []


def test_an_unwritable_exchange_folder_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(SyncError, match="cannot write a bundle"):
        BundleWriter(tmp_path / "file" / "up", {})
