"""Leave-one-group-out evaluation: how a run's recipe holds on a session, camera or line it never saw.

Workspace-bound. For every value of a capture field (session, camera, line, shift, or any free-form
metadata field) the run's recipe (its config; ``mode`` probe allowed for speed, and recorded) trains
on every labelled image of the run's dataset version outside that group, except the version's
validation images, which pick the best epoch, and is scored on every image of the group, whatever
its split. Images without a value for the field are never held out. Per group: macro recall,
per-class recall, good images rejected and defective images passed, with top-class decisions
(:mod:`inspectloop.evaluate.groups`); the worst group is reported beside the mean.

The result is stored in the run's folder (``crossval-<field>-<mode>.json``; each group's figures under
``crossval-<field>-<mode>/`` so an interrupted evaluation resumes after its last finished group) and
the model card of the run's versions shows it. A group too small, or whose removal leaves a class
without training images, is reported as skipped with the reason, never fatal.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from inspectloop.datasets import load_version
from inspectloop.domain import METADATA_FIELDS, DatasetItem, TrainingRun
from inspectloop.errors import DatasetError, TrainingError
from inspectloop.evaluate.groups import group_figures
from inspectloop.provenance import code_version
from inspectloop.store import atomic_write_text, now_iso
from inspectloop.workspace import Workspace

if TYPE_CHECKING:
    from inspectloop.train.config import TrainConfig
    from inspectloop.train.data import ImageSet

Progress = Callable[[str, dict[str, Any]], None]
MIN_GROUP_IMAGES = 10  # fewer images say little about a group, and cost a whole training


@dataclass(frozen=True)
class CrossvalResult:
    """Every group's figures (or why it was skipped), the mean and the worst group, and where it is stored."""

    run_id: str
    field: str
    mode: str
    config: dict[str, Any]
    groups: dict[str, dict[str, Any]]
    skipped: dict[str, str]
    unassigned: int
    path: Path
    seconds: float = 0.0
    summary: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (what is stored)."""
        return {"run": self.run_id, "field": self.field, "mode": self.mode, "config": self.config,
                "summary": self.summary, "groups": self.groups, "skipped": self.skipped,
                "unassigned_images": self.unassigned, "seconds": round(self.seconds, 1),
                "decisions": "top class (no review band)", "code_version": code_version(), "measured_at": now_iso()}


def crossval(workspace: Workspace, by: str, *, run: str | None = None, mode: str | None = None,
             epochs: int | None = None, min_group: int = MIN_GROUP_IMAGES,
             progress: Progress | None = None) -> CrossvalResult:
    """Leave each value of capture field ``by`` out in turn with ``run``'s recipe (default: the latest finished
    classifier run); store and return the figures (see the module doc).

    ``mode`` overrides the run's (probe: seconds per group); ``epochs`` applies to fine-tuning (a probe fits
    to convergence). DatasetError for an unknown field or one with a single value.
    """
    say = progress or (lambda _stage, _info: None)
    source = _classifier_run(workspace, run)
    config = crossval_config(source, mode, epochs)
    version = load_version(workspace, source.dataset_version)
    items = list(version.items)
    values = _field_values(workspace, items, by, version.name)
    groups = sorted({v for v in values if v is not None})
    names = list(version.class_names)
    folder = Path(source.artifacts) / f"crossval-{by}-{config.mode}"
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    images = _load(workspace, version, items, config, names, say)
    good = _good_index(workspace, names)
    figures: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    for n, group in enumerate(groups, start=1):
        say("group", {"group": group, "done": n - 1, "total": len(groups)})
        in_group = np.array([v == group for v in values])
        why = _skip_reason(items, in_group, names, min_group)
        if why:
            skipped[group] = why
            continue
        figures[group] = _held_out(folder, group, items, in_group, images, names, good, config, say)
    summary = crossval_summary(figures, names[good] if good is not None else None)
    result = CrossvalResult(source.id, by, config.mode, config.model_dump(mode="json"), figures, skipped,
                            sum(v is None for v in values), Path(source.artifacts) / f"crossval-{by}-{config.mode}.json",
                            time.perf_counter() - started, summary)
    atomic_write_text(result.path, json.dumps(result.to_dict(), indent=2))
    return result


def _classifier_run(workspace: Workspace, run_id: str | None) -> TrainingRun:
    if run_id is not None:
        run = workspace.db.runs.get(run_id)
        if run is None:
            raise TrainingError(f"no run {run_id!r}", "list runs with: inspectloop runs")
    else:
        finished = [r for r in workspace.db.runs.list() if r.status == "finished" and r.kind == "train"
                    and r.config.get("task", "classification") == "classification"]
        if not finished:
            raise TrainingError("no finished classifier run to take the recipe and dataset version from",
                                "train one first (inspectloop train), or name one with --run RUN")
        run = finished[-1]
    task = run.config.get("task", "classification")
    if task != "classification":
        raise TrainingError(f"run {run.id} is of task {task!r}; leave-one-group-out evaluation covers classifiers",
                            "name a classifier run with --run RUN")
    return run


def crossval_config(run: TrainingRun, mode: str | None, epochs: int | None) -> TrainConfig:
    """The recipe each group trains with: ``run``'s config, one model (split band fit, no time budget), with
    ``mode`` and ``epochs`` overridden when given (``epochs`` matters to fine-tuning only)."""
    from inspectloop.train.config import TrainConfig

    config = TrainConfig.model_validate(run.config)
    update: dict[str, Any] = {"band_fit": "split", "max_minutes": None}  # one model per group, no time budget
    if mode is not None and mode != config.mode:
        update["mode"] = mode
    if epochs is not None:
        update["epochs"] = epochs
    return TrainConfig.model_validate({**config.model_dump(), **update})


def _field_values(workspace: Workspace, items: list[DatasetItem], by: str, version: str) -> list[str | None]:
    """Each item's value of ``by``; DatasetError for a field no image has, or one with a single value."""
    records = workspace.db.images.get_many([item.sha256 for item in items])
    flat = [records[item.sha256].meta.fields() for item in items]
    values = [f.get(by) for f in flat]
    distinct = sorted({v for v in values if v is not None})
    if not distinct:
        known = sorted({k for f in flat for k, v in f.items() if v is not None})
        listed = ", ".join(known) if known else "none: ingest with a manifest that names them"
        raise DatasetError(f"no image of dataset version {version} has a {by!r} value",
                           f"group by a field the images carry ({listed}); known fields: {', '.join(METADATA_FIELDS)}")
    if len(distinct) == 1:
        raise DatasetError(f"every image of dataset version {version} with a {by!r} value has the same one "
                           f"({distinct[0]!r}): there is no other group to hold out",
                           "group by a field with at least two values, or ingest images of another one")
    return values


def _skip_reason(items: list[DatasetItem], in_group: np.ndarray, names: list[str], min_group: int) -> str | None:
    """Why a group cannot be held out (None: it can)."""
    count = int(in_group.sum())
    if count < min_group:
        return f"only {count} image(s), fewer than {min_group}"
    rest = [item for item, held in zip(items, in_group) if not held]
    missing = sorted(set(names) - {item.label for item in rest if item.split != "val"})
    if missing:
        return f"classes {', '.join(missing)} have no training image outside this group"
    if not any(item.split == "val" for item in rest):
        return "no validation image outside this group to choose the best epoch with"
    return None


def _load(workspace: Workspace, version: Any, items: list[DatasetItem], config: TrainConfig, names: list[str],
          say: Progress) -> ImageSet:
    """Every item decoded once, at the recipe's input size."""
    from inspectloop.models.backbones import backbone_spec
    from inspectloop.runtime.preprocess import Preprocess
    from inspectloop.train.data import load_image_set
    from inspectloop.train.places import with_places
    from inspectloop.train.record import colour_mode

    spec = backbone_spec(config.backbone)
    images = load_image_set(items, names, workspace.blobs.get, Preprocess(config.input_size, spec.mean, spec.std),
                            draft=config.jpeg_draft, mode=colour_mode(workspace, version, config),
                            progress=lambda n, total: say("load", {"done": n, "total": total}))
    good = _good_index(workspace, names)
    return with_places(images, config, workspace, version, items, None if good is None else names[good],
                       lambda message: say("warning", {"message": message}))


def _good_index(workspace: Workspace, names: list[str]) -> int | None:
    from inspectloop.train.record import good_index

    return good_index(workspace, names)


def _held_out(folder: Path, group: str, items: list[DatasetItem], in_group: np.ndarray, images: ImageSet,
              names: list[str], good: int | None, config: TrainConfig, say: Progress) -> dict[str, Any]:
    """Train without ``group`` and score it; a group finished by an earlier attempt is read back."""
    from inspectloop.models.backbones import backbone_spec
    from inspectloop.runtime.preprocess import Preprocess
    from inspectloop.train.fit import fit_split, new_classifier, remove_checkpoints
    from inspectloop.train.loop import predict_logits

    saved = folder / f"{_safe(group)}.json"
    if saved.is_file():
        stored = json.loads(saved.read_text("utf-8"))
        if stored.get("config") == config.model_dump(mode="json"):  # as JSON: a tuple setting reads back a list
            return dict(stored["figures"])
    val_mask = np.array([item.split == "val" for item in items]) & ~in_group
    train_mask = ~in_group & ~val_mask
    spec = backbone_spec(config.backbone)
    preprocess = Preprocess(config.input_size, spec.mean, spec.std)
    work = folder / _safe(group)
    work.mkdir(exist_ok=True)
    fitted = fit_split(lambda seed: new_classifier(config, len(names), seed), _subset(images, train_mask),
                       _subset(images, val_mask), None, preprocess, config, work,
                       lambda record: say("epoch", {**record, "group": group, "epochs": config.epochs}))
    test = _subset(images, in_group)
    predicted = predict_logits(fitted.model, test, preprocess).argmax(1)
    figures = {**group_figures(test.labels, predicted, names, good).to_dict(),
               "trained_on": int(train_mask.sum()), "best_epoch": fitted.training.best_epoch,
               "train_seconds": round(fitted.training.seconds, 1)}
    atomic_write_text(saved, json.dumps({"config": config.model_dump(mode="json"), "figures": figures}, indent=2))
    remove_checkpoints(work / "checkpoint.pt", config)  # the figures are kept; the weights are not needed again
    return figures


def crossval_summary(groups: dict[str, dict[str, Any]], good_class: str | None) -> dict[str, Any]:
    """Mean over the evaluated groups beside the worst one (lowest macro recall; highest good-reject rate)."""
    scored = {g: f for g, f in groups.items() if f.get("macro_recall") is not None}
    if not scored:
        return {"groups_evaluated": 0}
    worst = min(scored, key=lambda g: scored[g]["macro_recall"])
    rejects = {g: f["good_reject_rate"] for g, f in scored.items() if f.get("good_reject_rate") is not None}
    summary: dict[str, Any] = {
        "groups_evaluated": len(scored), "good_class": good_class,
        "mean_macro_recall": float(np.mean([f["macro_recall"] for f in scored.values()])),
        "worst_group": worst, "worst_macro_recall": scored[worst]["macro_recall"],
        "escapes": sum(f["escapes"] for f in scored.values()),
        "defective": sum(f["defective"] for f in scored.values())}
    if rejects:
        most = max(rejects, key=lambda g: rejects[g])
        summary |= {"mean_good_reject_rate": float(np.mean(list(rejects.values()))),
                    "worst_good_reject_group": most, "worst_good_reject_rate": rejects[most]}
    return summary


def stored_crossvals(run_folder: Path) -> list[dict[str, Any]]:
    """The leave-one-group-out results stored in a run's folder, by file name (unreadable ones left out)."""
    found = []
    for path in sorted(Path(run_folder).glob("crossval-*.json")):
        try:
            found.append(json.loads(path.read_text("utf-8")))
        except (OSError, ValueError):
            continue
    return found


def _subset(images: ImageSet, mask: np.ndarray) -> ImageSet:
    return images.take(np.flatnonzero(mask))


def _safe(group: str) -> str:
    """A group value as a file name."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in group)[:80] or "_"
