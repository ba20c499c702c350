"""What the dataset browser shows: a kept map's points with their fixed and live fields (columns, see
:mod:`inspectloop.datamap.columns`), one image's whole story, and a selection sent to the settle queue
or the review queue.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inspectloop import review
from inspectloop.datamap.build import fixed_json, load_map, version_name
from inspectloop.datamap.columns import LIVE_FIELDS, encode_table
from inspectloop.domain import DatasetItem
from inspectloop.domain.labelling import BROWSER, QueuedSuspect
from inspectloop.errors import BrowseError
from inspectloop.evaluate.outcomes import ImageOutcome
from inspectloop.labels import resolve_labels
from inspectloop.workspace import Workspace

SHA256 = re.compile(r"^[0-9a-f]{64}$")
MAX_SELECTION = 10_000  # images one send may queue
NOT_SET = "(not set)"


def map_points_json(workspace: Workspace, version: str = "latest", *, features: str | None = None,
                    method: str | None = None) -> bytes:
    """The kept map of ``version`` as JSON: digests, x, y and the fields that never change for it (the
    version's label and split, source, capture metadata), column by column (:mod:`~inspectloop.datamap.columns`)."""
    return fixed_json(workspace, load_map(workspace, version, features=features, method=method))


def live_columns(workspace: Workspace, version: str = "latest", *, run: str | None = None,
                 features: str | None = None, method: str | None = None) -> dict[str, Any]:
    """The fields that change, in the map's point order: ``current`` (what the labelling policy says now,
    settled labels included) and, with ``run``, ``prediction`` and ``correct`` from its per-image test outcomes."""
    data_map = load_map(workspace, version, features=features, method=method)
    outcomes = run_outcomes(workspace, run) if run else {}
    current = resolve_labels(workspace.db.labels.annotations(), workspace.config.labelling).labels
    rows: list[dict[str, str | None]] = []
    for digest in data_map.sha256:
        outcome = outcomes.get(digest)
        rows.append({"current": current.get(digest, NOT_SET), "prediction": outcome.predicted if outcome else None,
                     "correct": None if outcome is None else ("correct" if outcome.correct else "wrong")})
    return {"version": data_map.version, "run": run, "count": len(rows),
            "fields": encode_table(rows, LIVE_FIELDS), "classes": sorted(workspace.db.labels.class_names())}


def run_outcomes(workspace: Workspace, run_id: str) -> dict[str, ImageOutcome]:
    """A training run's per-image test outcomes by digest; BrowseError for an unknown run or one without them."""
    run = workspace.db.runs.get(run_id)
    if run is None:
        known = [r.id for r in workspace.db.runs.list()][-5:]
        raise BrowseError(f"no training run {run_id!r} (latest: {', '.join(known) or 'none'})",
                          "list them with: inspectloop models list", kind="not_found")
    path = Path(run.artifacts) / "report" / "metrics.json"
    try:
        outcomes = json.loads(path.read_text())["outcomes"]
    except (OSError, ValueError, KeyError, TypeError):
        raise BrowseError(f"run {run_id} has no per-image predictions (status {run.status})",
                          "pick a finished classification or anomaly run") from None
    return {o["sha256"]: ImageOutcome.from_dict(o) for o in outcomes}


def image_detail(workspace: Workspace, sha256: str, version: str = "latest", *,
                 run: str | None = None) -> dict[str, Any]:
    """One image's story: capture metadata, every annotation, the label now, its place in each dataset
    version, the run's prediction, production predictions and review items."""
    name = version_name(workspace, version)
    record = workspace.db.images.get(sha256) if SHA256.match(sha256) else None
    if record is None:
        raise BrowseError(f"no image {sha256[:16]!r} in this workspace", "click a point of the map",
                          kind="not_found")
    annotations = workspace.db.labels.annotations(sha256)
    outcome = run_outcomes(workspace, run).get(sha256) if run else None
    return {
        "sha256": sha256, "version": name, "width": record.width, "height": record.height,
        "source": record.source.value, "meta": {k: v for k, v in record.meta.fields().items() if v},
        "captured_at": record.meta.captured_at.isoformat() if record.meta.captured_at else None,
        "quality": record.quality.model_dump(),
        "annotations": [{"annotator": a.annotator, "label": a.class_name, "source": a.source, "note": a.note,
                         "at": a.created_at.isoformat() if a.created_at else None} for a in annotations],
        "current": resolve_labels(annotations, workspace.config.labelling).labels.get(sha256),
        "versions": version_history(workspace, sha256),
        "prediction": None if outcome is None else outcome.to_dict(),
        "production": [{"id": p.id, "label": p.label, "decision": p.decision, "confidence": round(p.confidence, 4),
                        "at": p.received_at, "camera": p.camera} for p in workspace.db.predictions.of_image(sha256)],
        "review": [{"id": r.id, "reason": r.reason, "status": r.status, "suggestion": r.suggestion,
                    "decided": r.decided_label, "by": r.decided_by, "at": r.decided_at or r.created_at}
                   for r in workspace.db.review.of_image(sha256)],
    }


def version_history(workspace: Workspace, sha256: str) -> list[dict[str, str]]:
    """The image's label and split in every dataset version that holds it, oldest version first."""
    history = []
    for info in workspace.db.datasets.list():
        item = next((i for i in workspace.db.datasets.items(info.name) if i.sha256 == sha256), None)
        if item is not None:
            history.append({"version": info.name, "label": item.label, "split": item.split})
    return history


@dataclass(frozen=True)
class Sent:
    """What a send did: images newly queued, and those already waiting there."""

    queue: str
    added: int
    waiting: int

    def to_dict(self) -> dict[str, object]:
        return {"queue": self.queue, "added": self.added, "already_waiting": self.waiting}


def check_selection(workspace: Workspace, version: str, digests: Sequence[str]) -> tuple[str, list[DatasetItem]]:
    """The version's name and the items of a selection; BrowseError for an empty, oversized or unknown one."""
    name = version_name(workspace, version)
    wanted = list(dict.fromkeys(digests))
    if not wanted:
        raise BrowseError("the selection is empty", "select points on the map first (drag a box or a lasso)")
    if len(wanted) > MAX_SELECTION:
        raise BrowseError(f"{len(wanted)} images selected, over the {MAX_SELECTION} one send may queue",
                          "filter or select fewer")
    items = {item.sha256: item for item in workspace.db.datasets.items(name)}
    unknown = [d for d in wanted if d not in items]
    if unknown:
        shown = ", ".join(repr(d[:16]) for d in unknown[:3])
        raise BrowseError(f"{len(unknown)} selected image(s) are not in dataset version {name}: {shown}",
                          "reload the map and select again; nothing was queued")
    return name, [items[d] for d in wanted]


def send_to_settle(workspace: Workspace, version: str, digests: Sequence[str], *, by: str,
                   colour_by: str | None = None, colour_values: Sequence[str] | None = None) -> Sent:
    """Queue a selection for a quality engineer to settle (an image already waiting is not queued twice), as
    sent from the browser by ``by``, with the field the map was coloured by and each image's value in it."""
    name, items = check_selection(workspace, version, digests)
    values = _colour_values(digests, colour_values)
    current = resolve_labels(workspace.db.labels.annotations(), workspace.config.labelling).labels
    added = workspace.db.settle.enqueue_suspects([
        QueuedSuspect(id=0, sha256=i.sha256, given=current.get(i.sha256, i.label), suggestion=None, score=None,
                      created_at="", reason=BROWSER,
                      details={"sent_by": by, "from": "browser", "version": name, "split": i.split,
                               **({"colour_by": colour_by, "colour_value": values.get(i.sha256)} if colour_by else {})})
        for i in items])
    return Sent("settle", added, len(items) - added)


def _colour_values(digests: Sequence[str], values: Sequence[str] | None) -> dict[str, str]:
    """Each selected image's value in the colour field; BrowseError when the two lists do not pair up."""
    if values is None:
        return {}
    if len(values) != len(digests):
        raise BrowseError(f"{len(values)} colour values for {len(digests)} selected images",
                          "send one colour value per selected image, or none; nothing was queued")
    return dict(zip(digests, values, strict=True))


def send_to_review(workspace: Workspace, version: str, digests: Sequence[str], *, by: str) -> Sent:
    """Queue a selection for reviewers (reason ``selected``), each with its current label as the suggestion."""
    name, items = check_selection(workspace, version, digests)
    current = resolve_labels(workspace.db.labels.annotations(), workspace.config.labelling).labels
    added = 0
    with workspace.db.transaction() as tx:
        for item in items:
            queued = review.enqueue(tx, image_sha256=item.sha256, reason="selected",
                                    suggestion=current.get(item.sha256, item.label),
                                    details={"sent_by": by, "version": name, "split": item.split})
            added += queued is not None
    return Sent("review", added, len(items) - added)
