"""Anomaly heatmaps drawn for people: overlay PNGs for the review page, blended thumbnails for reports."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from inspectloop.reports.heatmaps import heatmap_thumbnail_uri, overlay_png, overlay_size


def hot_spot() -> np.ndarray:
    heatmap = np.full((64, 64), 0.2, dtype=np.float32)
    heatmap[8:16, 40:48] = 3.0  # top right
    return heatmap


@pytest.mark.parametrize(("image_size", "expected"), [((512, 256), (256, 128)), ((100, 400), (64, 256)),
                                                      ((80, 60), (80, 60))])
def test_an_overlay_keeps_the_images_aspect_ratio_and_stays_small(image_size: tuple[int, int],
                                                                  expected: tuple[int, int]) -> None:
    assert overlay_size(image_size) == expected
    assert Image.open(io.BytesIO(overlay_png(hot_spot(), image_size))).size == expected


def test_the_hot_spot_is_opaque_and_yellow_the_rest_transparent() -> None:
    overlay = np.asarray(Image.open(io.BytesIO(overlay_png(hot_spot(), (256, 256)))))
    hot, cold = overlay[48, 176], overlay[200, 40]  # inside the spot (scaled x4), far from it
    assert hot[3] >= 160 and hot[0] == 255 and hot[1] >= 240  # yellow, mostly opaque
    assert cold[3] == 0


def test_a_threshold_keeps_a_quiet_image_from_glowing() -> None:
    quiet = np.full((32, 32), 0.2, dtype=np.float32)
    quiet[0, 0] = 0.3
    relative = np.asarray(Image.open(io.BytesIO(overlay_png(quiet, (32, 32)))))
    against_threshold = np.asarray(Image.open(io.BytesIO(overlay_png(quiet, (32, 32), high=3.0))))
    assert relative[..., 3].max() > 150 and against_threshold[..., 3].max() < 60


def test_bad_heatmaps_and_bytes_are_refused_or_skipped() -> None:
    with pytest.raises(ValueError, match="finite"):
        overlay_png(np.array([[np.nan]]), (10, 10))
    assert heatmap_thumbnail_uri(b"not an image", hot_spot()) is None
    buffer = io.BytesIO()
    Image.new("L", (300, 150), 90).save(buffer, format="PNG")
    uri = heatmap_thumbnail_uri(buffer.getvalue(), hot_spot())
    assert uri is not None and uri.startswith("data:image/jpeg;base64,")
