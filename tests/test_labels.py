from datetime import datetime, timedelta
from pathlib import Path

import pytest

from inspectloop.domain import Annotation, ClassDefinition, Severity
from inspectloop.domain.labelling import LabellingPolicy
from inspectloop.errors import LabelError
from inspectloop.ingest import ingest, scan_folder
from inspectloop.labels import add_reference_image, annotate, define_class, label_summary, resolve_labels
from inspectloop.workspace import init_workspace


def votes(*triples: tuple[str, str, str], source: str = "reviewer") -> list[Annotation]:
    start = datetime(2026, 1, 1)
    return [Annotation(sha256=s, class_name=c, annotator=a, created_at=start + timedelta(minutes=i), source=source)
            for i, (s, c, a) in enumerate(triples)]


def test_majority_wins_and_disagreement_is_kept() -> None:
    result = resolve_labels(votes(("x", "scratch", "ana"), ("x", "scratch", "bo"), ("x", "pit", "cy")))
    assert result.labels == {"x": "scratch"}
    assert result.disagreements[0].votes == {"scratch": 2, "pit": 1}


def test_tie_leaves_image_unlabelled() -> None:
    result = resolve_labels(votes(("x", "scratch", "ana"), ("x", "pit", "bo")))
    assert result.labels == {} and len(result.ties) == 1


def test_an_annotators_latest_word_counts_once() -> None:
    result = resolve_labels(votes(("x", "pit", "ana"), ("x", "pit", "ana"), ("x", "scratch", "ana"), ("x", "scratch", "bo")))
    assert result.labels == {"x": "scratch"} and result.disagreements == []


IMPORTED_OK_AND_SCRATCH = votes(("x", "ok", "import"), ("x", "scratch", "import"), source="import")


@pytest.mark.parametrize("annotations, label, conflict", [
    (votes(("x", "ok", "import"), ("x", "ok", "import"), source="import"), "ok", False),  # re-ingest: no conflict
    (IMPORTED_OK_AND_SCRATCH, None, True),  # same bytes under ok/ and scratch/: left out, not "later wins"
    (IMPORTED_OK_AND_SCRATCH + votes(("x", "ok", "vendor"), source="import"), None, True),  # outvoted: still open
    (IMPORTED_OK_AND_SCRATCH + votes(("x", "scratch", "qe-ana")), "scratch", False),  # a person settles it
    (IMPORTED_OK_AND_SCRATCH + votes(("x", "ok", "import")), "ok", False),  # the importer's own later word
])
def test_conflicting_imports_stay_unlabelled_until_a_person_settles_them(
        annotations: list[Annotation], label: str | None, conflict: bool) -> None:
    result = resolve_labels(annotations)
    assert result.labels.get("x") == label and bool(result.conflicts) == conflict
    assert not conflict or result.ties == []  # a conflict is not counted as a plain tie


def test_unknown_class_and_image_are_refused_with_a_fix(tmp_path: Path, class_tree: Path) -> None:
    ws = init_workspace(tmp_path / "ws")
    ingest(ws, scan_folder(class_tree), source="tree")
    digest = next(iter(ws.db.images.get_many()))
    with pytest.raises(LabelError, match="unknown class 'dent'") as info:
        annotate(ws, digest, "dent", annotator="ana")
    assert "classes add" in info.value.hint
    with pytest.raises(LabelError, match="no image"):
        annotate(ws, "0" * 64, "good", annotator="ana")
    annotate(ws, digest, "scratch", annotator="ana")
    annotate(ws, digest, "scratch", annotator="bo")
    summary = label_summary(ws)
    assert summary["annotators"] == ["ana", "bo", "import"]
    assert len(summary["disagreements"]) == 1 and summary["disagreements"][0]["votes"]["scratch"] == 2
    ws.close()


def test_a_reference_image_is_named_by_its_file_or_its_sha256(tmp_path: Path, class_tree: Path) -> None:
    ws = init_workspace(tmp_path / "ws")
    ingest(ws, scan_folder(class_tree), source="tree")
    path = class_tree / "scratch" / "scratch_0.png"  # already ingested: was refused with "ingest the image first"
    add_reference_image(ws, "scratch", str(path), note="by path")
    digest = next(d for d in ws.db.images.get_many() if d not in ws.db.labels.references("scratch"))
    add_reference_image(ws, "scratch", digest)
    assert len(ws.db.labels.references("scratch")) == 2
    ws.close()


@pytest.mark.parametrize("name, message, hint", [
    ("{new}", r"is not in this workspace \(sha256 [0-9a-f]{12}", "ingest"),
    ("f" * 64, "no image with sha256 ffffffffffff", "ingest"),
    ("nope.png", "no file 'nope.png'", "64-character sha256"),
])
def test_an_image_not_in_the_workspace_is_refused_with_a_fix(tmp_path: Path, class_tree: Path, name: str,
                                                             message: str, hint: str) -> None:
    ws = init_workspace(tmp_path / "ws")
    ingest(ws, scan_folder(class_tree / "good"), source="good only")
    define_class(ws, ClassDefinition(name="scratch"))
    new = str(class_tree / "scratch" / "scratch_1.jpg")
    with pytest.raises(LabelError, match=message) as info:
        add_reference_image(ws, "scratch", name.replace("{new}", new))
    assert hint in info.value.hint
    ws.close()


def test_only_one_good_class(tmp_path: Path) -> None:
    ws = init_workspace(tmp_path / "ws")
    define_class(ws, ClassDefinition(name="ok", is_good=True, severity=Severity.none))
    with pytest.raises(LabelError, match="already the good"):
        define_class(ws, ClassDefinition(name="pass", is_good=True, severity=Severity.none))
    ws.close()


def test_class_names_are_validated() -> None:
    with pytest.raises(ValueError):
        ClassDefinition(name="../etc")


def test_a_reviewers_correction_of_an_import_wins_instead_of_tying() -> None:
    """Was a tie (one vote each) that silently dropped the image from the next version."""
    annotations = votes(("x", "good", "import"), source="import") + votes(("x", "scratch", "ana"))
    result = resolve_labels(annotations)
    assert result.labels == {"x": "scratch"} and result.ties == []
    assert result.disagreements[0].decided_by == "reviewer"


QE = {"qe": "quality_engineer"}


@pytest.mark.parametrize("policy, label", [
    (LabellingPolicy(annotators=QE), "pit"),  # the quality engineer outranks two reviewers
    (LabellingPolicy(), "scratch"),  # not named in the policy, qe is one reviewer of three
    (LabellingPolicy(roles=["settled", "reviewer", "quality_engineer", "import"], annotators=QE), "scratch"),
])
def test_the_policy_says_whose_word_counts(policy: LabellingPolicy, label: str) -> None:
    annotations = votes(("x", "scratch", "ana"), ("x", "scratch", "bo"), ("x", "pit", "qe"))
    assert resolve_labels(annotations, policy).labels["x"] == label


def test_the_latest_settle_decision_outranks_every_vote() -> None:
    annotations = (votes(("x", "scratch", "ana"), ("x", "scratch", "bo"))
                   + votes(("x", "pit", "qe"), ("x", "good", "qe2"), source="settled"))
    result = resolve_labels(annotations)
    assert result.labels == {"x": "good"} and result.disagreements[0].decided_by == "settled"
