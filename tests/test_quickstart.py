"""The README's main command, end to end on a tiny synthetic line (one short epoch)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inspectloop.datasets import create_version
from inspectloop.errors import WorkspaceError
from inspectloop.ingest import ingest, scan_manifest
from inspectloop.quickstart import DEMO_SPLIT, remove_quickstart, run_quickstart
from inspectloop.synthetic import CLASSES, DEMO_PER_CLASS, generate_line
from inspectloop.workspace import init_workspace


@pytest.mark.slow
def test_quickstart_runs_the_whole_loop(tmp_path: Path) -> None:
    said: list[str] = []
    criteria = Path(__file__).resolve().parents[1] / "examples" / "criteria.yaml"
    summary = run_quickstart(tmp_path / "qs", epochs=1, input_size=64, per_class=12, criteria=criteria,
                             say=said.append)
    assert "frozen test set, macro recall" in summary
    model_line = next(line for line in summary.splitlines() if line.startswith("model file"))
    assert Path(model_line.split(": ", 1)[1]).exists()
    predictions = [json.loads(line) for line in summary.splitlines() if line.strip().startswith("{")]
    assert predictions and all(p["decision"] in ("pass", "reject", "review") for p in predictions)
    assert any("ingesting" in line for line in said)
    assert (tmp_path / "qs" / "runs").is_dir()
    assert any(line.startswith("criteria quickstart-line locked before training") for line in said)
    verdict = next(line for line in summary.splitlines() if line.startswith("acceptance against quickstart-line"))
    if verdict.endswith("FAILED"):  # one short epoch at 64 px: expected, and the gate must hold
        assert "  FAIL  " in summary and "stays a candidate" in summary
    else:
        assert verdict.endswith("PASSED") and "is now in production" in summary
    assert "review rate: " in summary and "(needs <= 20.0%)" in summary  # the example criteria bound reviews
    assert "  review: " in summary and "were decided automatically" in summary
    card = next(line for line in summary.splitlines() if line.startswith("model card: "))
    assert Path(card.split(": ", 1)[1]).exists()
    remove_quickstart(tmp_path / "qs")
    assert not (tmp_path / "qs").exists()


def test_the_demo_line_judges_on_at_least_60_test_images_per_class_and_has_a_calibration_split(
        tmp_path: Path) -> None:
    line = generate_line(tmp_path / "line", per_class=DEMO_PER_CLASS, size=64)  # the split ignores pixels
    workspace = init_workspace(tmp_path / "ws")
    items, _ = scan_manifest(line.manifest)
    ingest(workspace, items, source="demo", kind="manifest")
    splits = create_version(workspace, DEMO_SPLIT).summary["splits"]
    workspace.close()
    assert all(splits["test"][name] >= 60 for name in CLASSES), splits["test"]  # was 9: intervals ~40 points wide
    assert all(splits["calib"][name] >= 30 for name in CLASSES), splits["calib"]


def test_fresh_never_deletes_a_folder_quickstart_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "data.csv").write_text("precious")
    with pytest.raises(WorkspaceError, match="not a quickstart workspace"):
        remove_quickstart(tmp_path / "mine")
    assert (tmp_path / "mine" / "data.csv").exists()
