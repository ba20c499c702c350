"""The site signing key: made by init (or at first export), kept private, exported for edge devices."""

from __future__ import annotations

import logging
import shutil
import stat
from pathlib import Path

import pytest

from inspectloop.errors import WorkspaceError
from inspectloop.keys import (
    create_signing_key,
    export_public_key,
    load_signing_key,
    model_signature,
    private_key_path,
    site_key,
    site_signing_key,
    workspace_trusted_keys,
)
from inspectloop.runtime.signing import load_public_key, public_key_of, sign_model
from inspectloop.workspace import init_workspace
from tests.runtime.helpers import TINY


@pytest.fixture
def root(tmp_path: Path) -> Path:
    init_workspace(tmp_path / "site").close()
    return tmp_path / "site"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_makes_a_private_key_only_its_owner_can_read(root: Path) -> None:
    key = site_key(root)
    assert key.private_path == private_key_path(root) == root / "keys" / "signing-key.pem"
    assert _mode(key.private_path) == 0o600 and _mode(key.private_path.parent) == 0o700
    assert load_public_key(key.public_path).raw == key.public.raw == public_key_of(load_signing_key(root)).raw
    assert key.fingerprint.startswith(key.public.key_id) and len(key.fingerprint) == 64


def test_a_key_is_never_replaced(root: Path) -> None:
    before = private_key_path(root).read_bytes()
    with pytest.raises(WorkspaceError, match="already has a signing key"):
        create_signing_key(root)
    assert private_key_path(root).read_bytes() == before


def test_a_workspace_made_before_signing_gets_its_key_at_first_export(root: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    shutil.rmtree(root / "keys")
    assert workspace_trusted_keys(root) == ()
    with pytest.raises(WorkspaceError, match="has no signing key") as caught:
        site_key(root)
    assert "inspectloop keys create" in (caught.value.hint or "")
    with caplog.at_level(logging.WARNING, logger="inspectloop.keys"):
        key = site_signing_key(root)
    assert "had no signing key: made one" in caplog.text
    assert site_signing_key(root).private_bytes_raw() == key.private_bytes_raw()  # made once, then reused


def test_a_key_readable_by_others_is_refused(root: Path) -> None:
    private_key_path(root).chmod(0o644)
    with pytest.raises(WorkspaceError, match="can be read by other users") as caught:
        load_signing_key(root)
    assert f"chmod 600 {private_key_path(root)}" in (caught.value.hint or "")


def test_a_damaged_key_is_refused(root: Path) -> None:
    private_key_path(root).write_bytes(b"not a key")
    with pytest.raises(WorkspaceError, match="cannot be read"):
        load_signing_key(root)


def test_the_public_key_is_exported_to_a_file_or_a_folder(root: Path, tmp_path: Path) -> None:
    key = site_key(root)
    assert load_public_key(export_public_key(root, tmp_path / "site.pem")).raw == key.public.raw
    in_folder = export_public_key(root, tmp_path)
    assert in_folder.name == f"inspectloop-{key.public.key_id}.pub.pem" and b"PRIVATE" not in in_folder.read_bytes()
    assert workspace_trusted_keys(root) == (load_public_key(key.public_path),)


def test_model_signature_checks_a_file_against_trusted_keys(root: Path, tmp_path: Path) -> None:
    signed = tmp_path / "m.onnx"
    signed.write_bytes(sign_model(TINY.read_bytes(), load_signing_key(root)))
    assert model_signature(signed, [site_key(root).public_path]).state == "verified"
    assert model_signature(signed).state == "unverified"
    assert model_signature(TINY).state == "unsigned"
