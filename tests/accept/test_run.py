"""Acceptance of a run: a real run judged end to end against a passing and a deliberately failing criteria
file, and the refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inspectloop.accept.criteria import lock_criteria
from inspectloop.accept.run import accept
from inspectloop.domain import Stage
from inspectloop.errors import AcceptanceError, CriteriaError, ModelFileError, RegistryError
from inspectloop.registry import get_version, history, list_versions, promote, register
from tests.acceptance_helpers import FAILING_YAML, TrainedNeu, copy_run, write

NAMES = ["patches: recall", "scratches: recall", "scratches: precision", "escape rate", "false alerts per hour",
         "p95 latency", "calibration error"]


# -- end to end on a real run ---------------------------------------------------------------------

@pytest.mark.slow
def test_a_run_that_meets_its_criteria_passes_and_may_go_to_production(neu_probe_run: TrainedNeu) -> None:
    ws, run_id = neu_probe_run.workspace, neu_probe_run.run_id
    seen: list[tuple[int, int]] = []
    report = accept(ws, run_id, progress=lambda done, total: seen.append((done, total)))
    assert report.passed and report.unlocks_promotion and report.failed == ()
    assert [r.name for r in report.results] == NAMES and all(r.passed for r in report.results)
    assert report.criteria.id == neu_probe_run.pass_id and seen[-1] == (12, 12)
    by_name = {r.name: r for r in report.results}
    run = ws.db.runs.get(run_id)
    for name in ("patches", "scratches"):  # the model file scores as the run's own evaluation did
        assert by_name[f"{name}: recall"].measured == run.metrics["test"]["per_class"][name]["recall"]
    assert by_name["calibration error"].measured == pytest.approx(
        run.metrics["calibration"]["test_ece_after"], abs=1e-3)
    assert 0 < by_name["p95 latency"].measured < 2000
    assert "6 test images: few" in by_name["scratches: recall"].detail
    assert by_name["false alerts per hour"].measured == pytest.approx(
        report.measurements.rates.false_reject_rate * (1 - 0.05) * 600)
    assert report.measurements.rates.reviews == 0 and report.measurements.rates.automation_rate == 1.0

    document = json.loads(report.json_path.read_text())
    assert report.json_path == Path(run.artifacts) / f"acceptance-{report.criteria.id}" / "acceptance.json"
    assert document["verdict"] == "passed" and document["record_id"] == report.record_id
    assert document["criteria"]["sha256"] == report.criteria.sha256 and document["criteria"]["locked_by"] == "ana"
    assert document["model_file"]["sha256"] == report.model_version.file_sha256
    assert [r["passed"] for r in document["results"]] == [True] * len(NAMES)
    page = report.html_path.read_text()
    assert "PASSED" in page and "FAIL" not in page and report.criteria.sha256 in page
    assert "Review rate.</b> 0 of 12 test parts (0%; 95% interval 0%-26.5%) went to review" in page  # always stated
    assert document["review_summary"] in page and document["measurements"]["review"]["reviews"] == 0
    assert report.model_version.file_sha256 in page and "<script" not in page and "http" not in page

    version = report.model_version  # registered by accept, as a candidate
    assert (version.run_id, version.stage, version.criteria_id) == (run_id, Stage.candidate, neu_probe_run.pass_id)
    [record] = ws.db.criteria.reports(version.id)
    assert record.passed and record.criteria_id == neu_probe_run.pass_id
    assert promote(ws, version, "production", actor="ana").stage == Stage.production
    assert history(ws, version)[-1].acceptance_report_id == report.record_id


@pytest.mark.slow
def test_a_run_that_misses_its_criteria_fails_and_stays_out_of_production(neu_probe_run: TrainedNeu) -> None:
    ws = neu_probe_run.workspace
    run_id = copy_run(neu_probe_run, criteria_id=neu_probe_run.fail_id)
    registered = register(ws, run_id)  # already a version: accept records against it, registers nothing new
    before = len(list_versions(ws))
    report = accept(ws, run_id)
    assert not report.passed and not report.unlocks_promotion
    assert [r.name for r in report.failed] == ["p95 latency", "calibration error"]
    assert [r.passed for r in report.results] == [True] * 5 + [False] * 2
    latency, calibration = report.results[-2:]
    assert latency.limit == 0.001 and latency.measured > 0.001 and latency.limit_text == "≤ 0.001 ms"
    assert calibration.measured > 0.001 and "12 test images" in calibration.detail
    assert report.model_version.id == registered.id and len(list_versions(ws)) == before
    assert json.loads(report.json_path.read_text())["failed"] == ["p95 latency", "calibration error"]
    assert "FAILED" in report.html_path.read_text()
    with pytest.raises(RegistryError, match="latest acceptance report .* failed"):
        promote(ws, registered, "production", actor="ana")
    assert get_version(ws, registered).stage == Stage.candidate


@pytest.mark.slow
def test_judging_by_other_criteria_records_a_report_that_does_not_unlock_promotion(neu_probe_run: TrainedNeu) -> None:
    ws = neu_probe_run.workspace
    run_id = copy_run(neu_probe_run, criteria_id=neu_probe_run.fail_id)
    report = accept(ws, run_id, criteria="neu-pass")
    assert report.passed and not report.unlocks_promotion
    assert report.json_path.parent.name == f"acceptance-{neu_probe_run.pass_id}"
    with pytest.raises(RegistryError, match="no acceptance report against its criteria"):
        promote(ws, report.model_version, "production", actor="ana")


@pytest.mark.slow
def test_criteria_locked_after_the_run_started_are_refused(neu_probe_run: TrainedNeu, tmp_path: Path) -> None:
    ws = neu_probe_run.workspace
    run_id = copy_run(neu_probe_run, criteria_id=neu_probe_run.pass_id, started_hours_ago=1)
    late = lock_criteria(ws, write(tmp_path, "late.yaml", FAILING_YAML.replace("neu-fail", "neu-late")), by="ben")
    with pytest.raises(CriteriaError, match=f"locked at .* after run {run_id} started") as info:
        accept(ws, run_id, criteria="neu-late")
    assert "lock first, then train" in (info.value.hint or "")
    assert not (ws.runs_dir / run_id / f"acceptance-{late.id}").exists()
    assert ws.db.registry.find(model_id=ws.db.runs.models(run_id)[-1].id) is None  # nothing registered


@pytest.mark.slow
def test_a_run_without_criteria_is_refused_with_the_fix(neu_probe_run: TrainedNeu) -> None:
    run_id = copy_run(neu_probe_run, criteria_id=None)
    with pytest.raises(AcceptanceError, match=f"run {run_id} named no acceptance criteria") as info:
        accept(neu_probe_run.workspace, run_id)
    assert "inspectloop criteria lock" in (info.value.hint or "")
    assert "inspectloop train --criteria" in (info.value.hint or "")


@pytest.mark.slow
@pytest.mark.parametrize("case, message, fix", [
    ("unknown", "no run 'run-nope'", "inspectloop runs"),
    ("running", "is running, not finished", "inspectloop train --resume"),
    ("int8", "has no int8 model", "--variant fp32"),
])
def test_what_cannot_be_judged_is_refused(neu_probe_run: TrainedNeu, case: str, message: str, fix: str) -> None:
    run_id = "run-nope" if case == "unknown" else copy_run(
        neu_probe_run, criteria_id=neu_probe_run.pass_id, status="running" if case == "running" else "finished")
    with pytest.raises(AcceptanceError, match=message) as info:
        accept(neu_probe_run.workspace, run_id, variant="int8" if case == "int8" else "fp32")
    assert fix in (info.value.hint or "")


@pytest.mark.slow
def test_a_model_file_changed_after_export_is_refused(neu_probe_run: TrainedNeu) -> None:
    run_id = copy_run(neu_probe_run, criteria_id=neu_probe_run.pass_id)
    path = neu_probe_run.workspace.runs_dir / run_id / "model.onnx"
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(ModelFileError, match="does not match its record"):
        accept(neu_probe_run.workspace, run_id)
