"""Decode camera images into one of two working modes: ``L`` (greyscale) or ``RGB``.

Industrial cameras write greyscale, 16-bit, palette and RGB(A) files; every one is mapped here,
deliberately and in one place, so training, ingest statistics and the edge runtime see the same pixels.
Anything we cannot use raises :class:`~inspectloop.errors.ImageError` with the reason and the fix.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from inspectloop.errors import ImageError

MIN_SIDE = 16
MAX_PIXELS = 100_000_000  # 100 MP: far above any line-scan tile we expect, below a decompression bomb

_GREY_MODES = {"1", "L", "LA", "La"}
_HIGH_DEPTH_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}
_COLOUR_MODES = {"RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV", "P", "PA"}


@dataclass(frozen=True)
class Decoded:
    """A decoded image in its working mode, and what the file held before conversion."""

    image: Image.Image
    original_mode: str
    format: str


def load_image(source: str | Path | bytes, *, name: str | None = None, draft: int | None = None,
               mode: str | None = None) -> Image.Image:
    """Decode ``source`` (a path or the file's bytes) into a fully loaded ``L`` or ``RGB`` image.

    ``draft`` lets the JPEG decoder scale down by 1/2, 1/4 or 1/8 while decoding, never below
    ``draft`` pixels on the short side: several times faster for large frames feeding a small model.
    ``mode="L"`` forces greyscale; a colour JPEG is then decoded straight to luma (no colour conversion).
    """
    return decode_image(source, name=name, draft=draft, mode=mode).image


def decode_image(source: str | Path | bytes, *, name: str | None = None, draft: int | None = None,
                 mode: str | None = None) -> Decoded:
    """Like :func:`load_image`, also reporting the file's format and original pixel mode."""
    label = name or (str(source) if not isinstance(source, bytes) else "<bytes>")
    image = _open(source, label)
    original_mode, file_format = image.mode, image.format or "?"
    if image.format == "JPEG" and (draft is not None or (mode == "L" and image.mode != "L")):
        target = (draft, draft) if draft is not None else image.size
        image.draft("L" if mode == "L" else image.mode, target)
    _load_fully(image, label)
    _check_size(image, label)
    working = to_working_mode(image, label)
    if mode == "L" and working.mode != "L":
        working = working.convert("L")
    return Decoded(working, original_mode, file_format)


def is_grey_content(image: Image.Image) -> bool:
    """Whether an RGB image carries no colour (R = G = B everywhere, as many camera JPEGs do)."""
    if image.mode == "L":
        return True
    pixels = np.asarray(image)
    return bool(np.array_equal(pixels[..., 0], pixels[..., 1]) and np.array_equal(pixels[..., 0], pixels[..., 2]))


def _open(source: str | Path | bytes, label: str) -> Image.Image:
    try:
        stream = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")  # noqa: SIM115
    except OSError as exc:
        raise ImageError(f"{label}: cannot read file ({exc.strerror})", "check the path and permissions") from exc
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(stream)
    except UnidentifiedImageError as exc:
        raise ImageError(f"{label}: not an image file (format not recognised)",
                         "remove it from the source folder or convert it to PNG/JPEG/TIFF/BMP") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"{label}: image too large to decode safely", "crop or tile it below 100 megapixels") from exc
    except OSError as exc:
        raise ImageError(f"{label}: image header is corrupt or truncated ({exc})",
                         "re-copy or re-export the file from the camera software") from exc


def _load_fully(image: Image.Image, label: str) -> None:
    try:
        image.load()
    except (OSError, SyntaxError, ValueError) as exc:
        reason = "truncated" if "truncated" in str(exc).lower() else "corrupt"
        raise ImageError(f"{label}: image data is {reason} ({exc})",
                         "re-copy the file from the camera; the stored copy is incomplete") from exc


def _check_size(image: Image.Image, label: str) -> None:
    width, height = image.size
    if min(width, height) < MIN_SIDE:
        raise ImageError(f"{label}: image is {width}x{height} px, smaller than {MIN_SIDE} px on a side",
                         "check the camera ROI; such a crop holds too little to inspect")
    if width * height > MAX_PIXELS:
        raise ImageError(f"{label}: image is {width}x{height} px, over {MAX_PIXELS // 1_000_000} MP",
                         "crop or tile it before ingest")


def to_working_mode(image: Image.Image, label: str) -> Image.Image:
    """An opened image in the working mode (L or RGB), converted as this module documents; ImageError if not."""
    mode = image.mode
    if mode == "L":
        return image
    if mode in _GREY_MODES:
        return image.convert("L")  # drop alpha / expand 1-bit; alpha carries no surface information
    if mode in _HIGH_DEPTH_MODES:
        return _high_depth_to_l(image, label)
    if mode == "F":
        raise ImageError(f"{label}: floating-point images (mode F) are not supported",
                         "export the camera frames as 8- or 16-bit integer images")
    if mode in _COLOUR_MODES:
        return _colour_to_rgb(image)
    raise ImageError(f"{label}: unsupported pixel mode {mode!r}", "convert the image to 8-bit greyscale or RGB")


def _high_depth_to_l(image: Image.Image, label: str) -> Image.Image:
    """16-bit (and 32-bit integer) greyscale to 8 bits by the container's full range: v * 255 / 65535.

    A fixed scale keeps brightness comparable across frames (per-image stretching would hide the
    lighting drift that monitoring must see). Values beyond 16 bits are refused.
    """
    values = np.asarray(image, dtype=np.int64)
    if values.min() < 0 or values.max() > 65535:
        raise ImageError(f"{label}: 32-bit integer pixels outside 0..65535", "export as 16-bit greyscale")
    scaled = np.round(values * (255.0 / 65535.0)).astype(np.uint8)
    return Image.fromarray(scaled, mode="L")


def _colour_to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in {"P", "PA"}:
        image = image.convert("RGBA")
    if image.mode in {"RGBA", "RGBa"}:
        # Composite on black: transparent regions are outside the part, never bright surface.
        background = Image.new("RGB", image.size, (0, 0, 0))
        background.paste(image, mask=image.getchannel("A"))
        return background
    return image.convert("RGB")


def to_grey_array(image: Image.Image) -> np.ndarray:
    """The image as a float32 greyscale array in [0, 255] (ITU-R 601 luma for RGB)."""
    grey = image if image.mode == "L" else image.convert("L")
    return np.asarray(grey, dtype=np.float32)
