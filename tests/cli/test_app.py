"""The CLI: every command works through its library function, errors are one line, never a traceback."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from inspectloop.cli.app import app

runner = CliRunner()
README = Path(__file__).resolve().parents[2] / "README.md"


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def command_names() -> list[str]:
    root = get_command(app)
    names = []
    for name, command in root.commands.items():  # type: ignore[attr-defined]
        sub = getattr(command, "commands", None)
        names += [f"{name} {s}" for s in sub] if sub else [name]
    return sorted(names)


def test_every_command_is_documented_in_the_readme() -> None:
    text = README.read_text()
    missing = [name for name in command_names() if f"inspectloop {name}" not in text]
    assert not missing, f"commands missing from README.md: {missing}"


def test_labelling_and_dataset_flow(tmp_path: Path, class_tree: Path) -> None:
    ws = tmp_path / "ws"
    assert invoke("init", ws)[0] == 0
    code, out, _ = invoke("ingest", class_tree, "-w", ws)
    assert code == 0 and "added 12" in out
    code, out, _ = invoke("classes", "add", "scratch", "-w", ws, "--criterion", "linear mark > 2 mm",
                          "--severity", "critical")
    assert code == 0
    code, out, _ = invoke("classes", "list", "-w", ws)
    assert "linear mark > 2 mm" in out and "critical" in out
    code, out, _ = invoke("ingest", class_tree, "-w", ws, "--json")
    assert code == 0 and json.loads(out)["duplicates"] == 12
    digest = next(p.name for p in (ws / "blobs").rglob("*") if p.is_file() and len(p.name) == 64)
    assert invoke("label", digest, "scratch", "-w", ws, "--annotator", "ana")[0] == 0
    assert invoke("classes", "reference", "scratch", digest, "-w", ws)[0] == 0
    code, out, _ = invoke("classes", "reference", "scratch", class_tree / "scratch" / "scratch_0.png", "-w", ws)
    assert code == 0 and "added to 'scratch'" in out  # an ingested file's path was refused: "ingest it first"
    code, out, _ = invoke("labels", "-w", ws, "--json")
    assert code == 0 and "ana" in json.loads(out)["annotators"]
    code, out, _ = invoke("dataset", "create", "-w", ws, "--group-by", "none", "--val", "0.25", "--test", "0.25")
    assert code == 0 and "dataset v1" in out
    assert "v1" in invoke("dataset", "list", "-w", ws)[1]
    assert "scratch" in invoke("dataset", "show", "v1", "-w", ws)[1]
    code, out, _ = invoke("dataset", "create", "-w", ws, "--group-by", "none", "--val", "0.25", "--test", "0.25",
                          "--calib", "0.2")  # was refused ("too few to give calib at least 1") without --new-test
    assert code == 0 and "carved from v1's training data" in out
    assert invoke("runs", "-w", ws)[0] == 0


@pytest.mark.parametrize("args, message", [
    (("ingest", "/nonexistent/folder", "-w", "{ws}"), "is not a folder"),
    (("dataset", "show", "v9", "-w", "{ws}"), "no dataset version 'v9'"),
    (("label", "0" * 64, "dent", "-w", "{ws}", "--annotator", "ana"), "unknown class 'dent'"),
    (("classes", "add", "../x", "-w", "{ws}"), "bad class name"),
    (("train", "-w", "{ws}", "--epochs", "0"), "bad --epochs"),
    (("train", "-w", "{ws}"), "no dataset version yet"),
    (("runs", "-w", "/nonexistent/ws"), "not an inspectloop workspace"),
    (("dataset", "create", "-w", "{ws}", "--group-by", "colour"), "cannot group by"),
])
def test_bad_input_gets_one_clear_message(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    ws = tmp_path / "ws"
    invoke("init", ws)
    code, out, err = invoke(*(a.replace("{ws}", str(ws)) for a in args))
    assert code == 1
    assert message in re.sub(r"\s+", " ", err)
    assert "Traceback" not in err + out
    assert "fix:" in err


def test_an_error_naming_a_long_path_keeps_it_on_one_line(tmp_path: Path) -> None:
    missing = tmp_path / ("a-folder-with-a-long-name-" * 4) / "ws"  # far wider than an 80-column terminal
    code, _, err = invoke("runs", "-w", missing)
    assert code == 1
    assert str(missing) in err.splitlines()[0]  # copyable as printed: no newline inside the path


def test_predict_reports_a_bad_model_file(tmp_path: Path) -> None:
    bogus = tmp_path / "model.onnx"
    bogus.write_bytes(b"not a model")
    code, out, err = invoke("predict", bogus, tmp_path / "a.jpg")
    assert code == 1 and "Traceback" not in err and "model" in err
