"""The recalibration cycle's page, rendered from its JSON document."""

from __future__ import annotations

import re

from inspectloop.reports.recalibration import render_recalibration_html


def document(**changes: object) -> dict[str, object]:
    base = {"cycle": 3, "status": "done", "outcome": "shadow", "trigger_source": "drift",
            "window": ["2026-01-01T00:00:00+00:00", "2026-03-31T00:00:00+00:00"],
            "params": {"retrain_on": "drift"}, "message": "retrained: <scratch> dropped",
            "sample": {"predictions": [1, 2, 3], "review_items": [7, 8], "in_window": 4210},
            "result": {"retrain_reason": "scratch recall dropped 6.2 points", "comparison": {
                "notes": ["only 2 labelled <dents>"],
                "classes": [
                    {"name": "scratch", "support": 40, "recall": 0.875, "recall_low": 0.74, "recall_high": 0.95,
                     "baseline_recall": 0.937, "recall_delta_points": -6.2, "precision": 0.9, "dropped": True},
                    {"name": "good", "support": 1200, "recall": 0.99, "recall_low": None, "recall_high": None,
                     "baseline_recall": 0.985, "recall_delta_points": 0.5, "precision": None, "dropped": False},
                ]}},
            "written_at": "2026-03-31T00:01:00+00:00"}
    return {**base, **changes}


def test_the_cycle_page_compares_each_class_with_acceptance() -> None:
    page = re.sub(r"\s+", " ", render_recalibration_html(document()))
    assert "<title>Recalibration cycle 3</title>" in page and "<strong>shadow</strong>" in page
    assert "retrained: &lt;scratch&gt; dropped" in page and "<scratch>" not in page
    assert "2026-01-01 to 2026-03-31" in page and "drift" in page
    assert "3 predictions sampled of 4,210 in the window; 2 sent to review" in page
    assert ('<tr class="worst"><td>scratch</td><td>40</td><td>87.5%</td><td>74.0% &ndash; 95.0%</td>'
            '<td>93.7%</td><td>-6.2 pts</td><td>90.0%</td><td><span class="badge">drop</span></td></tr>') in page
    assert "<td>good</td><td>1,200</td><td>99.0%</td><td>\u2014</td>" in page and "+0.5 pts" in page
    assert "only 2 labelled &lt;dents&gt;" in page
    assert "<script" not in page and "http://" not in page and "https://" not in page


def test_a_cycle_waiting_for_labels_has_no_comparison_yet() -> None:
    page = render_recalibration_html(document(status="awaiting_labels", outcome=None, result={}, message=None))
    assert "<strong>awaiting_labels</strong>" in page and "<table>" not in page and "None" not in page
