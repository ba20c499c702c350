"""The dashboard's drift charts in a real headless Chromium: one SVG per camera, a line per signal, alert markers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from inspectloop.workspace import Workspace
from tests.web.conftest import LiveServer
from tests.web.test_review_browser import log_in

SIGNALS = ("brightness", "embedding", "prediction")


def drift_history(workspace: Workspace, checks: int = 6) -> None:
    """Six daily checks of two cameras; cam-b's brightness grows and alerts on the last two."""
    start = datetime.now(UTC) - timedelta(days=checks)
    with workspace.db.transaction() as tx:
        for day in range(checks):
            at = (start + timedelta(days=day)).isoformat()
            run_id = tx.drift.add_run({"window_start": at, "window_end": at, "outcome": "ok"})
            rows = []
            for camera in ("cam-a", "cam-b"):
                for signal in SIGNALS:
                    effect = 0.4 * day if (camera, signal) == ("cam-b", "brightness") else 0.05
                    fired = effect >= 1.5
                    rows.append({"monitor_run_id": run_id, "camera": camera, "checked_at": at, "signal": signal, "effect": effect,
                                     "effect_unit": "SD", "p_value": 0.001 if fired else 0.5, "raw_p_value": 0.001,
                                     "fired": fired, "n_baseline": 100, "n_current": 100, "message": f"{camera}: {signal}"})
                    if fired:
                        tx.drift.add_alert({"kind": "drift", "camera": camera, "signal": signal, "effect": effect,
                                                   "p_value": 0.001, "message": f"{camera}: brightness down",
                                                   "monitor_run_id": run_id})
            tx.drift.add_checks(rows)


def test_the_dashboard_charts_drift_per_camera_with_alert_markers(browser: Any, server16: LiveServer) -> None:
    drift_history(server16.seeded.workspace)
    page = log_in(browser, server16, "ana")
    page.goto(f"{server16.url}/dashboard")
    figures = page.locator("figure.drift")
    assert figures.count() == 2
    for camera, alerts in (("cam-a", 0), ("cam-b", 2)):
        chart = page.locator(f'figure.drift[data-camera="{camera}"] svg.drift-chart')
        box = chart.bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 100  # drawn, not an empty element
        assert chart.locator("polyline.series").count() == len(SIGNALS)
        assert chart.locator("circle.alert-marker").count() == alerts
    assert "6 check(s), 2 alert(s)" in page.inner_text('figure.drift[data-camera="cam-b"] figcaption')
    page.context.close()
