"""A station's line config: its cameras (locked settings), video sources, capture sets, publishing and
the per-part deadline, read from one YAML file in the workspace (``line.yaml`` by default).

Pure: pydantic and PyYAML only; nothing here opens a camera or a socket. Settings are *locked*: the
camera is set to them at start and every frame records them, so a model never sees an image taken
with settings nobody chose.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from inspectloop.errors import LineConfigError
from inspectloop.runtime.decision import Decision

LINE_CONFIG_FILE = "line.yaml"
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")]


class Trigger(StrEnum):
    """How a camera is told to take a frame: by us (software), by a wire from the line (hardware) or by itself."""

    SOFTWARE = "software"
    HARDWARE = "hardware"
    FREE_RUN = "free_run"


class Roi(BaseModel):
    """Region of interest on the sensor, in pixels (offsets from the top-left corner)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    offset_x: int = Field(default=0, ge=0)
    offset_y: int = Field(default=0, ge=0)


class CameraConfig(BaseModel):
    """One Basler camera, found by its serial number, with the settings locked for every frame it takes.

    ``exposure_us`` in microseconds, ``gain_db`` in decibels; ``pixel_format`` a GenICam name
    (Mono8, RGB8, BayerRG8, ...); ``roi`` None keeps the full sensor. ``trigger_line`` is the input a
    hardware trigger arrives on; ``frame_rate_hz`` caps free-run. ``image_files`` is for pylon's camera
    emulation only: the file or folder the emulated camera serves frames from (ImageFilename).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Name
    serial: str = Field(min_length=1)
    exposure_us: float = Field(gt=0)
    gain_db: float = Field(default=0.0, ge=0)
    pixel_format: str = "Mono8"
    roi: Roi | None = None
    trigger: Trigger = Trigger.SOFTWARE
    trigger_line: str = "Line1"
    frame_rate_hz: float | None = Field(default=None, gt=0)
    timeout_ms: int = Field(default=2000, gt=0)
    reconnect_attempts: int = Field(default=5, ge=0)
    image_files: Path | None = None

    def settings(self) -> dict[str, Any]:
        """The locked settings as recorded with each frame."""
        return {"exposure_us": self.exposure_us, "gain_db": self.gain_db, "pixel_format": self.pixel_format,
                "roi": None if self.roi is None else self.roi.model_dump(), "trigger": self.trigger.value}


class GenICamConfig(BaseModel):
    """Any GenICam camera, through a GenTL producer (``.cti``) its maker's SDK installs, read by harvesters
    (the ``genicam`` extra). ``cti`` None looks in ``GENICAM_GENTL64_PATH`` (the GenTL standard's variable).
    ``serial`` picks the camera among the producer's (None: its only one). Settings given are locked at open
    and checked against the camera's range; ``exposure_us`` and ``gain_db`` None leave the camera's own
    (read back and recorded with every frame all the same)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Name
    cti: Path | None = None
    serial: str | None = Field(default=None, min_length=1)
    pixel_format: str = "Mono8"
    exposure_us: float | None = Field(default=None, gt=0)
    gain_db: float | None = Field(default=None, ge=0)
    roi: Roi | None = None
    trigger: Trigger = Trigger.SOFTWARE
    trigger_line: str = "Line1"
    timeout_ms: int = Field(default=2000, gt=0)


class VideoConfig(BaseModel):
    """A recorded feed or network camera read through FFmpeg: a file path or an ``rtsp://`` URL, sampled
    at ``sample_hz`` frames (one per part) per second of video."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Name
    url: str = Field(min_length=1)
    sample_hz: float = Field(gt=0)
    open_timeout_s: float = Field(default=5.0, gt=0)


class CaptureSetConfig(BaseModel):
    """The frames that make one part: which cameras (by name) and how many frames each (two lights
    triggered alternately: 2 frames of one camera)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    cameras: list[Name] = Field(min_length=1)
    frames_per_camera: int = Field(default=1, ge=1)

    @property
    def size(self) -> int:
        """Frames in one complete set."""
        return len(self.cameras) * self.frames_per_camera


class OpcUaConfig(BaseModel):
    """inspectloop as an OPC UA server the line controller reads (or subscribes to) for each decision."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    endpoint: str = "opc.tcp://0.0.0.0:4840/inspectloop/"
    namespace: str = "urn:inspectloop:line"
    station: Name = "station1"


class PlcConfig(BaseModel):
    """A PLC's own OPC UA server that inspectloop writes each decision into: its endpoint and the node id
    for each field (``ns=3;s="DB_Inspection"."Decision"``); fields without a node are not written.
    ``sequence`` is written last and incremented per part, for the PLC to see a new, complete result."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    endpoint: str = Field(pattern=r"^opc\.tcp://")
    nodes: dict[Literal["part_id", "decision", "label", "frame_counter", "confidence", "late", "suspect",
                        "sequence"], str] = \
        Field(min_length=1)
    timeout_s: float = Field(default=5.0, gt=0)


ModbusField = Literal["decision", "class_index", "part_id", "frame_counter", "late", "sequence"]


class ModbusConfig(BaseModel):
    """A PLC's Modbus TCP server whose holding registers inspectloop writes each decision into.

    ``registers`` gives the (0-based) holding register address of each field to write; fields left out are
    not written. Encoding, as a PLC program declares it: ``decision`` one register (1 pass, 2 reject,
    3 review), ``class_index`` one register (65535: no class, e.g. a fail-safe), ``late`` one register (0/1),
    ``frame_counter`` two registers, a 32-bit unsigned value, high word first (it wraps at 2^32),
    ``part_id`` ``part_id_registers`` registers of ASCII, two characters per register, first character in
    the high byte, zero-padded (a longer id keeps its last characters), ``sequence`` one register written
    last, one more per decision (mod 65536), continuing from the value the PLC holds at start.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    host: str = Field(min_length=1)
    port: int = Field(default=502, gt=0, lt=65536)
    device_id: int = Field(default=1, ge=0, le=255)
    registers: dict[ModbusField, int] = Field(min_length=1)
    part_id_registers: int = Field(default=8, ge=1, le=60)
    timeout_s: float = Field(default=3.0, gt=0)

    def spans(self) -> dict[str, range]:
        """The registers each configured field occupies."""
        width = {"part_id": self.part_id_registers, "frame_counter": 2}
        return {name: range(start, start + width.get(name, 1)) for name, start in self.registers.items()}

    @model_validator(mode="after")
    def _registers_apart(self) -> ModbusConfig:
        spans = sorted(self.spans().items(), key=lambda item: item[1].start)
        for name, span in spans:
            if span.start < 0 or span.stop > 65536:
                raise ValueError(f"registers.{name} ({span.start}) must lie in 0..{65536 - len(span)}")
        for (first, a), (second, b) in zip(spans, spans[1:]):
            if b.start < a.stop:
                raise ValueError(f"registers.{first} uses {a.start}..{a.stop - 1}, which overlaps "
                                 f"registers.{second} at {b.start}")
        return self


class MqttConfig(BaseModel):
    """An MQTT broker the decisions are published to, one JSON message per part (QoS 1)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    host: str = "localhost"
    port: int = Field(default=1883, gt=0, lt=65536)
    topic: str = "inspectloop/station1/decision"
    client_id: str = "inspectloop"
    username: str | None = None
    password: str | None = None
    connect_timeout_s: float = Field(default=5.0, gt=0)


class PublishConfig(BaseModel):
    """Where decisions go, and what a part gets when its answer is not ready by its deadline."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    opcua: OpcUaConfig | None = None
    plc: PlcConfig | None = None
    modbus: ModbusConfig | None = None
    mqtt: MqttConfig | None = None
    deadline_ms: float = Field(default=500.0, gt=0)
    fail_safe: Literal[Decision.REJECT, Decision.REVIEW] = Decision.REJECT


class QcMqttConfig(BaseModel):
    """The existing QC announces each rejected part as one MQTT message on ``topic``: JSON with ``part_id``
    and/or ``frame_counter`` (optionally ``camera`` and ``at``, ISO 8601), or a bare id or counter."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    host: str = "localhost"
    port: int = Field(default=1883, gt=0, lt=65536)
    topic: str = Field(default="qc/reject", min_length=1)
    client_id: str = "inspectloop-qc"
    username: str | None = None
    password: str | None = None
    connect_timeout_s: float = Field(default=5.0, gt=0)


class QcOpcUaConfig(BaseModel):
    """The existing QC (or the PLC) writes each rejected part's id or frame counter into one OPC UA tag
    (``node``) on its server; every new value is a reject mark. ``match`` says what the value is."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    endpoint: str = Field(pattern=r"^opc\.tcp://")
    node: str = Field(min_length=1)
    match: Literal["part_id", "frame_counter"] = "frame_counter"
    camera: Name | None = None
    timeout_s: float = Field(default=5.0, gt=0)


class QcConfig(BaseModel):
    """Where the existing QC's reject marks come from, and how far apart in time (``window_s``) a mark and
    its part may be: a part is kept in memory that long waiting for its mark."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    mqtt: QcMqttConfig | None = None
    opcua: QcOpcUaConfig | None = None
    window_s: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _has_a_source(self) -> QcConfig:
        if self.mqtt is None and self.opcua is None:
            raise ValueError("collect.qc names no source of reject marks; add qc.mqtt or qc.opcua (or remove qc)")
        return self


class CollectConfig(BaseModel):
    """Collection mode for a new line: every part is captured; every ``every``-th part, or a seeded random
    ``fraction`` of parts, is stored as a sample, and every part the existing QC rejects (``qc``) is stored
    too, all with their capture metadata, so that the first dataset is the line's own. ``session`` names
    the capture session (default: the station and its start time). ``buffer_parts`` bounds the parts held
    in memory while their QC mark may still come (memory: that many parts' frames)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    every: int | None = Field(default=None, ge=1)
    fraction: float | None = None
    seed: int = 0
    qc: QcConfig | None = None
    session: Name | None = None
    buffer_parts: int = Field(default=100, ge=1)

    @field_validator("fraction")
    @classmethod
    def _a_share(cls, value: float | None) -> float | None:
        if value is not None and not 0.0 < value <= 1.0:
            raise ValueError(f"fraction {value:g} is outside (0, 1]: it is the share of parts stored as a sample, "
                             "e.g. 0.05 for one part in twenty, 1 for every part")
        return value

    @model_validator(mode="after")
    def _stores_something(self) -> CollectConfig:
        if self.every is not None and self.fraction is not None:
            raise ValueError("collect gives both every and fraction; keep one")
        if self.every is None and self.fraction is None and self.qc is None:
            raise ValueError("collect would store nothing: give every (every Nth part), fraction (a share of "
                             "parts) and/or qc (the existing QC's rejects)")
        return self


class LineConfig(BaseModel):
    """Everything one station needs to acquire, group and publish (and, in collection mode, collect)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    cameras: list[CameraConfig] = Field(default_factory=list)
    genicam: list[GenICamConfig] = Field(default_factory=list)
    video: list[VideoConfig] = Field(default_factory=list)
    capture_set: CaptureSetConfig | None = None
    publish: PublishConfig = Field(default_factory=PublishConfig)
    collect: CollectConfig | None = None

    @model_validator(mode="after")
    def _names_unique_and_known(self) -> LineConfig:
        names = [c.name for c in self.cameras] + [g.name for g in self.genicam] + [v.name for v in self.video]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"source names must be unique, {', '.join(twice)} used twice")
        serials = [c.serial for c in self.cameras]
        if len(set(serials)) != len(serials):
            raise ValueError("two cameras share one serial number")
        if self.capture_set is not None:
            unknown = [n for n in self.capture_set.cameras if n not in names]
            if unknown:
                raise ValueError(f"capture_set names unknown source(s) {', '.join(unknown)}; "
                                 f"sources are {', '.join(names) or 'none'}")
        qc = self.collect.qc if self.collect is not None else None
        if qc is not None and qc.opcua is not None and qc.opcua.camera is not None and qc.opcua.camera not in names:
            raise ValueError(f"collect.qc.opcua.camera names unknown source {qc.opcua.camera}; "
                             f"sources are {', '.join(names) or 'none'}")
        return self

    def camera(self, name: str) -> CameraConfig:
        """The camera called ``name`` (LineConfigError naming the known ones otherwise)."""
        for camera in self.cameras:
            if camera.name == name:
                return camera
        raise LineConfigError(f"no camera named {name!r} in the line config",
                              f"cameras are: {', '.join(c.name for c in self.cameras) or 'none'}")


def parse_line_config(raw: Any, source: str = "line config") -> LineConfig:
    """Validate a parsed YAML document; every problem named by field, all at once."""
    if not isinstance(raw, dict):
        raise LineConfigError(f"{source} must be a mapping with cameras, video, capture_set, publish, collect",
                              "write a YAML mapping, e.g. cameras: [{name: top, serial: '24012345', exposure_us: 800}]")
    try:
        return LineConfig.model_validate(raw)
    except ValidationError as exc:
        problems = [_describe(error) for error in exc.errors()]
        raise LineConfigError(f"{source}: " + "; ".join(problems),
                              f"fix the named field{'s' if len(problems) > 1 else ''} in {source}") from None


def load_line_config(path: Path) -> LineConfig:
    """Read and validate a line config YAML file (a workspace folder means its ``line.yaml``)."""
    path = path / LINE_CONFIG_FILE if path.is_dir() else path
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LineConfigError(f"no line config at {path}",
                              f"write one (cameras, video, capture_set, publish) at {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LineConfigError(f"cannot read {path}: {exc}", "check the file's permissions and encoding") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise LineConfigError(f"{path} is not valid YAML{where}", "fix the YAML syntax") from None
    return parse_line_config(raw, str(path))


def _describe(error: Any) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "config"
    message = str(error["msg"]).removeprefix("Value error, ")  # pydantic's prefix on our own validators' words
    return f"{where}: {message}"
