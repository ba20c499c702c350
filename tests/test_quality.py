"""Quality statistics: the bounded view the service queues gives the same numbers as the whole frame."""

from __future__ import annotations

import numpy as np
from PIL import Image

from inspectloop.quality import quality_stats, statistics_view, view_stats


def test_the_view_is_small_owns_its_pixels_and_gives_the_frames_statistics() -> None:
    rng = np.random.default_rng(0)
    frame = Image.fromarray(rng.integers(0, 256, (3000, 4000), dtype=np.uint8))
    view = statistics_view(frame)
    assert max(view.shape) <= 512
    assert view.base is None or view.base.nbytes == view.nbytes  # not a window on the full frame
    assert view_stats(view) == quality_stats(frame)


def test_colour_frames_are_measured_on_their_grey_plane() -> None:
    grey = np.tile(np.arange(256, dtype=np.uint8), (64, 1))
    colour = Image.fromarray(np.stack([grey] * 3, axis=-1))
    assert quality_stats(colour) == quality_stats(Image.fromarray(grey))
