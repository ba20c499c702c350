import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from inspectloop.cli.app import app
from inspectloop.embeddings import image_embeddings
from inspectloop.ingest import ingest, scan_folder
from inspectloop.labels import annotate, resolve_labels
from inspectloop.workspace import init_workspace, open_workspace

runner = CliRunner()


def invoke(*args: object) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def ws(tmp_path: Path, class_tree: Path) -> tuple[Path, list[str]]:
    """A workspace with the class tree ingested; returns it and its good images."""
    workspace = init_workspace(tmp_path / "ws")
    ingest(workspace, scan_folder(class_tree), source="tree")
    labels = resolve_labels(workspace.db.labels.annotations()).labels
    workspace.close()
    return tmp_path / "ws", sorted(d for d, label in labels.items() if label == "good")


def test_queue_and_settle_and_a_stale_settle(ws: tuple[Path, list[str]]) -> None:
    path, good = ws
    with open_workspace(path) as w:
        annotate(w, good[0], "scratch", annotator="ana")
        annotate(w, good[0], "good", annotator="bo")
    code, out, _ = invoke("labels", "queue", "-w", path, "--json")
    [case] = json.loads(out)
    assert code == 0 and case["reasons"] == ["disagreement"] and case["current"] is None
    code, _, err = invoke("labels", "settle", good[0], "scratch", "-w", path, "--by", "qe", "--seen", "0" * 12)
    assert code == 1 and "stale settle" in err and "fix:" in err and "Traceback" not in err
    code, out, _ = invoke("labels", "settle", good[0], "scratch", "-w", path, "--by", "qe", "--seen", case["seen"])
    assert code == 0 and "settled as 'scratch' by qe" in out
    assert json.loads(invoke("labels", "queue", "-w", path, "--json")[1]) == []
    code, out, _ = invoke("labels", "-w", path, "--json")  # the summary is still 'inspectloop labels'
    assert code == 0 and json.loads(out)["disagreements"][0]["decided_by"] == "settled"


def test_agreement_table_and_a_class_with_one_annotator(ws: tuple[Path, list[str]]) -> None:
    path, _ = ws
    code, _, err = invoke("labels", "agreement", "-w", path, "--class", "scratch")
    assert code == 1 and "no kappa for class 'scratch'" in err and "one annotator (import)" in err
    code, out, _ = invoke("labels", "agreement", "-w", path)
    assert code == 0 and "agreement per class" in out and "one annotator" in out


def test_suspects_flags_a_wrong_label_and_queues_it(ws: tuple[Path, list[str]]) -> None:
    path, good = ws
    with open_workspace(path) as w:
        annotate(w, good[0], "scratch", annotator="ana")  # a reviewer's wrong correction outranks the import
    assert invoke("dataset", "create", "-w", path, "--group-by", "none")[0] == 0
    code, out, err = invoke("labels", "suspects", "-w", path, "--json", "--queue", "--folds", "3")
    assert code == 0, err
    report = json.loads(out)
    assert report["images"] == 12 and report["suspects"][0]["sha256"] == good[0]
    assert report["suspects"][0]["suggestion"] == "good" and report["queued"] == len(report["suspects"])
    queue = json.loads(invoke("labels", "queue", "-w", path, "--json")[1])
    assert queue[0]["sha256"] == good[0] and "suspect" in queue[0]["reasons"]
    with open_workspace(path) as w:  # the embeddings are kept: a second check (or the map) embeds nothing again

        def refuse(digests: list[str]) -> None:
            raise AssertionError(f"embedded {len(digests)} image(s) again")

        assert len(image_embeddings(w, list(w.db.images.get_many()), input_size=224, embed=refuse)) == 12


@pytest.mark.parametrize("args, message", [
    (["--rank-by", "loudness"], "unknown ranking 'loudness'"),
    ([], "no dataset version yet"),
])
def test_suspects_bad_input_is_one_line(ws: tuple[Path, list[str]], args: list[str], message: str) -> None:
    code, _, err = invoke("labels", "suspects", "-w", ws[0], *args)
    assert code == 1 and message in err and "Traceback" not in err
