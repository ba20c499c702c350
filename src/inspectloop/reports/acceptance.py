"""The acceptance report page: verdict, then one table, criterion by criterion: limit, measured, pass or fail.

Rendered from the report's JSON document (``inspectloop.accept.run.accept`` writes both), so the page
and the JSON cannot disagree. Self-contained like every report: no scripts, no external resources; built
from the shared blocks of ``inspectloop.reports.html``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from inspectloop.reports.html import (
    DASH,
    context_table,
    count_text,
    escape,
    notes_section,
    number_text,
    page,
    percent_text,
)

_ACCEPTANCE_CSS = """
th.detail, td.detail { text-align: left; white-space: normal; color: #52606d; font-size: .9rem; min-width: 22rem; }
tr.failed td:first-child { font-weight: 600; }
"""


def render_acceptance_html(document: Mapping[str, Any]) -> str:
    """The self-contained acceptance page for an acceptance report document."""
    run, variant = document["run"], document["variant"]
    criteria = document["criteria"]
    title = f"Acceptance of {run} ({variant}) against {criteria['name']}"
    return page(title, [
        f"<h1>{escape(title)}</h1>",
        verdict_callout(document),
        _review(document),
        context_table(_context(document)),
        "<h2>Criteria</h2>",
        _results_table(document["results"]),
        "<h2>Measured, not judged</h2>",
        _other_figures(document["measurements"]),
        _notes(document),
    ], css=_ACCEPTANCE_CSS)


def verdict_callout(document: Mapping[str, Any]) -> str:
    """PASSED or FAILED, and each failed criterion with its limit and what was measured ("scratch recall:
    must be ≥ 95%, measured 90%"). Reads an acceptance report document; one stored before its results
    were kept names the failed criteria only."""
    results = document.get("results")
    if results is None:
        names = [str(n) for n in document.get("failed") or []]
        if not names and document.get("passed", True):
            return '<p class="callout pass verdict"><span class="badge pass">PASSED</span> All criteria met.</p>'
        return (f'<p class="callout verdict"><span class="badge fail">FAILED</span> Criteria not met: '
                f"{escape(', '.join(names) or 'not recorded')}.</p>")
    failed = [r for r in results if not r["passed"]]
    images = document.get("test_images")
    on = f" on {count_text(images)} frozen test images" if images is not None else ""
    if not failed:
        return (f'<p class="callout pass verdict"><span class="badge pass">PASSED</span> '
                f"All {len(results)} criteria met{on}.</p>")
    items = "".join(f"<li><b>{escape(r['name'])}</b>: must be {escape(r.get('limit_text', r.get('limit')))}, "
                    f"measured {escape(r.get('measured_text', r.get('measured')))}</li>" for r in failed)
    return (f'<div class="callout verdict"><span class="badge fail">FAILED</span> '
            f"{len(failed)} of {len(results)} criteria not met{on}:<ul class=\"failed\">{items}</ul></div>")


def _review(document: Mapping[str, Any]) -> str:
    """The review rate, stated whether or not the criteria bound it: a model that automates nothing is no pass."""
    review = document["measurements"].get("review") or {}
    summary = document.get("review_summary")
    if not summary:  # a report written before the review rate was stated
        return ""
    css = "callout" if review.get("automates_nothing") else "callout quiet"
    return f'<p class="{css}"><b>Review rate.</b> {escape(summary)}.</p>'


def _context(document: Mapping[str, Any]) -> dict[str, object]:
    criteria, model, version = document["criteria"], document["model_file"], document["model_version"]
    own = ("the criteria this run named" if criteria["is_the_runs_criteria"] else
           f"not the run's own criteria (#{criteria['run_criteria_id']}): this report does not unlock promotion"
           if criteria["run_criteria_id"] is not None else "the run named no criteria")
    return {
        "criteria": f"#{criteria['id']} {criteria['name']} ({own})",
        "criteria sha256": criteria["sha256"],
        "criteria locked": f"{criteria['locked_at']} by {criteria['locked_by']}",
        "run": document["run"],
        "model version": f"{version['name']} (#{version['id']}, {version['stage']} when judged)",
        "model file": model["path"],
        "model file sha256": model["sha256"],
        "temperature": model.get("temperature"),
        "good class": model.get("good_class") or "none (every decision is a reject as a class)",
        "test set": f"{document['dataset_version']}/test, {count_text(document['test_images'])} images",
        "measured": f"{document['measured_at']} on {document['machine']}",
        "code version": document["code_version"],
    }


def _results_table(results: Sequence[Mapping[str, Any]]) -> str:
    head = "<tr><th>Criterion</th><th>Limit</th><th>Measured</th><th>Result</th><th class=\"detail\">Detail</th></tr>"
    rows = []
    for r in results:
        badge = ('<span class="badge pass">pass</span>' if r["passed"] else '<span class="badge fail">FAIL</span>')
        measured = (r["measured_text"] if r["measured"] is not None
                    else f'<span class="undefined" title="cannot be measured">{DASH}</span>')
        css = "" if r["passed"] else ' class="failed"'
        rows.append(f"<tr{css}><td>{escape(r['name'])}</td><td>{escape(r['limit_text'])}</td><td>{measured}</td>"
                    f"<td>{badge}</td><td class=\"detail\">{escape(r['detail'])}</td></tr>")
    return f'<div class="scroll"><table>{head}{"".join(rows)}</table></div>'


def _other_figures(m: Mapping[str, Any]) -> str:
    rates, latency = m["rates"], m["latency_ms"]
    figures = [
        ("Accuracy", percent_text(m["accuracy"])),
        ("Review rate", f"{percent_text(rates['review_rate'])} "
                        f"({count_text(rates['reviews'])} of {count_text(rates['count'])})"),
        ("Automation rate", percent_text(rates["automation_rate"])),
        ("False-reject rate", percent_text(rates["false_reject_rate"])
         + (f" ({count_text(rates['false_rejects'])} of {count_text(rates['good'])} good parts)"
            if rates["has_good_class"] else "")),
        ("Escapes", f"{count_text(rates['escapes'])} of {count_text(rates['defective'])} defective parts"),
        ("Latency", f"median {_ms(latency['p50'])}, p95 {_ms(latency['p95'])}, slowest {_ms(latency['max'])}"),
    ]
    rows = "".join(f"<tr><th>{label}</th><td>{escape(value)}</td></tr>" for label, value in figures)
    per_class = "".join(
        f"<tr><td>{escape(c['name'])}</td><td>{count_text(c['support'])}</td><td>{count_text(c['predicted'])}</td>"
        f"<td>{count_text(c['correct'])}</td>"
        f"<td>{percent_text(c['recall'])}</td><td>{percent_text(c['precision'])}</td></tr>" for c in m["per_class"])
    head = ("<tr><th>Class</th><th>Test images</th><th>Predicted</th><th>Correct</th><th>Recall</th>"
            "<th>Precision</th></tr>")
    return (f'<table class="context">{rows}</table>\n<h3>Per class</h3>\n'
            f'<div class="scroll"><table>{head}{per_class}</table></div>')


def _notes(document: Mapping[str, Any]) -> str:
    notes = [
        "The model file itself ran through the edge runtime, one thread, on every image of the frozen test split; "
        "nothing was retrained or re-thresholded for this report.",
        "A limit passes when the measured value is on its side of it (a minimum reached, a maximum not exceeded); "
        f"a value that cannot be measured (&ldquo;{DASH}&rdquo;) fails, and the detail says why.",
        "Intervals are 95 %: Wilson for recall and precision, Clopper-Pearson for escapes and false rejects. "
        "With few test images they are wide: a criterion met on the measured value may not be met on the line.",
        "An escape is a defective part passed as good; without a good class, a part assigned a wrong class. "
        "False alerts per hour are good parts rejected, at the criteria's line rate and defect rate; parts sent "
        "to review are counted apart (the review rate).",
        "Latency is the runtime's own total per image (decode, preprocess, infer) on the machine that ran the "
        "acceptance; judge it again on the line's PC when that differs.",
    ]
    return notes_section(notes)


def _ms(value: float) -> str:
    return f"{number_text(value, 3)} ms"  # 1,234 ms, never 1.23e+03 ms
