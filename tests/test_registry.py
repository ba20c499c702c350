"""The model registry: registration with lineage, promotion rules, overrides, rollback, file integrity."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from inspectloop.accept.criteria import lock_criteria
from inspectloop.domain import StageChange
from inspectloop.errors import CriteriaError, ModelFileError, RegistryError
from inspectloop.registry import (
    ACCEPT_HINT, NO_CRITERIA_HINT, Stage, get_version, history, list_versions, production_model, promote,
    record_acceptance, register, rollback, verify_file,
)
from inspectloop.workspace import Workspace
from tests.registry_helpers import TEST_METRICS, add_run_with_model, seeded_workspace, write_criteria


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    with seeded_workspace(tmp_path / "ws") as workspace:
        yield workspace


@pytest.fixture
def criteria_id(ws: Workspace, tmp_path: Path) -> int:
    return lock_criteria(ws, write_criteria(tmp_path), by="ana").id


def accepted(ws: Workspace, run_id: str, criteria_id: int) -> str:
    """Register a run (judged by ``criteria_id``) and record a passed acceptance report; return its name."""
    add_run_with_model(ws, run_id, criteria_id=criteria_id)
    version = register(ws, run_id)
    record_acceptance(ws, version, criteria_id, True, {"checks": []})
    return version.name


def test_register_makes_a_candidate_with_its_lineage(ws: Workspace, criteria_id: int) -> None:
    path = add_run_with_model(ws, "run-a", criteria_id=criteria_id)
    version = register(ws, "run-a")
    assert (version.name, version.stage, version.run_id) == ("line3-v1", Stage.candidate, "run-a")
    assert version.variant == "fp32"
    assert version.path == path and version.criteria_id == criteria_id
    lineage = version.lineage
    assert lineage["dataset_version"] == "v1" and lineage["code_version"] == "0.1.0+gtest"
    assert lineage["metrics"] == TEST_METRICS and lineage["thresholds"] == {"scratch": 0.4}
    assert lineage["class_names"] == ["good", "scratch", "dark"] and lineage["good_class"] == "good"
    add_run_with_model(ws, "run-b")
    assert register(ws, "run-b").name == "line3-v2"
    assert [v.name for v in list_versions(ws)] == ["line3-v1", "line3-v2"]
    assert get_version(ws, version.id) == get_version(ws, "line3-v1") == version


@pytest.mark.parametrize("setup, args, message", [
    (None, {"run_id": "run-x"}, "no run 'run-x'"),
    ("running", {"run_id": "run-a"}, "run run-a is running, not finished"),
    ("finished", {"run_id": "run-a", "variant": "int8"}, "run run-a has no int8 model"),
    ("finished", {"run_id": "run-a", "name": "12"}, "bad version name '12'"),
])
def test_register_refuses_what_it_cannot_register(ws: Workspace, setup: str | None, args: dict[str, str],
                                                  message: str) -> None:
    if setup:
        add_run_with_model(ws, "run-a", status=setup)
    with pytest.raises(RegistryError, match=message) as info:
        register(ws, **args)  # type: ignore[arg-type]
    assert info.value.hint


def test_register_refuses_twice_and_a_taken_name(ws: Workspace) -> None:
    add_run_with_model(ws, "run-a")
    add_run_with_model(ws, "run-b")
    register(ws, "run-a", name="first")
    with pytest.raises(RegistryError, match="already registered as first"):
        register(ws, "run-a")
    with pytest.raises(RegistryError, match="'first' is taken"):
        register(ws, "run-b", name="first")


def test_a_model_file_that_no_longer_matches_its_record_is_refused(ws: Workspace, criteria_id: int) -> None:
    path = add_run_with_model(ws, "run-a", criteria_id=criteria_id)
    version = register(ws, "run-a")
    record_acceptance(ws, version, criteria_id, True, {})
    verify_file(version)
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(ModelFileError, match="does not match its record") as info:
        verify_file(version)
    assert "never edit a model file" in (info.value.hint or "")
    with pytest.raises(ModelFileError):
        promote(ws, version, "production", actor="ana")
    path.unlink()
    with pytest.raises(ModelFileError, match="cannot be read"):
        verify_file(version)
    add_run_with_model(ws, "run-b").write_bytes(b"tampered before registration")
    with pytest.raises(ModelFileError, match="does not match its record"):
        register(ws, "run-b")


def test_production_needs_a_passed_acceptance_report(ws: Workspace, criteria_id: int) -> None:
    add_run_with_model(ws, "run-a", criteria_id=criteria_id)
    version = register(ws, "run-a")
    with pytest.raises(RegistryError) as info:
        promote(ws, version, "production", actor="ana")
    assert "no acceptance report against its criteria" in info.value.message and info.value.hint == ACCEPT_HINT
    record_acceptance(ws, version, criteria_id, False, {"failed": ["scratch recall"]})
    with pytest.raises(RegistryError, match="latest acceptance report .* failed"):
        promote(ws, version, "production", actor="ana")
    assert production_model(ws) is None
    report_id = record_acceptance(ws, version, criteria_id, True, {"failed": []})
    promoted = promote(ws, version, "production", actor="ana", reason="passed acceptance")
    assert promoted.stage == Stage.production and production_model(ws) == promoted
    event = history(ws, version)[-1]
    assert (event.action, event.from_stage, event.to_stage) == ("promote", "candidate", "production")
    assert event.actor == "ana" and event.reason == "passed acceptance"
    assert event.acceptance_report_id == report_id and not event.override


def test_a_run_without_criteria_says_to_lock_and_retrain(ws: Workspace) -> None:
    add_run_with_model(ws, "run-a")
    with pytest.raises(RegistryError, match="named no acceptance criteria") as info:
        promote(ws, register(ws, "run-a"), "production", actor="ana")
    assert info.value.hint == NO_CRITERIA_HINT and "--override --reason" in NO_CRITERIA_HINT


def test_an_override_needs_a_named_person_and_a_reason_and_is_logged(ws: Workspace) -> None:
    add_run_with_model(ws, "run-a")
    version = register(ws, "run-a")
    with pytest.raises(RegistryError, match="an override needs a reason"):
        promote(ws, version, "production", actor="ana", override=True)
    with pytest.raises(RegistryError, match="who does this is not given"):
        promote(ws, version, "production", actor="  ", reason="urgent", override=True)
    promoted = promote(ws, version, "production", actor="ana", reason="line down, old model worse", override=True)
    assert promoted.stage == Stage.production
    [event] = history(ws, version)
    assert event.override and event.actor == "ana" and event.reason == "line down, old model worse"
    assert event.acceptance_report_id is None


def test_promoting_to_production_retires_the_one_there(ws: Workspace, criteria_id: int) -> None:
    first, second = accepted(ws, "run-a", criteria_id), accepted(ws, "run-b", criteria_id)
    promote(ws, first, "production", actor="ana")
    promote(ws, second, "production", actor="ben")
    assert production_model(ws).name == second  # type: ignore[union-attr]
    assert get_version(ws, first).stage == Stage.retired
    event = history(ws, first)[-1]
    assert (event.action, event.actor, event.reason) == ("replaced", "ben", f"replaced by {second}")
    assert [v.stage for v in list_versions(ws)].count(Stage.production) == 1


def test_rollback_restores_the_previous_production_version(ws: Workspace, criteria_id: int) -> None:
    a, b, c = (accepted(ws, f"run-{x}", criteria_id) for x in "abc")
    for name in (a, b, c):
        promote(ws, name, "production", actor="ana")
    restored = rollback(ws, actor="ben", reason="false alerts on night shift")
    assert restored.name == b and restored.stage == Stage.production
    assert get_version(ws, c).stage == Stage.retired
    event = history(ws, c)[-1]
    assert (event.action, event.from_stage, event.to_stage, event.actor) == ("rollback", "production", "retired", "ben")
    assert event.reason == "false alerts on night shift"
    assert rollback(ws, actor="ben", reason="still bad").name == a  # not back to c: it was rolled back
    with pytest.raises(RegistryError, match="no earlier production version") as info:
        rollback(ws, actor="ben", reason="again")
    assert "inspectloop models promote" in (info.value.hint or "")
    assert production_model(ws).name == a  # type: ignore[union-attr]


def test_rollback_with_nothing_in_production_yet_is_refused(ws: Workspace) -> None:
    with pytest.raises(RegistryError, match="no earlier production version"):
        rollback(ws, actor="ana", reason="test")
    with pytest.raises(RegistryError, match="why roll back is not given"):
        rollback(ws, actor="ana", reason="")


def test_rollback_after_a_deliberate_demotion_brings_back_the_one_before(ws: Workspace, criteria_id: int) -> None:
    a, b = accepted(ws, "run-a", criteria_id), accepted(ws, "run-b", criteria_id)
    promote(ws, a, "production", actor="ana")
    promote(ws, b, "production", actor="ana")
    promote(ws, b, "shadow", actor="ana", reason="back to shadow for a week")
    assert production_model(ws) is None
    assert rollback(ws, actor="ana", reason="run the previous one meanwhile").name == a
    assert get_version(ws, b).stage == Stage.shadow


def test_other_stages_need_no_acceptance_but_a_valid_move(ws: Workspace) -> None:
    add_run_with_model(ws, "run-a")
    version = register(ws, "run-a")
    assert promote(ws, version, "shadow", actor="ana").stage == Stage.shadow
    assert promote(ws, version, "retired", actor="ana", reason="superseded").stage == Stage.retired
    assert [e.action for e in history(ws, version)] == ["promote", "demote"]
    with pytest.raises(RegistryError, match="already retired"):
        promote(ws, version, "retired", actor="ana")
    with pytest.raises(RegistryError, match="unknown stage 'live'") as info:
        promote(ws, version, "live", actor="ana")
    assert "candidate, shadow, production, retired" in (info.value.hint or "")
    with pytest.raises(RegistryError, match="only applies to promotion to production"):
        promote(ws, version, "shadow", actor="ana", reason="x", override=True)
    with pytest.raises(RegistryError, match="no model version 'line3-v9'"):
        promote(ws, "line3-v9", "shadow", actor="ana")


def test_acceptance_against_criteria_locked_after_the_run_started_is_refused(ws: Workspace, tmp_path: Path) -> None:
    add_run_with_model(ws, "run-a", started_hours_ago=1)
    version = register(ws, "run-a")
    late = lock_criteria(ws, write_criteria(tmp_path), by="ana")
    with pytest.raises(CriteriaError, match="after run run-a started") as info:
        record_acceptance(ws, version, late.id, True, {})
    assert "lock first, then train" in (info.value.hint or "")
    with pytest.raises(CriteriaError, match="no locked criteria '99'"):
        record_acceptance(ws, version, 99, True, {})


def test_a_stale_stage_change_is_refused_whole(ws: Workspace) -> None:
    add_run_with_model(ws, "run-a")
    version = register(ws, "run-a")
    stale = StageChange(version.id, "promote", "shadow", "production", "ana")
    with pytest.raises(RegistryError, match="no longer shadow"):
        ws.db.registry.change_stages([StageChange(version.id, "promote", "candidate", "retired", "ana"), stale])
    assert get_version(ws, version).stage == Stage.candidate and history(ws) == []


# --- signatures (issue 10) -------------------------------------------------------------------------------

def _replace_file(ws: Workspace, run_id: str, data: bytes) -> None:
    """What an attacker with write access to the files and the database does: new file, hash record updated."""
    import hashlib

    from sqlalchemy import update

    from inspectloop.store import schema

    model = ws.db.runs.models(run_id)[-1]
    Path(model.path).write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    with ws.db.engine.begin() as conn:
        conn.execute(update(schema.models).where(schema.models.c.id == model.id).values(file_sha256=digest))
        conn.execute(update(schema.model_versions).where(schema.model_versions.c.model_id == model.id)
                     .values(file_sha256=digest))


def test_a_signed_version_is_verified_by_the_workspace_key(ws: Workspace) -> None:
    from inspectloop.keys import site_key

    add_run_with_model(ws, "run-a", signed=True)
    version = register(ws, "run-a")
    key_id = site_key(ws.root).public.key_id
    assert version.lineage["signed_by"] == key_id
    status = verify_file(version, ws)
    assert (status.state, status.key_id) == ("verified", key_id)


def test_a_forged_file_with_an_edited_record_is_refused_by_its_signature(ws: Workspace, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from inspectloop.runtime.signing import sign_model
    from tests.runtime.helpers import stamp, tiny_metadata, without_metadata

    add_run_with_model(ws, "run-a", signed=True)
    version = register(ws, "run-a")
    forged = stamp(without_metadata(version.path.read_bytes()), tiny_metadata(class_names=("dark", "scratch", "good")))
    _replace_file(ws, "run-a", forged)
    with pytest.raises(ModelFileError, match="model file is not signed"):
        verify_file(get_version(ws, version.name), ws)
    _replace_file(ws, "run-a", sign_model(forged, Ed25519PrivateKey.generate()))
    with pytest.raises(ModelFileError, match="which is not trusted here"):
        promote(ws, version.name, "production", actor="ana", reason="test", override=True)


def test_a_file_signed_by_another_key_is_not_registered(ws: Workspace) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from inspectloop.runtime.signing import sign_model

    path = add_run_with_model(ws, "run-a")
    _replace_file(ws, "run-a", sign_model(path.read_bytes(), Ed25519PrivateKey.generate()))
    with pytest.raises(ModelFileError, match="which is not trusted here"):
        register(ws, "run-a")


def test_a_version_exported_before_signing_is_checked_by_its_hash(ws: Workspace) -> None:
    add_run_with_model(ws, "run-a")
    version = register(ws, "run-a")
    assert version.lineage["signed_by"] is None and verify_file(version, ws).state == "unsigned"


@pytest.mark.parametrize(("case", "document", "says", "hint_says"), [
    ("never judged", None, "no acceptance report against its criteria #1", "judge its run against its criteria first"),
    ("judged and failed", {"failed": ["scratch recall", "review rate"], "files": {"html": "runs/a/acceptance-1/acceptance.html"},
                           "results": [{"name": "escape rate", "passed": True, "limit_text": "≤ 2%", "measured_text": "0.7%"},
                                       {"name": "scratch recall", "passed": False, "limit_text": "≥ 95%", "measured_text": "90%"},
                                       {"name": "review rate", "passed": False, "limit_text": "≤ 20%", "measured_text": "85%"}]},
     "its latest acceptance report (#1, criteria #1) failed: 2 of 3 criteria not met: scratch recall (must be ≥ 95%, "
     "measured 90%), review rate (must be ≤ 20%, measured 85%)", "runs/a/acceptance-1/acceptance.html says what failed"),
    ("failed, stored before results were kept", {"failed": ["p95 latency"]},
     "its latest acceptance report (#1, criteria #1) failed: p95 latency not met", "the run's acceptance-N/acceptance.html says what failed"),
])
def test_a_refused_promotion_says_why_and_what_to_do(ws: Workspace, criteria_id: int, case: str,
                                                    document: dict | None, says: str, hint_says: str) -> None:
    add_run_with_model(ws, "run-a", criteria_id=criteria_id)
    version = register(ws, "run-a")
    if document is not None:
        record_acceptance(ws, version, criteria_id, False, document)
    with pytest.raises(RegistryError) as info:
        promote(ws, version, "production", actor="ana")
    assert info.value.message == f"{version.name} cannot go to production: {says}", case
    assert hint_says in info.value.hint and "--override --reason" in info.value.hint
    judged = document is not None
    assert ("judge its run against its criteria first" in info.value.hint) is not judged  # a judged run is not sent back
    assert ("train a better model" in info.value.hint) is judged
