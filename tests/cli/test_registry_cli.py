"""``inspectloop criteria`` and ``inspectloop models``: locking, registering, promoting, rolling back."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from inspectloop.registry import history
from inspectloop.workspace import open_workspace
from tests.cli.test_app import invoke
from tests.registry_helpers import add_run_with_model, seeded_workspace, write_criteria
from tests.test_export import synthetic_image


def one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def refused(args: list[object], *messages: str) -> str:
    """Run a command that must fail with one clear message (and a fix); return its stderr."""
    code, out, err = invoke(*map(str, args))
    assert code == 1, out + err
    assert "Traceback" not in out + err and "fix:" in err
    for message in messages:
        assert message in one_line(err), err
    return one_line(err)


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    seeded_workspace(tmp_path / "ws").close()
    return tmp_path / "ws"


def test_lock_and_list_criteria(ws: Path, tmp_path: Path) -> None:
    path = write_criteria(tmp_path)
    code, out, _ = invoke("criteria", "lock", path, "--by", "ana", "-w", ws)
    assert code == 0 and "#1 'line3' locked" in out and "by ana" in out and "--criteria line3" in out
    code, out, _ = invoke("criteria", "lock", path, "--by", "ben", "-w", ws)
    assert code == 0 and "#1 'line3'" in out and "by ana" in out  # the existing lock
    code, out, _ = invoke("criteria", "list", "-w", ws)
    assert code == 0 and "line3" in out and "ana" in out and "#2" not in out


@pytest.mark.parametrize("text, message", [
    ("classes:\n  scratch: {min_recall: 1.5}\n", "classes.scratch.min_recall: must be <= 1, got 1.5"),
    ("classes:\n  scratch: {min_recall: high}\n", "classes.scratch.min_recall: must be a number, got text 'high'"),
    ("classes:\n  dent: {min_recall: 0.9}\n", "unknown class 'dent' (the workspace's classes: dark, good, scratch)"),
    ("classes: {scratch: {min_recall: 0.9}}\nmax_escape_rate: 0\n", "max_escape_rate: must be > 0, got 0"),
    ("classes: {scratch: {min_recall: 0.9}}\nmax_false_alerts_per_hour: 4\n",
     "line: needed to judge max_false_alerts_per_hour"),
    ("classes: {scratch: {min_recall: 0.9}}\nmax_latency: 40\n", "max_latency: is not a criteria field"),
    ("classes:\n  scratch: [0.9\n", "line 3, column 1"),
])
def test_bad_criteria_get_one_message_naming_the_field(ws: Path, tmp_path: Path, text: str, message: str) -> None:
    refused(["criteria", "lock", write_criteria(tmp_path, text), "--by", "ana", "-w", ws], message)
    assert "line3" not in invoke("criteria", "list", "-w", ws)[1]


def test_lock_refuses_criteria_the_dataset_cannot_meet_naming_the_numbers(ws: Path, tmp_path: Path,
                                                                         class_tree: Path) -> None:
    assert invoke("ingest", class_tree, "-w", ws)[0] == 0
    assert invoke("dataset", "create", "-w", ws, "--group-by", "none", "--val", "0.2", "--test", "0.3",
                  "--calib", "0.3", "--new-test")[0] == 0  # v2: 2 defective and 2 good calibration images
    err = refused(["criteria", "lock", write_criteria(tmp_path), "--by", "ana", "-w", ws],
                  "max_escape_rate 0.05 cannot be certified on dataset v2 (calibration: 2 defective, 2 good images)",
                  "needs at least 45 defective calibration images and there are 2", "fix: add defective images")
    assert "or use guarantee: marginal" in err and "raise max_escape_rate" not in err  # 2 certify 68 % at best
    refused(["criteria", "lock", write_criteria(tmp_path), "--by", "ana", "-w", ws, "--dataset", "v1"],
            "dataset v1 has no calibration split", "--calib 0.2")
    loose = write_criteria(tmp_path, "name: loose\nclasses: {scratch: {min_recall: 0.5}}\nmax_escape_rate: 0.5\n"
                                     "guarantee: marginal\n", name="loose.yaml")
    code, out, _ = invoke("criteria", "lock", loose, "--by", "ana", "-w", ws)
    assert code == 0 and "attainable on dataset v2 (calibration: 2 defective, 2 good images)" in one_line(out)


def test_train_with_unknown_criteria_is_refused(ws: Path) -> None:
    refused(["train", "-w", ws, "--criteria", "line9"], "no locked criteria 'line9'", "inspectloop criteria lock")


def test_the_models_table_never_cuts_a_run_id_at_80_columns(ws: Path) -> None:
    run_id = "run-20261202-031430-0342"  # as training names runs: the table once showed "run-20261202-0…"
    with open_workspace(ws) as w:
        add_run_with_model(w, run_id)
    assert invoke("models", "register", run_id, "-w", ws)[0] == 0
    code, out, _ = invoke("models", "list", "-w", ws)
    assert code == 0 and run_id in out and "…" not in out and max(len(line) for line in out.splitlines()) <= 80


def test_register_promote_override_and_rollback(ws: Path) -> None:
    with open_workspace(ws) as w:
        add_run_with_model(w, "run-a")
        add_run_with_model(w, "run-b")
    code, out, _ = invoke("models", "register", "run-a", "-w", ws)
    assert code == 0 and "registered line3-v1 (#1) from run-a (fp32) as candidate" in one_line(out)
    assert invoke("models", "register", "run-b", "-w", ws, "--name", "line3-b")[0] == 0
    refused(["models", "rollback", "-w", ws, "--actor", "ana", "--reason", "test"],
            "no earlier production version to roll back to", "inspectloop models promote")
    refused(["models", "promote", "line3-v1", "production", "-w", ws, "--actor", "ana"],
            "line3-v1 cannot go to production", "named no acceptance criteria", "--override --reason")
    refused(["models", "promote", "line3-v1", "production", "-w", ws, "--actor", "ana", "--override"],
            "an override needs a reason")
    code, out, err = invoke("models", "promote", "line3-v1", "production", "-w", ws, "--actor", "ana",
                            "--override", "--reason", "trial week")
    assert code == 0 and "line3-v1 is now production" in out and "override" in err
    code, _, _ = invoke("models", "promote", "line3-b", "production", "-w", ws, "--actor", "ben",
                        "--override", "--reason", "better on night shift")
    assert code == 0
    code, out, _ = invoke("models", "list", "-w", ws)
    assert code == 0 and re.search(r"line3-v1\s.*retired", out) and re.search(r"line3-b\s.*production", out)
    code, out, _ = invoke("models", "rollback", "-w", ws, "--actor", "cy", "--reason", "false alerts")
    assert code == 0 and "line3-v1 is back in production" in out
    with open_workspace(ws) as w:
        events = [(e.action, e.to_stage.value, e.actor, e.reason, e.override) for e in history(w)]
    assert events == [
        ("promote", "production", "ana", "trial week", True),
        ("replaced", "retired", "ben", "replaced by line3-b", False),
        ("promote", "production", "ben", "better on night shift", True),
        ("rollback", "retired", "cy", "false alerts", False),
        ("rollback", "production", "cy", "false alerts", False),
    ]


@pytest.mark.parametrize("args, message", [
    (["models", "register", "run-x"], "no run 'run-x'"),
    (["models", "promote", "line3-v9", "shadow", "--actor", "ana"], "no model version 'line3-v9'"),
    (["models", "promote", "1", "live", "--actor", "ana"], "unknown stage 'live'"),
    (["models", "promote", "1", "shadow", "--actor", " "], "who does this is not given"),
    (["predict", "--production", "frame.png"], "has no model version in production"),
])
def test_bad_registry_input_gets_one_clear_message(ws: Path, args: list[str], message: str) -> None:
    with open_workspace(ws) as w:
        add_run_with_model(w, "run-a")
    assert invoke("models", "register", "run-a", "-w", ws)[0] == 0
    refused([*args, "-w", ws], message)


def test_predict_uses_the_production_version_and_refuses_a_changed_file(ws: Path, tmp_path: Path) -> None:
    with open_workspace(ws) as w:
        model = add_run_with_model(w, "run-a")
    invoke("models", "register", "run-a", "-w", ws)
    invoke("models", "promote", "1", "production", "-w", ws, "--actor", "ana", "--override", "--reason", "test")
    frame = tmp_path / "frame.png"
    synthetic_image("scratch", 0).save(frame)
    code, out, err = invoke("predict", "--production", frame, "-w", ws)
    assert code == 0, err
    assert json.loads(out)["image"] == str(frame)
    model.write_bytes(model.read_bytes().replace(b"tiny", b"tinY", 1))
    refused(["predict", "--production", frame, "-w", ws], "does not match its record", "never edit a model file")
    refused(["models", "rollback", "-w", ws, "--actor", "ana", "--reason", "x"], "no earlier production version")
    refused(["predict", model], "no images given")
