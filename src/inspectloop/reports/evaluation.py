"""Evaluation report files: ``metrics.json``, ``confusion_matrix.png`` and a self-contained ``report.html``.

The HTML page has no scripts and no external resources (the confusion matrix is embedded as a data
URI), so it can be mailed, archived or opened on an air-gapped line PC. Every file is written
atomically: a temporary file in the same folder, then ``os.replace``.
matplotlib is imported only when a picture is drawn (``pip install 'inspectloop[app]'``).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from inspectloop.errors import MissingExtraError
from inspectloop.fileio import atomic_write_bytes
from inspectloop.evaluate.metrics import RECALL_CONFIDENCE, ClassificationMetrics
from inspectloop.evaluate.slices import Slice, SliceReport

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.colors import Colormap
    from matplotlib.figure import Figure

REPORT_FORMAT = "inspectloop.evaluation-report"
REPORT_FORMAT_VERSION = 1
DASH = "\u2014"


@dataclass(frozen=True)
class EvaluationReportFiles:
    """Where :func:`write_evaluation_report` put its three files."""

    json: Path
    html: Path
    confusion_png: Path


@dataclass(frozen=True)
class ReportFigure:
    """An extra picture for the report (e.g. a reliability diagram), embedded under its own heading."""

    title: str
    png: bytes
    alt: str
    caption: str = ""


def write_evaluation_report(
    out_dir: Path,
    *,
    title: str,
    metrics: ClassificationMetrics,
    slices: SliceReport,
    context: Mapping[str, object],
    figures: Sequence[ReportFigure] = (),
) -> EvaluationReportFiles:
    """Write ``metrics.json``, ``confusion_matrix.png`` and ``report.html`` into ``out_dir``.

    ``context`` names what was evaluated (dataset version, run id, model, ...); it heads the page and
    is stored in the JSON (values that are not JSON types are stored as text). ``figures`` follow the
    confusion matrix in the page.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    png = confusion_png_bytes(metrics, normalise=True)
    files = EvaluationReportFiles(
        json=out_dir / "metrics.json",
        html=out_dir / "report.html",
        confusion_png=out_dir / "confusion_matrix.png",
    )
    atomic_write_bytes(files.confusion_png, png)
    atomic_write_bytes(files.json, _report_json(title, metrics, slices, context).encode("utf-8"))
    atomic_write_bytes(files.html, render_html(title, metrics, slices, context, png, figures).encode("utf-8"))
    return files


def confusion_matrix_png(metrics: ClassificationMetrics, path: Path, *, normalise: bool = True) -> Path:
    """Draw the confusion matrix to a PNG at ``path`` and return the path.

    Cells show the count and the share of the true class (row); the colour is that share when
    ``normalise`` is true (so the diagonal reads as recall), otherwise the count.
    """
    path = Path(path)
    atomic_write_bytes(path, confusion_png_bytes(metrics, normalise=normalise))
    return path


def confusion_png_bytes(metrics: ClassificationMetrics, *, normalise: bool = True) -> bytes:
    """The confusion matrix picture as PNG bytes (see :func:`confusion_matrix_png`)."""
    figure = _confusion_figure(metrics, normalise)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=144, bbox_inches="tight", facecolor="white")
    return buffer.getvalue()


# --- confusion matrix picture -------------------------------------------------------------------


def _confusion_figure(metrics: ClassificationMetrics, normalise: bool) -> Figure:
    try:
        from matplotlib.figure import Figure
    except ImportError as error:  # pragma: no cover - depends on the installed extras
        raise MissingExtraError("matplotlib", "app") from error
    counts = metrics.confusion
    k = len(metrics.class_names)
    support = counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = counts / support[:, None]
    colour = np.ma.masked_invalid(shares if normalise else counts.astype(float))
    side = max(3.2, 0.85 * k + 1.2)
    figure = Figure(figsize=(side + 1.6, side), layout="constrained")
    axes = figure.add_subplot()
    cmap = _colour_map()
    vmax = 1.0 if normalise else max(1.0, float(counts.max()))
    image = axes.imshow(colour, cmap=cmap, vmin=0.0, vmax=vmax, aspect="equal")
    _annotate_cells(axes, counts, shares, colour, vmax, k)
    _label_axes(axes, metrics, support, k)
    bar = figure.colorbar(image, ax=axes, shrink=0.8)
    bar.set_label("share of the true class (row)" if normalise else "number of images")
    if normalise:
        bar.ax.yaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
    return figure


def _colour_map() -> Colormap:
    from matplotlib import colormaps

    return colormaps["Blues"].with_extremes(bad="#eeeeee")  # grey: rows without test images


def _annotate_cells(
    axes: Axes, counts: np.ndarray, shares: np.ndarray, colour: np.ma.MaskedArray, vmax: float, k: int
) -> None:
    """Count and row share in each cell; empty cells are a faint "0" so the errors stand out."""
    size = 10 if k <= 6 else 8 if k <= 12 else 6
    for i in range(k):
        for j in range(k):
            count, share = int(counts[i, j]), float(shares[i, j])
            level = 0.0 if np.ma.is_masked(colour[i, j]) else float(colour[i, j]) / vmax
            if count == 0:
                text, ink = "0", "#9aa5b1"
            else:
                text = f"{count}\n{_share_text(share)}"
                ink = "white" if level > 0.55 else "#1f2933"
            axes.text(j, i, text, ha="center", va="center", fontsize=size, linespacing=1.25, color=ink,
                      fontweight="bold" if i == j else "normal")


def _share_text(share: float) -> str:
    return "<1%" if share < 0.005 else f"{share:.0%}"


def _label_axes(axes: Axes, metrics: ClassificationMetrics, support: np.ndarray, k: int) -> None:
    names = metrics.class_names
    axes.set_xticks(range(k), labels=names)
    axes.set_yticks(range(k), labels=[f"{n}  (n={int(s)})" for n, s in zip(names, support)])
    if k > 4 or max(len(n) for n in names) > 8:
        for label in axes.get_xticklabels():
            label.set_rotation(35)
            label.set_horizontalalignment("right")
            label.set_rotation_mode("anchor")
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(f"Confusion matrix ({metrics.count} images)", fontsize=11)
    axes.tick_params(length=0)
    axes.set_xticks(np.arange(-0.5, k, 1), minor=True)
    axes.set_yticks(np.arange(-0.5, k, 1), minor=True)
    axes.grid(which="minor", color="white", linewidth=1.5)
    axes.tick_params(which="minor", length=0)
    for spine in axes.spines.values():
        spine.set_visible(False)


# --- JSON ---------------------------------------------------------------------------------------


def _report_json(
    title: str, metrics: ClassificationMetrics, slices: SliceReport, context: Mapping[str, object]
) -> str:
    document = {
        "format": REPORT_FORMAT,
        "format_version": REPORT_FORMAT_VERSION,
        "title": title,
        "context": _json_safe(context),
        "metrics": metrics.to_dict(),
        "slices": slices.to_dict(),
    }
    return json.dumps(document, indent=2, allow_nan=False) + "\n"


def _json_safe(value: object) -> object:
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    return str(value)


# --- HTML ---------------------------------------------------------------------------------------

_CSS = """
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
.scroll { overflow-x: auto; }
.callout { border-left: 4px solid #c81e1e; background: #fdf2f2; padding: .6rem 1rem; margin: 1rem 0; }
.callout.quiet { border-color: #9aa5b1; background: #f5f7fa; }
.figures { display: flex; flex-wrap: wrap; gap: .75rem; margin: 1rem 0; }
.figure { border: 1px solid #e4e7eb; border-radius: 6px; padding: .5rem .9rem; min-width: 8rem; }
.figure .label { color: #52606d; font-size: .85rem; }
.figure .value { font-size: 1.4rem; font-weight: 600; }
.figure.secondary .value { font-size: 1.1rem; font-weight: 500; color: #52606d; }
tr.worst td { background: #fde8e8; font-weight: 600; }
tr.small td { color: #9aa5b1; }
.badge { display: inline-block; font-size: .75rem; font-weight: 600; color: #fff; background: #c81e1e;
         border-radius: 3px; padding: 0 .35rem; margin-left: .3rem; vertical-align: 1px; }
.muted { color: #7b8794; }
.undefined { color: #9aa5b1; }
img.confusion { max-width: 100%; height: auto; border: 1px solid #e4e7eb; }
ul.notes { color: #52606d; font-size: .9rem; }
"""


def render_html(
    title: str,
    metrics: ClassificationMetrics,
    slices: SliceReport,
    context: Mapping[str, object],
    confusion_png: bytes,
    figures: Sequence[ReportFigure] = (),
) -> str:
    """The self-contained report page (no scripts, no external resources)."""
    body = "\n".join([
        f"<h1>{_e(title)}</h1>",
        _context_table(context),
        _worst_callout(slices),
        _headline_figures(metrics),
        "<h2>Per class</h2>",
        _per_class_table(metrics),
        "<h2>Confusion matrix</h2>",
        _confusion_image(confusion_png),
        *(_figure_section(figure) for figure in figures),
        _slice_sections(metrics, slices),
        _notes(metrics, slices),
    ])
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def _context_table(context: Mapping[str, object]) -> str:
    if not context:
        return ""
    rows = "".join(
        f"<tr><th>{_e(str(k))}</th><td>{_e(_context_text(v))}</td></tr>" for k, v in context.items()
    )
    return f'<table class="context">{rows}</table>'


def _context_text(value: object) -> str:
    safe = _json_safe(value)
    return safe if isinstance(safe, str) else json.dumps(safe)


def _worst_callout(slices: SliceReport) -> str:
    worst = slices.worst
    if worst is None:
        return (f'<p class="callout quiet">No slice has at least {slices.min_count} images, '
                "so no worst slice is named.</p>")
    m = worst.metrics
    return (f'<p class="callout"><strong>Worst slice: {_e(worst.field)} = {_e(worst.value)}</strong> '
            f"&mdash; macro recall {_pct(m.macro_recall)} on {m.count} images "
            f"(lowest among slices with at least {slices.min_count} images).</p>")


def _headline_figures(metrics: ClassificationMetrics) -> str:
    figures = [
        ("Macro recall", _pct(metrics.macro_recall), ""),
        ("Macro precision", _pct(metrics.macro_precision), ""),
        ("Macro F1", _pct(metrics.macro_f1), ""),
        ("Accuracy", _pct(metrics.accuracy), " secondary"),
        ("Images", str(metrics.count), " secondary"),
    ]
    cells = "".join(
        f'<div class="figure{extra}"><div class="label">{label}</div><div class="value">{value}</div></div>'
        for label, value, extra in figures
    )
    return f'<div class="figures">{cells}</div>'


def _per_class_table(metrics: ClassificationMetrics) -> str:
    level = f"{RECALL_CONFIDENCE:.0%}"
    head = (f"<tr><th>Class</th><th>Images</th><th>Recall</th><th>Recall {level} interval</th>"
            "<th>Precision</th><th>F1</th><th>Predicted</th></tr>")
    rows = []
    for c in metrics.per_class:
        precision = _pct(c.precision, undefined="never predicted")
        recall = _pct(c.recall, undefined="no test images")
        interval = DASH if math.isnan(c.recall_low) else f"{_pct(c.recall_low)} &ndash; {_pct(c.recall_high)}"
        rows.append(f"<tr><td>{_e(c.name)}</td><td>{c.support}</td><td>{recall}</td><td>{interval}</td>"
                    f"<td>{precision}</td><td>{_pct(c.f1)}</td><td>{c.predicted}</td></tr>")
    return f'<div class="scroll"><table>{head}{"".join(rows)}</table></div>'


def _confusion_image(png: bytes) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (f'<img class="confusion" src="data:image/png;base64,{data}" '
            'alt="Confusion matrix: rows are true classes, columns predicted classes">')


def _figure_section(figure: ReportFigure) -> str:
    data = base64.b64encode(figure.png).decode("ascii")
    caption = f"<p>{_e(figure.caption)}</p>" if figure.caption else ""
    return (f"<h2>{_e(figure.title)}</h2>\n{caption}\n"
            f'<img class="confusion" src="data:image/png;base64,{data}" alt="{_e(figure.alt)}">')


def _slice_sections(metrics: ClassificationMetrics, slices: SliceReport) -> str:
    if not slices.fields:
        return '<h2>Slices</h2><p class="muted">No metadata field was sliced.</p>'
    parts = ["<h2>Slices by metadata</h2>"]
    for field in slices.fields:
        parts.append(f"<h3>{_e(field)}</h3>")
        parts.append(_slice_table(metrics, slices.for_field(field), slices))
    return "\n".join(parts)


def _slice_table(metrics: ClassificationMetrics, rows: tuple[Slice, ...], report: SliceReport) -> str:
    """One row per value; per-class recall only for classes that have test images at all."""
    shown = [i for i, c in enumerate(metrics.per_class) if c.support > 0]
    recall_heads = "".join(f"<th>Recall: {_e(metrics.class_names[i])}</th>" for i in shown)
    head = (f"<tr><th>Value</th><th>Images</th><th>Macro recall</th><th>Macro precision</th>"
            f"<th>Macro F1</th><th>Accuracy</th>{recall_heads}</tr>")
    body = "".join(_slice_row(s, report, shown) for s in rows)
    return f'<div class="scroll"><table>{head}{body}</table></div>'


def _slice_row(item: Slice, report: SliceReport, shown: list[int]) -> str:
    m = item.metrics
    css = "worst" if item is report.worst else "small" if m.count < report.min_count else ""
    attribute = f' class="{css}"' if css else ""
    badge = ' <span class="badge">worst</span>' if css == "worst" else ""
    recalls = "".join(_recall_cell(m, i) for i in shown)
    figures = "".join(f"<td>{_pct(v)}</td>" for v in (m.macro_recall, m.macro_precision, m.macro_f1, m.accuracy))
    return f"<tr{attribute}><td>{_e(item.value)}{badge}</td><td>{m.count}</td>{figures}{recalls}</tr>"


def _recall_cell(m: ClassificationMetrics, i: int) -> str:
    c = m.per_class[i]
    if not c.support:
        return f"<td>{_pct(c.recall, undefined='no images of this class in this slice')}</td>"
    return f'<td>{_pct(c.recall)} <span class="muted">{int(m.confusion[i, i])}/{c.support}</span></td>'


def _notes(metrics: ClassificationMetrics, slices: SliceReport) -> str:
    over = ", ".join(_e(n) for n in metrics.macro_classes)
    notes = [
        f"Macro figures are plain means over the classes that have test images ({over}); "
        "a class that is never predicted has no precision and is left out of macro precision, "
        "but its recall and F1 of 0 count.",
        f"Recall intervals are {RECALL_CONFIDENCE:.0%} Wilson score intervals; "
        "they are wide when a class has few images.",
        "Accuracy counts every image equally, so the most common class dominates it; "
        "read it with per-class recall.",
        f"&ldquo;{DASH}&rdquo; marks a value that is undefined (no test images, or never predicted).",
        "A slice's macro figures average over the classes present in that slice, so slices with "
        "different class mixes are not strictly comparable; check the per-class recall columns.",
        f"Slices with fewer than {slices.min_count} images are greyed and not ranked; "
        "images without a value for a field are grouped as &ldquo;(missing)&rdquo;.",
    ]
    return '<h2>How to read this</h2><ul class="notes">' + "".join(f"<li>{n}</li>" for n in notes) + "</ul>"


def _pct(value: float, undefined: str = "undefined") -> str:
    if math.isnan(value):
        return f'<span class="undefined" title="{undefined}">{DASH}</span>'
    return f"{100.0 * value:.1f}&nbsp;%"


def _e(text: str) -> str:
    return html.escape(text, quote=True)
