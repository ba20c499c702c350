"""GenICam cameras through a GenTL producer (harvesters). Real acquisition runs through the simulated producer
the ``genicam`` package bundles (viky.cti: three emulated cameras, serials 0, 1, 2, drawing a red, green or
blue mark on white); the messages for a missing extra or producer are tested without one."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from inspectloop.errors import AcquisitionError, MissingExtraError
from inspectloop.line.acquire.genicam import GENTL_PATH_ENV, GenICamCamera
from inspectloop.line.config import GenICamConfig, parse_line_config
from inspectloop.line.parts import PartSource


def _viky() -> Path:
    """The simulated producer shipped in the genicam wheel (skip, saying so, where it is not installed)."""
    genicam = pytest.importorskip("genicam", reason="harvesters/genicam (the 'genicam' extra) are not installed: "
                                                    "pip install 'inspectloop[genicam]'")
    pytest.importorskip("harvesters", reason="harvesters (the 'genicam' extra) is not installed")
    cti = Path(genicam.__file__).parent / "viky.cti"
    if not cti.is_file():
        pytest.skip(f"this genicam build ships no simulated GenTL producer ({cti} is absent)")
    return cti


def test_without_harvesters_the_extra_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "harvesters", None)
    monkeypatch.setitem(sys.modules, "harvesters.core", None)
    with pytest.raises(MissingExtraError) as caught:
        GenICamCamera(GenICamConfig(name="side", cti=Path("/opt/maker/producer.cti"))).open()
    assert caught.value.message == "this needs the 'harvesters' package, which is not installed"
    assert caught.value.hint == "pip install 'inspectloop[genicam]'"


def test_without_a_producer_the_message_says_what_to_set(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("harvesters", reason="harvesters (the 'genicam' extra) is not installed")
    monkeypatch.setenv(GENTL_PATH_ENV, str(tmp_path))  # a folder without any .cti
    with pytest.raises(AcquisitionError) as caught:
        GenICamCamera(GenICamConfig(name="side")).open()
    assert caught.value.message == (f"camera side: no GenTL producer configured (no cti in its line config and none "
                                    f"in {GENTL_PATH_ENV})")
    assert caught.value.hint == ("install your camera maker's SDK and set cti: /path/to/its_producer.cti for this "
                                 "camera in line.yaml (inspectloop ships no producer)")


def test_a_producer_path_that_does_not_exist_is_named(tmp_path: Path) -> None:
    pytest.importorskip("harvesters", reason="harvesters (the 'genicam' extra) is not installed")
    with pytest.raises(AcquisitionError, match=r"GenTL producer .*maker\.cti does not exist"):
        GenICamCamera(GenICamConfig(name="side", cti=tmp_path / "maker.cti")).open()


def test_frames_come_from_the_producers_camera_with_their_record() -> None:
    config = GenICamConfig(name="side", cti=_viky(), serial="0", pixel_format="RGBa8", trigger="free_run")
    with GenICamCamera(config, colour_mode="RGB") as camera:
        frames = [camera.grab() for _ in range(3)]
    first = frames[0]
    assert first.pixels.shape == (400, 400, 3) and first.serial == "0" and first.source == "side"
    marked = first.pixels.reshape(-1, 3)[(first.pixels.reshape(-1, 3) < 250).any(axis=1)]
    assert len(marked) > 0 and (marked == [255, 0, 0]).all()  # camera 0 draws in red
    assert [f.frame_counter for f in frames] == [1, 2, 3]
    ids = [f.camera_frame_id for f in frames]
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert first.settings == {"exposure_us": None, "gain_db": None, "pixel_format": "RGBa8", "roi": None,
                              "trigger": "free_run", "gentl_producer": "viky.cti"}


def test_a_greyscale_model_gets_greyscale_frames() -> None:
    config = GenICamConfig(name="side", cti=_viky(), serial="2", pixel_format="Mono8", trigger="free_run")
    with GenICamCamera(config, colour_mode="L") as camera:
        frame = camera.grab()
    assert frame.pixels.shape == (400, 400) and frame.pixels.dtype == np.uint8


def test_the_producer_is_found_through_the_standard_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(GENTL_PATH_ENV, str(_viky().parent))
    with GenICamCamera(GenICamConfig(name="side", serial="1", pixel_format="RGBa8", trigger="free_run")) as camera:
        assert camera.grab().serial == "1"


@pytest.mark.parametrize(("changes", "message", "hint"), [
    ({"serial": "7"}, "camera side: no camera with serial 7 (the producer finds: 0, 1, 2)", "set serial to one of"),
    ({}, "camera side: 3 cameras and no serial in the line config (the producer finds: 0, 1, 2)", "set serial"),
    ({"serial": "0", "exposure_us": 500.0, "trigger": "free_run"},
     "camera side has no ExposureTime setting (for exposure_us)", "remove exposure_us"),
    ({"serial": "0"}, "camera side has no TriggerSelector setting (for trigger)", "set trigger: free_run"),
    ({"serial": "0", "pixel_format": "BGR8", "trigger": "free_run"}, "camera side does not offer PixelFormat BGR8",
     "set pixel_format to one of RGBa8, Mono8"),
])
def test_what_the_camera_cannot_do_is_refused_at_open(changes: dict[str, object], message: str, hint: str) -> None:
    config = GenICamConfig.model_validate({"name": "side", "cti": _viky(), "pixel_format": "Mono8", **changes})
    with pytest.raises(AcquisitionError) as caught:
        GenICamCamera(config).open()
    assert caught.value.message == message
    assert (caught.value.hint or "").startswith(hint)


def test_a_station_takes_its_parts_from_a_genicam_camera() -> None:
    line = parse_line_config({"genicam": [{"name": "side", "cti": str(_viky()), "serial": "1",
                                           "pixel_format": "RGBa8", "trigger": "free_run"}]})
    source = PartSource(line, colour_mode="RGB", prefix="P")
    source.open()
    try:
        parts = [source.next_part(threading.Event()) for _ in range(2)]
    finally:
        source.close()
    assert [p.part_id for p in parts if p] == ["P-000001", "P-000002"]
    assert all(p and p.missing is None and [f.source for f in p.frames] == ["side"] for p in parts)
