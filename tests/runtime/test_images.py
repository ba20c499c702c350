import io

import numpy as np
from PIL import Image

from inspectloop.runtime.images import decode_image, is_grey_content, load_image
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
