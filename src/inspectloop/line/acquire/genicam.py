"""Any GenICam camera (GigE Vision, USB3 Vision, CoaXPress, ...) through a GenTL producer its maker supplies,
read with harvesters (the ``genicam`` extra). The producer is a ``.cti`` file the camera's SDK installs;
inspectloop ships none. The ``genicam`` package itself bundles one simulated producer (``viky.cti``: three
emulated colour cameras), which the tests use.

The camera offers the same calls as :class:`~inspectloop.line.acquire.basler.BaslerCamera` (``open``,
``trigger``, ``retrieve``, ``grab``, ``close``), so a station's parts come from either alike. Settings named
in the config are locked at open and checked against the camera's range; every frame records the values the
camera reports.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

import numpy as np

from inspectloop.errors import AcquisitionError, require
from inspectloop.line.acquire.basler import check_pixel_format
from inspectloop.line.acquire.frame import Frame
from inspectloop.line.config import GenICamConfig, Trigger

GENTL_PATH_ENV = "GENICAM_GENTL64_PATH"  # the GenTL standard's list of folders holding producers
_EXPOSURE_NODES = ("ExposureTime", "ExposureTimeAbs")
_GAIN_NODES = ("Gain", "GainAbs")
_TEMPERATURE_NODES = ("DeviceTemperature",)
_CHANNELS = {"Mono8": 1, "RGB8": 3, "BGR8": 3, "RGBa8": 4, "BGRa8": 4}  # formats turned into images here


def harvesters() -> ModuleType:
    """The ``harvesters.core`` module (MissingExtraError naming the ``genicam`` extra when absent)."""
    return require("harvesters.core", "genicam", package="harvesters")


def producer_path(config: GenICamConfig) -> Path:
    """The GenTL producer to load: ``cti`` from the config, else the first ``.cti`` in ``GENICAM_GENTL64_PATH``;
    AcquisitionError saying what to set when there is none."""
    if config.cti is not None:
        if not config.cti.is_file():
            raise AcquisitionError(f"camera {config.name}: GenTL producer {config.cti} does not exist",
                                   "set cti to the .cti file your camera maker's SDK installed")
        return config.cti
    for folder in filter(None, os.environ.get(GENTL_PATH_ENV, "").split(os.pathsep)):
        found = sorted(Path(folder).glob("*.cti"))
        if found:
            return found[0]
    raise AcquisitionError(f"camera {config.name}: no GenTL producer configured (no cti in its line config and "
                           f"none in {GENTL_PATH_ENV})",
                           "install your camera maker's SDK and set cti: /path/to/its_producer.cti for this camera "
                           "in line.yaml (inspectloop ships no producer)")


class GenICamCamera:
    """One configured GenICam camera through its GenTL producer; a context manager. ``lost_frames`` and
    ``reconnects`` are kept for the station's accounting (a GenTL camera is not reconnected: a cable pull
    ends the run with the reason)."""

    def __init__(self, config: GenICamConfig, *, colour_mode: str | None = None) -> None:
        self.config = config
        self.colour_mode = colour_mode
        self.lost_frames = 0
        self.reconnects = 0
        self.serial: str | None = None
        self._counter = 0
        self._harvester: Any = None
        self._acquirer: Any = None

    def __enter__(self) -> GenICamCamera:
        self.open()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    @property
    def frame_counter(self) -> int:
        """Frames delivered since open."""
        return self._counter

    def open(self) -> None:
        """Load the producer, find the camera, lock its settings and start acquisition."""
        if self.config.pixel_format not in _CHANNELS:
            raise AcquisitionError(f"camera {self.config.name}: pixel format {self.config.pixel_format} is not read "
                                   "from GenTL cameras yet", f"set pixel_format to one of {', '.join(_CHANNELS)}")
        check_pixel_format("Mono8" if _CHANNELS[self.config.pixel_format] == 1 else "RGB8", self.colour_mode)
        core = harvesters()
        cti = producer_path(self.config)
        self._harvester = core.Harvester()
        try:
            self._harvester.add_file(str(cti), check_existence=True, check_validity=True)
            self._harvester.update()
            self._acquirer = self._create(self._harvester)
            self._lock_settings(self._acquirer.remote_device.node_map)
            self._acquirer.start()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop acquisition and release the camera and the producer (safe to call twice)."""
        acquirer, harvester = self._acquirer, self._harvester
        self._acquirer = self._harvester = None
        try:
            if acquirer is not None:
                acquirer.stop()
                acquirer.destroy()
        finally:
            if harvester is not None:
                harvester.reset()

    def trigger(self) -> None:
        """Send a software trigger (software-triggered cameras only)."""
        if self.config.trigger is not Trigger.SOFTWARE:
            raise AcquisitionError(f"camera {self.config.name} is {self.config.trigger.value}-triggered, "
                                   "not software-triggered", "set trigger: software in the line config")
        nodes = self._opened().remote_device.node_map
        if _node(nodes, "TriggerSoftware") is not None and _node(nodes, "TriggerMode") is not None:
            nodes.TriggerSoftware.execute()
        # a camera without trigger nodes (a free-running one) has its next frame on its way already

    def retrieve(self) -> Frame:
        """The next frame (AcquisitionError when none comes within ``timeout_ms``)."""
        acquirer = self._opened()
        buffer = acquirer.try_fetch(timeout=self.config.timeout_ms / 1000)
        if buffer is None:
            raise AcquisitionError(f"camera {self.config.name}: no frame within {self.config.timeout_ms} ms",
                                   "check the trigger wiring, or raise timeout_ms in the line config")
        with buffer:
            pixels = self._pixels(buffer.payload.components[0])
            frame_id = getattr(buffer, "frame_id", None)
        self._counter += 1
        return Frame(pixels=pixels, source=self.config.name, frame_counter=self._counter,
                     captured_at=datetime.now(UTC), settings=self.settings(), serial=self.serial,
                     camera_frame_id=None if frame_id is None else int(frame_id), reconnects=self.reconnects,
                     temperature_c=self._read(_TEMPERATURE_NODES))

    def grab(self) -> Frame:
        """One frame: trigger it (software trigger) and retrieve it."""
        if self.config.trigger is Trigger.SOFTWARE:
            self.trigger()
        return self.retrieve()

    def settings(self) -> dict[str, Any]:
        """The settings as the camera reports them now (exposure and gain None where it has no such node)."""
        return {"exposure_us": self._read(_EXPOSURE_NODES), "gain_db": self._read(_GAIN_NODES),
                "pixel_format": self.config.pixel_format,
                "roi": None if self.config.roi is None else self.config.roi.model_dump(),
                "trigger": self.config.trigger.value, "gentl_producer": str(producer_path(self.config).name)}

    def _create(self, harvester: Any) -> Any:
        found = [str(info.serial_number) for info in harvester.device_info_list]
        wanted = self.config.serial
        if wanted is None and len(found) == 1 or wanted in found:
            index = 0 if wanted is None else found.index(wanted)
            self.serial = found[index]
            return harvester.create(index)
        raise AcquisitionError(
            f"camera {self.config.name}: " + (f"no camera with serial {wanted}" if wanted else
                                              f"{len(found)} cameras and no serial in the line config")
            + f" (the producer finds: {', '.join(found) or 'none'})",
            "set serial to one of those in line.yaml, and check the camera's cable and power")

    def _lock_settings(self, nodes: Any) -> None:
        _set(nodes, "PixelFormat", self.config.pixel_format, self.config, "pixel_format")
        if self.config.roi is not None:
            roi = self.config.roi
            for name, value in (("OffsetX", 0), ("OffsetY", 0), ("Width", roi.width), ("Height", roi.height),
                                ("OffsetX", roi.offset_x), ("OffsetY", roi.offset_y)):
                _set(nodes, name, value, self.config, "roi")
        for auto, names, value, field in (("ExposureAuto", _EXPOSURE_NODES, self.config.exposure_us, "exposure_us"),
                                          ("GainAuto", _GAIN_NODES, self.config.gain_db, "gain_db")):
            if value is not None:
                if _node(nodes, auto) is not None:
                    _set(nodes, auto, "Off", self.config, field)
                name = next((n for n in names if _node(nodes, n) is not None), names[0])
                _set(nodes, name, value, self.config, field)
        if self.config.trigger is not Trigger.FREE_RUN:
            _set(nodes, "TriggerSelector", "FrameStart", self.config, "trigger")
            source = "Software" if self.config.trigger is Trigger.SOFTWARE else self.config.trigger_line
            _set(nodes, "TriggerSource", source, self.config, "trigger_line")
            _set(nodes, "TriggerMode", "On", self.config, "trigger")

    def _pixels(self, component: Any) -> np.ndarray:
        channels = _CHANNELS[self.config.pixel_format]
        shape = (component.height, component.width) + ((channels,) if channels > 1 else ())
        pixels = np.asarray(component.data, dtype=np.uint8).reshape(shape)
        if channels == 4:
            pixels = pixels[:, :, :3]  # the alpha plane carries nothing a model uses
        if self.config.pixel_format.startswith("BGR"):
            pixels = pixels[:, :, ::-1]
        if pixels.ndim == 3 and self.colour_mode == "L":  # ITU-R 601 luma, as Pillow's convert("L")
            pixels = (pixels @ np.array([299, 587, 114]) // 1000).astype(np.uint8)
        return np.array(pixels, dtype=np.uint8, copy=True)

    def _read(self, names: tuple[str, ...]) -> float | None:
        nodes = self._opened().remote_device.node_map
        node = next((n for n in map(lambda name: _node(nodes, name), names) if n is not None), None)
        return None if node is None else float(node.value)

    def _opened(self) -> Any:
        if self._acquirer is None:
            raise AcquisitionError(f"camera {self.config.name} is not open", "call open() first")
        return self._acquirer


def _node(nodes: Any, name: str) -> Any:
    """The feature ``name`` when the camera has it and it is available now, else None."""
    try:
        node = getattr(nodes, name)
    except AttributeError:
        return None
    genapi = require("genicam.genapi", "genicam", package="harvesters")
    return node if genapi.is_available(node) else None


def _set(nodes: Any, name: str, value: Any, config: GenICamConfig, field: str) -> None:
    """Set one feature, checked first: AcquisitionError naming the field, the camera's choices or range."""
    node = _node(nodes, name)
    if node is None:
        fix = ("set trigger: free_run for this camera: it cannot be triggered" if field.startswith("trigger") else
               f"remove {field} from this camera's line config: this camera model does not offer it")
        raise AcquisitionError(f"camera {config.name} has no {name} setting (for {field})", fix)
    if hasattr(node, "symbolics"):
        allowed = tuple(node.symbolics)
        if value not in allowed:
            raise AcquisitionError(f"camera {config.name} does not offer {name} {value}",
                                   f"set {field} to one of {', '.join(allowed)} in the line config")
    elif hasattr(node, "min") and not node.min <= value <= node.max:
        raise AcquisitionError(f"camera {config.name}: {field} {value:g} is outside the camera's range "
                               f"{node.min:g} to {node.max:g}", f"set {field} between {node.min:g} and "
                               f"{node.max:g} in the line config")
    node.value = int(value) if type(node.value) is int and not isinstance(value, str) else value
