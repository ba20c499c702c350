"""Shadow on history: a candidate re-scores the stored images of past production, judged like live shadow.

Live shadow needs weeks of line time; the archive already holds the images production decided on.
Every stored image of the chosen period is scored by the candidate (on this process, or on Ray for a
long archive: :mod:`inspectloop.batch`), set beside the decision production logged then and the QC
verdict where one exists, and judged by the same rule as live shadow
(:func:`inspectloop.shadow.compare`). Nothing is written to the prediction log: history is not
re-decided, only read. The report goes to the workspace's reports folder.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from inspectloop import registry
from inspectloop.batch.engine import Engine, LocalEngine
from inspectloop.batch.tasks import ImageScore, ScoreImages
from inspectloop.domain import LoggedPrediction, ShadowComparison
from inspectloop.errors import RegistryError
from inspectloop.shadow import ShadowReport, compare, same_fate
from inspectloop.store import atomic_write_text
from inspectloop.workspace import Workspace


@dataclass
class HistoryShadow:
    """A candidate's shadow report on stored history, with what was scored and how."""

    report: ShadowReport
    start: str
    end: str
    images: int  # distinct stored images scored
    unreadable: dict[str, str]  # digest -> why it could not be scored (left out of the report)
    engine: dict[str, Any]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "report": self.report.to_dict(), "seconds": round(self.seconds, 3)}


def shadow_on_history(workspace: Workspace, version: str, *, start: str, end: str, engine: Engine | None = None,
                      min_compared: int = 200, min_qc: int = 30) -> HistoryShadow:
    """Re-score the stored production images received in [start, end) with ``version`` and judge it as shadow.

    RegistryError when the period holds no stored image production decided on.
    """
    started = time.perf_counter()
    candidate = registry.get_version(workspace, version)
    registry.verify_file(candidate, workspace)
    rows = [row for row in workspace.db.predictions.window(start, end, stored_only=True)
            if row.model_version_id != candidate.id]
    if not rows:
        raise RegistryError(f"no stored production images between {start} and {end} to re-score",
                            "choose a period in which the service stored images (inspectloop serve stores a "
                            "sample of them), or shadow the candidate live")
    digests = sorted({row.image_sha256 for row in rows})
    task = ScoreImages(candidate.path.read_bytes(), workspace.blobs)
    engine = engine or LocalEngine()
    scores = dict(zip(digests, engine.map(task, digests)))
    qc = workspace.db.predictions.latest_qc_labels(row.id for row in rows)
    good = workspace.db.labels.good_classes()
    compared = [_comparison(row, scores[row.image_sha256], qc.get(row.id), good) for row in rows
                if scores[row.image_sha256].error is None]
    report = compare(candidate, compared, good, min_compared=min_compared, min_qc=min_qc)
    unreadable = {d: s.error for d, s in scores.items() if s.error is not None}
    return HistoryShadow(report, start, end, len(digests), unreadable, engine.describe(),
                         time.perf_counter() - started)


def write_history_report(workspace: Workspace, result: HistoryShadow) -> Path:
    """Write the result as JSON under the workspace's reports folder; return the path."""
    path = workspace.reports_dir / f"shadow-history-{result.report.version}.json"
    atomic_write_text(path, json.dumps(result.to_dict(), indent=2, default=str) + "\n")
    return path


def _comparison(row: LoggedPrediction, score: ImageScore, qc_label: str | None, good: Any) -> ShadowComparison:
    assert score.label is not None and score.decision is not None and score.confidence is not None
    return ShadowComparison(
        prediction_id=row.id, shadow_label=score.label, shadow_decision=score.decision,
        shadow_confidence=score.confidence,
        agrees=same_fate(row.label, row.decision, score.label, score.decision, good=good),
        production_label=row.label, production_decision=row.decision, production_confidence=row.confidence,
        image_sha256=row.image_sha256, camera=row.camera, request_id=row.request_id, qc_label=qc_label)
