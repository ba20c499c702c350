"""The shared report blocks: numbers and percentages for people, intervals, the page shell, tables, thumbnails."""

from __future__ import annotations

import base64
import io
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inspectloop.fileio import json_safe
from inspectloop.reports.html import (
    DASH,
    THUMBNAIL_PX,
    breakable,
    count_text,
    interval,
    number_text,
    page,
    percent,
    percent_text,
    of_text,
    table,
    thumbnail_uri,
    value_html,
    value_text,
)
from tests.conftest import jpeg_bytes


@pytest.mark.parametrize(("value", "significant", "expected"), [
    (3600.0, 2, "3,600"),  # was "3.6e+03" in the model card
    (3564.2, 2, "3,564"),  # the whole part is never rounded away
    (36000.0, 4, "36,000"),
    (1234567.8, 3, "1,234,568"),
    (-2500.0, 2, "-2,500"),
    (0.4, 2, "0.4"),  # no trailing zeros
    (0.4123, 2, "0.41"),
    (12.34, 2, "12"),
    (2.345, 3, "2.35"),
    (9.96, 2, "10"),
    (0.0123, 2, "0.012"),
    (0.00012, 2, "0.00012"),  # "%.2g" wrote 0.00012, but 1.2e-05 one step below
    (1.2e-05, 2, "< 0.0001"),
    (-1.2e-05, 2, "> -0.0001"),
    (0.0, 2, "0"),
    (math.nan, 2, DASH),
    (math.inf, 2, DASH),
    (None, 2, DASH),
])
def test_numbers_are_written_for_people(value: float | None, significant: int, expected: str) -> None:
    assert number_text(value, significant) == expected


@pytest.mark.parametrize("significant", [1, 2, 3, 4])
def test_no_number_is_ever_in_scientific_notation(significant: int) -> None:
    for exponent in range(-9, 10):
        for mantissa in (1.0, 2.5, 9.99):
            text = number_text(mantissa * 10.0 ** exponent, significant)
            assert "e" not in text.lower(), text


@pytest.mark.parametrize(("value", "expected"), [
    (0.129, "12.9%"),
    (1.0, "100.0%"),
    (0.0, "0.0%"),
    (0.9995, "99.95%"),  # 1999 of 2000 found is not 100%
    (0.999999, "99.9999%"),
    (0.00012, "0.012%"),  # too small for one decimal: two significant digits, not "0.0%"
    (1e-09, "< 0.0001%"),
    (None, DASH),
    (math.nan, DASH),
])
def test_percentages(value: float | None, expected: str) -> None:
    assert percent_text(value) == expected


def test_an_undefined_percentage_says_why() -> None:
    assert percent(math.nan, undefined='never "predicted"') == (
        f'<span class="undefined" title="never &quot;predicted&quot;">{DASH}</span>')
    assert percent(0.5) == "50.0%"


@pytest.mark.parametrize(("low", "high", "expected"), [
    (0.1, 0.305, "10.0% &ndash; 30.5%"),
    (None, 0.3, DASH),  # a NaN that went through JSON
    (0.1, math.nan, DASH),
])
def test_intervals(low: float | None, high: float | None, expected: str) -> None:
    assert interval(low, high) == expected


def test_json_safe_keeps_only_json_types(tmp_path: Path) -> None:
    value = {"nan": math.nan, "inf": -math.inf, 3: np.float32(0.5), "n": np.int64(7), "path": tmp_path,
             "items": (1, "a", None)}
    assert json_safe(value) == {"nan": None, "inf": None, "3": 0.5, "n": 7, "path": str(tmp_path),
                                "items": [1, "a", None]}


def test_the_page_shell_is_self_contained_and_escapes_its_title() -> None:
    html = page("A <b> title", ["<p>body</p>"], css=".x { color: red; }")
    assert html.startswith("<!DOCTYPE html>") and "<title>A &lt;b&gt; title</title>" in html
    assert "<p>body</p>" in html and ".x { color: red; }" in html
    assert "<script" not in html and "http://" not in html and "https://" not in html


def test_a_table_styles_the_rows_it_is_told_to() -> None:
    html = table(["A", "B"], [["1", "2"], ["3", "4"]], row_classes=["", "worst"])
    assert "<tr><th>A</th><th>B</th></tr>" in html
    assert "<tr><td>1</td><td>2</td></tr>" in html and '<tr class="worst"><td>3</td><td>4</td></tr>' in html


def _decoded(uri: str) -> Image.Image:
    prefix = "data:image/jpeg;base64,"
    assert uri.startswith(prefix)
    return Image.open(io.BytesIO(base64.b64decode(uri[len(prefix):])))


@pytest.mark.parametrize(("mode", "size", "fmt"), [
    ("RGB", (640, 480), "JPEG"),
    ("L", (200, 40), "PNG"),  # a strip keeps its shape
    ("I;16", (300, 300), "PNG"),  # 16-bit greyscale, as many line cameras write
])
def test_a_thumbnail_is_a_small_embedded_jpeg(mode: str, size: tuple[int, int], fmt: str) -> None:
    buffer = io.BytesIO()
    if mode == "I;16":
        Image.fromarray(np.full(size, 40000, dtype=np.uint16)).save(buffer, format=fmt)
    else:
        Image.new(mode, size, "white" if mode == "RGB" else 200).save(buffer, format=fmt)
    image = _decoded(thumbnail_uri(buffer.getvalue()))
    assert image.format == "JPEG" and max(image.size) == THUMBNAIL_PX
    assert abs(image.size[0] / image.size[1] - size[0] / size[1]) < 0.1
    assert len(thumbnail_uri(buffer.getvalue())) < 8000  # a page of 24 stays small


def test_a_small_image_is_not_blown_up_and_garbage_is_no_thumbnail() -> None:
    assert _decoded(thumbnail_uri(jpeg_bytes(1))).size == (64, 64)
    assert thumbnail_uri(b"not an image") is None


@pytest.mark.parametrize(("value", "expected"), [
    ("0.3333333333333333", "0.333"),  # the plant's "worst slice: defect_probability = 0.3333333333333333"
    ("3.49e+03", "3,490"),
    ("3490.0", "3,490"),
    ("1E-7", "< 0.0001"),
    ("0.5", "0.5"),
    ("2.0", "2"),
    ("3490", "3490"),  # a whole number as written: usually an id (part 3490, session 2026)
    ("00123", "00123"),
    ("cam-e1", "cam-e1"),  # text with an "e" stays text
    ("v1.2.3", "v1.2.3"),
    ("nan", "nan"),
    ("  night ", "night"),
    ("(missing)", "(missing)"),
])
def test_metadata_values_are_written_for_people(value: str, expected: str) -> None:
    assert value_text(value) == expected


def test_a_rounded_value_keeps_what_was_written_in_its_tooltip() -> None:
    assert value_html("0.3333333333333333") == '<span title="0.3333333333333333">0.333</span>'
    assert value_html("<b>cam</b>") == "&lt;b&gt;cam&lt;/b&gt;"


@pytest.mark.parametrize(("call", "expected"), [
    (lambda: count_text(3490), "3,490"),
    (lambda: count_text(0), "0"),
    (lambda: count_text(None), DASH),
    (lambda: of_text(68, 3490), "68 of 3,490"),
    (lambda: breakable("rolled-in_scale"), "rolled-<wbr>in_<wbr>scale"),
    (lambda: breakable("a<b"), "a&lt;b"),
])
def test_counts_and_headings_for_people(call: object, expected: str) -> None:
    assert call() == expected  # type: ignore[operator]
