"""Video files and network cameras (RTSP) through FFmpeg (PyAV, the ``camera`` extra), sampled at a set
rate: one frame per part, ``sample_hz`` frames per second of video, by the stream's own timestamps (so a
file is sampled as the live stream would have been, however fast it decodes)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from types import ModuleType, TracebackType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from inspectloop.errors import AcquisitionError, require
from inspectloop.line.acquire.frame import Frame
from inspectloop.line.config import VideoConfig

_NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")


def av() -> ModuleType:
    """The ``av`` module (MissingExtraError naming the ``camera`` extra when absent)."""
    return require("av", "camera")


def redact(url: str) -> str:
    """``url`` without its password (RTSP URLs often carry one), fit for logs and frame records."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class VideoSource:
    """One video file or stream: ``open`` it, then iterate ``frames()`` for one sampled frame per part.

    Frames are converted to ``colour_mode`` (``L`` or ``RGB``; the model's). Usable as a context manager.
    """

    def __init__(self, config: VideoConfig, *, colour_mode: str = "RGB") -> None:
        if colour_mode not in ("L", "RGB"):
            raise ValueError(f"colour_mode must be 'L' or 'RGB', got {colour_mode!r}")
        self.config = config
        self.colour_mode = colour_mode
        self.decoded = 0
        self._container: Any = None

    def __enter__(self) -> VideoSource:
        self.open()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    @property
    def is_network(self) -> bool:
        """Whether the source is a stream (RTSP and the like) rather than a file."""
        return urlsplit(self.config.url).scheme.lower() in _NETWORK_SCHEMES

    def open(self) -> None:
        """Open the file or connect to the stream (AcquisitionError naming the reason when it cannot)."""
        lib = av()
        options = {"rtsp_transport": "tcp"} if self.is_network else {}
        timeout = self.config.open_timeout_s
        try:
            self._container = lib.open(self.config.url, options=options, timeout=(timeout, timeout))
        except (lib.FFmpegError, OSError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise AcquisitionError(f"video {self.config.name}: cannot open {redact(self.config.url)}: {reason}",
                                   "check the URL, the network camera's address and credentials"
                                   if self.is_network else "check the file path in the line config") from None
        if not self._container.streams.video:
            self.close()
            raise AcquisitionError(f"video {self.config.name}: {redact(self.config.url)} has no video stream",
                                   "point url at a video file or a camera's video stream")

    def close(self) -> None:
        """Release the file or connection (safe to call twice)."""
        container, self._container = self._container, None
        if container is not None:
            container.close()

    def frames(self) -> Iterator[Frame]:
        """Sampled frames until the file ends or the stream stops (AcquisitionError if it breaks mid-way)."""
        if self._container is None:
            self.open()
        lib = av()
        stream = self._container.streams.video[0]
        period, next_at, counter = 1.0 / self.config.sample_hz, 0.0, 0
        settings = {"url": redact(self.config.url), "sample_hz": self.config.sample_hz}
        try:
            for decoded in self._container.decode(stream):
                self.decoded += 1
                at = float(decoded.time) if decoded.time is not None else (self.decoded - 1) / _rate(stream)
                if at + 1e-6 < next_at:
                    continue
                next_at += period
                if next_at <= at:  # after a gap in the stream: resume the rate, do not burst-sample
                    next_at = at + period
                counter += 1
                yield Frame(pixels=self._pixels(decoded), source=self.config.name, frame_counter=counter,
                            captured_at=datetime.now(UTC), settings=settings, camera_frame_id=self.decoded - 1)
        except lib.FFmpegError as exc:
            raise AcquisitionError(f"video {self.config.name}: stream broke after {counter} frame(s): {exc}",
                                   "check the network camera; the source can be opened again") from None

    def _pixels(self, decoded: Any) -> np.ndarray:
        fmt = "gray" if self.colour_mode == "L" else "rgb24"
        return np.ascontiguousarray(decoded.to_ndarray(format=fmt), dtype=np.uint8)


def _rate(stream: Any) -> float:
    rate = stream.average_rate or stream.guessed_rate
    return float(rate) if rate else 25.0
