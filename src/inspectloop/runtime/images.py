"""The one image decode policy: camera files into one of two working modes, ``L`` (greyscale) or ``RGB``.

Ingest, training, ``predict``, the edge runtime and the inspection service all decode here, so they see
the same pixels and refuse the same files with the same message:

- formats: PNG, JPEG, BMP, TIFF, PNM and GIF (``FORMATS``); Pillow's other decoders are never tried;
- size: the header's dimensions are checked before any pixel is decoded, against ``MAX_PIXELS`` or a
  caller's lower limit (:class:`~inspectloop.errors.ImageTooLargeError`: decompression bombs included);
- EXIF orientation is applied (``Decoded.orientation`` records the tag applied);
- several frames (animated GIF, multi-page TIFF): the first is used, with a warning;
- 16-bit greyscale: scaled to 8 bits by its significant bits (a 12-bit camera's 0..4095 to 0..255),
  with a warning that depth is reduced;
- alpha: dropped (never composited: a half-transparent pixel keeps its brightness), with a warning
  when any pixel was not opaque; CMYK: converted to RGB with a warning (no colour profile).

Warnings travel in :class:`Decoded`: ingest reports them per file, the service returns them in its
answer, ``predict`` prints them. Anything unusable raises :class:`~inspectloop.errors.ImageError`.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from inspectloop.errors import ImageError, ImageTooLargeError

MIN_SIDE = 16
# Just under Pillow's own decompression-bomb warning (89.5 MP), so Pillow never warns about a frame we
# accept; far above any line-scan tile we expect. The service sets a lower limit per request.
MAX_PIXELS = 89_000_000
FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "PPM", "GIF")  # what cameras write; PPM covers PBM/PGM/PPM
UPRIGHT = 1  # EXIF orientation: no transposition

_GREY_MODES = {"1", "L"}
_ALPHA_MODES = {"LA": "L", "La": "L", "RGBA": "RGB", "RGBa": "RGB", "PA": "RGB"}
_HIGH_DEPTH_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}
_COLOUR_MODES = {"RGB", "RGBX", "YCbCr", "P"}
_TRANSPOSE = {2, 3, 4, 5, 6, 7, 8}  # EXIF orientations that need a transposition
_QUARTER_TURNS = {5, 6, 7, 8}  # of which these swap width and height
Draft = int | tuple[int, int]  # a square side, or (width, height) of the upright image
_ROWS_PER_BLOCK = 1024  # rows of a 16-bit frame scaled at once: bounds the temporary index array


@dataclass(frozen=True)
class Decoded:
    """A decoded image in its working mode, what the file held, and what the decode changed.

    ``orientation`` is the EXIF orientation applied (1: none); ``warnings`` say where information was
    lost or guessed (extra frames dropped, bit depth reduced, alpha dropped, colour converted).
    """

    image: Image.Image
    original_mode: str
    format: str
    warnings: tuple[str, ...] = ()
    orientation: int = UPRIGHT

    @property
    def reoriented(self) -> bool:
        """Whether the EXIF orientation turned or flipped the stored pixels."""
        return self.orientation != UPRIGHT


def load_image(source: str | Path | bytes, *, name: str | None = None, draft: Draft | None = None,
               mode: str | None = None) -> Image.Image:
    """Decode ``source`` (a path or the file's bytes) into a fully loaded ``L`` or ``RGB`` image.

    ``draft`` lets the JPEG decoder scale down by 1/2, 1/4 or 1/8 while decoding, never below ``draft``
    pixels on either side, or below ``draft = (width, height)`` of the upright image: several times
    faster for large frames feeding a small model.
    ``mode="L"`` forces greyscale; a colour JPEG is then decoded straight to luma (no colour conversion).
    """
    return decode_image(source, name=name, draft=draft, mode=mode).image


def decode_image(source: str | Path | bytes, *, name: str | None = None, draft: Draft | None = None,
                 mode: str | None = None, max_pixels: int = MAX_PIXELS) -> Decoded:
    """Like :func:`load_image`, also reporting the file's format, original pixel mode, orientation and warnings.

    ``max_pixels`` (at most ``MAX_PIXELS``) is checked on the header, before any pixel is decoded.
    """
    label = _label(source, name)
    return decode_opened(open_image(source, name=label, max_pixels=max_pixels), name=label, draft=draft, mode=mode)


def open_image(source: str | Path | bytes, *, name: str | None = None, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """The image opened lazily: header read, format and size checked, no pixel decoded yet.

    Lets a caller reserve memory by ``image.size`` before :func:`decode_opened` decodes the pixels.
    """
    return _open(source, _label(source, name), min(max_pixels, MAX_PIXELS))


def decode_opened(image: Image.Image, *, name: str = "<bytes>", draft: Draft | None = None,
                  mode: str | None = None) -> Decoded:
    """Decode an image from :func:`open_image` by this module's policy (see :func:`decode_image`)."""
    original_mode, file_format = image.mode, image.format or "?"
    warnings = _frame_warnings(image)
    if image.format == "JPEG" and (draft is not None or (mode == "L" and image.mode != "L")):
        target = _stored_size(image, draft) if draft is not None else image.size
        image.draft("L" if mode == "L" else image.mode, target)
    _load_fully(image, name)
    orientation, orientation_warnings = _apply_orientation(image)
    working, mode_warnings = convert_to_working(image, name)
    if mode == "L" and working.mode != "L":
        working = working.convert("L")
    return Decoded(working, original_mode, file_format, (*warnings, *orientation_warnings, *mode_warnings),
                   orientation)


def _stored_size(image: Image.Image, draft: Draft) -> tuple[int, int]:
    """``draft`` as (width, height) of the pixels as stored: an upright size is swapped for a file whose
    EXIF orientation turns it by a quarter (the decoder scales before the image is turned)."""
    if isinstance(draft, int):
        return (draft, draft)
    width, height = draft
    try:
        turned = image.getexif().get(ExifTags.Base.Orientation, UPRIGHT) in _QUARTER_TURNS
    except Exception:  # noqa: BLE001 -- a malformed EXIF block: _apply_orientation warns; both sides kept
        return (max(draft), max(draft))
    return (height, width) if turned else (width, height)


def _label(source: str | Path | bytes, name: str | None) -> str:
    return name or (str(source) if not isinstance(source, bytes) else "<bytes>")


def too_large_message(label: str, pixels: int, limit: int, size: tuple[int, int] | None = None) -> str:
    """The one message for an image over a pixel limit, wherever it is refused."""
    dims = f"{size[0]}x{size[1]} px, " if size else ""
    return f"{label}: image is {dims}{pixels / 1e6:.1f} MP, over the {limit / 1e6:.1f} MP limit"


def is_grey_content(image: Image.Image) -> bool:
    """Whether an RGB image carries no colour (R = G = B everywhere, as many camera JPEGs do)."""
    if image.mode == "L":
        return True
    pixels = np.asarray(image)
    return bool(np.array_equal(pixels[..., 0], pixels[..., 1]) and np.array_equal(pixels[..., 0], pixels[..., 2]))


def _open(source: str | Path | bytes, label: str, max_pixels: int) -> Image.Image:
    """The image opened lazily (header only), its size checked against ``max_pixels``."""
    try:
        stream: BinaryIO = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")  # noqa: SIM115
    except OSError as exc:
        raise ImageError(f"{label}: cannot read file ({exc.strerror})", "check the path and permissions") from exc
    try:
        image = Image.open(stream, formats=FORMATS)
    except UnidentifiedImageError as exc:
        empty = not stream.read(1) if stream.seek(0) == 0 else False
        stream.close()
        what = "it is empty (0 bytes)" if empty else f"in a supported format ({', '.join(FORMATS)})"
        raise ImageError(f"{label}: not an image file {what}",
                         "remove it from the source folder or convert it to PNG/JPEG/TIFF/BMP") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow refuses twice its own limit before we see the size; its message holds the pixel count.
        stream.close()
        found = re.search(r"\((\d+) pixels\)", str(exc))
        pixels = int(found.group(1)) if found else 2 * (Image.MAX_IMAGE_PIXELS or MAX_PIXELS)
        raise ImageTooLargeError(too_large_message(label, pixels, max_pixels), _too_large_hint(max_pixels)) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        stream.close()
        raise ImageError(f"{label}: image header is corrupt or truncated ({exc})",
                         "re-copy or re-export the file from the camera software") from exc
    _check_size(image, label, max_pixels)
    return image


def _too_large_hint(limit: int) -> str:
    return f"crop or tile it below {limit / 1e6:.1f} megapixels"


def _check_size(image: Image.Image, label: str, max_pixels: int) -> None:
    """Refuse tiny and huge images from the header, before their pixels are decoded."""
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise ImageTooLargeError(too_large_message(label, width * height, max_pixels, (width, height)),
                                 _too_large_hint(max_pixels))
    if min(width, height) < MIN_SIDE:
        image.close()
        raise ImageError(f"{label}: image is {width}x{height} px, smaller than {MIN_SIDE} px on a side",
                         "check the camera ROI; such a crop holds too little to inspect")


def _frame_warnings(image: Image.Image) -> tuple[str, ...]:
    frames = getattr(image, "n_frames", 1)
    if frames > 1:
        return (f"{image.format} with {frames} frames: only the first is used",)
    return ()


def _load_fully(image: Image.Image, label: str) -> None:
    try:
        image.load()
    except (OSError, SyntaxError, ValueError, MemoryError) as exc:
        image.close()
        reason = "truncated" if "truncated" in str(exc).lower() else "corrupt"
        raise ImageError(f"{label}: image data is {reason} ({exc})",
                         "re-copy the file from the camera; the stored copy is incomplete") from exc


def _apply_orientation(image: Image.Image) -> tuple[int, tuple[str, ...]]:
    """Turn a loaded image upright by its EXIF orientation, in place; the tag applied and any warning."""
    try:
        orientation = image.getexif().get(ExifTags.Base.Orientation, UPRIGHT)
    except Exception:  # noqa: BLE001 -- Pillow raises assorted errors for malformed EXIF blocks
        return UPRIGHT, ("EXIF block unreadable: orientation not applied",)
    if orientation in _TRANSPOSE:
        ImageOps.exif_transpose(image, in_place=True)
        return int(orientation), ()
    if orientation != UPRIGHT:
        return UPRIGHT, (f"EXIF orientation {orientation!r} is not a valid value: ignored",)
    return UPRIGHT, ()


def to_working_mode(image: Image.Image, label: str) -> Image.Image:
    """An opened image in the working mode (L or RGB), converted as this module documents; ImageError if not."""
    return convert_to_working(image, label)[0]


def convert_to_working(image: Image.Image, label: str) -> tuple[Image.Image, tuple[str, ...]]:
    """``to_working_mode`` plus the warnings of the conversion (where information was lost)."""
    mode = image.mode
    if mode == "L":
        return image, ()
    if mode in _GREY_MODES:
        return image.convert("L"), ()  # 1-bit expands losslessly
    if mode in _HIGH_DEPTH_MODES:
        return _high_depth_to_l(image, label)
    if mode == "P" and "transparency" in image.info:
        return _drop_alpha(image.convert("RGBA"), "RGB")
    if mode in _ALPHA_MODES:
        return _drop_alpha(image, _ALPHA_MODES[mode])
    if mode == "CMYK":
        return image.convert("RGB"), ("CMYK converted to RGB without a colour profile: colours are approximate",)
    if mode == "F":
        raise ImageError(f"{label}: floating-point images (mode F) are not supported",
                         "export the camera frames as 8- or 16-bit integer images")
    if mode in _COLOUR_MODES:
        return image.convert("RGB"), ()
    raise ImageError(f"{label}: unsupported pixel mode {mode!r}", "convert the image to 8-bit greyscale or RGB")


def _drop_alpha(image: Image.Image, target: str) -> tuple[Image.Image, tuple[str, ...]]:
    """Alpha dropped, colour kept as stored: a camera's alpha carries no surface information, and
    compositing on a background would darken (or lighten) every half-transparent pixel."""
    if image.mode in {"PA", "La", "RGBa"}:
        image = image.convert("RGBA" if target == "RGB" else "LA")
    histogram = image.getchannel("A").histogram()
    not_opaque = 1.0 - histogram[255] / max(1, image.width * image.height)
    warnings = (f"alpha channel dropped: {not_opaque:.1%} of pixels were not opaque",) if not_opaque > 0 else ()
    return image.convert(target), warnings


def significant_bits(max_value: int) -> int:
    """The bit depth a camera most likely wrote: the smallest of 8, 10, 12, 14 or 16 that holds ``max_value``."""
    return next((bits for bits in (8, 10, 12, 14) if max_value < (1 << bits)), 16)


def _high_depth_to_l(image: Image.Image, label: str) -> tuple[Image.Image, tuple[str, ...]]:
    """16-bit (and 32-bit integer) greyscale to 8 bits by its significant bits: v * 255 / (2^bits - 1).

    A 12-bit camera stored in 16 bits is scaled by 4095, not 65535 (it would be nearly black). The
    scale follows the sensor's bit depth, never the frame's own min/max: per-image stretching would
    hide the lighting drift that monitoring must see.
    """
    values = np.asarray(image)
    low, high = int(values.min()), int(values.max())
    if low < 0 or high > 65535:
        raise ImageError(f"{label}: 32-bit integer pixels outside 0..65535", "export as 16-bit greyscale")
    bits = significant_bits(high)
    top = (1 << bits) - 1
    table = np.round(np.arange(top + 1, dtype=np.float64) * (255.0 / top)).astype(np.uint8)
    scaled = np.empty(values.shape, dtype=np.uint8)
    for row in range(0, values.shape[0], _ROWS_PER_BLOCK):  # the index array stays small for large frames
        scaled[row:row + _ROWS_PER_BLOCK] = table[values[row:row + _ROWS_PER_BLOCK]]
    warning = f"{image.mode} pixels reduced to 8 bits ({bits} significant bits: 0..{top} scaled to 0..255)"
    return Image.fromarray(scaled, mode="L"), (warning,)


def to_grey_array(image: Image.Image) -> np.ndarray:
    """The image as a float32 greyscale array in [0, 255] (ITU-R 601 luma for RGB)."""
    grey = image if image.mode == "L" else image.convert("L")
    return np.asarray(grey, dtype=np.float32)
