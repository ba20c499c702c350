"""``inspectloop keys ...`` and ``predict --trusted-key``: the forged copy of issue 10 is refused, and an
unverified model runs with one plain warning."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from inspectloop.keys import load_signing_key, site_key
from inspectloop.runtime.signing import TRUSTED_KEYS_ENV, sign_model
from tests.cli.test_app import invoke as invoke_raw
from tests.runtime.helpers import TINY, forged_copy, synthetic_image


def invoke(*args: object) -> tuple[int, str, str]:
    """The command's exit code, stdout and stderr (Rich's line wrapping undone in stderr)."""
    code, out, err = invoke_raw(*map(str, args))
    return code, out, " ".join(err.split())


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    code, out, _ = invoke("init", tmp_path / "ws")
    assert code == 0 and "signed with key" in " ".join(out.split())
    return tmp_path / "ws"


@pytest.fixture
def signed(ws: Path, tmp_path: Path) -> Path:
    path = tmp_path / "model.onnx"
    path.write_bytes(sign_model(TINY.read_bytes(), load_signing_key(ws)))
    return path


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "part.png"
    synthetic_image("scratch", 3).save(path)
    return path


def test_keys_show_export_and_verify(ws: Path, signed: Path, tmp_path: Path) -> None:
    key = site_key(ws)
    code, out, _ = invoke("keys", "show", "-w", ws)
    assert code == 0 and key.public.key_id in out and key.fingerprint in out.replace("\n", "")
    code, out, _ = invoke("keys", "export", tmp_path / "site.pem", "-w", ws)
    assert code == 0 and (tmp_path / "site.pem").read_bytes() == key.public_path.read_bytes()
    code, out, _ = invoke("keys", "verify", signed, "--trusted-key", tmp_path / "site.pem")
    assert code == 0 and "verified" in out
    code, _, err = invoke("keys", "verify", forged_copy(signed, tmp_path / "f.onnx"), "--trusted-key",
                          tmp_path / "site.pem")
    assert code == 1 and "model file is not signed" in err and "Traceback" not in err


def test_keys_create_for_a_workspace_made_before_signing(ws: Path) -> None:
    code, _, err = invoke("keys", "create", "-w", ws)
    assert code == 1 and "already has a signing key" in err
    shutil.rmtree(ws / "keys")
    code, _, err = invoke("keys", "show", "-w", ws)
    assert code == 1 and "inspectloop keys create" in err
    code, out, _ = invoke("keys", "create", "-w", ws)
    assert code == 0 and site_key(ws).public.key_id in out


def test_predict_refuses_the_forged_copy_with_a_trusted_key(ws: Path, signed: Path, image: Path,
                                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    forged = forged_copy(signed, tmp_path / "forged.onnx")
    public = site_key(ws).public_path
    code, out, err = invoke("predict", forged, image, "--trusted-key", public)
    assert code == 1 and out == "" and "model file is not signed" in err and "fix:" in err
    monkeypatch.setenv(TRUSTED_KEYS_ENV, str(public))
    code, out, err = invoke("predict", forged, image)
    assert code == 1 and "model file is not signed" in err
    code, out, err = invoke("predict", signed, image)
    assert code == 0 and '"label": "scratch"' in out and err == ""


def test_predict_without_trusted_keys_warns_once(ws: Path, signed: Path, image: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TRUSTED_KEYS_ENV, raising=False)
    code, out, err = invoke("predict", forged_copy(signed, tmp_path / "forged.onnx"), image)
    assert code == 0 and err.startswith("warning: model file is unsigned")
    code, out, err = invoke("predict", signed, image)
    assert code == 0 and "not verified: no trusted keys configured" in err
    assert len(out.splitlines()) == 1
