"""``inspectloop run`` end to end: pylon's emulated Basler camera serving image files, the tiny exported
model in production, a real MQTT broker (amqtt) and a real OPC UA server read by a real client."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

pytest.importorskip("torch", reason="the tiny model fixture is trained and exported with torch")
pytest.importorskip("pypylon.pylon", reason="pypylon (the 'camera' extra) is not installed")
pytest.importorskip("paho.mqtt.client", reason="paho-mqtt (the 'line' extra) is not installed")
pytest.importorskip("asyncua", reason="asyncua (the 'line' extra) is not installed")
pytest.importorskip("amqtt.broker", reason="amqtt (the dev extra's test broker) is not installed")

import paho.mqtt.client as mqtt  # noqa: E402
from asyncua import Client  # noqa: E402

from inspectloop.cli.app import app  # noqa: E402
from inspectloop.errors import AcquisitionError  # noqa: E402
from inspectloop.line.acquire.basler import BaslerCamera  # noqa: E402
from inspectloop.line.config import parse_line_config  # noqa: E402
from inspectloop.line.outbox import Entry  # noqa: E402
from inspectloop.line.run import PartReport, RunOptions, Station, run_station  # noqa: E402
from inspectloop.serve.service import ServiceConfig  # noqa: E402
from inspectloop.workspace import Workspace  # noqa: E402
from tests.line.brokers import CuttableLink, free_port, mqtt_broker  # noqa: E402
from tests.runtime.helpers import synthetic_image  # noqa: E402
from tests.service_helpers import line_workspace  # noqa: E402

SIZE = 80  # the tiny model's synthetic images


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    line = line_workspace(tmp_path / "ws")
    yield line.workspace
    line.workspace.close()


@pytest.fixture
def frames(tmp_path: Path) -> Path:
    """The files the emulated camera serves in turn: good surfaces and scratched ones."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, label in enumerate(("good", "scratch", "good", "dark")):
        synthetic_image(label, i, size=SIZE, mode="RGB").save(folder / f"{i}-{label}.png")
    return folder


def _camera(frames: Path, **changes: object) -> dict[str, object]:
    return {"name": "top", "serial": "0815-0000", "exposure_us": 800, "timeout_ms": 1000, "pixel_format": "RGB8Packed",
            "roi": {"width": SIZE, "height": SIZE}, "image_files": str(frames)} | changes


def _journal(workspace: Workspace, station: str = "station1") -> list[Entry]:
    path = workspace.root / "line" / station / "decisions.jsonl"
    return [Entry.from_json(line) for line in path.read_text().splitlines()]


def _logged(workspace: Workspace, request_id: str) -> Any:
    return workspace.db.predictions.by_request(request_id)


def _running(workspace: Workspace, line: Any, options: RunOptions,
             decided: int = 3) -> tuple[threading.Thread, dict[str, Any]]:
    """``run_station`` in a thread, returned once ``decided`` parts are decided: a fault injected next lands
    mid-run however slowly a loaded machine starts the station. ``outcome["summary"]`` once it ends."""
    outcome: dict[str, Any] = {}
    going, count = threading.Event(), itertools.count(1)

    def on_part(_: PartReport) -> None:
        if next(count) == decided:
            going.set()

    runner = threading.Thread(target=lambda: outcome.update(
        summary=run_station(workspace, line, options, on_part=on_part)))
    runner.start()
    assert going.wait(60), f"the station decided fewer than {decided} parts in 60 s"
    return runner, outcome


class Subscriber:
    """A line controller listening on MQTT: every message received, in order."""

    def __init__(self, port: int, topic: str) -> None:
        self.messages: queue.Queue[dict[str, Any]] = queue.Queue()
        subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="plc")
        self.client.on_message = lambda c, u, message: self.messages.put(json.loads(message.payload))
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(topic, qos=1)
        self.client.loop_start()
        assert subscribed.wait(10)

    def received(self, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        """Wait for ``count`` distinct parts; every message received, repeats included."""
        got: list[dict[str, Any]] = []
        end = time.monotonic() + timeout
        while len({m["part_id"] for m in got}) < count and time.monotonic() < end:
            try:
                got.append(self.messages.get(timeout=0.2))
            except queue.Empty:
                continue
        return got

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


async def _opcua_result(endpoint: str) -> tuple[int, str, str]:
    async with Client(url=endpoint, timeout=10) as client:
        index = await client.get_namespace_index("urn:inspectloop:line")
        values = [await (await client.nodes.objects.get_child([f"{index}:station1", f"{index}:{name}"])).read_value()
                  for name in ("Sequence", "PartId", "Decision")]
        return int(values[0]), str(values[1]), str(values[2])


def test_parts_are_decided_published_and_logged_alike(workspace: Workspace, frames: Path) -> None:
    port, endpoint = free_port(), f"opc.tcp://127.0.0.1:{free_port()}/inspectloop/"
    line = parse_line_config({"cameras": [_camera(frames, timeout_ms=5000)], "publish": {
        "mqtt": {"host": "127.0.0.1", "port": port, "topic": "line/decision"}, "opcua": {"endpoint": endpoint},
        "deadline_ms": 5000}})
    reports: list[PartReport] = []
    with mqtt_broker(port):
        plc = Subscriber(port, "line/decision")
        # As many slots as parts and a patient camera: a loaded CI machine must not drop a part here
        # (dropping is its own test below).
        with Station(workspace, line, RunOptions(parts=8, rate_hz=20, in_flight=8)) as station:
            summary = station.run(reports.append)
            assert all(d.drain(10) for d in station.deliveries)
            sequence, last_part, last_decision = asyncio.run(_opcua_result(endpoint))
        published = plc.received(8)
        plc.close()
    journal = _journal(workspace)
    assert [m["part_id"] for m in published] == [e.decision.part_id for e in journal] == \
        [r.entry.decision.part_id for r in reports]
    assert (sequence, last_part, last_decision) == (8, journal[-1].decision.part_id, journal[-1].decision.decision)
    assert [e.reason for e in journal] == ["model"] * 8
    for message, entry in zip(published, journal, strict=True):
        logged = _logged(workspace, entry.requests[0])
        assert not message["late"]
        assert (message["decision"], message["label"]) == (logged.decision, logged.label)
        assert message["confidence"] == pytest.approx(logged.confidence)
        assert (logged.camera, logged.part_id, logged.source) == ("top", message["part_id"], "line")
        assert logged.extra["serial"] == "0815-0000" and logged.extra["frame_counter"] == str(message["frame_counter"])
    assert {m["decision"] for m in published} >= {"pass", "reject"}  # the scratched frames are caught
    assert summary.parts == 8 and summary.passed + summary.rejected + summary.reviewed == 8
    assert summary.late == summary.failed == summary.dropped == 0 and summary.undelivered == {
        d: 0 for d in summary.undelivered}
    assert summary.latency_p50_ms is not None and 0 < summary.latency_p50_ms <= summary.latency_p95_ms
    folder = workspace.root / "line" / "station1"
    assert json.loads((folder / "last-run.json").read_text())["parts"] == 8
    assert sum(json.loads((folder / "status.json").read_text())["decisions"].values()) >= 1  # for the dashboard


def test_a_capture_set_of_two_cameras_and_two_lights_is_one_decision_the_worst(workspace: Workspace,
                                                                                  tmp_path: Path) -> None:
    good, scratched = tmp_path / "good", tmp_path / "scratched"
    for folder, label in ((good, "good"), (scratched, "scratch")):
        folder.mkdir()
        synthetic_image(label, 7, size=SIZE, mode="RGB").save(folder / "0.png")
    line = parse_line_config({
        "cameras": [_camera(good), _camera(scratched, name="side", serial="0815-0001")],
        "capture_set": {"cameras": ["top", "side"], "frames_per_camera": 2}, "publish": {"deadline_ms": 5000}})
    summary = run_station(workspace, line, RunOptions(parts=2, rate_hz=10))
    for entry in _journal(workspace):
        part = entry.decision.part_id
        assert entry.requests == tuple(f"{part}.{camera}.{light}" for light in (0, 1) for camera in ("top", "side"))
        rows = [_logged(workspace, request) for request in entry.requests]
        assert {row.lighting for row in rows} == {"light0", "light1"} and {row.part_id for row in rows} == {part}
        assert entry.decision.frames == 4 and entry.decision.decision == "reject"  # the side camera's scratch
        assert entry.decision.source == "side"
    assert summary.parts == 2


def test_a_missed_deadline_publishes_the_fail_safe_never_a_pass(workspace: Workspace, frames: Path) -> None:
    line = parse_line_config({"cameras": [_camera(frames)],
                              "publish": {"deadline_ms": 0.01, "fail_safe": "review"}})
    summary = run_station(workspace, line, RunOptions(parts=4))
    journal = _journal(workspace)
    assert [(e.decision.decision, e.decision.late, e.reason) for e in journal] == [("review", True, "late")] * 4
    assert summary.late == 4 and summary.reviewed == 4 and summary.passed == 0
    # a late part's inference is cancelled if it has not started (no backlog builds up); one that had
    # started finishes and its answer is logged, but the line heard the fail-safe
    logged = [_logged(workspace, e.requests[0]) for e in journal]
    assert all(row is None or row.decision in ("pass", "reject", "review") for row in logged)


def test_broker_cut_mid_run_loses_no_decision_and_keeps_order(workspace: Workspace, frames: Path) -> None:
    broker_port, station_port = free_port(), free_port()
    link = CuttableLink(station_port, broker_port)
    line = parse_line_config({"cameras": [_camera(frames)], "publish": {
        "mqtt": {"host": "127.0.0.1", "port": station_port, "topic": "line/decision", "connect_timeout_s": 1},
        "deadline_ms": 5000}})
    parts = 24
    with mqtt_broker(broker_port):
        plc = Subscriber(broker_port, "line/decision")  # the line controller's own link never breaks
        link.restore()
        runner, outcome = _running(workspace, line, RunOptions(parts=parts, rate_hz=12))
        link.cut()
        time.sleep(1.2)  # parts keep coming while the broker cannot be reached
        link.restore()
        runner.join(60)
        published = plc.received(parts)
        plc.close()
        link.cut()
    first_seen = list(dict.fromkeys(m["part_id"] for m in published))  # at least once: a repeat may follow a cut
    assert first_seen == [e.decision.part_id for e in _journal(workspace)] and len(first_seen) == parts
    target = f"MQTT 127.0.0.1:{station_port} topic line/decision"
    assert outcome["summary"].undelivered == {target: 0} and outcome["summary"].publish_failures[target] > 0


def test_parts_beyond_the_in_flight_bound_are_dropped_with_the_fail_safe(workspace: Workspace, frames: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    slow = Station._inspect

    def slow_inspect(station: Station, part: Any) -> Any:
        time.sleep(0.3)  # inference slower than the parts come
        return slow(station, part)

    monkeypatch.setattr(Station, "_inspect", slow_inspect)
    line = parse_line_config({"cameras": [_camera(frames)], "publish": {"deadline_ms": 5000}})
    summary = run_station(workspace, line, RunOptions(parts=6, rate_hz=20, in_flight=1))
    journal = _journal(workspace)
    dropped = [e for e in journal if e.reason == "dropped"]
    assert summary.dropped == len(dropped) >= 3 and summary.parts == 6
    assert all(e.decision.decision == "reject" and e.decision.late and not e.requests for e in dropped)
    assert all(_logged(workspace, f"{e.decision.part_id}.top.0") is None for e in dropped)  # never inspected


def test_a_hardware_triggered_line_standing_still_ends_on_the_time_bound(workspace: Workspace, frames: Path) -> None:
    """A station waiting for its first hardware trigger never looked at the clock: --seconds never ended it."""
    line = parse_line_config({"cameras": [_camera(frames, trigger="hardware", timeout_ms=200)]})
    started = time.monotonic()
    summary = run_station(workspace, line, RunOptions(seconds=1.0))
    assert summary.parts == 0 and summary.ended == "1 s done" and summary.fault is None
    assert time.monotonic() - started < 10


def test_a_journal_that_cannot_be_written_stops_the_station(workspace: Workspace, frames: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from inspectloop.line.outbox import DecisionJournal

    real = DecisionJournal.append

    def disk_full_after_two(journal: DecisionJournal, *args: Any, **kwargs: Any) -> Entry:
        if journal.last_seq >= 2:
            raise OSError(28, "No space left on device")
        return real(journal, *args, **kwargs)

    monkeypatch.setattr(DecisionJournal, "append", disk_full_after_two)
    line = parse_line_config({"cameras": [_camera(frames)], "publish": {"deadline_ms": 5000}})
    summary = run_station(workspace, line, RunOptions(parts=50, rate_hz=20))
    assert summary.parts == 2 and summary.ended == "decision journal fault"
    assert "No space left on device" in (summary.fault or "") and "free disk space" in (summary.fault_fix or "")


def test_a_camera_that_stops_delivering_ends_the_run_with_the_fault(workspace: Workspace, frames: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    real = BaslerCamera.retrieve
    delivered = {"n": 0}

    def stops_after_two(camera: BaslerCamera) -> Any:
        delivered["n"] += 1
        if delivered["n"] > 2:
            raise AcquisitionError("camera top: no frame within 1000 ms", "check the trigger wiring")
        return real(camera)

    monkeypatch.setattr(BaslerCamera, "retrieve", stops_after_two)
    line = parse_line_config({"cameras": [_camera(frames)], "publish": {"deadline_ms": 5000}})
    summary = run_station(workspace, line, RunOptions(parts=50, max_missed=3))
    reasons = [e.reason for e in _journal(workspace)]
    assert reasons == ["model", "model", "no_frame", "no_frame", "no_frame"]
    assert summary.no_frame == 3 and summary.rejected >= 3  # the fail-safe (reject by default) for each
    assert summary.fault is not None and "no frame within 1000 ms" in summary.fault


def test_a_plc_down_mid_run_gets_the_latest_decision_once_back(workspace: Workspace, frames: Path) -> None:
    from tests.line.publish.test_plc import FakePlc

    endpoint = f"opc.tcp://127.0.0.1:{free_port()}/plc/"
    nodes = {"decision": "ns=2;s=Inspection.Decision", "part_id": "ns=2;s=Inspection.PartId",
             "sequence": "ns=2;s=Inspection.Sequence"}
    line = parse_line_config({"cameras": [_camera(frames)], "publish": {
        "plc": {"endpoint": endpoint, "nodes": nodes, "timeout_s": 1}, "deadline_ms": 5000}})
    plc = FakePlc(endpoint)
    runner, outcome = _running(workspace, line, RunOptions(parts=16, rate_hz=8, drain_s=30))
    plc.stop()  # the PLC reboots: its OPC UA server is gone for a while
    time.sleep(1.0)
    plc = FakePlc(endpoint)
    runner.join(60)
    last = _journal(workspace)[-1].decision
    try:
        assert plc.read()["PartId"] == last.part_id
    finally:
        plc.stop()
    target = f"PLC OPC UA {endpoint}"
    assert outcome["summary"].undelivered == {target: 0} and outcome["summary"].publish_failures[target] > 0


def test_a_modbus_plc_down_mid_run_gets_every_decision_in_order_once_back(workspace: Workspace,
                                                                           frames: Path) -> None:
    """The station's outbox behind the Modbus writer: a real pymodbus server stopped mid-run and started again
    receives every journaled decision, in order, sequence 1..N with no gap, each with its class index."""
    pytest.importorskip("pymodbus", reason="pymodbus (the 'line' extra) is not installed")
    from tests.line.brokers import ModbusPlc
    from tests.line.publish.test_modbus import MAP, _sent

    plc = ModbusPlc(free_port())
    plc.start()
    line = parse_line_config({"cameras": [_camera(frames)], "publish": {
        "modbus": {"host": "127.0.0.1", "port": plc.port, "registers": MAP, "part_id_registers": 4, "timeout_s": 1},
        "deadline_ms": 5000}})
    try:
        runner, outcome = _running(workspace, line, RunOptions(parts=16, rate_hz=8, drain_s=30))
        plc.stop()  # the PLC's network is down for a while; its registers stay
        time.sleep(1.0)
        plc.start()
        runner.join(60)
    finally:
        plc.close()
    journal = _journal(workspace)
    assert _sent(plc) == [(n, e.decision.part_id[-8:]) for n, e in enumerate(journal, 1)] and len(journal) == 16
    assert plc.registers(MAP["class_index"], 1) == [journal[-1].decision.class_index]
    target = f"PLC Modbus TCP 127.0.0.1:{plc.port} (device 1)"
    assert outcome["summary"].undelivered == {target: 0} and outcome["summary"].publish_failures[target] > 0


def test_undelivered_decisions_wait_in_the_outbox_for_the_next_start(workspace: Workspace, frames: Path) -> None:
    port = free_port()
    link = CuttableLink(free_port(), port)
    line = parse_line_config({"cameras": [_camera(frames)], "publish": {
        "mqtt": {"host": "127.0.0.1", "port": link.port, "topic": "t", "connect_timeout_s": 2},
        "deadline_ms": 5000}})
    with mqtt_broker(port):
        link.restore()
        with Station(workspace, line, RunOptions(parts=3, drain_s=0.5)) as station:
            link.cut()  # the broker is gone before the first part
            first = station.run()
        assert sum(first.undelivered.values()) == 3
        plc = Subscriber(port, "t")
        link.restore()
        second = run_station(workspace, line, RunOptions(parts=2))
        published = plc.received(5)
        plc.close()
        link.cut()
    assert [m["part_id"] for m in published] == [e.decision.part_id for e in _journal(workspace)]
    assert sum(second.undelivered.values()) == 0


def test_a_video_file_is_inspected_part_by_part_until_it_ends(workspace: Workspace, tmp_path: Path) -> None:
    av = pytest.importorskip("av", reason="PyAV (the 'camera' extra) is not installed")
    clip = tmp_path / "feed.mkv"
    with av.open(str(clip), "w") as container:
        stream = container.add_stream("ffv1", rate=10)
        stream.width, stream.height, stream.pix_fmt = SIZE, SIZE, "bgr0"
        for i in range(6):
            image = synthetic_image("scratch" if i % 3 == 1 else "good", i, size=SIZE, mode="RGB")
            frame = av.VideoFrame.from_image(image).reformat(format="bgr0")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    line = parse_line_config({"video": [{"name": "feed", "url": str(clip), "sample_hz": 10}],
                              "publish": {"deadline_ms": 5000}})
    summary = run_station(workspace, line, RunOptions(parts=100))
    journal = _journal(workspace)
    assert summary.parts == len(journal) == 6 and summary.ended == "video feed ended after 6 part(s)"
    assert [e.decision.source for e in journal] == ["feed"] * 6 and summary.rejected >= 2


def test_a_promotion_mid_run_is_picked_up_between_parts(workspace: Workspace, frames: Path) -> None:
    from inspectloop.registry import promote
    from tests.service_helpers import add_version, review_model_bytes

    candidate = add_version(workspace, "run-b", review_model_bytes())  # sends every part to review
    line = parse_line_config({"cameras": [_camera(frames)], "publish": {"deadline_ms": 5000}})
    promoted = threading.Event()

    def promote_after_two(report: PartReport) -> None:
        if report.entry.seq == 2:
            promote(workspace, candidate.name, "production", actor="ana", reason="test", override=True)
            promoted.set()

    with Station(workspace, line, RunOptions(seconds=30, rate_hz=10), ServiceConfig(poll_seconds=0.1)) as station:
        def stop_once_reviewed(report: PartReport) -> None:
            promote_after_two(report)
            if promoted.is_set() and report.entry.decision.decision == "review":
                station.stop()
        summary = station.run(stop_once_reviewed)
    models = [_logged(workspace, e.requests[0]).model_name for e in _journal(workspace)]
    assert models[0] != models[-1] == candidate.name and summary.reviewed >= 1
    assert summary.ended == "stopped" and summary.seconds < 20


runner = CliRunner()


def _write(workspace: Workspace, config: dict[str, Any]) -> Path:
    (workspace.root / "line.yaml").write_text(yaml.safe_dump(config))
    return workspace.root


def test_cli_logs_one_line_per_part_and_a_summary(workspace: Workspace, frames: Path) -> None:
    ws = _write(workspace, {"cameras": [_camera(frames)], "publish": {"deadline_ms": 5000}})
    result = runner.invoke(app, ["run", "-w", str(ws), "--parts", "3", "--rate", "20"])
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert sum(" frames=1 counter=" in line for line in lines) == 3
    assert "3 part(s) in" in result.stdout and "trigger to published: p50" in result.stdout
    assert "ended: 3 part(s) done" in result.stdout


RGB_CAMERA = {"name": "top", "serial": "0815-0000", "exposure_us": 800, "pixel_format": "RGB8Packed"}


@pytest.mark.parametrize(("config", "args", "says", "fix"), [
    ({"cameras": [RGB_CAMERA | {"serial": "4711-0000"}]}, (), "no camera with serial 4711-0000",
     "inspectloop line cameras"),
    ({"cameras": [RGB_CAMERA | {"pixel_format": "Mono8"}]}, (), "greyscale but the model was trained on colour",
     "set pixel_format to a colour format"),
    ({"cameras": [RGB_CAMERA | {"exposure_us": 9e9}]}, (), "exposure_us 9e+09 is outside the camera's range",
     "set exposure_us between"),
    ({"cameras": [{"name": "top"}]}, (), "cameras.0.serial: Field required", "fix the named field"),
    ({"cameras": []}, (), "names no camera and no video source", "add cameras"),
    ({"cameras": [RGB_CAMERA]}, ("--model", "missing.onnx"), "missing.onnx", ""),
    ({"cameras": [RGB_CAMERA], "publish": {"mqtt": {"host": "127.0.0.1", "port": 1, "connect_timeout_s": 1}}}, (),
     "cannot reach the MQTT broker at 127.0.0.1:1", "start the broker"),
    ({"cameras": [RGB_CAMERA], "publish": {"opcua": {"endpoint": "opc.tcp://192.0.2.1:4840/x/"}}}, (),
     "cannot serve OPC UA at", "an address of this machine"),
    ({}, ("--parts", "0"), "--parts must be at least 1", "inspectloop run --parts"),
    ({}, ("--station", "../x"), "station name '../x'", ""),
])
def test_bad_input_is_refused_at_start_in_one_line(workspace: Workspace, config: dict[str, Any],
                                                   args: tuple[str, ...], says: str, fix: str) -> None:
    ws = _write(workspace, config)
    result = runner.invoke(app, ["run", "-w", str(ws), *args])
    assert result.exit_code == 1 and "Traceback" not in result.stdout + result.stderr
    flat = " ".join(result.stderr.split())
    assert says in flat and fix in flat


def test_sigterm_stops_the_station_cleanly(workspace: Workspace, frames: Path) -> None:
    ws = _write(workspace, {"cameras": [_camera(frames)], "publish": {"deadline_ms": 5000}})
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYLON_CAMEMU": "2"}
    process = subprocess.Popen([sys.executable, "-c", "from inspectloop.cli import main; main()", "run", "-w",
                                str(ws), "--rate", "10"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=env, text=True)
    assert process.stdout is not None
    for line in process.stdout:  # the first part's line: the station is running
        if " frames=1 " in line:
            break
    process.send_signal(signal.SIGTERM)
    rest, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "ended: stopped" in rest and "Traceback" not in err
    parts = len(_journal(workspace))
    assert f"{parts} part(s) in" in rest


async def _opcua_suspect(endpoint: str) -> bool:
    async with Client(url=endpoint, timeout=10) as client:
        index = await client.get_namespace_index("urn:inspectloop:line")
        node = await client.nodes.objects.get_child([f"{index}:station1", f"{index}:Suspect"])
        return bool(await node.read_value())


def test_a_camera_that_failed_its_health_check_makes_every_published_decision_suspect(
        workspace: Workspace, frames: Path, tmp_path: Path) -> None:
    from tests.camera.targets import fail_camera_check

    fail_camera_check(workspace, "top", tmp_path / "targets")
    port, endpoint = free_port(), f"opc.tcp://127.0.0.1:{free_port()}/inspectloop/"
    line = parse_line_config({"cameras": [_camera(frames)], "publish": {
        "mqtt": {"host": "127.0.0.1", "port": port, "topic": "line/decision"}, "opcua": {"endpoint": endpoint},
        "deadline_ms": 5000}})
    with mqtt_broker(port):
        plc = Subscriber(port, "line/decision")
        with Station(workspace, line, RunOptions(parts=3, rate_hz=10)) as station:
            station.run()
            assert all(d.drain(10) for d in station.deliveries)
            on_server = asyncio.run(_opcua_suspect(endpoint))
        published = plc.received(3)
        plc.close()
    assert [m["suspect"] for m in published] == [True] * 3 and on_server
    assert all(_logged(workspace, e.requests[0]).suspect for e in _journal(workspace))
    # a fail-safe answer for a part of that camera says so too
    late = parse_line_config({"cameras": [_camera(frames)], "publish": {"deadline_ms": 0.01}})
    run_station(workspace, late, RunOptions(parts=2, station="late"))
    assert [(e.reason, e.decision.suspect) for e in _journal(workspace, "late")] == [("late", True)] * 2


def test_a_trusted_camera_publishes_decisions_not_suspect(workspace: Workspace, frames: Path) -> None:
    line = parse_line_config({"cameras": [_camera(frames)], "publish": {"deadline_ms": 5000}})
    run_station(workspace, line, RunOptions(parts=2))
    assert [e.decision.suspect for e in _journal(workspace)] == [False, False]
