"""Server-rendered SVG charts (no JavaScript, no CDN): drift effects per camera over time.

Each camera gets one chart: a line per signal through its effect sizes (absolute; each family in its
own unit, so the y axis reads "effect"), and a red marker on every check where an alert was sent.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Any

from inspectloop.domain import Alert, DriftCheck

WIDTH, HEIGHT, PAD_LEFT, PAD_RIGHT, PAD_Y = 560, 200, 44, 110, 22
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#17becf")


@dataclass(frozen=True)
class DriftChart:
    """One camera's chart: its SVG markup, how many checks it shows and how many alerts it marks."""

    camera: str
    svg: str
    checks: int
    alerts: int


def drift_charts(history: Sequence[DriftCheck], alerts: Sequence[Alert]) -> list[DriftChart]:
    """One chart per camera from stored drift signals (oldest first) and drift alerts."""
    by_camera: dict[str, list[DriftCheck]] = defaultdict(list)
    for row in history:
        by_camera[row.camera].append(row)
    alerted = {(a.monitor_run_id, a.camera, a.signal) for a in alerts if a.monitor_run_id}
    return [_chart(camera, rows, alerted) for camera, rows in sorted(by_camera.items())]


def _chart(camera: str, rows: Sequence[DriftCheck], alerted: set[tuple[Any, str, str]]) -> DriftChart:
    times = sorted({_time(r.checked_at) for r in rows})
    top = max([abs(r.effect) for r in rows] + [1e-9]) * 1.1
    x_of = _scale_x(times)

    def y_of(value: float) -> float:
        return HEIGHT - PAD_Y - (HEIGHT - 2 * PAD_Y) * min(abs(value), top) / top

    series: dict[str, list[DriftCheck]] = defaultdict(list)
    for row in rows:
        series[row.signal].append(row)
    parts = [_axes(times, top)]
    markers = 0
    for i, (signal, points) in enumerate(sorted(series.items())):
        colour = PALETTE[i % len(PALETTE)]
        coords = [(x_of(_time(p.checked_at)), y_of(p.effect)) for p in points]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        parts.append(f'<polyline class="series" data-signal="{escape(signal)}" fill="none" stroke="{colour}" '
                     f'stroke-width="1.5" points="{path}"/>')
        parts.append(f'<text x="{WIDTH - PAD_RIGHT + 8}" y="{PAD_Y + 12 * i + 4}" font-size="10" fill="{colour}">'
                     f'{escape(signal)}</text>')
        for point, (x, y) in zip(points, coords):
            if (point.monitor_run_id, camera, signal) in alerted:
                markers += 1
                parts.append(f'<circle class="alert-marker" cx="{x:.1f}" cy="{y:.1f}" r="4" fill="#d62728">'
                             f'<title>{escape(point.message)}</title></circle>')
    svg = (f'<svg class="drift-chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
           f'xmlns="http://www.w3.org/2000/svg" data-camera="{escape(camera)}">'
           f'<title>{escape(camera)}: drift effect per signal over time</title>{"".join(parts)}</svg>')
    return DriftChart(camera, svg, len(times), markers)


def _axes(times: Sequence[datetime], top: float) -> str:
    bottom, right = HEIGHT - PAD_Y, WIDTH - PAD_RIGHT
    first, last = times[0].strftime("%Y-%m-%d"), times[-1].strftime("%Y-%m-%d")
    return (f'<line x1="{PAD_LEFT}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#999"/>'
            f'<line x1="{PAD_LEFT}" y1="{PAD_Y}" x2="{PAD_LEFT}" y2="{bottom}" stroke="#999"/>'
            f'<text x="{PAD_LEFT - 4}" y="{PAD_Y + 4}" font-size="10" text-anchor="end">{top:.2g}</text>'
            f'<text x="{PAD_LEFT - 4}" y="{bottom}" font-size="10" text-anchor="end">0</text>'
            f'<text x="{PAD_LEFT}" y="{HEIGHT - 6}" font-size="10">{first}</text>'
            f'<text x="{right}" y="{HEIGHT - 6}" font-size="10" text-anchor="end">{last}</text>'
            f'<text x="10" y="{HEIGHT / 2}" font-size="10" transform="rotate(-90 10 {HEIGHT / 2})" '
            f'text-anchor="middle">effect</text>')


def _scale_x(times: Sequence[datetime]) -> Any:
    start, span = times[0], (times[-1] - times[0]).total_seconds()

    def x_of(moment: datetime) -> float:
        share = (moment - start).total_seconds() / span if span else 0.5
        return PAD_LEFT + (WIDTH - PAD_LEFT - PAD_RIGHT) * share

    return x_of


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value)
