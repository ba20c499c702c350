"""Camera health taken by the camera itself: pylon's emulated Basler camera (PYLON_CAMEMU) serves the
flat-field and slanted-edge targets from image files, in turn, with the line config's locked settings."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

os.environ.setdefault("PYLON_CAMEMU", "2")  # read when pylon first loads
pytest.importorskip("pypylon.pylon", reason="pypylon (the 'camera' extra) is not installed: pip install "
                                            "'inspectloop[camera]'")

from inspectloop.camera import run as camera  # noqa: E402
from inspectloop.cli.app import app  # noqa: E402
from inspectloop.errors import AcquisitionError  # noqa: E402
from inspectloop.line.config import CameraConfig  # noqa: E402
from inspectloop.workspace import Workspace, init_workspace  # noqa: E402
from tests.camera.targets import flat_field, save, slanted_edge  # noqa: E402

SIDE = 128  # both targets at the camera's region of interest


def target_folder(folder: Path, *, falloff: float = 0.1, level: float = 180.0, sigma: float = 1.2,
                  seed: int = 0) -> Path:
    """What the emulated camera serves in turn: the flat-field card, then the slanted edge."""
    folder.mkdir(parents=True)
    save(flat_field(falloff, level=level, size=(SIDE, SIDE), seed=seed), folder / "0-flat.png")
    save(slanted_edge(sigma, size=SIDE, seed=seed), folder / "1-edge.png")
    return folder


def config(files: Path, **changes: object) -> dict[str, object]:
    return {"name": "top", "serial": "0815-0000", "exposure_us": 1200.0, "gain_db": 1.5, "timeout_ms": 1000,
            "roi": {"width": SIDE, "height": SIDE}, "image_files": str(files)} | changes


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    ws = init_workspace(tmp_path / "ws")
    yield ws
    ws.close()


def test_targets_taken_by_the_camera_record_a_baseline_and_a_failing_check(workspace: Workspace,
                                                                            tmp_path: Path) -> None:
    asked: list[str] = []
    good = CameraConfig(**config(target_folder(tmp_path / "good")))
    flat, edge = camera.capture_targets(good, ready=asked.append)
    assert asked == ["flat-field", "slanted-edge"] and flat.frame_counter == 1 and edge.frame_counter == 2
    baseline = camera.record_camera_baseline(workspace, "top", flat=flat, edge=edge)
    assert baseline.flat_size == baseline.edge_size == (SIDE, SIDE) and baseline.mtf50 > 0
    stored = workspace.db.cameras.baseline("top")
    assert stored is not None and stored.flat_sha256 and workspace.blobs.exists(stored.flat_sha256)
    taken = stored.baseline["captured_from_camera"]["flat-field"]
    assert taken["serial"] == "0815-0000" and taken["settings"]["exposure_us"] == 1200.0

    flat, edge = camera.capture_targets(good)
    assert camera.check(workspace, "top", flat=flat, edge=edge).status == "pass"
    worn = CameraConfig(**config(target_folder(tmp_path / "worn", falloff=0.35, level=120, sigma=2.5, seed=2)))
    flat, edge = camera.capture_targets(worn)
    failed = camera.check(workspace, "top", flat=flat, edge=edge)
    assert failed.status == "fail" and {c.check for c in failed.report.checks if c.status == "fail"} >= {"mtf50"}
    assert set(camera.suspect_cameras(workspace)) == {"top"}
    assert camera.checks(workspace, "top")[0].report["captured_from_camera"]["slanted-edge"]["settings"][
        "gain_db"] == 1.5


def test_an_unknown_serial_is_refused_before_any_target_is_asked_for(tmp_path: Path) -> None:
    asked: list[str] = []
    with pytest.raises(AcquisitionError) as caught:
        camera.capture_targets(CameraConfig(**config(target_folder(tmp_path / "t"), serial="4711")), ready=asked.append)
    assert "4711" in caught.value.message and "0815-0000" in caught.value.message and asked == []


def test_cli_takes_the_targets_from_the_camera(workspace: Workspace, tmp_path: Path) -> None:
    line = tmp_path / "line.yaml"
    line.write_text(yaml.safe_dump({"cameras": [config(target_folder(tmp_path / "good"))]}))
    runner = CliRunner()
    base = ["--workspace", str(workspace.root), "--config", str(line), "--from-camera"]
    recorded = runner.invoke(app, ["camera", "baseline", "top", *base], input="\n\n")
    assert recorded.exit_code == 0, recorded.output
    assert "put the flat-field target in front of top" in recorded.output and "baseline recorded" in recorded.output
    checked = runner.invoke(app, ["camera", "check", "top", *base, "--no-prompt"])
    assert checked.exit_code == 0 and "top: pass" in checked.output, checked.output
    line.write_text(yaml.safe_dump({"cameras": [config(target_folder(tmp_path / "worn", falloff=0.35, level=120,
                                                                     sigma=2.5, seed=2))]}))
    failed = runner.invoke(app, ["camera", "check", "top", *base, "--no-prompt"])
    assert failed.exit_code == 2 and "marked suspect" in failed.output


@pytest.mark.parametrize(("extra", "words"), [
    (["--flat", "x.png"], "--from-camera takes both captures itself"),
    ([], "no camera named 'side'"),
])
def test_cli_refuses_bad_input_in_one_line(workspace: Workspace, tmp_path: Path, extra: list[str],
                                           words: str) -> None:
    line = tmp_path / "line.yaml"
    line.write_text(yaml.safe_dump({"cameras": [config(target_folder(tmp_path / "good"))]}))
    name = "top" if extra else "side"
    result = CliRunner().invoke(app, ["camera", "check", name, "--workspace", str(workspace.root), "--config",
                                      str(line), "--from-camera", "--no-prompt", *extra])
    assert result.exit_code != 0 and words in result.output and "Traceback" not in result.output


def test_an_unknown_serial_is_refused_by_the_cli_with_the_fix(workspace: Workspace, tmp_path: Path) -> None:
    line = tmp_path / "line.yaml"
    line.write_text(yaml.safe_dump({"cameras": [config(target_folder(tmp_path / "good"), serial="4711")]}))
    result = CliRunner().invoke(app, ["camera", "baseline", "top", "--workspace", str(workspace.root), "--config",
                                      str(line), "--from-camera", "--no-prompt"])
    assert result.exit_code != 0 and "no camera with serial 4711" in result.output
    assert "Traceback" not in result.output and workspace.db.cameras.baseline("top") is None
