"""Shared steps of the training benchmarks: a fresh workspace, a fixed split, a run, and its scores."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from benchmarks.common import CACHE
from inspectloop.datasets import SplitPlan, create_version
from inspectloop.evaluate.run import evaluate_model_file
from inspectloop.ingest import SourceItem, ingest
from inspectloop.regions.run import import_regions
from inspectloop.train.config import TrainConfig
from inspectloop.train.run import RunResult, train
from inspectloop.workspace import Workspace, init_workspace


def fresh_workspace(name: str, items: list[SourceItem], plan: SplitPlan, *, masks: Path | None = None) -> Workspace:
    """A new workspace under benchmarks/cache (git-ignored) with the dataset ingested and split; with ``masks``
    (a data set folder with masks beside its images), its masks imported as region annotations first."""
    root = CACHE / name
    shutil.rmtree(root, ignore_errors=True)
    ws = init_workspace(root)
    report = ingest(ws, items, source=name)
    print(f"{name}: ingested {report.added} images ({len(report.duplicates)} duplicates, {len(report.skipped)} skipped)")
    if masks is not None:
        imported = import_regions(ws, masks, "masks", images=masks)
        print(f"{name}: {imported.files} masks imported as regions ({len(imported.problems)} problems)")
    version = create_version(ws, plan)
    print(f"{name}: dataset {version.name} splits {version.summary['splits']}")
    return ws


def progress_printer(label: str):  # noqa: ANN201
    def show(stage: str, info: dict[str, Any]) -> None:
        if stage == "epoch":
            fold = f" fold {info['fold'] + 1}/{info['folds']}" if "fold" in info else ""
            print(f"  [{label}{fold}] epoch {info['epoch'] + 1}/{info['epochs']} loss {info['loss']:.3f} "
                  f"val macro recall {info['val_macro_recall']:.4f}", flush=True)
        elif stage == "warning":
            print(f"  [{label}] warning: {info['message']}", flush=True)
        elif stage in ("evaluate", "export"):
            print(f"  [{label}] {stage}", flush=True)
    return show


def train_and_score(ws: Workspace, config: TrainConfig, label: str, *, int8: bool) -> dict[str, Any]:
    """Train, then score every exported variant through the edge runtime on the frozen test set."""
    started = time.perf_counter()
    result: RunResult = train(ws, config, export_int8=int8, progress=progress_printer(label))
    wall = time.perf_counter() - started
    variants = {"fp32": result.model_path}
    if int8:
        variants["int8"] = result.model_path.with_name("model-int8.onnx")
    scores = {}
    for variant, path in variants.items():
        evaluation = evaluate_model_file(ws, path, split="test", out_dir=result.run_dir / f"eval-{variant}")
        summary = evaluation.summary()
        summary["confusion_matrix"] = evaluation.metrics.confusion.tolist()
        summary["class_names"] = list(evaluation.metrics.class_names)
        summary["model_bytes"] = Path(path).stat().st_size
        scores[variant] = summary
        print(f"  [{label}/{variant}] test macro recall {summary['macro_recall']:.4f} "
              + " ".join(f"{k}={v['recall']:.3f}" for k, v in summary["per_class"].items()), flush=True)
    return {"label": label, "run_id": result.run_id, "config": config.model_dump(),
            "train_seconds": result.metrics["train_seconds"], "run_wall_seconds": round(wall, 1),
            "best_epoch": result.metrics["best_epoch"], "history": result.metrics["history"],
            "models": {k: str(v) for k, v in variants.items()}, "test": scores}
