"""Evaluation report files: ``metrics.json``, ``confusion_matrix.png`` and a self-contained ``report.html``.

The HTML page has no scripts and no external resources (the confusion matrix and the thumbnails of the
hardest images are embedded as data URIs), so it can be mailed, archived or opened on an air-gapped line
PC. ``metrics.json`` keeps every image's outcome (see ``inspectloop.evaluate.outcomes``), so later
reports can show the images too. Every file is written atomically: a temporary file in the same folder,
then ``os.replace``. matplotlib is imported only when a picture is drawn (``pip install 'inspectloop[app]'``).
The sections are public: the model card shows the same tables and images.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from inspectloop.errors import ImageError, require
from inspectloop.evaluate.metrics import RECALL_CONFIDENCE, ClassificationMetrics
from inspectloop.evaluate.outcomes import HARDEST_SHOWN, ImageOutcome, hardest
from inspectloop.evaluate.slices import Slice, SliceReport
from inspectloop.reports.heatmaps import heatmap_thumbnail_uri
from inspectloop.fileio import atomic_write_bytes, json_safe
from inspectloop.reports.html import (
    DASH,
    ReportFigure,
    context_table,
    breakable,
    count_text,
    escape,
    figure_section,
    notes_section,
    number_text,
    page,
    percent,
    interval,
    percent_text,
    png_image,
    thumbnail_uri,
    value_html,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.colors import Colormap
    from matplotlib.figure import Figure

REPORT_FORMAT = "inspectloop.evaluation-report"
REPORT_FORMAT_VERSION = 2  # 2: per-image outcomes
CAPTION_FIELDS = ("camera", "shift", "line", "lighting", "part_id", "session")

ImageLoader = Callable[[str], bytes]  # an image file's bytes by its SHA-256 (a workspace's ``blobs.get``)
# An anomaly model's heatmap (H, W) of an image by its SHA-256 (None: none); called for the images shown only.
HeatmapLoader = Callable[[str], "np.ndarray | None"]


@dataclass(frozen=True)
class EvaluationReportFiles:
    """Where :func:`write_evaluation_report` put its three files."""

    json: Path
    html: Path
    confusion_png: Path


def write_evaluation_report(
    out_dir: Path,
    *,
    title: str,
    metrics: ClassificationMetrics,
    slices: SliceReport,
    context: Mapping[str, object],
    figures: Sequence[ReportFigure] = (),
    outcomes: Sequence[ImageOutcome] = (),
    images: ImageLoader | None = None,
    heatmaps: HeatmapLoader | None = None,
) -> EvaluationReportFiles:
    """Write ``metrics.json``, ``confusion_matrix.png`` and ``report.html`` into ``out_dir``.

    ``context`` names what was evaluated (dataset version, run id, model, ...); it heads the page and
    is stored in the JSON (values that are not JSON types are stored as text). ``figures`` follow the
    confusion matrix in the page. ``outcomes`` (one per image) are stored in the JSON; the hardest of
    them are shown in the page, with thumbnails when ``images`` can load their files, and an anomaly
    model's heatmap blended into each when ``heatmaps`` gives one.
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
    atomic_write_bytes(files.json, _report_json(title, metrics, slices, context, outcomes).encode("utf-8"))
    page_html = render_evaluation_html(title, metrics, slices, context, png, figures, outcomes, images, heatmaps)
    atomic_write_bytes(files.html, page_html.encode("utf-8"))
    return files


def evaluation_title(model: str, model_file: str | None, dataset: str, split: str) -> str:
    """What an evaluation report is about, for its title: the model (its run) and file, the dataset version and split
    ("run-20261130-2201 (model.onnx) on v1/test"). Never the workspace's name: every model of a site shares it."""
    named = f"{model} ({model_file})" if model_file and model_file != model else model
    return f"{named} on {dataset}/{split}"


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
    counts = metrics.confusion
    k = len(metrics.class_names)
    support = counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = counts / support[:, None]
    colour = np.ma.masked_invalid(shares if normalise else counts.astype(float))
    side = max(3.2, 0.85 * k + 1.2)
    figure = require("matplotlib.figure", "app").Figure(figsize=(side + 1.6, side), layout="constrained")
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


def _report_json(title: str, metrics: ClassificationMetrics, slices: SliceReport, context: Mapping[str, object],
                 outcomes: Sequence[ImageOutcome]) -> str:
    document = {
        "format": REPORT_FORMAT,
        "format_version": REPORT_FORMAT_VERSION,
        "title": title,
        "context": json_safe(context),
        "metrics": metrics.to_dict(),
        "slices": slices.to_dict(),
        "outcomes": json_safe([o.to_dict() for o in outcomes]),
    }
    return json.dumps(document, indent=2, allow_nan=False) + "\n"


# --- HTML ---------------------------------------------------------------------------------------



def render_evaluation_html(
    title: str,
    metrics: ClassificationMetrics,
    slices: SliceReport,
    context: Mapping[str, object],
    confusion_png: bytes,
    figures: Sequence[ReportFigure] = (),
    outcomes: Sequence[ImageOutcome] = (),
    images: ImageLoader | None = None,
    heatmaps: HeatmapLoader | None = None,
) -> str:
    """The self-contained report page (no scripts, no external resources)."""
    return page(title, [
        f"<h1>{escape(title)}</h1>",
        context_table(context),
        worst_callout(slices),
        headline_figures(metrics),
        "<h2>Per class</h2>",
        per_class_table(metrics),
        "<h2>Confusion matrix</h2>",
        confusion_image(confusion_png),
        hardest_images_section(outcomes, images, heatmaps=heatmaps) if outcomes else "",
        *(figure_section(figure) for figure in figures),
        slice_sections(metrics, slices),
        _notes(metrics, slices),
    ])


def worst_callout(slices: SliceReport) -> str:
    worst = slices.worst
    if worst is None:
        return (f'<p class="callout quiet">No slice has at least {slices.min_count} images, '
                "so no worst slice is named.</p>")
    m = worst.metrics
    return (f'<p class="callout"><strong>Worst slice: {escape(worst.field)} = {value_html(worst.value)}</strong> '
            f"&mdash; macro recall {percent(m.macro_recall)} on {count_text(m.count)} images "
            f"(lowest among slices with at least {slices.min_count} images).</p>")


def headline_figures(metrics: ClassificationMetrics) -> str:
    """Macro recall, precision and F1 first; accuracy and the image count after them."""
    figures = [
        ("Macro recall", percent(metrics.macro_recall), ""),
        ("Macro precision", percent(metrics.macro_precision), ""),
        ("Macro F1", percent(metrics.macro_f1), ""),
        ("Accuracy", percent(metrics.accuracy), " secondary"),
        ("Images", count_text(metrics.count), " secondary"),
    ]
    cells = "".join(
        f'<div class="figure{extra}"><div class="label">{label}</div><div class="value">{value}</div></div>'
        for label, value, extra in figures
    )
    return f'<div class="figures">{cells}</div>'


def per_class_table(metrics: ClassificationMetrics) -> str:
    """Per class: images, recall with its interval, precision, F1 and how often it was predicted."""
    level = f"{RECALL_CONFIDENCE:.0%}"
    head = (f"<tr><th>Class</th><th>Images</th><th>Recall</th><th>Recall {level} interval</th>"
            "<th>Precision</th><th>F1</th><th>Predicted</th></tr>")
    rows = []
    for c in metrics.per_class:
        precision = percent(c.precision, undefined="never predicted")
        recall = percent(c.recall, undefined="no test images")
        bounds = interval(c.recall_low, c.recall_high)
        rows.append(f"<tr><td>{escape(c.name)}</td><td>{count_text(c.support)}</td><td>{recall}</td><td>{bounds}</td>"
                    f"<td>{precision}</td><td>{percent(c.f1)}</td><td>{count_text(c.predicted)}</td></tr>")
    return f'<div class="scroll"><table>{head}{"".join(rows)}</table></div>'


def confusion_image(png: bytes) -> str:
    """The confusion matrix picture, embedded."""
    return png_image(png, "Confusion matrix: rows are true classes, columns predicted classes")


def slice_sections(metrics: ClassificationMetrics, slices: SliceReport) -> str:
    """One table per sliced metadata field, the worst slice marked; the fields left out as repeating the label."""
    left_out = _left_out_note(slices)
    if not slices.fields:
        return f'<h2>Slices</h2><p class="muted">No metadata field was sliced.</p>{left_out}'
    parts = ["<h2>Slices by metadata</h2>", left_out]
    for field in slices.fields:
        parts.append(f"<h3>{escape(field)}</h3>")
        parts.append(_slice_table(metrics, slices.for_field(field), slices))
    return "\n".join(parts)


def _left_out_note(slices: SliceReport) -> str:
    if not slices.left_out:
        return ""
    fields = ", ".join(f"<b>{escape(echo.field)}</b>" for echo in slices.left_out)
    which = "it" if len(slices.left_out) == 1 else "each"
    return (f'<p class="muted">Not sliced: {fields}. Each class has one value of {which} (the field repeats the '
            "label), so its slices would only be the classes again.</p>")


def _slice_table(metrics: ClassificationMetrics, rows: tuple[Slice, ...], report: SliceReport) -> str:
    """One row per value; per-class recall only for classes that have test images at all."""
    shown = [i for i, c in enumerate(metrics.per_class) if c.support > 0]
    recall_heads = "".join(f"<th>{breakable(metrics.class_names[i])}</th>" for i in shown)
    firsts = "".join(f'<th rowspan="2">{h}</th>' for h in ("Value", "Images", "Macro recall", "Macro precision",
                                                         "Macro F1", "Accuracy"))
    by_class = f'<th colspan="{len(shown)}" class="group">Recall by true class</th>' if shown else ""
    head = f"<tr>{firsts}{by_class}</tr><tr>{recall_heads}</tr>"
    body = "".join(_slice_row(s, report, shown) for s in rows)
    return f'<div class="scroll"><table class="slices">{head}{body}</table></div>'


def _slice_row(item: Slice, report: SliceReport, shown: list[int]) -> str:
    m = item.metrics
    css = "worst" if item is report.worst else "small" if m.count < report.min_count else ""
    attribute = f' class="{css}"' if css else ""
    badge = ' <span class="badge">worst</span>' if css == "worst" else ""
    recalls = "".join(_recall_cell(m, i) for i in shown)
    figures = "".join(f"<td>{percent(v)}</td>" for v in (m.macro_recall, m.macro_precision, m.macro_f1, m.accuracy))
    return (f"<tr{attribute}><td>{value_html(item.value)}{badge}</td><td>{count_text(m.count)}</td>"
            f"{figures}{recalls}</tr>")


def _recall_cell(m: ClassificationMetrics, i: int) -> str:
    c = m.per_class[i]
    if not c.support:
        return f"<td>{percent(c.recall, undefined='no images of this class in this slice')}</td>"
    return (f'<td>{percent(c.recall)} <span class="muted count">{count_text(int(m.confusion[i, i]))}/'
            f"{count_text(c.support)}</span></td>")


def _notes(metrics: ClassificationMetrics, slices: SliceReport) -> str:
    over = ", ".join(escape(n) for n in metrics.macro_classes)
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
        "Hardest images: the mistakes, the most confident first, then the correct images with the smallest "
        "margin (the true class's probability minus the next class's). Every image's outcome is kept in "
        "metrics.json.",
    ]
    return notes_section(notes)


# --- the hardest images ---------------------------------------------------------------------------


def hardest_images_section(outcomes: Sequence[ImageOutcome], images: ImageLoader | None, *,
                           limit: int = HARDEST_SHOWN, level: int = 2, heatmaps: HeatmapLoader | None = None) -> str:
    """Thumbnails of the hardest images (see ``evaluate.outcomes.hardest``) with true and predicted class,
    probabilities and capture metadata, under an ``<h{level}>`` heading; a note when there are none.
    With ``heatmaps`` (an anomaly model's), each thumbnail shows where the model saw the part differ."""
    heading = f"<h{level}>Misclassified and borderline images</h{level}>"
    shown = hardest(outcomes, limit)
    if not shown:
        return f'{heading}<p class="muted">{_hardest_intro(outcomes, shown)}</p>'
    cards = "".join(_image_card(o, _thumbnail(o.sha256, images, heatmaps)) for o in shown)
    note = (" Heatmaps: yellow marks where the model saw the part differ most from the good parts it learned."
            if heatmaps is not None else "")
    return f'{heading}<p>{_hardest_intro(outcomes, shown)}{escape(note)}</p><div class="thumbs">{cards}</div>'


def _hardest_intro(outcomes: Sequence[ImageOutcome], shown: Sequence[ImageOutcome]) -> str:
    wrong = sum(not o.correct for o in outcomes)
    shown_wrong = sum(not o.correct for o in shown)
    close = len(shown) - shown_wrong
    scored = any(o.margin is not None for o in outcomes)
    parts = [f"{wrong:,} of {len(outcomes):,} images misclassified"]
    if wrong:
        parts.append(f"shown: {'all of them' if shown_wrong == wrong else f'the {shown_wrong} most confident'}"
                     + (", the most confident first" if scored and shown_wrong > 1 else ""))
    if close:
        parts.append(f"then the {close} correct images with the smallest margin (the closest calls)")
    elif not scored:
        parts.append("the evaluation kept no class probabilities, so close calls cannot be ranked")
    return escape("; ".join(parts) + ".")


def _thumbnail(sha256: str, images: ImageLoader | None, heatmaps: HeatmapLoader | None = None) -> str | None:
    if images is None:
        return None
    try:
        data = images(sha256)
    except (OSError, KeyError):  # a blob that is gone: the card says so, the report is still written
        return None
    try:
        heatmap = None if heatmaps is None else heatmaps(sha256)
    except (OSError, KeyError, ImageError):  # no heatmap: the plain thumbnail still shows the image
        heatmap = None
    return thumbnail_uri(data) if heatmap is None else heatmap_thumbnail_uri(data, heatmap)


def _image_card(outcome: ImageOutcome, thumbnail: str | None) -> str:
    o = outcome
    alt = f"{o.true} classified correctly" if o.correct else f"{o.true} classified as {o.predicted}"
    picture = (f'<img class="thumb" src="{thumbnail}" alt="{escape(alt)}">' if thumbnail else
               '<div class="nothumb">image not available</div>')
    badge = ('<span class="badge">wrong</span>' if not o.correct else '<span class="badge near">close call</span>')
    lines = [f"<b>true</b> {escape(o.true)} <span class=\"muted\">{percent_text(o.true_score)}</span>",
             f"<b>predicted</b> {escape(o.predicted)} <span class=\"muted\">{percent_text(o.score)}</span>"]
    if o.margin is not None:
        lines.append(f"margin {number_text(100.0 * o.margin, 3)} points")
    meta = " &middot; ".join(f'<span class="field">{escape(k)} {value_html(o.meta[k])}</span>'
                             for k in CAPTION_FIELDS if o.meta.get(k))
    if meta:
        lines.append(f'<span class="muted">{meta}</span>')
    lines.append(f'<span class="muted" title="{escape(o.sha256)}">{escape(o.sha256[:12])}</span>')
    css = "" if o.correct else ' class="wrong"'
    return f"<figure{css}>{picture}<figcaption>{badge}<br>{'<br>'.join(lines)}</figcaption></figure>"


