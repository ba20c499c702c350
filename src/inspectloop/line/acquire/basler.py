"""Basler cameras (GigE Vision, USB3 Vision) through Basler's pylon SDK (``pypylon``, the ``camera`` extra).

A camera is found by serial number, set to its locked settings (exposure, gain, pixel format, region
of interest, trigger) before its first frame, refused at open when a setting is outside what the camera
can do, and reconnected after a cable pull with its settings applied again. pylon's camera emulation
(``PYLON_CAMEMU=N``) gives N emulated cameras, so all of this runs without hardware.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from types import ModuleType, TracebackType
from typing import Any

import numpy as np

from inspectloop.errors import AcquisitionError, require
from inspectloop.line.acquire.frame import Frame
from inspectloop.line.config import CameraConfig, Trigger

MONO_FORMATS = frozenset({"Mono8", "Mono10", "Mono12", "Mono16", "Mono10p", "Mono12p", "Mono10Packed",
                          "Mono12Packed"})
COLOUR_FORMATS = frozenset({"RGB8", "RGB8Packed", "BGR8", "BGR8Packed", "BGRA8Packed", "YCbCr422_8", "YUV422_8",
                            "YUV422Packed", "YUV422_YUYV_Packed",
                            *(f"Bayer{p}{b}" for p in ("GR", "RG", "GB", "BG") for b in ("8", "10", "12", "16",
                                                                                         "10p", "12p"))})
_EXPOSURE_NODES = ("ExposureTime", "ExposureTimeAbs")  # SFNC 2+ (USB, ace 2) and older GigE names
_GAIN_NODES = ("Gain", "GainAbs")
_TEMPERATURE_NODES = ("DeviceTemperature", "TemperatureAbs")
_BACKOFF_S = 0.2


@dataclass(frozen=True)
class CameraInfo:
    """A camera pylon can see: serial number, model, and its transport (GigE, USB, emulation)."""

    serial: str
    model: str
    device_class: str
    friendly_name: str


def pylon() -> ModuleType:
    """The ``pypylon.pylon`` module (MissingExtraError naming the ``camera`` extra when absent)."""
    return require("pypylon.pylon", "camera", package="pypylon")


def list_cameras() -> list[CameraInfo]:
    """Every camera pylon finds on this machine's GigE and USB interfaces (and emulated ones)."""
    found = pylon().TlFactory.GetInstance().EnumerateDevices()
    return [CameraInfo(d.GetSerialNumber(), d.GetModelName(), d.GetDeviceClass(), d.GetFriendlyName()) for d in found]


def check_pixel_format(pixel_format: str, colour_mode: str | None) -> None:
    """Refuse a pixel format the model cannot use: one we cannot turn into 8-bit images, or a greyscale
    format for a model trained on colour (``colour_mode`` is the model file's, ``L`` or ``RGB``; None: any)."""
    if pixel_format not in MONO_FORMATS | COLOUR_FORMATS:
        raise AcquisitionError(f"pixel format {pixel_format} cannot be turned into an image for the model",
                               f"set pixel_format to one of Mono8, RGB8, BGR8, BayerRG8 (or another Mono/Bayer/RGB "
                               f"format) in the line config")
    if colour_mode == "RGB" and pixel_format in MONO_FORMATS:
        raise AcquisitionError(f"pixel format {pixel_format} is greyscale but the model was trained on colour images",
                               "set pixel_format to a colour format (RGB8, BGR8, BayerRG8, ...) or use a model "
                               "trained on greyscale images")


class BaslerCamera:
    """One configured Basler camera: ``open`` it, then ``grab`` frames (or ``trigger`` several cameras and
    ``retrieve`` from each). Usable as a context manager.

    ``colour_mode`` is the model's (``L`` or ``RGB``): frames are converted to it, and a pixel format it
    cannot use is refused at open. ``lost_frames`` counts grabs that failed for a disconnect;
    ``reconnects`` the reconnects made.
    """

    def __init__(self, config: CameraConfig, *, colour_mode: str | None = None) -> None:
        self.config = config
        self.colour_mode = colour_mode
        self.reconnects = 0
        self.lost_frames = 0
        self._counter = 0
        self._camera: Any = None
        self._converter: Any = None

    def __enter__(self) -> BaslerCamera:
        self.open()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    @property
    def instant_camera(self) -> Any:
        """pylon's ``InstantCamera`` for this camera (None while closed): for nodes this class does not set."""
        return self._camera

    @property
    def frame_counter(self) -> int:
        """Frames delivered since open, reconnects included."""
        return self._counter

    def open(self) -> None:
        """Find the camera by serial, lock its settings and start acquisition (AcquisitionError if it cannot)."""
        check_pixel_format(self.config.pixel_format, self.colour_mode)
        self._camera = self._connect()

    def close(self) -> None:
        """Stop acquisition and release the camera (safe to call twice)."""
        camera, self._camera = self._camera, None
        if camera is not None:
            try:
                camera.StopGrabbing()
                camera.Close()
            finally:
                camera.DestroyDevice()

    def trigger(self) -> None:
        """Send a software trigger (software-triggered cameras only; others take frames without one)."""
        if self.config.trigger is not Trigger.SOFTWARE:
            raise AcquisitionError(f"camera {self.config.name} is {self.config.trigger.value}-triggered, "
                                   "not software-triggered", "set trigger: software in the line config")
        camera = self._opened()
        with self._guard("trigger"):
            camera.WaitForFrameTriggerReady(self.config.timeout_ms, pylon().TimeoutHandling_ThrowException)
            camera.ExecuteSoftwareTrigger()

    def retrieve(self) -> Frame:
        """The next frame. After a disconnect: reconnect, then AcquisitionError (that frame is lost)."""
        camera = self._opened()
        with self._guard("grab"):
            result = camera.RetrieveResult(self.config.timeout_ms, pylon().TimeoutHandling_Return)
        if result is None or not result.IsValid():
            if self._removed():
                self._recover("device removed")
                raise self._lost("grab")
            raise AcquisitionError(f"camera {self.config.name}: no frame within {self.config.timeout_ms} ms",
                                   "check the trigger wiring, or raise timeout_ms in the line config")
        try:
            return self._frame(result)
        finally:
            result.Release()

    def grab(self) -> Frame:
        """One frame: trigger it (software trigger) and retrieve it; after a reconnect, try once more."""
        lost = self.lost_frames
        try:
            if self.config.trigger is Trigger.SOFTWARE:
                self.trigger()
            return self.retrieve()
        except AcquisitionError:
            if self.lost_frames == lost:
                raise
        if self.config.trigger is Trigger.SOFTWARE:
            self.trigger()
        return self.retrieve()

    @contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        """pylon's exceptions as AcquisitionError; a removed device is reconnected first."""
        py = pylon()
        try:
            yield
        except py.GenericException as exc:
            if self._removed():
                self._recover(str(exc).split(" : ")[0])
                raise self._lost(action) from None
            raise AcquisitionError(f"camera {self.config.name}: {action} failed: {str(exc).split(' : ')[0]}",
                                   "check the camera's cable, power and trigger settings") from None

    def _lost(self, action: str) -> AcquisitionError:
        return AcquisitionError(f"camera {self.config.name} was disconnected during {action} and reconnected "
                                f"(reconnect {self.reconnects}); that frame is lost",
                                "grab again; check the camera's cable if this repeats")

    def temperature(self) -> float | None:
        """The device temperature in °C when the camera reports one (the emulation does not)."""
        node = _first_node(self._opened(), _TEMPERATURE_NODES, readable=True)
        return None if node is None else float(node.GetValue())

    def _opened(self) -> Any:
        if self._camera is None:
            self.open()
        return self._camera

    def _connect(self) -> Any:
        py = pylon()
        info = py.DeviceInfo()
        info.SetSerialNumber(self.config.serial)
        try:
            camera = py.InstantCamera(py.TlFactory.GetInstance().CreateDevice(info))
            camera.Open()
        except py.GenericException:
            found = ", ".join(c.serial for c in list_cameras()) or "none"
            raise AcquisitionError(f"camera {self.config.name}: no camera with serial {self.config.serial} "
                                   f"(cameras found: {found})",
                                   "check the serial in the line config (inspectloop line cameras), the cable "
                                   "and the camera's power") from None
        try:
            apply_settings(camera, self.config)
            camera.StartGrabbing(py.GrabStrategy_OneByOne)
        except py.GenericException as exc:
            _release(camera)
            raise AcquisitionError(f"camera {self.config.name} ({self.config.serial}) refused its settings: "
                                   f"{str(exc).split(' : ')[0]}", "check the settings in the line config against "
                                   "the camera's documentation") from None
        except BaseException:
            _release(camera)
            raise
        return camera

    def _removed(self) -> bool:
        camera = self._camera
        return camera is None or not camera.IsPylonDeviceAttached() or camera.IsCameraDeviceRemoved()

    def _recover(self, why: str) -> None:
        """Reconnect by serial, settings applied again; the frame counter goes on (a gap, not a restart)."""
        self.lost_frames += 1
        try:
            self.close()
        except Exception:  # noqa: BLE001 (the device is gone: releasing it may fail, reconnecting must not)
            self._camera = None
        last: AcquisitionError | None = None
        for attempt in range(self.config.reconnect_attempts):
            time.sleep(min(_BACKOFF_S * 2 ** attempt, 2.0))
            try:
                self._camera = self._connect()
            except AcquisitionError as exc:
                last = exc
                continue
            self.reconnects += 1
            return
        raise AcquisitionError(f"camera {self.config.name} was disconnected ({why}) and did not come back after "
                               f"{self.config.reconnect_attempts} attempt(s)"
                               + (f": {last.message}" if last else ""),
                               "check the camera's cable and power, then restart") from None

    def _frame(self, result: Any) -> Frame:
        if not result.GrabSucceeded():
            raise AcquisitionError(f"camera {self.config.name}: frame damaged ({result.GetErrorDescription()})",
                                   "check the network (jumbo frames, packet delay) or the USB bandwidth")
        pixels = self._pixels(result)
        self._counter += 1
        return Frame(pixels=pixels, source=self.config.name, frame_counter=self._counter,
                     captured_at=datetime.now(UTC), settings=self.config.settings(), serial=self.config.serial,
                     camera_frame_id=int(result.GetBlockID()), reconnects=self.reconnects,
                     temperature_c=self.temperature())

    def _pixels(self, result: Any) -> np.ndarray:
        fmt = self.config.pixel_format
        want_mono = self.colour_mode == "L" or (self.colour_mode is None and fmt in MONO_FORMATS)
        if fmt == "Mono8" and want_mono or fmt in ("RGB8", "RGB8Packed") and not want_mono:
            return np.array(result.Array, dtype=np.uint8, copy=True)
        py = pylon()
        if self._converter is None:
            self._converter = py.ImageFormatConverter()
            self._converter.OutputPixelFormat = py.PixelType_Mono8 if want_mono else py.PixelType_RGB8packed
        return np.array(self._converter.Convert(result).Array, dtype=np.uint8, copy=True)


def _release(camera: Any) -> None:
    camera.Close()
    camera.DestroyDevice()


def apply_settings(camera: Any, config: CameraConfig) -> None:
    """Lock ``config``'s settings on an open camera: each one checked against the camera's range first."""
    nodes = camera.GetNodeMap()
    _set_enum(nodes, "TriggerMode", "Off", config)  # format and ROI cannot change while a trigger is armed
    _set_enum(nodes, "PixelFormat", config.pixel_format, config)
    if config.roi is not None:
        for name in ("OffsetX", "OffsetY"):
            _set_number(nodes, (name,), 0, config, "ROI offset")
        _set_number(nodes, ("Width",), config.roi.width, config, "ROI width")
        _set_number(nodes, ("Height",), config.roi.height, config, "ROI height")
        _set_number(nodes, ("OffsetX",), config.roi.offset_x, config, "ROI offset_x")
        _set_number(nodes, ("OffsetY",), config.roi.offset_y, config, "ROI offset_y")
    for auto in ("ExposureAuto", "GainAuto"):  # locked means locked: no automatic adjustment behind our back
        if _first_node(camera, (auto,), writable=True) is not None:
            _set_enum(nodes, auto, "Off", config)
    _set_number(nodes, _EXPOSURE_NODES, config.exposure_us, config, "exposure_us")
    _set_number(nodes, _GAIN_NODES, config.gain_db, config, "gain_db")
    if config.image_files is not None:
        _serve_files(nodes, camera, config)
    _set_trigger(nodes, camera, config)


def _serve_files(nodes: Any, camera: Any, config: CameraConfig) -> None:
    """pylon's emulated cameras serve frames from image files (a file, or a folder of them, in turn)."""
    if _first_node(camera, ("ImageFilename",), writable=True) is None:
        raise AcquisitionError(f"camera {config.name} ({config.serial}) cannot serve image files: only pylon's "
                               "emulated cameras can", "remove image_files from this camera's line config")
    if not config.image_files.exists():
        raise AcquisitionError(f"camera {config.name}: image_files {config.image_files} does not exist",
                               "point image_files at an image file or a folder of them")
    nodes.GetNode("ImageFilename").SetValue(str(config.image_files))
    nodes.GetNode("ImageFileMode").SetValue("On")
    if _first_node(camera, ("TestImageSelector",), writable=True) is not None:
        nodes.GetNode("TestImageSelector").SetValue("Off")  # else the emulator overlays its moving test pattern


def _set_trigger(nodes: Any, camera: Any, config: CameraConfig) -> None:
    if config.trigger is Trigger.FREE_RUN:
        if config.frame_rate_hz is not None:
            if _first_node(camera, ("AcquisitionFrameRateEnable",), writable=True) is not None:
                nodes.GetNode("AcquisitionFrameRateEnable").SetValue(True)
            _set_number(nodes, ("AcquisitionFrameRate", "AcquisitionFrameRateAbs"), config.frame_rate_hz, config,
                        "frame_rate_hz")
        return
    _set_enum(nodes, "TriggerSelector", "FrameStart", config)
    _set_enum(nodes, "TriggerSource", "Software" if config.trigger is Trigger.SOFTWARE else config.trigger_line,
              config)
    _set_enum(nodes, "TriggerMode", "On", config)


def _first_node(camera: Any, names: tuple[str, ...], *, readable: bool = False, writable: bool = False) -> Any:
    genicam = require("pypylon.genicam", "camera", package="pypylon")
    nodes = camera.GetNodeMap()
    for name in names:
        node = nodes.GetNode(name)
        if node is None or not genicam.IsAvailable(node):
            continue
        if (readable and not genicam.IsReadable(node)) or (writable and not genicam.IsWritable(node)):
            continue
        return node
    return None


def _set_enum(nodes: Any, name: str, value: str, config: CameraConfig) -> None:
    node = nodes.GetNode(name)
    if node is None:
        raise AcquisitionError(f"camera {config.name} has no {name} setting", "this camera model is not supported "
                               "for this setting; remove it from the line config")
    allowed = tuple(node.Symbolics)
    if value not in allowed:
        field = {"PixelFormat": "pixel_format", "TriggerSource": "trigger_line"}.get(name, name)
        raise AcquisitionError(f"camera {config.name} ({config.serial}) does not offer {name} {value}",
                               f"set {field} to one of {', '.join(allowed)} in the line config")
    node.SetValue(value)


def _set_number(nodes: Any, names: tuple[str, ...], value: float, config: CameraConfig, field: str) -> None:
    genicam = require("pypylon.genicam", "camera", package="pypylon")
    node = next((n for n in map(nodes.GetNode, names) if n is not None and genicam.IsAvailable(n)), None)
    if node is None:
        raise AcquisitionError(f"camera {config.name} has no {' or '.join(names)} setting for {field}",
                               f"remove {field} from the line config for this camera model")
    low, high = node.GetMin(), node.GetMax()
    if not low <= value <= high:
        raise AcquisitionError(f"camera {config.name} ({config.serial}): {field} {value:g} is outside the camera's "
                               f"range {low:g} to {high:g}", f"set {field} between {low:g} and {high:g} in the "
                               "line config")
    if isinstance(low, int) and not isinstance(value, bool):
        value = int(value)
        increment = node.GetInc() if hasattr(node, "GetInc") else 1
        if (value - low) % increment:
            raise AcquisitionError(f"camera {config.name}: {field} {value} is not a multiple of {increment} "
                                   f"from {low}", f"set {field} to a value on the camera's step of {increment}")
    node.SetValue(value)
