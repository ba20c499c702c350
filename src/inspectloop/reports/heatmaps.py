"""Anomaly heatmaps drawn for people: a transparent overlay for the review page, a blended thumbnail for reports.

A heatmap is in the model's input frame (square or not), which covers the whole image (the resize does not crop),
so it is stretched back to the image's own aspect ratio. Colour runs from transparent (the image's
typical level, its median) through red to yellow (its hottest pixel, or ``high`` when given: a
model's threshold, say, so that a good image does not glow just because something is always hottest).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from inspectloop.errors import ImageError
from inspectloop.reports.html import THUMBNAIL_PX, data_uri
from inspectloop.runtime.images import decode_image

OVERLAY_SIDE = 256  # the long side of a drawn overlay, in pixels: small enough to store with every review item


def heatmap_rgba(heatmap: np.ndarray, size: tuple[int, int], *, high: float | None = None) -> Image.Image:
    """``heatmap`` (H, W) as an RGBA image of ``size`` (width, height): transparent where the map is at its
    median, opaque yellow at ``high`` (default: its maximum) and above."""
    values = np.asarray(heatmap, dtype=np.float32)
    if values.ndim != 2 or not np.isfinite(values).all():
        raise ValueError(f"a heatmap must be a finite (H, W) array, got shape {values.shape}")
    low = float(np.median(values))
    top = float(values.max()) if high is None else max(float(high), low)
    level = np.clip((values - low) / max(top - low, 1e-6), 0.0, 1.0)
    plane = Image.fromarray((level * 255).astype(np.uint8), "L").resize(size, Image.Resampling.BILINEAR)
    t = np.asarray(plane, dtype=np.float32) / 255.0
    rgba = np.empty((*t.shape, 4), dtype=np.uint8)
    rgba[..., 0] = 255
    rgba[..., 1] = (np.clip(2.0 * t - 1.0, 0.0, 1.0) * 255).astype(np.uint8)  # red, turning yellow when hot
    rgba[..., 2] = 0
    rgba[..., 3] = (np.sqrt(t) * 170).astype(np.uint8)  # faint heat still shows; the part shows through the hottest
    return Image.fromarray(rgba, "RGBA")


def overlay_size(image_size: tuple[int, int], long_side: int = OVERLAY_SIDE) -> tuple[int, int]:
    """The (width, height) of an overlay for an image of ``image_size``: its aspect ratio, ``long_side`` at most."""
    width, height = image_size
    scale = min(1.0, long_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def overlay_png(heatmap: np.ndarray, image_size: tuple[int, int], *, high: float | None = None) -> bytes:
    """A transparent PNG of ``heatmap`` at the image's aspect ratio, to lay over the image (the review page)."""
    return _png(heatmap_rgba(heatmap, overlay_size(image_size), high=high))


def overlaid_png(image: Image.Image, heatmap: np.ndarray, *, long_side: int = OVERLAY_SIDE,
                 high: float | None = None) -> bytes:
    """The image with its heatmap blended in, as a PNG thumbnail (reports: hard cases, the model card)."""
    size = overlay_size(image.size, long_side)
    base = image.convert("RGB").resize(size, Image.Resampling.BILINEAR).convert("RGBA")
    return _png(Image.alpha_composite(base, heatmap_rgba(heatmap, size, high=high)).convert("RGB"))


def heatmap_thumbnail_uri(image: bytes, heatmap: np.ndarray, size: int = THUMBNAIL_PX) -> str | None:
    """A report thumbnail (JPEG data URI, ``size`` on its long side) of an image file's bytes with its heatmap
    blended in; None when the bytes do not decode as an image."""
    try:
        decoded = decode_image(image, draft=size).image  # the runtime's decoder: the pixels the model saw
    except ImageError:
        return None
    small = overlay_size(decoded.size, size)
    base = decoded.convert("RGB").resize(small, Image.Resampling.BILINEAR).convert("RGBA")
    blended = Image.alpha_composite(base, heatmap_rgba(heatmap, small)).convert("RGB")
    buffer = io.BytesIO()
    blended.save(buffer, format="JPEG", quality=85, optimize=True)
    return data_uri(buffer.getvalue(), "image/jpeg")


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
