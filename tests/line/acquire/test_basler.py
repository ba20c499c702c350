"""Basler cameras through pylon's camera emulation (PYLON_CAMEMU=2, set in tests/line/conftest.py): real
pylon, real node maps and ranges, frames served from image files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inspectloop.errors import AcquisitionError

pytest.importorskip("pypylon.pylon", reason="pypylon (the 'camera' extra) is not installed: pip install "
                                            "'inspectloop[camera]'")

from inspectloop.line.acquire.basler import BaslerCamera, check_pixel_format, list_cameras  # noqa: E402
from inspectloop.line.config import CameraConfig, Roi  # noqa: E402

SERIAL = "0815-0000"  # pylon's emulated cameras are 0815-0000, 0815-0001, ...


def _config(**changes: object) -> CameraConfig:
    fields: dict[str, object] = {"name": "top", "serial": SERIAL, "exposure_us": 800.0, "gain_db": 2.0,
                                 "roi": Roi(width=64, height=48), "timeout_ms": 1000}
    return CameraConfig(**(fields | changes))


@pytest.fixture
def ramp(tmp_path: Path) -> Path:
    path = tmp_path / "ramp.png"
    Image.fromarray((np.arange(48 * 64).reshape(48, 64) % 251).astype(np.uint8)).save(path)
    return path


def test_emulated_cameras_are_listed() -> None:
    serials = [c.serial for c in list_cameras()]
    assert {"0815-0000", "0815-0001"} <= set(serials)


def test_software_trigger_serves_the_image_file_with_settings_recorded(ramp: Path) -> None:
    with BaslerCamera(_config(image_files=ramp)) as camera:
        frames = [camera.grab() for _ in range(3)]
        node = camera.instant_camera.GetNodeMap().GetNode
        assert node("ExposureTime").GetValue() == pytest.approx(800.0)  # locked on the device itself
        assert node("Gain").GetValue() == pytest.approx(2.0, abs=0.05)
        assert node("TriggerMode").GetValue() == "On" and node("TriggerSource").GetValue() == "Software"
    expected = np.asarray(Image.open(ramp))
    assert all(np.array_equal(f.pixels, expected) for f in frames)
    assert [f.frame_counter for f in frames] == [1, 2, 3]
    record = frames[0].record()
    assert record["serial"] == SERIAL and record["source"] == "top" and record["temperature_c"] is None
    assert record["settings"] == {"exposure_us": 800.0, "gain_db": 2.0, "pixel_format": "Mono8", "trigger": "software",
                                  "roi": {"width": 64, "height": 48, "offset_x": 0, "offset_y": 0}}


def test_free_run_and_hardware_trigger_configure_the_camera() -> None:
    with BaslerCamera(_config(trigger="free_run", frame_rate_hz=200.0)) as camera:
        frame = camera.retrieve()
        assert camera.instant_camera.GetNodeMap().GetNode("TriggerMode").GetValue() == "Off"
    assert frame.pixels.shape == (48, 64)
    with BaslerCamera(_config(trigger="hardware", trigger_line="Line2")) as camera:  # nothing wired: config only
        node = camera.instant_camera.GetNodeMap().GetNode
        assert (node("TriggerMode").GetValue(), node("TriggerSource").GetValue()) == ("On", "Line2")


def test_colour_model_gets_rgb_frames_from_a_bayer_camera() -> None:
    with BaslerCamera(_config(pixel_format="BayerRG8"), colour_mode="RGB") as camera:
        frame = camera.grab()
    assert frame.pixels.shape == (48, 64, 3) and frame.image().mode == "RGB"


def test_reconnect_keeps_the_frame_counter_going(ramp: Path) -> None:
    with BaslerCamera(_config(image_files=ramp)) as camera:
        first = camera.grab()
        camera.instant_camera.DestroyDevice()  # what a cable pull leaves behind: the device is gone
        after = camera.grab()  # reconnects by serial, settings locked again, grabs once more
        assert camera.reconnects == 1 and camera.lost_frames == 1
        assert camera.instant_camera.GetNodeMap().GetNode("ExposureTime").GetValue() == pytest.approx(800.0)
    assert (first.frame_counter, after.frame_counter) == (1, 2)  # the camera's own id restarted; ours did not
    assert after.reconnects == 1 and np.array_equal(after.pixels, first.pixels)


@pytest.mark.parametrize(("changes", "colour_mode", "says", "fix"), [
    ({"serial": "4711-9999"}, None, "no camera with serial 4711-9999 (cameras found: 0815-0000", "line cameras"),
    ({"exposure_us": 9e9}, None, "exposure_us 9e+09 is outside the camera's range", "set exposure_us between"),
    ({"gain_db": 99.0}, None, "gain_db 99 is outside the camera's range", "set gain_db between"),
    ({"roi": Roi(width=9000, height=48)}, None, "ROI width 9000 is outside", "set ROI width between"),
    ({"pixel_format": "Mono8"}, "RGB", "greyscale but the model was trained on colour", "colour format"),
    ({"pixel_format": "Coord3D_C16"}, None, "cannot be turned into an image", "set pixel_format"),
    ({"pixel_format": "BayerRG10p"}, None, "does not offer PixelFormat BayerRG10p", "one of Mono8, Mono10"),
    ({"trigger": "hardware", "trigger_line": "Line9"}, None, "does not offer TriggerSource Line9", "trigger_line"),
])
def test_bad_settings_are_refused_at_open_with_the_fix(changes: dict[str, object], colour_mode: str | None,
                                                        says: str, fix: str) -> None:
    camera = BaslerCamera(_config(**changes), colour_mode=colour_mode)
    with pytest.raises(AcquisitionError) as caught:
        camera.open()
    assert says in caught.value.message and fix in (caught.value.hint or "")
    assert camera.instant_camera is None


def test_pixel_format_check_is_pure() -> None:
    check_pixel_format("Mono12", "L")
    check_pixel_format("BayerGB8", "L")  # colour to greyscale loses nothing the model uses
    with pytest.raises(AcquisitionError):
        check_pixel_format("Mono8", "RGB")
