"""A graded line through the product: grade order and soft labels in, a report and a card with roll-ups out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inspectloop.datasets import SplitPlan, create_version
from inspectloop.domain import ClassDefinition
from inspectloop.grades import set_grade_order
from inspectloop.ingest import ingest, scan_manifest_source
from inspectloop.labels import define_class
from inspectloop.registry import register
from inspectloop.reports.model_card import write_model_card
from inspectloop.synthetic_graded import CLASSES, GRADES, SCALE, SEVERITY, generate_graded_line
from inspectloop.train.config import TrainConfig
from inspectloop.train.run import train
from inspectloop.workspace import Workspace, init_workspace

pytestmark = pytest.mark.slow


def _graded_workspace(root: Path, per_class: int, plan: SplitPlan) -> Workspace:
    line = generate_graded_line(root / "line", per_class=per_class, size=64)
    ws = init_workspace(root / "ws")
    for name in CLASSES:
        define_class(ws, ClassDefinition(name=name, severity=SEVERITY[name], is_good=name == "good"))
    set_grade_order(ws, SCALE, GRADES)
    scan = scan_manifest_source(line.manifest)
    ingest(ws, scan.items, source="line", kind="manifest")
    version = create_version(ws, plan)
    assert any(item.probability is not None for item in version.items)
    return ws


def test_a_graded_run_reports_roll_ups_curves_and_operating_points(tmp_path: Path) -> None:
    with _graded_workspace(tmp_path, 16, SplitPlan(val_fraction=0.25, test_fraction=0.25)) as ws:
        result = train(ws, TrainConfig(mode="probe", epochs=30, input_size=64, augment="none", novelty_rate=0.0))
        graded = result.metrics["test"]["graded"]
        names = [c["name"] for c in graded["curves"]]
        assert names == ["critical vs good", "major vs good", "minor vs good",
                         "scratch >= minor", "scratch >= major", "scratch >= critical"]
        assert all(c["auroc"] is not None and c["operating_point"] is not None for c in graded["curves"])
        assert set(graded["grade_confusions"]) == {"one_step", "more_than_one_step"}
        stored = json.loads((result.report.parent / "graded.json").read_text())
        assert len(stored["curves"][0]["roc"]["true_positive_rate"]) >= 2
        page = result.report.read_text()
        assert "Defective at grade &gt;= g, against everything below" in page and "AUROC" in page
        card = write_model_card(ws, register(ws, result.run_id)).read_text()
        assert "<h3>Graded defects</h3>" in card and "scratch &gt;= major" in card


def test_graded_fine_tuning_with_cross_fitting_trains_on_soft_and_graded_targets(tmp_path: Path) -> None:
    """The default path (fine-tuning) and the cross-fitted pool (train + calib joined, then split in folds)."""
    plan = SplitPlan(val_fraction=0.2, test_fraction=0.2, calib_fraction=0.2)
    with _graded_workspace(tmp_path, 10, plan) as ws:
        config = TrainConfig(mode="finetune", epochs=1, freeze_blocks=12, input_size=64, batch_size=8,
                             band_fit="crossfit", folds=2, ordinal="on", novelty_rate=0.0)
        result = train(ws, config)
        assert result.metrics["history"][0]["loss"] > 0 and "graded" in result.metrics["test"]
