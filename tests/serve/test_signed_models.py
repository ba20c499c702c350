"""The service and model authenticity: ``serve --model FILE`` and registry versions checked against trusted
keys, and the health details saying plainly whether the served file was verified."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("torch")
from inspectloop.errors import ModelFileError  # noqa: E402
from inspectloop.keys import load_signing_key, site_key  # noqa: E402
from inspectloop.registry import promote  # noqa: E402
from inspectloop.runtime.signing import sign_model  # noqa: E402
from inspectloop.serve.service import InspectionService, ServiceConfig  # noqa: E402
from tests.registry_helpers import tiny_model_bytes  # noqa: E402
from tests.service_helpers import add_version, line_workspace  # noqa: E402


def test_serve_model_file_refuses_the_forged_copy_with_trusted_keys(tmp_path: Path) -> None:
    line = line_workspace(tmp_path / "ws")
    signed = tmp_path / "signed.onnx"
    signed.write_bytes(sign_model(line.production.path.read_bytes(), load_signing_key(line.workspace.root)))
    forged = _forged(signed, tmp_path)
    public = site_key(line.workspace.root).public_path
    with pytest.raises(ModelFileError, match="model file is not signed"):
        InspectionService(line.workspace, ServiceConfig(model_file=forged, trusted_keys=(public,)))
    served = InspectionService(line.workspace, ServiceConfig(model_file=signed, trusted_keys=(public,)))
    assert served.health(details=True)["production"]["signature"]["state"] == "verified"
    line.workspace.close()


def test_health_says_plainly_when_the_model_is_unsigned(tmp_path: Path) -> None:
    line = line_workspace(tmp_path / "ws")  # its production version was exported before signing
    service = InspectionService(line.workspace, ServiceConfig(model_file=line.production.path))
    signature = service.health(details=True)["production"]["signature"]
    assert signature["state"] == "unsigned" and "--trusted-key" in signature["detail"]
    line.workspace.close()


def test_a_signed_registry_version_is_verified_and_an_unsigned_one_refused_under_trusted_keys(tmp_path: Path) -> None:
    line = line_workspace(tmp_path / "ws")
    public = site_key(line.workspace.root).public_path
    with pytest.raises(ModelFileError, match="model file is not signed"):
        InspectionService(line.workspace, ServiceConfig(trusted_keys=(public,)))
    signed = sign_model(tiny_model_bytes(), load_signing_key(line.workspace.root))
    promote(line.workspace, add_version(line.workspace, "run-b", signed), "production", actor="ana",
            reason="signed", override=True)
    for config in (ServiceConfig(), ServiceConfig(trusted_keys=(public,))):
        production = InspectionService(line.workspace, config).health(details=True)["production"]
        assert production["name"] != line.production.name and production["signature"]["state"] == "verified"
    line.workspace.close()


def _forged(signed: Path, tmp_path: Path) -> Path:
    """The tiny CNN's export with its weights zeroed and its classes swapped, re-hashed (see test_export)."""
    from tests.test_export import forged_export

    return forged_export(signed, tmp_path / "forged.onnx")


def test_serve_takes_trusted_keys_from_the_option_the_setting_or_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from inspectloop.cli.service_commands import SERVE_SETTINGS

    key = tmp_path / "site.pem"
    assert SERVE_SETTINGS.build([], trusted_key=(key,)).trusted_keys == (key,)
    assert SERVE_SETTINGS.build([f"trusted_keys={key}"]).trusted_keys == (key,)
    monkeypatch.setenv("INSPECTLOOP_TRUSTED_KEYS", os.pathsep.join([str(key), str(tmp_path / "other.pem")]))
    assert ServiceConfig().trusted_keys == (key, tmp_path / "other.pem")
