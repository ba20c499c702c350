import io
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image, ImageFile

from benchmarks.hostile_corpus import (
    animated_gif,
    cmyk_jpeg,
    exif_rotated_jpeg,
    half_transparent_png,
    png_of_zeros,
    twelve_bit_tiff,
)
from inspectloop.errors import ImageError, ImageTooLargeError
from inspectloop.runtime.images import decode_image, is_grey_content, load_image, significant_bits
from tests.conftest import surface


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def test_grey_mode_decodes_colour_jpeg_straight_to_luma() -> None:
    grey = surface(1, size=96)
    data = jpeg(Image.fromarray(np.stack([grey] * 3, -1), "RGB"))
    luma = load_image(data, mode="L")
    assert luma.mode == "L"
    reference = np.asarray(load_image(data).convert("L"), dtype=int)
    assert np.abs(np.asarray(luma, dtype=int) - reference).max() <= 2


def test_decode_reports_original_mode_and_format() -> None:
    decoded = decode_image(jpeg(Image.fromarray(surface(2), "L")))
    assert (decoded.original_mode, decoded.format, decoded.image.mode) == ("L", "JPEG", "L")


def test_grey_content_detection() -> None:
    grey = surface(3)
    assert is_grey_content(Image.fromarray(np.stack([grey] * 3, -1), "RGB"))
    tinted = np.stack([grey, grey, np.clip(grey.astype(int) + 5, 0, 255).astype(np.uint8)], -1)
    assert not is_grey_content(Image.fromarray(tinted, "RGB"))


# -- the one decode policy (issue 10): every path decodes here, so these hold for ingest, predict and serve --

@pytest.mark.parametrize(("case", "make", "warning"), [
    ("animated GIF: first frame", animated_gif, "GIF with 5 frames: only the first is used"),
    ("12-bit camera in a 16-bit TIFF", twelve_bit_tiff, "12 significant bits"),
    ("half-transparent RGBA", half_transparent_png, "alpha channel dropped: 100.0% of pixels"),
    ("CMYK JPEG", cmyk_jpeg, "CMYK converted to RGB"),
])
def test_information_lost_on_decode_is_a_warning(case: str, make: Callable[[], bytes], warning: str) -> None:
    """Each was accepted without a word (GIF by ingest only; the service refused it)."""
    decoded = decode_image(make())
    assert decoded.image.mode in ("L", "RGB"), case
    assert any(warning in text for text in decoded.warnings), (case, decoded.warnings)


def test_sixteen_bit_is_scaled_by_its_significant_bits_not_nearly_black() -> None:
    """A 12-bit frame (0..4080) was scaled by 255/65535: mean brightness ~8 instead of ~128."""
    image = decode_image(twelve_bit_tiff()).image
    assert abs(float(np.asarray(image).mean()) - 128) < 5
    assert significant_bits(4095) == 12 and significant_bits(4096) == 14 and significant_bits(200) == 8


def test_alpha_is_dropped_without_halving_brightness() -> None:
    """RGBA at alpha 128 was composited on black: brightness 160 became 80."""
    image = decode_image(half_transparent_png()).image
    assert abs(float(np.asarray(image.convert("L")).mean()) - 160) < 5


def test_an_opaque_alpha_channel_loses_nothing_and_warns_nothing() -> None:
    grey = surface(4)
    data = jpeg_free_png(Image.fromarray(np.stack([grey, grey, grey, np.full_like(grey, 255)], -1), "RGBA"))
    assert decode_image(data).warnings == ()


def test_exif_orientation_is_applied_and_recorded() -> None:
    """A JPEG stored 96x64 with orientation 6 was judged sideways."""
    decoded = decode_image(exif_rotated_jpeg(6))
    assert decoded.image.size == (64, 96) and decoded.orientation == 6 and decoded.reoriented
    upright = decode_image(jpeg(Image.fromarray(surface(2), "L")))
    assert upright.orientation == 1 and not upright.reoriented


@pytest.mark.parametrize("orientation", [1, 6])
def test_a_draft_decode_never_goes_below_the_upright_size_asked_for(orientation: int) -> None:
    """Stored 96x64, asked for 48x16 upright: turned by EXIF 6, the decoder must keep 48 on the stored height."""
    image = decode_image(exif_rotated_jpeg(orientation), draft=(48, 16)).image
    assert image.size[0] >= 48 and image.size[1] >= 16
    assert image.size == ((48, 32) if orientation == 1 else (64, 96))


def test_a_bomb_is_refused_from_its_header_with_the_one_message() -> None:
    """30000x30000 (900 MP): refused before decoding, the same message wherever it is decoded."""
    with pytest.raises(ImageTooLargeError, match=r"image is 900.0 MP, over the 89.0 MP limit"):
        decode_image(png_of_zeros(30000, 30000), name="bomb.png")


def test_a_lower_limit_is_checked_on_the_header_before_any_pixel_is_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded: list[str] = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: loaded.append("load"))
    with pytest.raises(ImageTooLargeError, match=r"image is 9000x9000 px, 81.0 MP, over the 4.0 MP limit"):
        decode_image(png_of_zeros(9000, 9000), name="big.png", max_pixels=4_000_000)
    assert loaded == []


def test_formats_outside_the_policy_are_refused_even_when_pillow_reads_them() -> None:
    with pytest.raises(ImageError, match="not an image file in a supported format"):
        decode_image(jpeg_free_png(Image.fromarray(surface(5), "L"), fmt="TGA"))


def jpeg_free_png(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()
