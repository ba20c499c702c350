"""The station's line config: valid YAML accepted, every problem named by field with the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from inspectloop.errors import LineConfigError
from inspectloop.line.config import LINE_CONFIG_FILE, Trigger, load_line_config, parse_line_config
from inspectloop.runtime.decision import Decision

GOOD = """
cameras:
  - {name: top, serial: "24012345", exposure_us: 800, gain_db: 3, pixel_format: BayerRG8,
     roi: {width: 1024, height: 768, offset_x: 16}, trigger: hardware, trigger_line: Line1}
  - {name: side, serial: "24012346", exposure_us: 1200}
video:
  - {name: old_line, url: "rtsp://10.0.0.9/stream1", sample_hz: 2.5}
capture_set: {cameras: [top, side], frames_per_camera: 2}
publish:
  opcua: {endpoint: "opc.tcp://0.0.0.0:4840/inspectloop/", station: line3}
  mqtt: {host: broker.plant, topic: plant/line3/decision}
  deadline_ms: 250
  fail_safe: review
"""


def test_a_full_station_config_is_read_from_the_workspace(tmp_path: Path) -> None:
    (tmp_path / LINE_CONFIG_FILE).write_text(GOOD)
    config = load_line_config(tmp_path)
    top = config.camera("top")
    assert (top.trigger, top.roi.offset_x if top.roi else None, top.pixel_format) == (Trigger.HARDWARE, 16, "BayerRG8")
    assert config.camera("side").trigger is Trigger.SOFTWARE and config.capture_set.size == 4  # type: ignore[union-attr]
    assert (config.publish.deadline_ms, config.publish.fail_safe) == (250, Decision.REVIEW)
    assert config.publish.mqtt.port == 1883  # type: ignore[union-attr]


@pytest.mark.parametrize(("raw", "says"), [
    ({"cameras": [{"name": "top", "serial": "1", "exposure_us": -5}]}, "cameras.0.exposure_us: Input should be greater"),
    ({"cameras": [{"name": "top", "serial": "1", "exposure_us": 5, "exposure": 9}]}, "cameras.0.exposure: Extra inputs"),
    ({"cameras": [{"name": "a", "serial": "1", "exposure_us": 5}, {"name": "a", "serial": "2", "exposure_us": 5}]},
     "source names must be unique, a used twice"),
    ({"cameras": [{"name": "a", "serial": "1", "exposure_us": 5}, {"name": "b", "serial": "1", "exposure_us": 5}]},
     "two cameras share one serial"),
    ({"capture_set": {"cameras": ["ghost"]}}, "capture_set names unknown source(s) ghost"),
    ({"publish": {"fail_safe": "pass"}}, "publish.fail_safe"),
    ({"publish": {"mqtt": {"port": 70000}}}, "publish.mqtt.port"),
    ({"video": [{"name": "v", "url": "x.mp4", "sample_hz": 0}]}, "video.0.sample_hz"),
    (["cameras"], "must be a mapping"),
])
def test_bad_configs_name_the_field(raw: object, says: str) -> None:
    with pytest.raises(LineConfigError) as caught:
        parse_line_config(raw, "line.yaml")
    assert says in caught.value.message and caught.value.hint


@pytest.mark.parametrize(("text", "says"), [
    (None, "no line config at"),
    ("cameras: [unclosed", "is not valid YAML at line 1"),
])
def test_missing_or_broken_files_are_refused(tmp_path: Path, text: str | None, says: str) -> None:
    if text is not None:
        (tmp_path / LINE_CONFIG_FILE).write_text(text)
    with pytest.raises(LineConfigError, match=says):
        load_line_config(tmp_path)


def test_unknown_camera_name_lists_the_known_ones() -> None:
    config = parse_line_config({"cameras": [{"name": "top", "serial": "1", "exposure_us": 5}]})
    with pytest.raises(LineConfigError) as caught:
        config.camera("bottom")
    assert "cameras are: top" in (caught.value.hint or "")
