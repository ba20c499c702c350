"""Video sources through PyAV (FFmpeg): a small lossless video the test writes itself, sampled at a set rate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inspectloop.errors import AcquisitionError

av = pytest.importorskip("av", reason="PyAV (the 'camera' extra) is not installed: pip install 'inspectloop[camera]'")

from inspectloop.line.acquire.video import VideoSource, redact  # noqa: E402
from inspectloop.line.config import VideoConfig  # noqa: E402

FPS, SECONDS = 20, 2


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s at 20 fps, 64x48; frame i is uniformly grey level 10 * i (lossless FFV1, so levels survive)."""
    path = tmp_path_factory.mktemp("video") / "line.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "gray"
        for i in range(FPS * SECONDS):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64), 10 * (i % 25), np.uint8), format="gray")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


@pytest.mark.parametrize(("sample_hz", "expected_ids"), [
    (5.0, list(range(0, 40, 4))),  # one part every 4th frame
    (20.0, list(range(40))),  # every frame
    (100.0, list(range(40))),  # faster than the video: every frame once, none twice
])
def test_file_is_sampled_at_the_set_rate(clip: Path, sample_hz: float, expected_ids: list[int]) -> None:
    with VideoSource(VideoConfig(name="feed", url=str(clip), sample_hz=sample_hz), colour_mode="L") as source:
        frames = list(source.frames())
    assert [f.camera_frame_id for f in frames] == expected_ids
    assert [f.frame_counter for f in frames] == list(range(1, len(expected_ids) + 1))
    assert [int(f.pixels[0, 0]) for f in frames] == [10 * (i % 25) for i in expected_ids]
    assert frames[0].record()["settings"] == {"url": str(clip), "sample_hz": sample_hz}


def test_rgb_model_gets_rgb_frames(clip: Path) -> None:
    with VideoSource(VideoConfig(name="feed", url=str(clip), sample_hz=1.0)) as source:
        first = next(source.frames())
    assert first.pixels.shape == (48, 64, 3) and first.image().mode == "RGB"


@pytest.mark.parametrize(("url", "says", "fix"), [
    ("/nowhere/line.mp4", "cannot open /nowhere/line.mp4", "check the file path"),
    ("rtsp://op:secret@127.0.0.1:9/stream", "cannot open rtsp://op:***@127.0.0.1:9/stream", "network camera"),
])
def test_unopenable_sources_are_refused_with_the_fix(url: str, says: str, fix: str) -> None:
    source = VideoSource(VideoConfig(name="feed", url=url, sample_hz=1.0, open_timeout_s=1.0))
    with pytest.raises(AcquisitionError) as caught:
        source.open()
    assert says in caught.value.message and fix in (caught.value.hint or "")
    assert "secret" not in str(caught.value)


def test_a_file_without_video_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tone.wav"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.rate = 8000
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    with pytest.raises(AcquisitionError, match="has no video stream"):
        VideoSource(VideoConfig(name="feed", url=str(path), sample_hz=1.0)).open()


@pytest.mark.parametrize(("url", "shown"), [
    ("rtsp://admin:hunter2@10.0.0.5:554/h264", "rtsp://admin:***@10.0.0.5:554/h264"),
    ("rtsp://10.0.0.5/h264", "rtsp://10.0.0.5/h264"),
    ("/data/line.mp4", "/data/line.mp4"),
])
def test_passwords_are_redacted(url: str, shown: str) -> None:
    assert redact(url) == shown
