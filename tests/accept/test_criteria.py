"""Acceptance criteria: validation that names the field, locking, lookup, and the locked-before rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from inspectloop.accept.criteria import (
    AcceptanceCriteria, SplitCounts, check_attainable, check_criteria_locked_before, get_criteria, list_criteria,
    load_criteria, lock_criteria, split_counts,
)
from inspectloop.datasets import SplitPlan, create_version
from inspectloop.domain import TrainingRun
from inspectloop.errors import CriteriaError, DatasetError
from inspectloop.ingest import ingest, scan_folder
from inspectloop.workspace import Workspace
from tests.registry_helpers import CRITERIA_YAML, seeded_workspace, write_criteria

KNOWN = ("good", "scratch", "dark")
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "criteria.yaml"


def test_a_valid_file_loads_with_every_limit(tmp_path: Path) -> None:
    criteria = load_criteria(write_criteria(tmp_path), KNOWN)
    assert criteria.name == "line3"
    assert criteria.classes["scratch"].min_recall == 0.9 and criteria.classes["good"].min_precision is None
    assert criteria.max_false_alerts_per_hour == 10.0 and criteria.line is not None
    assert criteria.line.parts_per_hour == 600


def test_the_example_file_is_valid_for_the_quickstart_classes() -> None:
    criteria = load_criteria(EXAMPLE, ("good", "scratch", "pit", "stain"))
    assert set(criteria.classes) == {"good", "scratch", "pit", "stain"}
    assert criteria.name == "quickstart-line"


def test_the_escape_guarantee_defaults_to_training_s_and_the_review_bound_is_optional(tmp_path: Path) -> None:
    plain = load_criteria(write_criteria(tmp_path), KNOWN)
    assert (plain.guarantee, plain.confidence, plain.max_review_rate) == ("pac", 0.9, None)
    steered = load_criteria(write_criteria(tmp_path, CRITERIA_YAML + "guarantee: marginal\nconfidence: 0.95\n"
                                                                  "max_review_rate: 0.2\n"), KNOWN)
    assert (steered.guarantee, steered.confidence, steered.max_review_rate) == ("marginal", 0.95, 0.2)


def test_name_defaults_to_the_file_name(tmp_path: Path) -> None:
    path = write_criteria(tmp_path, "classes:\n  scratch: {min_recall: 0.9}\n", name="release-2.yaml")
    assert load_criteria(path, KNOWN).name == "release-2"


def test_the_hash_ignores_comments_and_layout_but_not_limits(tmp_path: Path) -> None:
    a = load_criteria(write_criteria(tmp_path, "name: x\nclasses: {scratch: {min_recall: 0.9}}\n", "a.yaml"), KNOWN)
    b = load_criteria(write_criteria(tmp_path, "# note\nclasses:\n  scratch:\n    min_recall: 0.90\nname: x\n",
                                     "b.yaml"), KNOWN)
    c = load_criteria(write_criteria(tmp_path, "name: x\nclasses: {scratch: {min_recall: 0.91}}\n", "c.yaml"), KNOWN)
    assert a.sha256() == b.sha256() != c.sha256()


BAD_FILES = [
    ("classes:\n  scratch: {min_recall: 1.5}\n", "classes.scratch.min_recall: must be <= 1, got 1.5"),
    ("classes:\n  scratch: {min_precision: -0.1}\n", "classes.scratch.min_precision: must be >= 0, got -0.1"),
    ("classes:\n  scratch: {min_recall: '0.9'}\n", "classes.scratch.min_recall: must be a number, got text '0.9'"),
    ("classes:\n  scratch: {min_recall: yes}\n", "classes.scratch.min_recall: must be a number, got true"),
    ("classes:\n  scratch: {min_recall: .nan}\n", "classes.scratch.min_recall: must be a finite number"),
    ("classes:\n  scratch: {min_recal: 0.9}\n",
     "classes.scratch.min_recal: is not a criteria field (expected one of: min_recall, min_precision)"),
    ("classes:\n  scratch: {}\n", "classes.scratch: give min_recall, min_precision or both"),
    ("classes:\n  scratch:\n", "classes.scratch: must be a mapping"),
    ("classes: [scratch]\n", "classes: must be a mapping of class names to their limits, got a list"),
    ("classes: {}\n", "classes: must list at least one class"),
    ("max_escape_rate: 0.1\n", "classes: is required"),
    ("classes: {scratch: {min_recall: 0.9}}\nmax_escape_rate: 0\n", "max_escape_rate: must be > 0, got 0"),
    ("classes: {scratch: {min_recall: 0.9}}\nmax_escape_rate: 0.6\n", "max_escape_rate: must be <= 0.5, got 0.6"),
    ("classes: {scratch: {min_recall: 0.9}}\nmax_false_alerts_per_hour: -1\n"
     "line: {parts_per_hour: 1, defect_rate: 0}\n",
     "max_false_alerts_per_hour: must be >= 0, got -1"),
    ("classes: {scratch: {min_recall: 0.9}}\nmax_p95_latency_ms: 0\n", "max_p95_latency_ms: must be > 0, got 0"),
    ("classes: {scratch: {min_recall: 0.9}}\nmax_review_rate: 1.5\n", "max_review_rate: must be <= 1, got 1.5"),
    ("classes: {scratch: {min_recall: 0.9}}\nguarantee: PAC\n",
     "guarantee: must be one of 'pac' or 'marginal', got text 'PAC'"),
    ("classes: {scratch: {min_recall: 0.9}}\nconfidence: 1\n", "confidence: must be < 1, got 1"),
    ("classes: {scratch: {min_recall: 0.9}}\nmax_p95_latency_ms: fast\n",
     "max_p95_latency_ms: must be a number, got text 'fast'"),
    ("classes: {scratch: {min_recall: 0.9}}\nmax_calibration_error: 2\n", "max_calibration_error: must be <= 1, got 2"),
    ("classes: {scratch: {min_recall: 0.9}}\nmax_false_alerts_per_hour: 5\n",
     "line: needed to judge max_false_alerts_per_hour"),
    ("classes: {scratch: {min_recall: 0.9}}\nline: {parts_per_hour: 0, defect_rate: 0.1}\n",
     "line.parts_per_hour: must be > 0, got 0"),
    ("classes: {scratch: {min_recall: 0.9}}\nline: {parts_per_hour: 60, defect_rate: 1.2}\n",
     "line.defect_rate: must be <= 1, got 1.2"),
    ("classes: {scratch: {min_recall: 0.9}}\nmax_escapes: 0.1\n", "max_escapes: is not a criteria field"),
    ("name: 3rd\nclasses: {scratch: {min_recall: 0.9}}\n", "name: must start with a letter"),
    ("classes:\n  dent: {min_recall: 0.9}\n",
     "classes: unknown class 'dent' (the workspace's classes: dark, good, scratch)"),
    ("classes:\n  scratch: {min_recall: 0.9\n", "line 3, column 1: expected ',' or '}'"),
    ("classes:\n  scratch: {min_recall: 0.9}\n  scratch: {min_recall: 0.8}\n",
     "line 3, column 3: duplicate key 'scratch'"),
    ("- scratch\n", "holds a list, not criteria"),
    ("", "holds nothing, not criteria"),
]


@pytest.mark.parametrize("text, message", BAD_FILES)
def test_bad_criteria_are_refused_naming_the_field(tmp_path: Path, text: str, message: str) -> None:
    path = write_criteria(tmp_path, text)
    with pytest.raises(CriteriaError) as info:
        load_criteria(path, KNOWN)
    assert message in info.value.message
    assert str(path) in info.value.message
    assert info.value.hint


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write_criteria(tmp_path, "classes:\n  scratch: {min_recall: 1.5}\n  dent: {min_recall: 0.9}\n"
                                    "max_escape_rate: 0\n")
    with pytest.raises(CriteriaError) as info:
        load_criteria(path, KNOWN)
    for field in ("classes.scratch.min_recall", "max_escape_rate", "unknown class 'dent'"):
        assert field in info.value.message


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CriteriaError, match="no criteria file at"):
        load_criteria(tmp_path / "nope.yaml", KNOWN)


def test_lock_stores_hash_time_and_who_once(tmp_path: Path) -> None:
    with seeded_workspace(tmp_path / "ws") as ws:
        path = write_criteria(tmp_path)
        locked = lock_criteria(ws, path, by=" ana ")
        assert locked.locked_by == "ana" and locked.yaml_text == CRITERIA_YAML
        assert locked.sha256 == load_criteria(path, KNOWN).sha256()
        assert abs(datetime.now(UTC) - locked.locked_at) < timedelta(minutes=1)
        path.write_text("# same limits, new comment\n" + CRITERIA_YAML)
        again = lock_criteria(ws, path, by="ben")
        assert again == locked  # the existing lock, not a duplicate
        assert [c.id for c in list_criteria(ws)] == [locked.id]
        assert get_criteria(ws, "line3") == get_criteria(ws, str(locked.id)) == get_criteria(ws, locked.id) == locked
        assert isinstance(locked.criteria, AcceptanceCriteria)


def test_a_changed_file_is_a_new_lock_and_the_name_means_the_latest(tmp_path: Path) -> None:
    with seeded_workspace(tmp_path / "ws") as ws:
        first = lock_criteria(ws, write_criteria(tmp_path), by="ana")
        second = lock_criteria(ws, write_criteria(tmp_path, CRITERIA_YAML.replace("0.9,", "0.92,")), by="ana")
        assert second.id != first.id and second.name == first.name
        assert get_criteria(ws, "line3") == second and get_criteria(ws, first.id) == first


def test_lock_checks_the_workspace_classes_and_needs_a_name(tmp_path: Path) -> None:
    with seeded_workspace(tmp_path / "ws") as ws:
        with pytest.raises(CriteriaError, match="unknown class 'dent'"):
            lock_criteria(ws, write_criteria(tmp_path, "classes: {dent: {min_recall: 0.9}}\n"), by="ana")
        with pytest.raises(CriteriaError, match="who locks"):
            lock_criteria(ws, write_criteria(tmp_path), by=" ")
        assert list_criteria(ws) == []


def test_unknown_criteria_are_refused_with_the_fix(tmp_path: Path) -> None:
    with seeded_workspace(tmp_path / "ws") as ws:
        with pytest.raises(CriteriaError) as info:
            get_criteria(ws, "line9")
        assert "no locked criteria 'line9'" in info.value.message
        assert "inspectloop criteria lock" in (info.value.hint or "")


def test_criteria_locked_after_the_run_started_cannot_judge_it(tmp_path: Path) -> None:
    with seeded_workspace(tmp_path / "ws") as ws:
        locked = lock_criteria(ws, write_criteria(tmp_path), by="ana")
        at = locked.locked_at
        check_criteria_locked_before(_run("run-a", at), locked)  # same second: before
        check_criteria_locked_before(_run("run-a", at + timedelta(hours=1)), locked)
        with pytest.raises(CriteriaError) as info:
            check_criteria_locked_before(_run("run-b", at - timedelta(seconds=1)), locked)
        assert "after run run-b started" in info.value.message
        assert "inspectloop train --criteria line3" in (info.value.hint or "")
        assert "lock first, then train" in (info.value.hint or "")


def _run(run_id: str, started_at: datetime) -> TrainingRun:
    return TrainingRun(id=run_id, kind="train", status="finished", dataset_version="v1", config={}, code_version="",
                       metrics=None, artifacts="", started_at=started_at.isoformat())


# -- attainable by construction -------------------------------------------------------------------

def counts(calib_defective: int = 300, calib_good: int = 300, test_defective: int = 60, test_count: int = 100,
           good_class: str | None = "good") -> SplitCounts:
    return SplitCounts("v2", good_class, calib_defective, calib_good, test_defective, test_count)


def limits(**fields: object) -> AcceptanceCriteria:
    return AcceptanceCriteria.model_validate({"name": "t", "classes": {"scratch": {"min_recall": 0.9}}, **fields})


ATTAINABLE = [  # criteria, counts: each is met by some band on that dataset version
    (limits(), counts(0, 0)),  # no escape bound: nothing to certify
    (limits(max_escape_rate=0.02), counts(114)),  # pac at 90 %: (1 - 0.02)^114 <= 0.1
    (limits(max_escape_rate=0.02, guarantee="marginal"), counts(49)),  # 1/0.02 - 1 = 49
    (limits(max_escape_rate=0.01, confidence=0.5), counts(69, good_class=None)),  # every part defective
    (limits(max_escape_rate=0.02, max_review_rate=0.0), counts(114, 114)),  # both sides certifiable
    (limits(max_escape_rate=0.05, max_review_rate=0.57), counts(300, 10)),  # rejects nothing: 57 of 100 reviewed
    (limits(max_escape_rate=0.05, max_review_rate=0.0), counts(300, 10, good_class=None)),  # no reject side
]


@pytest.mark.parametrize("criteria, split", ATTAINABLE)
def test_attainable_criteria_pass_the_check(criteria: AcceptanceCriteria, split: SplitCounts) -> None:
    check_attainable(criteria, split)


UNATTAINABLE = [  # criteria, counts, the numbers the message names, the fix
    (limits(max_escape_rate=0.02), counts(113),
     "max_escape_rate 0.02 cannot be certified on dataset v2 (calibration: 113 defective, 300 good images): a pac "
     "guarantee at 90% confidence needs at least 114 defective calibration images and there are 113",
     "at least 114), raise max_escape_rate to 0.0202 (the lowest 113 can certify), or use guarantee: marginal"),
    (limits(max_escape_rate=0.01, guarantee="marginal"), counts(36, good_class=None),
     "a marginal guarantee on average over calibration draws needs at least 99 defective calibration images and "
     "there are 36", "raise max_escape_rate to 0.0271"),
    (limits(max_escape_rate=0.01), counts(0), "needs at least 230 defective calibration images and there are 0",
     "add defective images to the calibration split (at least 230)"),
    (limits(max_escape_rate=0.05, max_review_rate=0.56), counts(300, 113),
     "max_review_rate 0.56 contradicts max_escape_rate 0.05 on dataset v2 (calibration: 300 defective, 113 good "
     "images): 113 good calibration images cannot certify auto-rejecting (114 needed", "60 of the 100 test parts are defective, so at least 57 (57.0%)"),
    (limits(max_escape_rate=0.05, max_review_rate=0.2, guarantee="marginal"), counts(300, 48),
     "48 good calibration images cannot certify auto-rejecting (49 needed",
     "add good images to the calibration split (at least 49), or raise max_review_rate to at least 0.57"),
]


@pytest.mark.parametrize("criteria, split, message, fix", UNATTAINABLE)
def test_unattainable_criteria_are_refused_naming_the_numbers(criteria: AcceptanceCriteria, split: SplitCounts,
                                                              message: str, fix: str) -> None:
    with pytest.raises(CriteriaError) as info:
        check_attainable(criteria, split)
    assert message in info.value.message
    assert fix in " ".join((info.value.message, info.value.hint or ""))


def workspace_with_calibration(root: Path, class_tree: Path) -> Workspace:
    """good and scratch, 6 images each; v1 without a calibration split, v2 (the latest) with one."""
    ws = seeded_workspace(root)
    ingest(ws, scan_folder(class_tree), source="tree")
    create_version(ws, SplitPlan(group_by="none", val_fraction=0.2, test_fraction=0.3), name="plain", parent=None)
    create_version(ws, SplitPlan(group_by="none", val_fraction=0.2, test_fraction=0.3, calib_fraction=0.3),
                   name="with-calib", parent=None)
    return ws


def test_lock_checks_the_latest_version_with_a_calibration_split(tmp_path: Path, class_tree: Path) -> None:
    with workspace_with_calibration(tmp_path / "ws", class_tree) as ws:
        split = split_counts(ws)
        assert split is not None and split.dataset == "with-calib" and split.good_class == "good"
        assert split.calib_defective + split.calib_good == 4 and split.test_count == 4
        with pytest.raises(CriteriaError, match="cannot be certified on dataset with-calib"):
            lock_criteria(ws, write_criteria(tmp_path), by="ana")  # 0.05 needs 45 defective calibration images
        loose = write_criteria(tmp_path, "name: loose\nclasses: {scratch: {min_recall: 0.5}}\nmax_escape_rate: 0.5\n"
                                         "guarantee: marginal\n", name="loose.yaml")
        assert lock_criteria(ws, loose, by="ana").checked_on == split
        assert lock_criteria(ws, write_criteria(tmp_path, "name: nobound\nclasses: {scratch: {min_recall: 0.5}}\n",
                                                name="nobound.yaml"), by="ana").checked_on == split
        assert [c.name for c in list_criteria(ws)] == ["loose", "nobound"]


def test_lock_checks_a_named_version_and_refuses_one_without_a_calibration_split(tmp_path: Path,
                                                                                 class_tree: Path) -> None:
    with workspace_with_calibration(tmp_path / "ws", class_tree) as ws:
        with pytest.raises(CriteriaError, match="dataset plain has no calibration split") as info:
            lock_criteria(ws, write_criteria(tmp_path), by="ana", dataset="plain")
        assert "--calib" in (info.value.hint or "")
        with pytest.raises(DatasetError, match="no dataset version 'v9'"):
            lock_criteria(ws, write_criteria(tmp_path), by="ana", dataset="v9")
        assert list_criteria(ws) == []


def test_without_a_calibration_split_nothing_is_checked(tmp_path: Path) -> None:
    with seeded_workspace(tmp_path / "ws") as ws:  # v1: no calibration split
        assert lock_criteria(ws, write_criteria(tmp_path), by="ana").checked_on is None
