"""A version's boxes checked against another annotator's and given predictions, ranked, and sent to settle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inspectloop.datasets import SplitPlan, create_version
from inspectloop.domain import Box, Region
from inspectloop.errors import LabelError
from inspectloop.labelquality.boxcheck import Boxes
from inspectloop.labelquality.boxes import find_box_issues, queue_box_issues
from inspectloop.labelquality.settle import settle_queue
from inspectloop.workspace import Workspace
from tests.cli.test_app import invoke
from tests.regions_helpers import digest_of, workspace_with_images


def box(name: str, digest: str, who: str, x0: float, y0: float, x1: float, y1: float) -> Region:
    return Region(sha256=digest, class_name=name, box=Box(x0=x0, y0=y0, x1=x1, y1=y1), annotator=who)


@pytest.fixture
def checked(tmp_path: Path) -> tuple[Workspace, dict[str, str]]:
    """Four images; 'import' drew boxes on three, 'bea' (a second annotator) drew her own on all four."""
    folder = tmp_path / "images"
    rng = np.random.default_rng(1)
    for n, label in enumerate(("scratch", "scratch", "pit", "good")):
        path = folder / label / f"img{n}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (100, 100), dtype=np.uint8), "L").save(path)
    workspace = workspace_with_images(tmp_path / "ws", folder)
    d = {f"img{n}": digest_of(folder, f"img{n}.png") for n in range(4)}
    workspace.db.regions.add([
        box("scratch", d["img0"], "import", 10, 10, 40, 40), box("scratch", d["img0"], "bea", 11, 10, 40, 41),  # agree
        box("scratch", d["img1"], "import", 10, 10, 40, 40), box("pit", d["img1"], "bea", 10, 10, 40, 40),  # class
        box("pit", d["img2"], "import", 60, 60, 90, 90), box("pit", d["img2"], "import", 5, 5, 20, 20),  # 2nd: nothing
        box("pit", d["img2"], "bea", 60, 60, 90, 90),
        box("scratch", d["img3"], "bea", 30, 30, 70, 50),  # on an image 'import' left empty: missing
    ])
    create_version(workspace, SplitPlan(group_by="none", val_fraction=0.25, test_fraction=0.25), min_per_split=0)
    yield workspace, d
    workspace.close()


def test_another_annotators_boxes_find_each_kind_of_wrong_box(checked: tuple[Workspace, dict[str, str]]) -> None:
    workspace, d = checked
    report = find_box_issues(workspace, annotator="bea")
    assert report.predicted_by == "bea" and report.images == 4 and report.annotated_boxes == 4
    found = {i.sha256: [(f.kind, f.annotated_class, f.predicted_class) for f in i.findings] for i in report.flagged}
    assert found == {d["img1"]: [("wrong_class", "scratch", "pit")], d["img2"]: [("spurious", "pit", None)],
                     d["img3"]: [("missing", None, "scratch")]}
    assert report.counts() == {"wrong_class": 1, "spurious": 1, "missing": 1}


def test_given_predictions_are_ranked_by_confidence_and_go_to_settle(checked: tuple[Workspace, dict[str, str]]) -> None:
    workspace, d = checked  # every annotator's boxes are the annotation here
    detector = {d["img0"]: Boxes.of([(10, 10, 40, 40)], ["scratch"], [0.9]),  # agrees
                d["img1"]: Boxes.of([(10, 10, 40, 40)], ["dent"], [0.6]),  # another class where both drew
                d["img2"]: Boxes.of([(60, 60, 90, 90), (0, 0, 7, 7)], ["pit", "pit"], [0.9, 0.2]),  # 2nd grazes one
                d["img3"]: Boxes.of([(75, 75, 95, 95), (30, 30, 70, 50)], ["scratch", "scratch"], [0.95, 0.3])}
    report = find_box_issues(workspace, predict=lambda digest: detector.get(digest, Boxes.of([], [])))
    assert [(i.sha256, [f.kind for f in i.findings], round(i.confidence, 4)) for i in report.flagged] == [
        (d["img3"], ["missing"], 0.95), (d["img2"], ["spurious"], 0.8), (d["img1"], ["wrong_class"], 0.6)]
    assert queue_box_issues(workspace, report, report.flagged) == 3
    assert queue_box_issues(workspace, report, report.flagged) == 0  # already waiting
    cases = {c.sha256: c for c in settle_queue(workspace)}
    assert cases[d["img1"]].reasons == ("boxes",)
    assert cases[d["img1"]].why == ["boxes disagree with given predictions: 1 wrong class"]
    assert cases[d["img2"]].details["findings"][0]["annotated_box"] == [5, 5, 20, 20]
    assert [c.sha256 for c in settle_queue(workspace)] == [d["img3"], d["img2"], d["img1"]]  # most confident first


@pytest.mark.parametrize(("kwargs", "message"), [
    ({}, "name one source of predicted boxes"),
    ({"annotator": "bea", "model": Path("x.onnx")}, "name one source of predicted boxes"),
    ({"annotator": "cy"}, "'cy' drew no boxes in dataset version v1 (who did: bea, import)"),
    ({"annotator": "bea", "min_score": 1.5}, "minimum score 1.5 is not in (0, 1]"),
])
def test_a_check_that_cannot_run_says_why(checked: tuple[Workspace, dict[str, str]], kwargs: dict[str, object],
                                         message: str) -> None:
    with pytest.raises(LabelError) as raised:
        find_box_issues(checked[0], **kwargs)  # type: ignore[arg-type]
    assert message in raised.value.message


def test_the_cli_lists_and_queues_them(checked: tuple[Workspace, dict[str, str]]) -> None:
    workspace, d = checked
    root = workspace.root
    workspace.close()
    code, out, _ = invoke("labels", "boxes", "-w", root, "--annotator", "bea", "--queue", "--json")
    body = json.loads(out)
    assert code == 0 and body["flagged"] == 3 and body["queued"] == 3 and body["counts"]["missing"] == 1
    code, out, _ = invoke("labels", "queue", "-w", root, "--json")
    assert code == 0 and {c["sha256"]: c["why"] for c in json.loads(out)}[d["img3"]] == [
        "boxes disagree with bea: 1 missing"]
    code, _, err = invoke("labels", "boxes", "-w", root, "--model", root / "nope.onnx")
    assert code != 0 and "Traceback" not in err
