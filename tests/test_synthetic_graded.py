"""The synthetic graded line: its classes, manifest and soft labels, and severity driven by length x contrast."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from inspectloop.errors import InspectloopError
from inspectloop.synthetic_graded import BANDS, CLASSES, generate_graded_line, render_part


def test_the_line_has_every_grade_a_manifest_and_soft_labels_where_annotators_hesitate(tmp_path: Path) -> None:
    line = generate_graded_line(tmp_path / "line", per_class=6, size=64, seed=3)
    assert line.classes == ("good", "minor", "major", "critical") and line.count == 24
    rows = list(csv.DictReader(open(line.manifest, encoding="utf-8")))
    assert {r["label"] for r in rows} == set(CLASSES) and all((line.root / r["path"]).is_file() for r in rows)
    soft = {r["label"] for r in rows if r["defect_probability"]}
    assert soft == {"minor"}
    assert all(0.6 <= float(r["defect_probability"]) <= 1 for r in rows if r["defect_probability"])
    again = generate_graded_line(tmp_path / "line", per_class=6, size=64, seed=3)  # its own folder: overwritten
    assert (again.root / rows[5]["path"]).read_bytes() == (line.root / rows[5]["path"]).read_bytes()


def test_severity_grows_with_the_scratch() -> None:
    """The same part, scratched ever more severely: the scratch's energy rises through the grade bands."""
    faint = render_part(np.random.default_rng(7), 96, 0.01).astype(float)
    energy = [np.abs(render_part(np.random.default_rng(7), 96, s).astype(float) - faint).sum()
              for s in (np.mean(BANDS[g]) for g in ("minor", "major", "critical"))]
    assert energy[0] < energy[1] < energy[2]


def test_a_folder_it_did_not_make_is_refused(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(InspectloopError, match="not empty and was not made by this generator"):
        generate_graded_line(tmp_path, per_class=4, size=64)
