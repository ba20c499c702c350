"""Graded classes (a scale's order) and soft labels, from the class definition to the dataset version."""

import csv
from pathlib import Path

import pytest
from pydantic import ValidationError

from inspectloop.datasets import SplitPlan, create_version
from inspectloop.domain import ClassDefinition
from inspectloop.errors import LabelError
from inspectloop.grades import grade_scales, set_grade_order
from inspectloop.ingest import ingest, scan_manifest_source
from inspectloop.labels import define_class
from inspectloop.workspace import Workspace, init_workspace


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    workspace = init_workspace(tmp_path / "ws")
    define_class(workspace, ClassDefinition(name="good", severity="none", is_good=True))
    for name, severity in (("minor", "minor"), ("major", "major"), ("critical", "critical"), ("dent", "major")):
        define_class(workspace, ClassDefinition(name=name, severity=severity))
    yield workspace
    workspace.close()


def test_a_grade_order_is_stored_with_the_class_definitions(ws: Workspace) -> None:
    set_grade_order(ws, "scratch", ["minor", "major", "critical"])
    classes = ws.db.labels.classes()
    assert [(classes[n].scale, classes[n].grade) for n in ("minor", "major", "critical")] == [
        ("scratch", 1), ("scratch", 2), ("scratch", 3)]
    assert classes["dent"].scale is None and classes["good"].grade is None
    [scale] = grade_scales(classes.values())
    assert scale.at_least(2) == ("major", "critical")
    set_grade_order(ws, "scratch", ["minor", "major"])  # critical leaves the scale
    assert ws.db.labels.classes()["critical"].grade is None


@pytest.mark.parametrize(("ordered", "message"), [
    (["major", "minor", "critical"], "grades out of order on scale 'scratch': 'minor' (severity minor) is graded above "
                                     "'major' (severity major)"),
    (["minor", "major", "minor"], "grades out of order: 'minor' is listed twice"),
    (["good", "minor"], "grade 1 of 'scratch': 'good' is the good class, used both as graded and not"),
    (["minor", "pit"], "grade 2 of 'scratch': unknown class 'pit'"),
    (["minor"], "scale 'scratch' needs at least two grades"),
])
def test_a_bad_grade_order_is_refused_naming_the_class(ws: Workspace, ordered: list[str], message: str) -> None:
    with pytest.raises(LabelError) as caught:
        set_grade_order(ws, "scratch", ordered)
    assert caught.value.message.startswith(message)
    assert all(c.scale is None for c in ws.db.labels.classes().values())  # nothing half-stored


def test_a_class_is_graded_on_one_scale_only(ws: Workspace) -> None:
    set_grade_order(ws, "scratch", ["minor", "major"])
    with pytest.raises(LabelError, match="'major' is already graded on scale 'scratch'"):
        set_grade_order(ws, "dents", ["dent", "major"])


@pytest.mark.parametrize(("update", "message"), [
    ({"scale": "scratch"}, "needs both its scale and its grade"),
    ({"grade": 2}, "needs both its scale and its grade"),
    ({"scale": "scratch", "grade": 1, "is_good": True}, "the good class sits below every scale"),
    ({"scale": "scratch", "grade": 0}, "greater than or equal to 1"),
])
def test_a_class_definition_is_graded_consistently(update: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ClassDefinition(name="scratch", **update)


def _manifest(root: Path, rows: list[dict[str, str]]) -> Path:
    from PIL import Image

    for i, row in enumerate(rows):
        Image.new("L", (32, 32), 40 + 20 * i).save(root / row["path"])
    path = root / "m.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.mark.parametrize(("value", "label", "reason"), [
    ("1.5", "major", "defect_probability '1.5' is outside [0, 1]"),
    ("-0.1", "major", "defect_probability '-0.1' is outside [0, 1]"),
    ("nan", "major", "defect_probability 'nan' is outside [0, 1]"),
    ("likely", "major", "defect_probability 'likely' is not a number"),
    ("0.4", "", "defect_probability '0.4' without a label"),
])
def test_a_bad_soft_label_is_refused_naming_the_row(tmp_path: Path, value: str, label: str, reason: str) -> None:
    rows = [{"path": "a.png", "label": "major", "defect_probability": "0.7"},
            {"path": "b.png", "label": label, "defect_probability": value}]
    manifest = _manifest(tmp_path, rows)
    scan = scan_manifest_source(manifest)
    assert [item.probability for item in scan.items] == [0.7]
    [(where, why)] = scan.refused
    assert where == f"{manifest}:3" and why.startswith(f"bad row: {reason}")


def test_a_soft_label_is_stored_with_the_annotation_and_carried_by_the_dataset_version(
        ws: Workspace, tmp_path: Path) -> None:
    rows = [{"path": f"{i}.png", "label": "good" if i % 2 else "major",
             "defect_probability": "" if i % 2 else f"{(i + 1) / 20:.2f}", "part_id": f"P{i}"} for i in range(12)]
    scan = scan_manifest_source(_manifest(tmp_path, rows))
    assert "defect_probability" not in scan.items[0].meta.extra  # a soft label, not a metadata column
    ingest(ws, scan.items, source="m.csv", kind="manifest")
    stored = {a.probability for a in ws.db.labels.annotations() if a.class_name == "major"}
    assert stored == {0.05, 0.15, 0.25, 0.35, 0.45, 0.55}
    version = create_version(ws, SplitPlan(seed=0, val_fraction=0.2, test_fraction=0.2))
    probabilities = {item.label: set() for item in version.items}
    for item in version.items:
        probabilities[item.label].add(item.probability)
    assert probabilities["good"] == {None}
    assert probabilities["major"] <= stored and len(probabilities["major"]) == 6


def test_redefining_a_graded_class_keeps_its_grade_and_its_order(ws: Workspace) -> None:
    set_grade_order(ws, "scratch", ["minor", "major", "critical"])
    define_class(ws, ClassDefinition(name="major", severity="major", criterion="longer than 5 mm"))
    assert ws.db.labels.classes()["major"].grade == 2
    with pytest.raises(LabelError, match="grades out of order on scale 'scratch': 'critical'"):
        define_class(ws, ClassDefinition(name="major", severity="critical"))
        define_class(ws, ClassDefinition(name="critical", severity="minor"))
