"""A station's start-up checks and one-off publishing, as the CLI offers them: every camera opened with
its locked settings and one frame grabbed, every video source opened, every publisher and every source of
QC reject marks (collection mode) started. A station that fails any of these is refused at start with the
reason and the fix (typed errors), never half-run."""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from inspectloop.line.config import LineConfig, PublishConfig, Trigger
from inspectloop.line.decision import PartDecision
from inspectloop.line.publish import Publisher


@dataclass(frozen=True)
class CheckResult:
    """One source or publisher that started: what it is, and what was seen (a frame's size, an endpoint)."""

    kind: str
    name: str
    detail: str


def model_colour_mode(model: Path | None) -> str | None:
    """The colour mode (``L`` or ``RGB``) a model file expects its images in; None without a model."""
    if model is None:
        return None
    from inspectloop.runtime.model import read_model

    return read_model(model)[1].colour_mode


def publishers(config: PublishConfig) -> list[Publisher]:
    """The publishers ``config`` names (not started)."""
    made: list[Publisher] = []
    if config.opcua is not None:
        from inspectloop.line.publish.opcua import OpcUaResultServer

        made.append(OpcUaResultServer(config.opcua))
    if config.plc is not None:
        from inspectloop.line.publish.opcua import OpcUaPlcWriter

        made.append(OpcUaPlcWriter(config.plc))
    if config.modbus is not None:
        from inspectloop.line.publish.modbus import ModbusPlcWriter

        made.append(ModbusPlcWriter(config.modbus))
    if config.mqtt is not None:
        from inspectloop.line.publish.mqtt import MqttPublisher

        made.append(MqttPublisher(config.mqtt))
    return made


def check_station(config: LineConfig, *, model: Path | None = None) -> list[CheckResult]:
    """Start everything the config names once, grab one frame per source, and stop again."""
    colour_mode = model_colour_mode(model)
    results: list[CheckResult] = []
    if config.cameras:
        from inspectloop.line.acquire.basler import BaslerCamera

        for camera_config in config.cameras:
            with BaslerCamera(camera_config, colour_mode=colour_mode) as camera:
                frame = camera.grab() if camera_config.trigger is Trigger.SOFTWARE else None
                temperature = camera.temperature()
            seen = "hardware/free-run: no frame asked" if frame is None else \
                f"frame {frame.pixels.shape[1]}x{frame.pixels.shape[0]}"
            results.append(CheckResult("camera", camera_config.name, f"serial {camera_config.serial}, {seen}"
                                       + ("" if temperature is None else f", {temperature:.1f} °C")))
    if config.genicam:
        from inspectloop.line.acquire.genicam import GenICamCamera

        for gentl_config in config.genicam:
            with GenICamCamera(gentl_config, colour_mode=colour_mode) as gentl:
                frame = gentl.grab() if gentl_config.trigger is not Trigger.HARDWARE else None
            seen = "hardware-triggered: no frame asked" if frame is None else \
                f"frame {frame.pixels.shape[1]}x{frame.pixels.shape[0]}"
            results.append(CheckResult("genicam", gentl_config.name, f"serial {gentl.serial}, {seen}"))
    if config.video:
        from inspectloop.line.acquire.video import VideoSource, redact

        for video_config in config.video:
            with VideoSource(video_config, colour_mode=colour_mode or "RGB") as source:
                frame = next(source.frames(), None)
            seen = "no frame" if frame is None else f"frame {frame.pixels.shape[1]}x{frame.pixels.shape[0]}"
            results.append(CheckResult("video", video_config.name, f"{redact(video_config.url)}, {seen}"))
    with ExitStack() as stack:
        for publisher in publishers(config.publish):
            publisher.start()
            stack.callback(publisher.close)
            results.append(CheckResult("publish", type(publisher).__name__, publisher.target))
        if config.collect is not None and config.collect.qc is not None:
            from inspectloop.line.qc_marks import qc_sources

            for source in qc_sources(config.collect.qc):
                source.start(lambda _mark: None, lambda _why: None)  # reachable and subscribed is what is checked
                stack.callback(source.close)
                results.append(CheckResult("qc marks", type(source).__name__, source.target))
    return results


def publish_once(config: PublishConfig, decision: PartDecision, *, hold_s: float = 0.0) -> list[str]:
    """Publish one decision to every configured publisher (a wiring test with the line controller); the
    OPC UA server stays up ``hold_s`` seconds so a PLC can read it. Returns where it went."""
    sent: list[str] = []
    with ExitStack() as stack:
        for publisher in publishers(config):
            publisher.start()
            stack.callback(publisher.close)
            publisher.publish(decision)
            sent.append(publisher.target)
        time.sleep(hold_s)
    return sent

