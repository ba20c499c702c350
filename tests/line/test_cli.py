"""``inspectloop line ...`` end to end on emulated cameras, a real broker and a real OPC UA server: bad
input is one line with its fix and exit code 1, never a traceback."""

from __future__ import annotations

import json
import queue
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

pytest.importorskip("pypylon.pylon", reason="pypylon (the 'camera' extra) is not installed")
pytest.importorskip("paho.mqtt.client", reason="paho-mqtt (the 'line' extra) is not installed")
pytest.importorskip("asyncua", reason="asyncua (the 'line' extra) is not installed")
pytest.importorskip("amqtt.broker", reason="amqtt (the dev extra's test broker) is not installed")

import paho.mqtt.client as mqtt  # noqa: E402

from inspectloop.cli.app import app  # noqa: E402
from tests.line.brokers import free_port, mqtt_broker  # noqa: E402

runner = CliRunner()


def _write(ws: Path, config: dict[str, object]) -> Path:
    ws.mkdir(exist_ok=True)
    (ws / "line.yaml").write_text(yaml.safe_dump(config))
    return ws


def _camera(**changes: object) -> dict[str, object]:
    return {"name": "top", "serial": "0815-0000", "exposure_us": 800, "roi": {"width": 64, "height": 48}} | changes


def _invoke(*args: object) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def test_cameras_lists_the_emulated_cameras() -> None:
    code, out, _ = _invoke("line", "cameras")
    assert code == 0 and "0815-0000" in out and "0815-0001" in out


def test_check_starts_cameras_video_and_publishers(tmp_path: Path) -> None:
    clip = tmp_path / "feed.png"  # FFmpeg reads a still image as a one-frame video
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(clip)
    port = free_port()
    ws = _write(tmp_path / "ws", {
        "cameras": [_camera(), _camera(name="side", serial="0815-0001", trigger="hardware")],
        "video": [{"name": "feed", "url": str(clip), "sample_hz": 1}],
        "publish": {"mqtt": {"host": "127.0.0.1", "port": port},
                    "opcua": {"endpoint": f"opc.tcp://127.0.0.1:{free_port()}/inspectloop/"}}})
    with mqtt_broker(port):
        code, out, err = _invoke("line", "check", "-w", ws)
    assert code == 0, err
    assert "frame 64x48" in out and "hardware/free-run" in out and "ready: 5" in out


def test_publish_test_reaches_a_subscriber(tmp_path: Path) -> None:
    port = free_port()
    ws = _write(tmp_path / "ws", {"publish": {"mqtt": {"host": "127.0.0.1", "port": port, "topic": "t/decision"}}})
    received: queue.Queue[bytes] = queue.Queue()
    with mqtt_broker(port):
        plc = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="plc")
        plc.on_message = lambda c, u, message: received.put(message.payload)
        subscribed: queue.Queue[bool] = queue.Queue()
        plc.on_subscribe = lambda *args: subscribed.put(True)
        plc.connect("127.0.0.1", port)
        plc.subscribe("t/decision", qos=1)
        plc.loop_start()
        subscribed.get(timeout=10)
        code, out, err = _invoke("line", "publish-test", "-w", ws, "--part-id", "P-9", "--decision", "review")
        message = json.loads(received.get(timeout=10))
        plc.loop_stop()
        plc.disconnect()
    assert code == 0, err
    assert "sent review for part P-9 to MQTT 127.0.0.1" in out
    assert (message["part_id"], message["decision"]) == ("P-9", "review")


@pytest.mark.parametrize(("config", "args", "says", "fix"), [
    ({"cameras": [_camera(serial="4711-0000")]}, (), "no camera with serial 4711-0000", "inspectloop line cameras"),
    ({"cameras": [_camera(exposure_us=9e9)]}, (), "exposure_us 9e+09 is outside the camera's range",
     "set exposure_us between"),
    ({"cameras": [_camera(pixel_format="Coord3D_C16")]}, (), "cannot be turned into an image", "set pixel_format"),
    ({"publish": {"mqtt": {"host": "127.0.0.1", "port": 1, "connect_timeout_s": 2}}}, (),
     "cannot reach the MQTT broker at 127.0.0.1:1", "start the broker"),
    ({"publish": {"opcua": {"endpoint": "opc.tcp://192.0.2.1:4840/x/"}}}, (), "cannot serve OPC UA at",
     "an address of this machine"),
    ({"publish": {"plc": {"endpoint": "opc.tcp://127.0.0.1:1/", "nodes": {"decision": "ns=2;s=D"}, "timeout_s": 1}}},
     (), "cannot reach the PLC's OPC UA server at opc.tcp://127.0.0.1:1/", "publish.plc.endpoint"),
    ({"publish": {"modbus": {"host": "127.0.0.1", "port": 1, "registers": {"decision": 0}, "timeout_s": 1}}},
     (), "cannot reach the PLC's Modbus TCP server at 127.0.0.1:1 (device 1): Connection refused",
     "check publish.modbus.host and port"),
    ({"genicam": [{"name": "side", "cti": "/nowhere/maker.cti"}]}, (), "GenTL producer /nowhere/maker.cti does not "
     "exist", "set cti to the .cti file"),
    ({"cameras": [{"name": "top"}]}, (), "cameras.0.serial: Field required", "fix the named fields"),
    ({"publish": {}}, ("publish-test",), "names no publisher", "add publish.opcua"),
])
def test_bad_input_is_refused_at_start_in_one_line(tmp_path: Path, config: dict[str, object], args: tuple[str, ...],
                                                   says: str, fix: str) -> None:
    ws = _write(tmp_path / "ws", config)
    code, out, err = _invoke("line", *(args or ("check",)), "-w", ws)
    assert code == 1 and "Traceback" not in out + err
    flat = " ".join(err.split())
    assert says in flat and fix in flat


def test_an_unreachable_modbus_plc_is_the_only_line_on_stderr(tmp_path: Path) -> None:
    """In a real process: pymodbus logs each failed connection itself, to the stderr it found at import
    (CliRunner cannot see that); the station says it once, with the fix."""
    import os
    import subprocess
    import sys

    ws = _write(tmp_path / "ws", {"publish": {"modbus": {"host": "127.0.0.1", "port": 1, "registers": {"decision": 0},
                                                         "timeout_s": 1}}})
    src = str(Path(__file__).resolve().parents[2] / "src")
    run = subprocess.run([sys.executable, "-c", "from inspectloop.cli import main; main()", "line", "check", "-w",
                          str(ws)], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": src, "COLUMNS": "300"})
    assert run.returncode == 1
    assert run.stderr.splitlines()[0] == ("error: cannot reach the PLC's Modbus TCP server at 127.0.0.1:1 (device 1): "
                                          "Connection refused")


def test_a_model_that_needs_colour_refuses_a_mono_camera(tmp_path: Path) -> None:
    from tests.runtime.helpers import restamped

    ws = _write(tmp_path / "ws", {"cameras": [_camera(pixel_format="Mono8")]})
    code, _, err = _invoke("line", "check", "-w", ws, "--model", restamped(tmp_path, colour_mode="RGB"))
    assert code == 1 and "greyscale but the model was trained on colour" in " ".join(err.split())
