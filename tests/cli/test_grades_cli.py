"""`inspectloop classes grade`: an order in, a one-line refusal naming the class for a bad one."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.test_app import invoke


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    assert invoke("init", ws)[0] == 0
    for name in ("minor", "major", "critical"):
        assert invoke("classes", "add", name, "--severity", name, "-w", ws)[0] == 0
    return ws


@pytest.mark.parametrize(("args", "expected"), [
    (["critical", "minor"], "error: grades out of order on scale 'scratch': 'minor' (severity minor) is graded above "
                            "'critical'"),
    (["minor", "dent"], "error: grade 2 of 'scratch': unknown class 'dent'"),
    ([], "error: give the scale's classes, lowest grade first, or --clear"),
])
def test_a_bad_grade_order_is_one_line_naming_the_class(ws: Path, args: list[str], expected: str) -> None:
    code, out, err = invoke("classes", "grade", "scratch", *args, "-w", ws)
    text = " ".join((out + err).split())
    assert code != 0 and expected in text and "Traceback" not in text


def test_a_grade_order_shows_in_the_class_list_and_clears(ws: Path) -> None:
    code, out, _ = invoke("classes", "grade", "scratch", "minor", "major", "critical", "-w", ws)
    assert code == 0 and "scratch': minor < major < critical" in out
    assert "scratch 3" in invoke("classes", "list", "-w", ws)[1]
    code, out, _ = invoke("classes", "grade", "scratch", "--clear", "-w", ws)
    assert code == 0 and "cleared" in out and "scratch 3" not in invoke("classes", "list", "-w", ws)[1]
