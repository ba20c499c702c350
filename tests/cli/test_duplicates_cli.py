"""``inspectloop dataset duplicates``: leaks and label conflicts of a version, as a table and as JSON."""

from __future__ import annotations

import json
from pathlib import Path

from inspectloop.datasets import SplitPlan, create_version
from inspectloop.ingest import ingest
from inspectloop.workspace import init_workspace
from tests.cli.test_app import invoke
from tests.near_duplicates_helpers import copies


def test_leaks_and_conflicts_are_listed_and_fixed_by_the_default_split(tmp_path: Path) -> None:
    ws = init_workspace(tmp_path / "ws")
    ingest(ws, copies(tmp_path / "src", range(30), twins={s: "good" for s in range(0, 30, 3)} | {1: "scratch"},
                      label_of=dict.fromkeys((4, 7, 13, 16, 19, 22), "scratch")), source="copies")
    create_version(ws, SplitPlan(group_by="none", near_duplicate_distance=None), name="blind")
    ws.close()
    code, out, _ = invoke("dataset", "duplicates", "blind", "-w", tmp_path / "ws", "--json")
    found = json.loads(out)
    assert code == 0 and any(p["leaks"] for p in found) and sum(p["conflicts"] for p in found) == 1
    code, out, _ = invoke("dataset", "create", "-w", tmp_path / "ws", "--group-by", "none", "--new-test")
    assert code == 0 and "near-duplicates: 11 pair(s), 0 across splits, 1 with two labels" in out
    code, out, _ = invoke("dataset", "duplicates", "-w", tmp_path / "ws")
    words = " ".join(out.split())  # the console wraps long lines
    assert code == 0 and "11 pair(s); 0 across splits, 1 with two labels" in words and "conflict" in words


def test_an_unknown_version_is_one_line(tmp_path: Path) -> None:
    init_workspace(tmp_path / "ws").close()
    code, _, err = invoke("dataset", "duplicates", "v3", "-w", tmp_path / "ws")
    assert code != 0 and "dataset version" in err and "Traceback" not in err
