"""Model authenticity: signed model files, trusted keys, and the forged copy of issue 10 refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from inspectloop.errors import ModelFileError
from inspectloop.runtime import EdgeModel, iter_predictions
from inspectloop.runtime.metadata import read_model_metadata
from inspectloop.runtime.signing import (
    SIGNATURE_KEY,
    TRUSTED_KEYS_ENV,
    PublicKey,
    check_signature,
    load_public_key,
    public_key_of,
    public_key_pem,
    sign_model,
    strip_signature,
)
from tests.runtime.helpers import CLASSES, TINY, forged_copy, synthetic_image, with_extra_entry

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture(scope="module")
def site_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def keys_dir(tmp_path_factory: pytest.TempPathFactory, site_key: Ed25519PrivateKey) -> Path:
    folder = tmp_path_factory.mktemp("keys")
    (folder / "site.pub.pem").write_bytes(public_key_pem(public_key_of(site_key).raw))
    (folder / "other.pub.pem").write_bytes(public_key_pem(public_key_of(Ed25519PrivateKey.generate()).raw))
    return folder


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory, site_key: Ed25519PrivateKey) -> Path:
    """The tiny model as export writes it with the site key."""
    path = tmp_path_factory.mktemp("signed") / "model.onnx"
    path.write_bytes(sign_model(TINY.read_bytes(), site_key))
    return path


@pytest.fixture(scope="module")
def part_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("images") / "scratch.png"
    synthetic_image("scratch", 7).save(path)
    return path


def _forgery(signed: Path, tmp_path: Path, how: str) -> Path:
    """The forged copy: signature stripped, original kept, or re-signed with the forger's own key."""
    if how == "resigned":
        stripped = forged_copy(signed, tmp_path / "stripped.onnx")
        target = tmp_path / "forged.onnx"
        target.write_bytes(sign_model(stripped.read_bytes(), Ed25519PrivateKey.generate()))
        return target
    return forged_copy(signed, tmp_path / "forged.onnx", signature=how)


# --- the forged copy of issue 10 ----------------------------------------------------------------------

@pytest.mark.parametrize(("how", "message"), [
    ("strip", "model file is not signed, and only models signed by a trusted key may run here"),
    ("keep", "model signature does not match the file's content"),
    ("resigned", "which is not trusted here"),
])
def test_a_forged_copy_is_refused_with_trusted_keys(signed: Path, keys_dir: Path, tmp_path: Path,
                                                    how: str, message: str) -> None:
    forged = _forgery(signed, tmp_path, how)
    assert read_model_metadata(forged.read_bytes(), "forged").class_names == tuple(reversed(CLASSES))
    with pytest.raises(ModelFileError, match=message) as caught:
        EdgeModel(forged, trusted_keys=[keys_dir / "site.pub.pem"])
    assert str(forged) in caught.value.message and caught.value.hint


def test_a_forged_copy_runs_without_trusted_keys_only_as_unsigned_or_unverified(signed: Path,
                                                                                tmp_path: Path) -> None:
    assert EdgeModel(_forgery(signed, tmp_path, "strip")).signature.state == "unsigned"
    resigned = EdgeModel(_forgery(signed, tmp_path, "resigned")).signature
    assert resigned.state == "unverified" and resigned.key_id != EdgeModel(signed).signature.key_id
    with pytest.raises(ModelFileError, match="does not match the file's content"):
        EdgeModel(_forgery(signed, tmp_path, "keep"))  # a stale signature is refused even without keys


def test_the_forged_copy_really_predicts_differently(signed: Path, tmp_path: Path, part_image: Path) -> None:
    """What the forgery would do on the line: every image judged by zeroed weights and swapped classes."""
    genuine = EdgeModel(signed).predict(part_image)
    forged = EdgeModel(_forgery(signed, tmp_path, "strip")).predict(part_image)
    assert genuine.label == "scratch" and forged.label != genuine.label


# --- genuine files ------------------------------------------------------------------------------------

def test_a_signed_file_is_verified_by_its_key(signed: Path, keys_dir: Path, site_key: Ed25519PrivateKey) -> None:
    model = EdgeModel(signed, trusted_keys=[keys_dir / "other.pub.pem", keys_dir / "site.pub.pem"])
    assert model.signature.state == "verified"
    assert model.signature.key_id == public_key_of(site_key).key_id
    assert model.signature.warning() is None
    assert EdgeModel(signed, trusted_keys=[public_key_of(site_key)]).signature.state == "verified"


def test_without_trusted_keys_the_status_says_so(signed: Path) -> None:
    unverified, unsigned = EdgeModel(signed).signature, EdgeModel(TINY).signature
    assert unverified.state == "unverified" and "not verified" in (unverified.warning() or "")
    assert unsigned.state == "unsigned" and unsigned.key_id is None
    assert "--trusted-key" in (unsigned.warning() or "") and TRUSTED_KEYS_ENV in unsigned.describe()
    assert unsigned.to_dict()["state"] == "unsigned"


def test_signing_keeps_the_file_readable_by_runtimes_that_predate_it(signed: Path) -> None:
    data = signed.read_bytes()
    assert data.startswith(TINY.read_bytes()) and strip_signature(data) == TINY.read_bytes()
    assert read_model_metadata(data, "signed") == EdgeModel(TINY).metadata


def test_signing_twice_replaces_the_signature(signed: Path, tmp_path: Path) -> None:
    other = Ed25519PrivateKey.generate()
    again = sign_model(signed.read_bytes(), other)
    status = check_signature(again, [public_key_of(other)], "again")
    assert status.state == "verified" and again.count(SIGNATURE_KEY.encode()) == 1


def test_a_changed_weight_byte_breaks_the_signature_even_without_the_hash_check(signed: Path,
                                                                                tmp_path: Path) -> None:
    from tests.runtime.fixtures.make_fixtures import HEAD_WEIGHT

    data = bytearray(signed.read_bytes())
    data[bytes(data).index(HEAD_WEIGHT.tobytes()) + 5] ^= 0x01
    tampered = tmp_path / "t.onnx"
    tampered.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="signature does not match"):
        EdgeModel(tampered, verify_hash=False)


@pytest.mark.parametrize(("value", "message"), [
    ("not json", "signature entry is malformed"),
    (json.dumps({"algorithm": "rsa"}), "algorithm 'rsa'"),
    (json.dumps({"algorithm": "ed25519", "key_id": "0" * 16, "public_key": "AAAA", "signature": ""}),
     "signature entry is malformed"),
])
def test_a_malformed_signature_entry_is_refused(tmp_path: Path, value: str, message: str) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(with_extra_entry(TINY.read_bytes(), SIGNATURE_KEY, value))
    with pytest.raises(ModelFileError, match=message):
        EdgeModel(path)


def test_two_signature_entries_are_refused(signed: Path, tmp_path: Path) -> None:
    data = signed.read_bytes()
    entry = data[len(TINY.read_bytes()):]
    path = tmp_path / "m.onnx"
    path.write_bytes(data + entry)
    with pytest.raises(ModelFileError, match="carries 2 signature entries"):
        EdgeModel(path)


# --- trusted key files --------------------------------------------------------------------------------

def _pem_private(key: object) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,  # type: ignore[attr-defined]
                             serialization.NoEncryption())


@pytest.mark.parametrize(("content", "message"), [
    (None, "cannot be read"),
    (b"hello", "is not a PEM public key"),
    (_pem_private(Ed25519PrivateKey.generate()), "is a private key"),
    (ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo), "is not an Ed25519 key"),
])
def test_bad_trusted_key_files_are_named(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "key.pem"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelFileError, match=message) as caught:
        load_public_key(path)
    assert str(path) in caught.value.message and "inspectloop keys export" in (caught.value.hint or "")


def test_public_keys_round_trip_through_pem(tmp_path: Path, site_key: Ed25519PrivateKey) -> None:
    public = public_key_of(site_key)
    (tmp_path / "k.pem").write_bytes(public_key_pem(public.raw))
    assert load_public_key(tmp_path / "k.pem").raw == public.raw
    assert len(public.key_id) == 16
    with pytest.raises(ValueError, match="32 bytes"):
        PublicKey(b"short")


def test_iter_predictions_checks_trusted_keys_before_iterating(signed: Path, tmp_path: Path,
                                                              keys_dir: Path) -> None:
    with pytest.raises(ModelFileError, match="not signed"):
        iter_predictions(_forgery(signed, tmp_path, "strip"), [], trusted_keys=[keys_dir / "site.pub.pem"])


# --- the runtime command line --------------------------------------------------------------------------

def _cli(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != TRUSTED_KEYS_ENV}
    full = {**base, **(env or {}), "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "inspectloop.runtime", *map(str, args)], capture_output=True,
                          text=True, env=full, timeout=60, check=False)


def test_cli_refuses_the_forged_copy_with_a_trusted_key(signed: Path, tmp_path: Path, keys_dir: Path,
                                                       part_image: Path) -> None:
    forged = _forgery(signed, tmp_path, "strip")
    by_option = _cli(forged, part_image, "--trusted-key", keys_dir / "site.pub.pem")
    by_env = _cli(forged, part_image, env={TRUSTED_KEYS_ENV: str(keys_dir / "site.pub.pem")})
    for result in (by_option, by_env):
        assert result.returncode == 2 and result.stdout == ""
        assert result.stderr.count("\n") == 1 and "is not signed" in result.stderr, result.stderr


def test_cli_runs_a_verified_model_quietly_and_warns_once_otherwise(signed: Path, keys_dir: Path,
                                                                   part_image: Path) -> None:
    verified = _cli(signed, part_image, "--trusted-key", keys_dir / "site.pub.pem")
    assert verified.returncode == 0 and verified.stderr == ""
    unsigned = _cli(TINY, part_image)
    assert unsigned.returncode == 0 and json.loads(unsigned.stdout)["label"] == "scratch"
    assert unsigned.stderr.startswith("warning: model file is unsigned") and unsigned.stderr.count("\n") == 1


def test_forgery_helper_really_zeroes_the_weights(signed: Path, tmp_path: Path) -> None:
    from tests.runtime.fixtures.make_fixtures import HEAD_WEIGHT

    data = forged_copy(signed, tmp_path / "f.onnx").read_bytes()
    assert HEAD_WEIGHT.tobytes() not in data and np.any(HEAD_WEIGHT)
