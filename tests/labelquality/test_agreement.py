from pathlib import Path

import numpy as np
import pytest

from inspectloop.errors import LabelError
from inspectloop.ingest import ingest, scan_folder
from inspectloop.labelquality.agreement import agreement_report, cohen_kappa, fleiss_kappa
from inspectloop.labels import annotate, resolve_labels
from inspectloop.workspace import init_workspace

# Fleiss (1971) as worked on Wikipedia: 10 subjects, 14 raters, 5 categories; kappa = 0.210.
WIKIPEDIA = np.array([[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
                      [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]])


@pytest.mark.parametrize("counts, expected", [
    (WIKIPEDIA, 0.210),
    (np.array([[2, 0], [0, 2], [2, 0]]), 1.0),  # perfect agreement
    (np.array([[2, 0], [2, 0]]), None),  # one class only: undefined
    (np.array([[1, 0], [0, 1]]), None),  # no image with two words
    (np.array([[3, 0], [0, 2], [1, 1]]), 23 / 72),  # raters vary per image: P = 2/3, Pe = 25/49
])
def test_fleiss_kappa(counts: np.ndarray, expected: float | None) -> None:
    kappa = fleiss_kappa(counts)
    assert kappa == (None if expected is None else pytest.approx(expected, abs=1e-3))


def test_cohen_kappa_matches_scikit_learn_and_is_none_when_undefined() -> None:
    assert cohen_kappa(["a", "a", "b", "b"], ["a", "a", "b", "b"]) == 1.0
    assert cohen_kappa(["a", "b"], ["b", "a"]) == pytest.approx(-1.0)
    assert cohen_kappa(["a", "a"], ["a", "a"]) is None


def test_agreement_per_class_pair_and_with_the_settled_label(tmp_path: Path, class_tree: Path) -> None:
    ws = init_workspace(tmp_path / "ws")
    ingest(ws, scan_folder(class_tree), source="tree")
    labels = resolve_labels(ws.db.labels.annotations()).labels
    for n, (digest, label) in enumerate(sorted(labels.items())):
        annotate(ws, digest, label if n % 4 else ("good" if label == "scratch" else "scratch"), annotator="ana")
    report = agreement_report(ws)
    [pair] = report.pairs
    assert (pair.first, pair.second, pair.images) == ("ana", "import", 12)
    assert pair.agreement == pytest.approx(9 / 12) and pair.kappa is not None and 0 < pair.kappa < 1
    assert sum(n for a, row in pair.confusion.items() for b, n in row.items() if a != b) == 3
    assert {c.name for c in report.classes} == {"good", "scratch"} and report.overall_kappa is not None
    assert {a.annotator for a in report.annotators} == {"ana", "import"}
    ws.close()


def test_kappa_for_a_class_with_one_annotator_says_so(tmp_path: Path, class_tree: Path) -> None:
    ws = init_workspace(tmp_path / "ws")
    ingest(ws, scan_folder(class_tree), source="tree")
    with pytest.raises(LabelError, match="no kappa for class 'scratch': its images have one annotator \\(import\\)"):
        agreement_report(ws, "scratch")
    with pytest.raises(LabelError, match="unknown class 'dent'"):
        agreement_report(ws, "dent")
    ws.close()
