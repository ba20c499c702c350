"""Where frames come from: Basler cameras (pylon) and video files or RTSP streams (FFmpeg), each frame
recorded with its source, counter and locked settings. The SDKs are imported only when a source opens."""

from __future__ import annotations

from inspectloop.line.acquire.frame import Frame

__all__ = ["Frame"]
