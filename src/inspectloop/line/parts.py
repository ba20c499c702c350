"""Parts from a station's sources: each part is one trigger's frames from every camera (Basler, or GenICam
through a GenTL producer) and video source in the capture set (``frames_per_camera`` each, lights in turn),
with its part id and trigger time.

Software-triggered cameras are triggered by us, at ``rate_hz`` when given (else back to back; video
files alone are replayed at their ``sample_hz``, as the live feed gave parts); a
hardware-triggered or free-running first source sets the pace itself (a part starts when its first frame
arrives). A part whose frames did not all come (a timeout, a frame lost to a disconnect) is still a
part: it is returned with ``missing`` set, so the line hears the fail-safe for it, never nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from inspectloop.errors import AcquisitionError
from inspectloop.line.acquire.basler import BaslerCamera
from inspectloop.line.acquire.frame import Frame
from inspectloop.line.acquire.video import VideoSource
from inspectloop.line.config import LineConfig, Trigger

if TYPE_CHECKING:
    from inspectloop.line.acquire.genicam import GenICamCamera


@dataclass
class Part:
    """One part's frames (``lights[i]`` is frame ``i``'s place among its camera's frames) and when it was
    triggered (a ``time.monotonic()`` reading: its deadline counts from there). ``missing`` says why some
    frames did not come (None: all came)."""

    part_id: str
    triggered_at: float
    frames: list[Frame] = field(default_factory=list)
    lights: list[int] = field(default_factory=list)
    missing: str | None = None


class PartSource:
    """Opens the station's part sources and hands out :class:`Part` s (``next_part``) until stopped or a
    video ends (``ended`` then says which). ``colour_mode`` is the model's (``L`` or ``RGB``): a pixel format
    it cannot use is refused at ``open``; None (no model: collection only) keeps each camera's own (a mono
    format greyscale, others RGB). Part ids are ``<prefix>-000001`` upwards."""

    def __init__(self, line: LineConfig, *, colour_mode: str | None, prefix: str,
                 rate_hz: float | None = None) -> None:
        self.line = line
        self.colour_mode = colour_mode
        self.prefix = prefix
        self.rate_hz = rate_hz
        self.sources = part_sources(line)
        self.frames_per_source = line.capture_set.frames_per_camera if line.capture_set else 1
        self.count = 0
        self.ended: str | None = None
        self._cameras: dict[str, BaslerCamera | GenICamCamera] = {}
        self._videos: dict[str, Iterator[Frame]] = {}
        self._stack = ExitStack()
        self._next_at: float | None = None

    def open(self) -> None:
        """Open every source in the capture set with its locked settings (AcquisitionError if one cannot)."""
        if not self.sources:
            raise AcquisitionError("the line config names no camera and no video source",
                                   "add cameras (or video) to line.yaml; inspectloop line cameras lists the serials")
        videos = {v.name: v for v in self.line.video}
        genicams = {g.name: g for g in self.line.genicam}
        try:
            for name in self.sources:
                if name in videos:
                    source = self._stack.enter_context(VideoSource(videos[name], colour_mode=self.colour_mode or "RGB"))
                    self._videos[name] = source.frames()
                elif name in genicams:
                    from inspectloop.line.acquire.genicam import GenICamCamera

                    gentl = GenICamCamera(genicams[name], colour_mode=self.colour_mode)
                    self._cameras[name] = self._stack.enter_context(gentl)
                else:
                    camera = BaslerCamera(self.line.camera(name), colour_mode=self.colour_mode)
                    self._cameras[name] = self._stack.enter_context(camera)
        except BaseException:
            self.close()
            raise
        files = [videos[name] for name in self.sources if name in videos]
        if self.rate_hz is None and len(files) == len(self.sources) and \
                not any(VideoSource(v).is_network for v in files):
            self.rate_hz = min(v.sample_hz for v in files)  # a recording is replayed at its live part rate

    def close(self) -> None:
        """Close every source (safe to call twice)."""
        self._stack.close()
        self._cameras.clear()
        self._videos.clear()

    def next_part(self, stop: threading.Event) -> Part | None:
        """The next part; None when ``stop`` is set or a video source ended."""
        if not self._pace(stop):
            return None
        part = Part(f"{self.prefix}-{self.count + 1:06d}", time.monotonic())
        try:
            for light in range(self.frames_per_source):
                self._trigger()
                for index, name in enumerate(self.sources):
                    frame = self._take(name, stop, waiting=index == 0 and light == 0)
                    if frame is None:
                        return None
                    if index == 0 and light == 0 and not self._software(name):
                        part.triggered_at = time.monotonic()  # the part arrived with its first frame
                    part.frames.append(frame)
                    part.lights.append(light)
        except AcquisitionError as exc:
            part.missing = exc.message
        self.count += 1
        return part

    def lost_frames(self) -> int:
        """Frames the cameras lost to disconnects (each reconnected), this run."""
        return sum(camera.lost_frames for camera in self._cameras.values())

    def _software(self, name: str) -> bool:
        camera = self._cameras.get(name)
        return camera is not None and camera.config.trigger is Trigger.SOFTWARE

    def _pace(self, stop: threading.Event) -> bool:
        """Wait for the next trigger time (``rate_hz``); never bursts to catch up after a slow part."""
        if self.rate_hz is None:
            return not stop.is_set()
        now = time.monotonic()
        self._next_at = now if self._next_at is None or self._next_at < now else self._next_at
        if stop.wait(self._next_at - now):
            return False
        self._next_at += 1.0 / self.rate_hz
        return True

    def _trigger(self) -> None:
        for name, camera in self._cameras.items():
            if self._software(name):
                camera.trigger()

    def _take(self, name: str, stop: threading.Event, *, waiting: bool) -> Frame | None:
        """One frame of ``name``. A hardware-triggered first source waits for its part (timeouts are
        the line standing still, not a fault) until ``stop``; None when stopped or a video ended."""
        if name in self._videos:
            frame = next(self._videos[name], None)
            if frame is None:
                self.ended = f"video {name} ended after {self.count} part(s)"
            return frame
        camera = self._cameras[name]
        while True:
            lost = camera.lost_frames
            try:
                return camera.retrieve()
            except AcquisitionError:
                idle = waiting and not self._software(name) and camera.lost_frames == lost
                if not idle:
                    raise
            if stop.is_set():
                return None


def part_sources(line: LineConfig) -> list[str]:
    """The sources whose frames make a part: the capture set's, else every camera and video source."""
    if line.capture_set is not None:
        return list(line.capture_set.cameras)
    return [c.name for c in line.cameras] + [g.name for g in line.genicam] + [v.name for v in line.video]
