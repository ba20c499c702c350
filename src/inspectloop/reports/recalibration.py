"""The recalibration cycle's page: its outcome, then per-class recall now against recall at acceptance.

Rendered from the cycle's JSON document (``inspectloop.recalibration.cycle`` writes both), so the page
and the JSON cannot disagree. Self-contained like every report: no scripts, no external resources.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from inspectloop.reports.html import (
    DASH,
    context_table,
    escape,
    interval,
    notes_section,
    number_text,
    page,
    percent_text,
    table,
)

_RECALIBRATION_CSS = """
.outcome { font-size: 1.1rem; }
"""


def render_recalibration_html(document: Mapping[str, Any]) -> str:
    """The self-contained page of a recalibration cycle's report document."""
    title = f"Recalibration cycle {document['cycle']}"
    result = document["result"]
    comparison = result.get("comparison") or {}
    outcome = str(document["outcome"] or document["status"])
    parts = [f"<h1>{escape(title)}</h1>",
             f'<p class="callout quiet outcome"><strong>{escape(outcome)}</strong>: '
             f"{escape(document['message'] or '')}</p>",
             context_table(_context(document))]
    if result.get("retrain_reason"):
        parts.append(f"<p>Retrained because of: <strong>{escape(result['retrain_reason'])}</strong></p>")
    if comparison.get("classes"):
        parts += ["<h2>Per class, now against acceptance</h2>", _classes_table(comparison["classes"])]
    if comparison.get("notes"):
        parts.append(notes_section([escape(n) for n in comparison["notes"]], heading="Notes"))
    return page(title, parts, css=_RECALIBRATION_CSS)


def _context(document: Mapping[str, Any]) -> dict[str, object]:
    start, end = document["window"]
    sample = document.get("sample") or {}
    facts: dict[str, object] = {
        "window": f"{str(start)[:10]} to {str(end)[:10]}",
        "trigger": document["trigger_source"],
        "retraining policy": document["params"].get("retrain_on") or DASH,
    }
    if sample:
        facts["sample"] = (f"{len(sample.get('predictions', []))} predictions sampled of "
                           f"{number_text(sample.get('in_window'))} in the window; "
                           f"{len(sample.get('review_items', []))} sent to review")
    facts["written"] = document.get("written_at", DASH)
    return facts


def _classes_table(classes: list[Mapping[str, Any]]) -> str:
    head = ["Class", "Labelled", "Recall now", "95% interval", "At acceptance", "Change", "Precision now", ""]
    rows = [[escape(c["name"]), f"{c['support']:,}", percent_text(c["recall"]),
             interval(c["recall_low"], c["recall_high"]), percent_text(c["baseline_recall"]),
             _points(c["recall_delta_points"]), percent_text(c["precision"]),
             '<span class="badge">drop</span>' if c["dropped"] else ""] for c in classes]
    return table(head, rows, row_classes=["worst" if c["dropped"] else "" for c in classes])


def _points(value: float | None) -> str:
    """A change in percentage points, signed ("+1.5 pts", "-4.0 pts")."""
    return DASH if value is None else f"{value:+.1f} pts"
