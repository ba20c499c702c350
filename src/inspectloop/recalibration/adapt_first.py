"""Adapt-then-label: a recalibration cycle that adapts at once to each drifted camera, and labels to confirm.

When a cycle starts with ``adapt_first``, every camera with a drift alert in the cycle's window gets an
adapted candidate of the production version at once (:func:`inspectloop.adapt.run.adapt`: BatchNorm
statistics re-estimated on its recent unlabelled images), judged by the production run's locked
criteria on the frozen test set; one that passes goes to shadow, never to production. The cycle's
sample is labelled as usual; when it is continued, each adapted candidate is scored beside the
production model on the labelled images of its own camera (:func:`confirm_adapted`), so a person
promotes it on labels, not on hope. A camera that cannot be adapted (too few images, failed health
check) is recorded with the reason; the cycle goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from inspectloop import registry
from inspectloop.domain import ModelVersion
from inspectloop.errors import InspectloopError
from inspectloop.workspace import Workspace

Adapter = Callable[..., Any]  # inspectloop.adapt.run.adapt, or a stand-in in tests


def drifted_cameras(workspace: Workspace, since: str) -> list[str]:
    """Cameras with a drift alert (kind ``drift``) at or after ``since``, sorted."""
    return sorted({a.camera for a in workspace.db.drift.alerts(since=since, kind="drift", limit=1000) if a.camera})


def adapt_drifted(workspace: Workspace, version: ModelVersion, *, window_start: str, window_end: str, cycle_id: int,
                  actor: str = "recalibration", adapter: Adapter | None = None) -> dict[str, dict[str, Any]]:
    """Adapt ``version`` to each camera that drifted in the window, judge each candidate, shadow those that pass.

    Returns, per camera, what happened: the candidate version and run, the acceptance verdict and the
    stage reached, or why the camera was not adapted.
    """
    from inspectloop.accept.run import accept

    if adapter is None:
        from inspectloop.adapt.run import adapt as adapter

    since = datetime.fromisoformat(window_end) - datetime.fromisoformat(window_start)
    outcomes: dict[str, dict[str, Any]] = {}
    for camera in drifted_cameras(workspace, window_start):
        try:
            adapted = adapter(workspace, camera, since=max(since, timedelta(minutes=1)), model_version=version.name,
                              now=datetime.fromisoformat(window_end))
            report = accept(workspace, adapted.run_id)
        except InspectloopError as exc:
            outcomes[camera] = {"adapted": False, "reason": str(exc)}
            continue
        outcome = {"adapted": True, "run": adapted.run_id, "model_version": adapted.version.name,
                   "acceptance": "passed" if report.passed else "failed",
                   "failed": [r.name for r in report.failed], "stage": "candidate"}
        if report.unlocks_promotion:
            registry.promote(workspace, adapted.version, registry.Stage.shadow, actor=actor,
                             reason=f"recalibration cycle {cycle_id}: adapted to camera {camera} before labels")
            outcome["stage"] = "shadow"
        outcomes[camera] = outcome
    return outcomes


def confirm_adapted(workspace: Workspace, adaptations: Mapping[str, Mapping[str, Any]],
                    labelled: Sequence[tuple[str, str, str | None]]) -> dict[str, dict[str, Any]]:
    """Each adapted candidate beside the production model on the labelled images of its camera.

    ``labelled``: (image digest, reviewer's label, camera) of the cycle's decided items; the production
    model's accuracy there is computed from the same images, so the two figures compare like for like.
    """
    from inspectloop.runtime import EdgeModel

    confirmed: dict[str, dict[str, Any]] = {}
    production = registry.production_model(workspace)
    for camera, outcome in adaptations.items():
        if not outcome.get("adapted"):
            continue
        mine = [(digest, label) for digest, label, where in labelled if where == camera]
        if not mine or production is None:
            confirmed[camera] = {"labelled": len(mine), "note": "no labelled image of this camera in the cycle"}
            continue
        candidate = registry.get_version(workspace, str(outcome["model_version"]))
        scores = {name: _accuracy(EdgeModel(v.path), workspace, mine)
                  for name, v in (("production", production), ("adapted", candidate))}
        confirmed[camera] = {"labelled": len(mine), "model_version": candidate.name,
                             "accuracy_production": scores["production"], "accuracy_adapted": scores["adapted"],
                             "confirmed": scores["adapted"] >= scores["production"]}
    return confirmed


def _accuracy(model: Any, workspace: Workspace, items: Sequence[tuple[str, str]]) -> float:
    """Share of ``items`` (digest, label) whose top class the model gets right."""
    right = sum(model.predict(workspace.blobs.get(digest), name=digest[:12]).label == label for digest, label in items)
    return right / len(items)


def decided_images(workspace: Workspace, sample: Mapping[str, Any]) -> list[tuple[str, str, str | None]]:
    """(image digest, reviewer's label, camera) of a cycle's decided review items."""
    items = workspace.db.review.get_many(list(sample.get("review_items", [])))
    return [(item.image_sha256, str(item.decided_label), item.details.get("camera")) for item in items
            if item.status == "done" and item.decided_label]
