"""``inspectloop accept``: a table criterion by criterion, the verdict, exit 0 on pass and 1 on fail."""

from __future__ import annotations

import pytest

from tests.acceptance_helpers import TrainedNeu, copy_run
from tests.cli.test_app import invoke
from tests.cli.test_registry_cli import one_line, refused

pytestmark = pytest.mark.slow


def test_accept_prints_the_table_and_the_verdict_and_unlocks_promotion(neu_probe_run: TrainedNeu) -> None:
    ws = neu_probe_run.root
    run_id = copy_run(neu_probe_run, criteria_id=neu_probe_run.pass_id)
    code, out, err = invoke("accept", run_id, "-w", ws)
    text = one_line(out)
    assert code == 0, out + err
    assert "PASSED: all 7 criteria met" in text and "scratches: recall" in text and "≤ 2,000 ms" in text
    assert "FAIL" not in text and "error" not in err
    assert "review: 0 of 12 test parts (0%;" in text and "100% were decided automatically" in text
    name = text.split(" may go to production")[0].rsplit(" ", 1)[-1]
    assert f"inspectloop models promote {name} production" in text
    report = text.split("report: ")[1].split()[0]
    assert report.endswith(f"{run_id}/acceptance-{neu_probe_run.pass_id}/acceptance.html")
    code, out, _ = invoke("models", "promote", name, "production", "-w", ws, "--actor", "ana")
    assert code == 0 and f"{name} is now production" in out


def test_a_failed_acceptance_exits_1_with_the_verdict_not_an_error(neu_probe_run: TrainedNeu) -> None:
    ws = neu_probe_run.root
    run_id = copy_run(neu_probe_run, criteria_id=neu_probe_run.fail_id)
    code, out, err = invoke("accept", run_id, "-w", ws)
    text = one_line(out)
    assert code == 1 and "Traceback" not in out + err and "error:" not in err
    assert "FAILED: 2 of 7 criteria not met (p95 latency, calibration error)" in text
    assert "p95 latency: p95 of the runtime's own total time" in text  # the failing details follow the table
    assert "stays out of production" in text and "report: " in text


def test_accept_refuses_a_bad_run_in_one_line(neu_probe_run: TrainedNeu) -> None:
    refused(["accept", "run-nope", "-w", neu_probe_run.root], "no run 'run-nope'", "inspectloop runs")
    refused(["accept", neu_probe_run.run_id, "-w", neu_probe_run.root, "--criteria", "nope"],
            "no locked criteria 'nope'")
