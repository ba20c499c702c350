"""Pictures and tables of a graded evaluation: ROC and precision-recall curves with the decision marked."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

from inspectloop.errors import require
from inspectloop.evaluate.graded import Curve, GradedEvaluation
from inspectloop.reports.html import ReportFigure, escape, number_text, percent, percent_text

_KINDS = (("class", "Each defect class against the good class"),
          ("rollup", "Defective at grade >= g, against everything below"))


def graded_figures(evaluation: GradedEvaluation) -> list[ReportFigure]:
    """One figure per kind of curve (classes vs good, grade roll-ups): ROC left, precision-recall right."""
    figures = []
    for kind, title in _KINDS:
        curves = [c for c in evaluation.curves if c.kind == kind and c.auroc is not None]
        if curves:
            figures.append(ReportFigure(title, _png(curves), f"ROC and precision-recall curves: {title.lower()}",
                                        _caption(curves, evaluation if kind == "rollup" else None)))
    return figures


def _caption(curves: Sequence[Curve], evaluation: GradedEvaluation | None) -> str:
    parts = []
    for c in curves:
        point = c.operating_point
        at = "" if point is None else (f"; the decision catches {percent_text(point.recall)} with "
                                       f"{percent_text(point.false_positive_rate)} false alarms")
        parts.append(f"{c.name}: AUROC {number_text(c.auroc, 3)}, average precision "
                     f"{number_text(c.average_precision, 3)} ({c.positives:,} vs {c.negatives:,}){at}")
    text = "Dots mark the evaluated decision (the operating point). " + "; ".join(parts) + "."
    if evaluation is not None:
        text += (f" Wrong grades: {evaluation.off_by_one:,} one step off, {evaluation.off_by_more:,} more than "
                 "one step off.")
    return text


def _png(curves: Sequence[Curve]) -> bytes:
    figure = require("matplotlib.figure", "app").Figure(figsize=(10, 4.2), layout="constrained")
    roc, pr = figure.subplots(1, 2)
    roc.plot([0, 1], [0, 1], color="#9aa5b1", linestyle="--", linewidth=1)
    for n, c in enumerate(curves):
        colour = f"C{n % 10}"
        roc.plot(c.roc[0], c.roc[1], color=colour, linewidth=1.6, label=f"{c.name} (AUROC {c.auroc:.3f})")
        pr.plot(c.pr[0], c.pr[1], color=colour, linewidth=1.6, label=f"{c.name} (AP {c.average_precision:.3f})")
        if c.operating_point is not None:
            point = c.operating_point
            roc.plot([point.false_positive_rate], [point.recall], "o", color=colour, markersize=6)
            if point.precision is not None:
                pr.plot([point.recall], [point.precision], "o", color=colour, markersize=6)
    roc.set(xlabel="false positive rate (negatives flagged)", ylabel="recall", title="ROC", xlim=(0, 1),
            ylim=(0, 1.02))
    pr.set(xlabel="recall", ylabel="precision", title="precision-recall", xlim=(0, 1), ylim=(0, 1.02))
    for axes in (roc, pr):
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7, loc="lower right" if axes is roc else "lower left")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight", facecolor="white")
    return buffer.getvalue()


def graded_table(brief: Mapping[str, Any]) -> str:
    """An HTML table of a graded evaluation's stored figures (``GradedEvaluation.brief()``)."""
    rows = []
    for c in brief.get("curves", []):
        point = c.get("operating_point") or {}
        rows.append(f"<tr><td>{escape(c['name'])}</td><td>{number_text(c.get('auroc'), 3)}</td>"
                    f"<td>{number_text(c.get('average_precision'), 3)}</td><td>{percent(point.get('recall'))}</td>"
                    f"<td>{percent(point.get('false_positive_rate'))}</td><td>{percent(point.get('precision'))}</td>"
                    f"<td>{c['positives']:,} / {c['negatives']:,}</td></tr>")
    confusions = brief.get("grade_confusions", {})
    return ("<table><tr><th>curve</th><th>AUROC</th><th>average precision</th><th>recall at the decision</th>"
            "<th>false alarms at the decision</th><th>precision at the decision</th><th>positives / negatives</th>"
            f"</tr>{''.join(rows)}</table><p>Wrong grades: {confusions.get('one_step', 0):,} one step off, "
            f"{confusions.get('more_than_one_step', 0):,} more than one step off.</p>")
