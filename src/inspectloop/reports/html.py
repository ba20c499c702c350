"""Building blocks shared by every report page: the page shell and its style, tables, numbers and
percentages for people, intervals, and pictures embedded as data URIs (figures and image thumbnails).

Pages built from these have no scripts and no external resources, so they can be mailed, archived or
opened on an air-gapped line PC. Functions that return HTML escape what they are given unless they
say their input is HTML already; ``*_text`` functions return plain text (escape it when you place it).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from inspectloop.errors import ImageError
from inspectloop.fileio import json_safe
from inspectloop.runtime.images import decode_image

DASH = "\u2014"
THUMBNAIL_PX = 112  # long side: enough to see a scratch on a strip, small enough for 24 in a page
SMALLEST_DECIMAL = 4  # below 10^-4 a number reads "< 0.0001": more zeros help nobody

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2933;
       max-width: 1100px; margin: 2rem auto; padding: 0 1.25rem; background: #fff; }
h1 { font-size: 1.6rem; margin: 0 0 .75rem; }
h2 { font-size: 1.2rem; margin: 2rem 0 .5rem; border-bottom: 2px solid #e4e7eb; padding-bottom: .25rem; }
h3 { font-size: 1rem; margin: 1.25rem 0 .4rem; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: .3rem .65rem; border-bottom: 1px solid #e4e7eb; text-align: right; white-space: nowrap; }
th { background: #f5f7fa; font-weight: 600; }
th:first-child, td:first-child { text-align: left; }
table.context th { text-align: left; background: none; color: #52606d; font-weight: 500; }
table.context td { text-align: left; white-space: normal; }
/* A table wider than the page scrolls inside its box; a shadow on each side that has more says so even
   where scrollbars stay hidden until touched (white covers move with the content and hide a shadow at
   the end reached: background-attachment local vs scroll). */
.scroll { overflow-x: auto; max-width: 100%;
  background:
    linear-gradient(to right, #fff 30%, rgba(255,255,255,0)) left / 2rem 100% no-repeat local,
    linear-gradient(to left, #fff 30%, rgba(255,255,255,0)) right / 2rem 100% no-repeat local,
    radial-gradient(farthest-side at 0 50%, rgba(0,0,0,.18), rgba(0,0,0,0)) left / .6rem 100% no-repeat scroll,
    radial-gradient(farthest-side at 100% 50%, rgba(0,0,0,.18), rgba(0,0,0,0)) right / .6rem 100% no-repeat scroll; }
/* Slice tables: one column per class; their headings wrap and each count sits under its share, so six
   classes with long names still fit 1,280 px. */
table.slices th { white-space: normal; vertical-align: bottom; }
table.slices th.group { text-align: left; border-bottom: 1px solid #cbd2d9; }
table.slices th, table.slices td { padding: .3rem .5rem; }
table.slices td .count { display: block; font-size: .8rem; }
.callout { border-left: 4px solid #c81e1e; background: #fdf2f2; padding: .6rem 1rem; margin: 1rem 0; }
.callout.quiet { border-color: #9aa5b1; background: #f5f7fa; }
.callout.pass { border-color: #0e7c3a; background: #effaf3; }
.figures { display: flex; flex-wrap: wrap; gap: .75rem; margin: 1rem 0; }
.figure { border: 1px solid #e4e7eb; border-radius: 6px; padding: .5rem .9rem; min-width: 8rem; }
.figure .label { color: #52606d; font-size: .85rem; }
.figure .value { font-size: 1.4rem; font-weight: 600; }
.figure.secondary .value { font-size: 1.1rem; font-weight: 500; color: #52606d; }
tr.worst td { background: #fde8e8; font-weight: 600; }
tr.small td { color: #9aa5b1; }
.badge { display: inline-block; font-size: .75rem; font-weight: 600; color: #fff; background: #c81e1e;
         border-radius: 3px; padding: 0 .35rem; margin-left: .3rem; vertical-align: 1px; }
.badge.pass { background: #0e7c3a; }
.badge.fail { background: #c81e1e; }
.badge.none { background: #7b8794; }
.callout.verdict { font-size: 1.25rem; }
.callout.verdict ul.failed { font-size: 1rem; margin: .4rem 0 0; padding-left: 1.4rem; }
.badge.near { background: #b25e09; }
.muted { color: #7b8794; }
.undefined { color: #9aa5b1; }
img.confusion { max-width: 100%; height: auto; border: 1px solid #e4e7eb; }
ul.notes { color: #52606d; font-size: .9rem; }
.thumbs { display: grid; grid-template-columns: repeat(auto-fill, minmax(10.5rem, 1fr)); gap: .75rem; margin: 1rem 0; }
.thumbs figure { margin: 0; border: 1px solid #e4e7eb; border-radius: 6px; padding: .4rem; font-size: .8rem; }
.thumbs figure.wrong { border-color: #f0b4b4; background: #fdf7f7; }
.thumbs img.thumb { display: block; margin: 0 auto .3rem; max-width: 100%; height: auto; image-rendering: auto; }
.thumbs .nothumb { height: 5rem; display: flex; align-items: center; justify-content: center; color: #9aa5b1;
                   background: #f5f7fa; margin-bottom: .3rem; text-align: center; }
.thumbs figcaption { line-height: 1.35; overflow-wrap: anywhere; }
.thumbs .field { white-space: nowrap; }
"""


@dataclass(frozen=True)
class ReportFigure:
    """A picture for a report (e.g. a reliability diagram), embedded under its own heading."""

    title: str
    png: bytes
    alt: str
    caption: str = ""


# --- text -------------------------------------------------------------------------------------------


def escape(text: object) -> str:
    """``text`` as HTML text (quotes escaped too, so it is safe in attributes)."""
    return html.escape(str(text), quote=True)


def number_text(value: float | None, significant: int = 2) -> str:
    """A number as people write it: thousands separated, never in scientific notation.

    The whole part is always shown (3600 -> "3,600"); below 10 ** (significant - 1) the number keeps
    ``significant`` significant digits without trailing zeros (0.4 -> "0.4", 0.0123 -> "0.012").
    Undefined (None, NaN, infinite) is a dash.
    """
    if value is None or not math.isfinite(value):
        return DASH
    if value == 0:
        return "0"
    if abs(value) < 10.0 ** -SMALLEST_DECIMAL:
        tiny = f"{10.0 ** -SMALLEST_DECIMAL:.{SMALLEST_DECIMAL}f}"
        return f"< {tiny}" if value > 0 else f"> -{tiny}"
    magnitude = math.floor(math.log10(abs(value)))
    if magnitude >= significant - 1:
        return f"{value:,.0f}"
    decimals = significant - 1 - magnitude
    text = f"{value:,.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def count_text(value: int | None) -> str:
    """A count with thousands separated ("3,490"); None is a dash."""
    return DASH if value is None else f"{int(value):,}"


def of_text(part: int, whole: int) -> str:
    """A part of a whole in counts ("68 of 3,490")."""
    return f"{count_text(part)} of {count_text(whole)}"


def value_text(value: object, significant: int = 3) -> str:
    """A metadata value as people read it: one written as a decimal or in scientific notation is a number
    ("0.3333333333333333" -> "0.333", "3.49e+03" -> "3,490"); anything else (text, and whole numbers as
    written, which are usually ids: part 00123, session 2026) is shown as given. Plain text; escape it."""
    text = str(value).strip()
    if not any(mark in text.lower() for mark in (".", "e")):
        return text
    try:
        number = float(text)
    except ValueError:
        return text
    return number_text(number, significant) if math.isfinite(number) else text


def breakable(text: object) -> str:
    """``text`` as HTML that may wrap after ``_``, ``-``, ``/`` and ``.`` (long class names in narrow headings)."""
    return "".join(f"{escape(c)}<wbr>" if c in "_-/." else escape(c) for c in str(text))


def value_html(value: object, significant: int = 3) -> str:
    """:func:`value_text` as HTML; when rounding changed the value, its tooltip holds it as written."""
    shown = value_text(value, significant)
    if shown == str(value).strip():
        return escape(shown)
    return f'<span title="{escape(value)}">{escape(shown)}</span>'


def percent_text(value: float | None, decimals: int = 1) -> str:
    """A share in [0, 1] as a percentage with ``decimals`` decimals ("12.9%"). A share that is not 0 or 1
    never reads as "0.0%" or "100.0%": a tiny one keeps two significant digits ("0.012%"), one just below
    1 as many decimals as it takes ("99.95%"). Undefined (None, NaN) is a dash."""
    if value is None or math.isnan(value):
        return DASH
    points = 100.0 * value
    if 0 < abs(points) < 10.0 ** -decimals:
        return f"{number_text(points)}%"
    text = f"{points:.{decimals}f}"
    while points < 100 and float(text) >= 100 and decimals < SMALLEST_DECIMAL:
        decimals += 1
        text = f"{points:.{decimals}f}"
    return f"{text}%"


def percent(value: float | None, undefined: str = "undefined") -> str:
    """:func:`percent_text` as HTML; an undefined value is a grey dash whose tooltip says why."""
    if value is None or math.isnan(value):
        return f'<span class="undefined" title="{escape(undefined)}">{DASH}</span>'
    return percent_text(value)


def interval(low: float | None, high: float | None) -> str:
    """An interval of shares as HTML ("12.0% – 31.5%"); a dash when either end is undefined."""
    if any(v is None or math.isnan(v) for v in (low, high)):  # None: a NaN that went through JSON
        return DASH
    return f"{percent_text(low)} &ndash; {percent_text(high)}"


# --- structure --------------------------------------------------------------------------------------


def page(title: str, body: Iterable[str], *, css: str = "") -> str:
    """A whole self-contained HTML document: ``title`` (text) heads it, ``body`` parts are HTML."""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{escape(title)}</title>\n<style>{CSS}{css}</style>\n</head>\n<body>\n"
        f"{chr(10).join(body)}\n</body>\n</html>\n"
    )


def table(head: Sequence[str], rows: Iterable[Sequence[str]], *, row_classes: Sequence[str] = ()) -> str:
    """A scrollable table; ``head`` and the cells are HTML; ``row_classes`` (per row, "" for none) style rows."""
    header = "".join(f"<th>{h}</th>" for h in head)
    body = []
    for n, row in enumerate(rows):
        css = row_classes[n] if n < len(row_classes) else ""
        attribute = f' class="{css}"' if css else ""
        body.append(f"<tr{attribute}>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>")
    return f'<div class="scroll"><table><tr>{header}</tr>{"".join(body)}</table></div>'


def context_table(context: Mapping[str, object]) -> str:
    """Label / value rows (what a report is about); values that are not text are shown as JSON."""
    if not context:
        return ""
    rows = "".join(
        f"<tr><th>{escape(k)}</th><td>{escape(_context_text(v))}</td></tr>" for k, v in context.items()
    )
    return f'<table class="context">{rows}</table>'


def _context_text(value: object) -> str:
    safe = json_safe(value)
    return safe if isinstance(safe, str) else json.dumps(safe)


def notes_section(notes: Sequence[str], heading: str = "How to read this") -> str:
    """The closing list of reading notes; each note is HTML."""
    items = "".join(f"<li>{n}</li>" for n in notes)
    return f'<h2>{escape(heading)}</h2><ul class="notes">{items}</ul>'


# --- pictures ---------------------------------------------------------------------------------------


def data_uri(data: bytes, media_type: str = "image/png") -> str:
    """``data`` as a ``data:`` URI, so a page carries its pictures inside."""
    return f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}"


def png_image(png: bytes, alt: str, css: str = "confusion") -> str:
    """An embedded PNG with its alternative text."""
    return f'<img class="{escape(css)}" src="{data_uri(png)}" alt="{escape(alt)}">'


def figure_section(figure: ReportFigure) -> str:
    """A figure under its own heading, with its caption."""
    caption = f"<p>{escape(figure.caption)}</p>" if figure.caption else ""
    return f"<h2>{escape(figure.title)}</h2>\n{caption}\n{png_image(figure.png, figure.alt)}"


def thumbnail_uri(image: bytes, size: int = THUMBNAIL_PX) -> str | None:
    """A small JPEG of an image file's bytes as a data URI, at most ``size`` pixels on its long side;
    None when the bytes do not decode as an image (the page then says so instead of showing it)."""
    try:
        decoded = decode_image(image, draft=size).image  # the runtime's decoder: the pixels the model saw
    except ImageError:
        return None
    small = decoded.copy()
    small.thumbnail((size, size))
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=80, optimize=True)
    return data_uri(buffer.getvalue(), "image/jpeg")
