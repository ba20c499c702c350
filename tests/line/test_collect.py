"""Collection mode: pylon's emulated Basler camera serving distinct frames, a real MQTT broker (amqtt) and a
real OPC UA server (asyncua) as the existing QC's reject marks; with no model, and beside the tiny model."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("pypylon.pylon", reason="pypylon (the 'camera' extra) is not installed")
pytest.importorskip("paho.mqtt.client", reason="paho-mqtt (the 'line' extra) is not installed")
pytest.importorskip("asyncua", reason="asyncua (the 'line' extra) is not installed")
pytest.importorskip("amqtt.broker", reason="amqtt (the dev extra's test broker) is not installed")

import paho.mqtt.client as mqtt  # noqa: E402
import yaml  # noqa: E402

from inspectloop.cli.app import app  # noqa: E402
from inspectloop.errors import AcquisitionError, LineConfigError, QcSourceError  # noqa: E402
from inspectloop.domain import CaptureMeta, ImageRecord, ImageSource  # noqa: E402
from inspectloop.ingest import measure_image  # noqa: E402
from inspectloop.store.blobs import sha256_bytes  # noqa: E402
from inspectloop.line.acquire.frame import Frame  # noqa: E402
from inspectloop.line.collect import Collector, Sampler  # noqa: E402
from inspectloop.line.config import CollectConfig, parse_line_config  # noqa: E402
from inspectloop.line.parts import Part  # noqa: E402
from inspectloop.line.qc_marks import parse_mark  # noqa: E402
from inspectloop.line.run import RunOptions, Station, run_station  # noqa: E402
from inspectloop.workspace import Workspace, init_workspace  # noqa: E402
from tests.line.brokers import free_port, mqtt_broker  # noqa: E402
from tests.runtime.helpers import synthetic_image  # noqa: E402
from tests.service_helpers import line_workspace  # noqa: E402

SIZE = 80
LABELS = ("good", "scratch", "good", "dark", "good", "scratch", "good", "good")


@pytest.fixture
def frames(tmp_path: Path) -> Path:
    """Eight distinct frames the emulated camera serves in turn (file i is part i+1's frame)."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, label in enumerate(LABELS):
        synthetic_image(label, i, size=SIZE, mode="RGB").save(folder / f"{i}-{label}.png")
    return folder


@pytest.fixture
def bare(tmp_path: Path) -> Iterator[Workspace]:
    """A new line's workspace: no model, no images."""
    workspace = init_workspace(tmp_path / "bare")
    yield workspace
    workspace.close()


def _camera(frames: Path, **changes: object) -> dict[str, object]:
    return {"name": "top", "serial": "0815-0000", "exposure_us": 800, "gain_db": 1.0, "timeout_ms": 1000,
            "pixel_format": "RGB8Packed", "roi": {"width": SIZE, "height": SIZE}, "image_files": str(frames)} | changes


def _collected(workspace: Workspace) -> dict[str, ImageRecord]:
    """Collected images by part id."""
    return {r.meta.part_id or "": r for r in workspace.db.images.get_many().values() if "collected" in r.meta.extra}


def _part_number(record: ImageRecord) -> int:
    return int((record.meta.part_id or "").rsplit("-", 1)[1])


class QcPublisher:
    """The existing QC, announcing rejects on MQTT."""

    def __init__(self, port: int) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="qc")
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def send(self, payload: Any) -> None:
        text = payload if isinstance(payload, str) else json.dumps(payload)
        self.client.publish("qc/reject", text, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


# -- pure parts ------------------------------------------------------------------------------------------

def test_every_nth_part_is_sampled() -> None:
    sampler = Sampler(every=3)
    assert [n for n in range(1, 13) if sampler.take()] == [3, 6, 9, 12]


def test_a_seeded_fraction_samples_the_same_parts_and_about_that_share() -> None:
    first = [Sampler(fraction=0.1, seed=4).take() for _ in range(1)]
    a, b = Sampler(fraction=0.1, seed=4), Sampler(fraction=0.1, seed=4)
    picks = [a.take() for _ in range(5000)]
    assert picks == [b.take() for _ in range(5000)] and first[0] == picks[0]
    assert 0.085 < sum(picks) / len(picks) < 0.115
    assert picks != [Sampler(fraction=0.1, seed=5).take() for _ in range(5000)]


@pytest.mark.parametrize(("payload", "part_id", "counter", "camera"), [
    ('{"part_id": "s1-000042"}', "s1-000042", None, None),
    ('{"frame_counter": 42, "camera": "side"}', None, 42, "side"),
    (b"42", None, 42, None),
    ("P-7", "P-7", None, None),
    (17, None, 17, None),
])
def test_qc_marks_are_read_from_json_or_a_bare_value(payload: Any, part_id: str | None, counter: int | None,
                                                    camera: str | None) -> None:
    mark = parse_mark(payload, "test", received=100.0)
    assert (mark.part_id, mark.frame_counter, mark.camera, mark.at) == (part_id, counter, camera, 100.0)


@pytest.mark.parametrize("payload", ['{}', '{"frame_counter": "x"}', '{"part_id": "a", "at": "yesterday"}', ""])
def test_a_qc_mark_naming_no_part_is_refused(payload: str) -> None:
    with pytest.raises(ValueError):
        parse_mark(payload, "test")


@pytest.mark.parametrize("fraction", [0, -0.1, 1.5])
def test_a_sample_fraction_outside_0_1_is_refused_with_the_fix(fraction: float) -> None:
    with pytest.raises(LineConfigError) as caught:
        parse_line_config({"collect": {"fraction": fraction}})
    assert "collect.fraction" in caught.value.message and "outside (0, 1]" in caught.value.message
    assert "e.g. 0.05" in caught.value.message


@pytest.mark.parametrize(("collect", "words"), [
    ({}, "would store nothing"), ({"every": 2, "fraction": 0.5}, "keep one"),
    ({"qc": {"window_s": 5}}, "names no source"),
    ({"qc": {"opcua": {"endpoint": "opc.tcp://x:4840", "node": "ns=2;i=1", "camera": "nope"}}}, "unknown source nope"),
])
def test_a_collect_section_that_cannot_work_is_refused(collect: dict[str, Any], words: str, frames: Path) -> None:
    with pytest.raises(LineConfigError, match=words):
        parse_line_config({"cameras": [_camera(frames)], "collect": collect})


# -- collection only (no model) -------------------------------------------------------------------------

def test_collection_only_stores_the_sample_and_every_qc_reject_with_metadata(bare: Workspace, frames: Path) -> None:
    port = free_port()
    line = parse_line_config({"cameras": [_camera(frames)], "collect": {
        "every": 3, "session": "week1", "qc": {"mqtt": {"host": "127.0.0.1", "port": port}, "window_s": 30}}})
    with mqtt_broker(port):
        qc = QcPublisher(port)

        def started(station: Station) -> None:
            assert station.service is None and station.collector is not None
            qc.send({"frame_counter": 2})  # before its part: waits for it
            qc.send("999")  # a counter no part will have: unmatched
            qc.send("{}")  # names no part: unreadable, counted
            prefix = station.parts.prefix if station.parts else ""

            def late_mark() -> None:  # after its part, as a QC station further down the line sends it
                while station.collector is not None and station.collector.counts.captured < 5:
                    time.sleep(0.02)
                qc.send({"part_id": f"{prefix}-000005"})

            threading.Thread(target=late_mark, daemon=True).start()

        summary = run_station(bare, line, RunOptions(parts=8, rate_hz=4, collect_only=True), on_start=started)
        qc.close()
    collected = _collected(bare)
    assert {n: r.meta.extra["collected"] for n, r in ((_part_number(r), r) for r in collected.values())} == \
        {2: "qc_reject", 3: "sample", 5: "qc_reject", 6: "sample"}
    record = next(r for r in collected.values() if _part_number(r) == 5)
    assert (record.meta.camera, record.meta.line, record.meta.session, record.meta.lighting) == \
        ("top", "station1", "week1", "light0")
    extra = record.meta.extra
    assert (extra["serial"], extra["frame_counter"], extra["camera_exposure_us"], extra["camera_gain_db"],
            extra["camera_pixel_format"], extra["sampled"]) == ("0815-0000", "5", "800.0", "1.0", "RGB8Packed", "false")
    assert extra["qc_mark_source"].startswith("MQTT 127.0.0.1") and float(extra["qc_mark_delay_s"]) >= 0
    assert record.meta.captured_at is not None and record.source == "collection"
    assert bare.blobs.exists(record.sha256) and (record.width, record.height) == (SIZE, SIZE)
    assert bare.db.images.sources(record.sha256) == [f"station1/qc_reject/{record.meta.part_id}.top.0.ppm"]
    counts = summary.collection
    assert counts is not None and summary.parts == 0  # nothing decided: no model
    assert (counts["captured"], counts["sample"], counts["qc_reject"], counts["added"]) == (8, 2, 2, 4)
    assert (counts["marks"], counts["matched"], counts["unmatched"], counts["bad_marks"]) == (3, 2, 1, 1)
    assert counts["write_ms"] > 0 and counts["sample_skipped"] == counts["store_failures"] == 0
    assert any("collected: 8 captured, 2 stored as sample, 2 stored as QC reject" in line for line in summary.lines())
    status = json.loads((bare.root / "line" / "station1" / "status.json").read_text())
    assert status["collection"]["qc_reject"] == 2  # for the dashboard


def test_frames_already_stored_are_counted_never_replaced(bare: Workspace, frames: Path) -> None:
    line = parse_line_config({"cameras": [_camera(frames)], "collect": {"every": 1, "session": "first"}})
    run_station(bare, line, RunOptions(parts=3, collect_only=True))
    before = {r.sha256: r for r in _collected(bare).values()}
    again = parse_line_config({"cameras": [_camera(frames)], "collect": {"every": 1, "session": "second"}})
    summary = run_station(bare, again, RunOptions(parts=3, collect_only=True))  # the emulator starts over
    assert summary.collection is not None
    assert (summary.collection["added"], summary.collection["already_stored"]) == (0, 3)
    after = {r.sha256: r for r in _collected(bare).values()}
    assert after.keys() == before.keys() and {r.meta.session for r in after.values()} == {"first"}
    assert all(len(bare.db.images.sources(digest)) == 2 for digest in after)  # the second run: another source


def test_a_frame_the_inspection_service_kept_first_gains_the_collection_fields(bare: Workspace) -> None:
    # Beside a model, a part sent to review is kept by the service's prediction log too; whichever writer
    # comes first, the stored part must read as collected (the service's own fields stay as they were).
    frame = Frame(np.full((SIZE, SIZE, 3), 90, np.uint8), "top", 1, datetime.now(UTC), serial="0815-0000")
    part = Part("station1-000001", time.monotonic(), [frame], [0])
    kept = measure_image(frame.encoded(), sha256_bytes(frame.encoded()),
                         CaptureMeta(camera="top", line="station1", part_id=part.part_id, extra={"serial": "kept"}),
                         ImageSource.collection)
    bare.db.images.add_once(kept, bare.db.images.begin_ingest("prediction log", "service"))
    collector = Collector(bare, CollectConfig(every=1, session="first-week"), station="station1", session="s")
    collector.start()
    collector.offer(part)
    collector.close()
    record = bare.db.images.get(kept.sha256)
    assert record is not None and collector.counts.to_dict()["already_stored"] == 1
    assert record.meta.session == "first-week" and record.meta.extra["collected"] == "sample"
    assert record.meta.extra["serial"] == "kept"  # a value recorded first is never replaced
    assert len(bare.db.images.sources(kept.sha256)) == 1  # the sample's path


def test_a_failed_write_is_counted_and_the_writer_goes_on_storing(bare: Workspace,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    collector = Collector(bare, CollectConfig(every=1), station="station1", session="s")
    failures = iter([RuntimeError("database is locked"), None, None])
    real_write = collector._write

    def flaky_write(batch: list[Any]) -> None:
        if (failure := next(failures)) is not None:
            raise failure
        real_write(batch)

    monkeypatch.setattr(collector, "_write", flaky_write)
    collector.start()
    for n in (1, 2, 3):
        frame = Frame(np.full((SIZE, SIZE), 40 * n, np.uint8), "top", n, datetime.now(UTC))
        collector.offer(Part(f"station1-00000{n}", time.monotonic(), [frame], [0]))
        deadline = time.monotonic() + 30
        while n == 1 and collector.counts.store_failures == 0 and time.monotonic() < deadline:
            time.sleep(0.01)  # the first part's write fails alone
    collector.close()
    counts = collector.counts.to_dict()
    assert (counts["store_failures"], counts["sample"], counts["added"]) == (1, 3, 2)
    assert sorted(_part_number(r) for r in _collected(bare).values()) == [2, 3]


# -- beside a model, QC marks from an OPC UA tag ---------------------------------------------------------

class QcTagServer:
    """The existing QC's OPC UA server: it writes each rejected part's frame counter into one Int64 tag."""

    def __init__(self, endpoint: str) -> None:
        from asyncua import Server, ua

        self.ua = ua
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def start() -> Any:
            server = Server()
            await server.init()
            server.set_endpoint(endpoint)
            index = await server.register_namespace("urn:qc")
            tag = await server.nodes.objects.add_variable(ua.NodeId("QC.RejectedCounter", index), f"{index}:Rejected",
                                                         ua.Variant(0, ua.VariantType.Int64))
            await server.start()
            return server, tag, index

        self.server, self.tag, self.index = self._run(start())

    def _run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(30)

    def reject(self, counter: int) -> None:
        self._run(self.tag.write_value(self.ua.Variant(counter, self.ua.VariantType.Int64)))

    def close(self) -> None:
        self._run(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def test_beside_the_model_qc_rejects_from_an_opcua_tag_are_stored_and_parts_still_decided(
        tmp_path: Path, frames: Path) -> None:
    pytest.importorskip("torch", reason="the tiny model fixture is trained and exported with torch")
    workspace = line_workspace(tmp_path / "ws").workspace
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}/qc/"
    qc = QcTagServer(endpoint)
    try:
        # A patient camera: on a loaded machine a frame later than 1 s makes its part incomplete (not stored).
        line = parse_line_config({"cameras": [_camera(frames, timeout_ms=5000)], "publish": {"deadline_ms": 5000},
                                  "collect": {
            "fraction": 0.5, "seed": 7, "qc": {"opcua": {"endpoint": endpoint, "node": f"ns={qc.index};s=QC.RejectedCounter",
                                                         "camera": "top"}}}})

        def started(station: Station) -> None:
            def rejects() -> None:
                for counter in (2, 4):
                    while station.collector is not None and station.collector.counts.captured < counter:
                        time.sleep(0.02)
                    qc.reject(counter)
            threading.Thread(target=rejects, daemon=True).start()

        summary = run_station(workspace, line, RunOptions(parts=6, rate_hz=3), on_start=started)
    finally:
        qc.close()
    sampler = Sampler(fraction=0.5, seed=7)
    sampled = {n for n in range(1, 7) if sampler.take()}
    collected = {_part_number(r): r.meta.extra["collected"] for r in _collected(workspace).values()}
    assert summary.collection is not None  # what could lose a sampled part, each counted: none may have
    assert {k: summary.collection[k] for k in ("incomplete", "sample_skipped", "store_failures")} == {
        "incomplete": 0, "sample_skipped": 0, "store_failures": 0}, summary.collection
    assert collected == {n: "qc_reject" if n in (2, 4) else "sample" for n in sampled | {2, 4}}
    assert summary.parts == 6 and summary.passed + summary.rejected + summary.reviewed == 6  # still decided
    assert summary.collection is not None and summary.collection["unmatched"] == 0
    workspace.close()


# -- refused at start ------------------------------------------------------------------------------------

def test_an_unreachable_qc_broker_is_refused_at_start_and_nothing_is_stored(bare: Workspace, frames: Path) -> None:
    port = free_port()  # nothing listens there
    line = parse_line_config({"cameras": [_camera(frames)], "collect": {
        "every": 1, "qc": {"mqtt": {"host": "127.0.0.1", "port": port, "connect_timeout_s": 1}}}})
    with pytest.raises(QcSourceError) as caught:
        run_station(bare, line, RunOptions(parts=3, collect_only=True))
    assert f"127.0.0.1:{port}" in caught.value.message and "collect.qc.mqtt" in caught.value.hint
    assert _collected(bare) == {}


def test_an_unreachable_qc_opcua_endpoint_is_refused_at_start(bare: Workspace, frames: Path) -> None:
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}/qc/"
    line = parse_line_config({"cameras": [_camera(frames)], "collect": {
        "qc": {"opcua": {"endpoint": endpoint, "node": "ns=2;s=QC.Rejected", "timeout_s": 1}}}})
    with pytest.raises(QcSourceError) as caught:
        run_station(bare, line, RunOptions(parts=3, collect_only=True))
    assert endpoint in caught.value.message and "collect.qc.opcua.endpoint" in caught.value.hint


def test_an_unknown_camera_serial_is_refused_at_start_in_collection_mode(bare: Workspace, frames: Path) -> None:
    line = parse_line_config({"cameras": [_camera(frames, serial="9999-0000")], "collect": {"every": 1}})
    with pytest.raises(AcquisitionError) as caught:
        run_station(bare, line, RunOptions(parts=1, collect_only=True))
    assert "9999-0000" in caught.value.message and "0815-0000" in caught.value.message


def test_cli_collects_and_refuses_bad_input_in_one_line(bare: Workspace, frames: Path, tmp_path: Path) -> None:
    config = tmp_path / "line.yaml"
    runner = CliRunner()
    config.write_text(yaml.safe_dump({"cameras": [_camera(frames)]}))
    refused = runner.invoke(app, ["run", "--workspace", str(bare.root), "--config", str(config), "--collect-only",
                                  "--parts", "2"])
    assert refused.exit_code != 0 and "no collect section" in refused.output and "Traceback" not in refused.output
    config.write_text(yaml.safe_dump({"cameras": [_camera(frames)], "collect": {"fraction": 2}}))
    refused = runner.invoke(app, ["run", "--workspace", str(bare.root), "--config", str(config), "--collect-only"])
    assert refused.exit_code != 0 and "outside (0, 1]" in refused.output and "Traceback" not in refused.output
    config.write_text(yaml.safe_dump({"cameras": [_camera(frames)], "collect": {"fraction": 1}}))
    done = runner.invoke(app, ["run", "--workspace", str(bare.root), "--config", str(config), "--collect-only",
                               "--parts", "3", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["collection"]["sample"] == 3 and len(_collected(bare)) == 3


def test_a_disk_that_falls_behind_skips_samples_never_qc_rejects_and_memory_stays_bounded(
        bare: Workspace, frames: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from inspectloop.line.collect import Collector

    written = threading.Event()
    real = Collector._write

    def slow_write(collector: Collector, batch: Any) -> None:
        written.wait(10)  # the disk is stuck until the run has ended
        real(collector, batch)

    monkeypatch.setattr(Collector, "_write", slow_write)
    line = parse_line_config({"cameras": [_camera(frames)], "collect": {"every": 1, "buffer_parts": 2}})
    with Station(bare, line, RunOptions(parts=6, collect_only=True)) as station:
        assert station.collector is not None
        threading.Timer(1.0, written.set).start()
        summary = station.run()
    assert summary.collection is not None
    counts = summary.collection
    assert counts["sample"] + counts["sample_skipped"] == 6 and counts["sample_skipped"] >= 3
    assert counts["added"] == counts["sample"] == len(_collected(bare))


def test_line_check_starts_the_qc_sources_and_refuses_an_unreachable_one(frames: Path, tmp_path: Path) -> None:
    from inspectloop.line.station import check_station

    port = free_port()
    collect = {"every": 5, "qc": {"mqtt": {"host": "127.0.0.1", "port": port, "connect_timeout_s": 1}}}
    line = parse_line_config({"cameras": [_camera(frames)], "collect": collect})
    with mqtt_broker(port):
        results = check_station(line)
    assert [(r.kind, r.detail) for r in results if r.kind == "qc marks"] == [
        ("qc marks", f"MQTT 127.0.0.1:{port} topic qc/reject")]
    config = tmp_path / "line.yaml"
    config.write_text(yaml.safe_dump({"cameras": [_camera(frames)], "collect": collect}))  # the broker is gone
    refused = CliRunner().invoke(app, ["line", "check", "--workspace", str(tmp_path), "--config", str(config)])
    assert refused.exit_code != 0 and f"cannot reach the QC's MQTT broker at 127.0.0.1:{port}" in refused.output
    assert "Traceback" not in refused.output


def test_the_dashboard_shows_each_stations_live_counters_with_its_collection(bare: Workspace, frames: Path) -> None:
    pytest.importorskip("fastapi", reason="the dashboard needs the 'serve' extra")
    from fastapi.testclient import TestClient

    from inspectloop.people import add_user
    from tests.web.conftest import pages_app

    line = parse_line_config({"cameras": [_camera(frames)], "collect": {"every": 2}})
    run_station(bare, line, RunOptions(parts=4, collect_only=True, station="cell3"))
    token = add_user(bare, "ana", "reviewer")
    client = TestClient(pages_app(bare), follow_redirects=False)
    assert client.post("/login", data={"token": token, "next": "/dashboard"}).status_code == 303
    page = client.get("/dashboard").text
    row = page[page.index('<tr data-station="cell3">'):]
    row = row[:row.index("</tr>")]
    assert "4 captured, 2 sample, 0 QC reject, 0 QC mark(s) unmatched" in row and "none" in row
