"""The model registry: versions with their lineage, stages, promotion rules and rollback.

A model version is one exported model file of a finished training run, with its lineage (dataset
version, acceptance criteria, code version, test metrics, thresholds). It moves through the stages
candidate, shadow, production and retired. Going to production needs a passed acceptance report
against the criteria its run named, or an explicit override by a named person with a reason. At
most one version is in production; every stage change is logged with who, why and on what evidence.

A version's file is checked against the SHA-256 recorded at registration and, when it was signed
then, against the workspace's signing key (``inspectloop.keys``): a file that was replaced and its
record edited still needs the site's private key to pass. Files exported before signing existed are
registered unsigned (``lineage["signed_by"]`` None) and checked by their hash alone.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from inspectloop.accept.criteria import check_criteria_locked_before, get_criteria
from inspectloop.domain import ModelFile, ModelVersion, Stage, StageChange, StageEvent, TrainingRun
from inspectloop.errors import ModelFileError, RegistryError
from inspectloop.keys import workspace_trusted_keys
from inspectloop.runtime.signing import PublicKey, SignatureStatus, check_signature
from inspectloop.workspace import Workspace

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
# What to do when a version has no passed acceptance report (``inspectloop accept RUN`` writes them).
_OVERRIDE = "or promote anyway with --override --reason TEXT (logged with your name)"
ACCEPT_HINT = (f"judge its run against its criteria first: inspectloop accept RUN (the run is listed by inspectloop "
               f"models list); a passed report unlocks production, {_OVERRIDE}")
# A run that was judged and failed: judging it again measures the same file against the same locked limits.
FAILED_HINT = ("judging the same model file again measures the same: train a better model (more or better-labelled "
               "images of the failed classes, more epochs) with the same --criteria and judge the new run with "
               "inspectloop accept RUN ({report} says what failed and by how much), " + _OVERRIDE)
NO_CRITERIA_HINT = (f"lock criteria (inspectloop criteria lock FILE --by NAME), train again with --criteria NAME "
                    f"and judge the new run with inspectloop accept RUN, {_OVERRIDE}")
_LIST_FIX = "list versions with: inspectloop models list"


_RANK = {Stage.retired: 0, Stage.candidate: 1, Stage.shadow: 2, Stage.production: 3}


def register(workspace: Workspace, run_id: str, *, variant: str = "fp32", name: str | None = None) -> ModelVersion:
    """Register a finished run's exported model as a candidate version (refused if its file changed, or
    if it is signed by a key other than the workspace's).

    ``name`` defaults to ``<workspace>-v<N>``.
    """
    run = workspace.db.runs.get(run_id)
    if run is None:
        raise RegistryError(f"no run {run_id!r}", "list runs with: inspectloop runs")
    if run.status != "finished":
        raise RegistryError(f"run {run_id} is {run.status}, not finished",
                            "register a finished run; resume an interrupted one with: "
                            f"inspectloop train --resume {run_id}")
    models = [m for m in workspace.db.runs.models(run_id) if m.variant == variant]
    if not models:
        have = sorted({m.variant for m in workspace.db.runs.models(run_id)})
        raise RegistryError(f"run {run_id} has no {variant} model", f"register one of its variants: {', '.join(have)}"
                            if have else "the run exported no model file; train again")
    model = models[-1]
    existing = workspace.db.registry.find(model_id=model.id)
    if existing is not None:
        raise RegistryError(f"run {run_id} ({variant}) is already registered as {existing.name}", _LIST_FIX)
    data = _checked_bytes(Path(model.path), model.file_sha256, f"run {run_id} ({variant})")
    signature = _registration_signature(workspace, data, str(model.path))
    name = _check_name(workspace, name) if name is not None else _default_name(workspace)
    lineage = {**_lineage(run, model, data), "signed_by": signature.key_id}
    version_id = workspace.db.registry.add(name, model, Stage.candidate, lineage)
    return get_version(workspace, version_id)


def get_version(workspace: Workspace, version: str | int | ModelVersion) -> ModelVersion:
    """A model version by id (``3``), name, or a (possibly stale) ModelVersion, as it is now."""
    if isinstance(version, ModelVersion):
        version = version.id
    key = str(version).strip().removeprefix("#")
    found = (workspace.db.registry.find(version_id=int(key)) if key.isdigit()
             else workspace.db.registry.find(name=key))
    if found is None:
        raise RegistryError(f"no model version {str(version)!r}",
                            f"{_LIST_FIX}; register a run with: inspectloop models register RUN")
    return found


def list_versions(workspace: Workspace) -> list[ModelVersion]:
    """Every registered version, oldest first."""
    return workspace.db.registry.list()


def production_model(workspace: Workspace) -> ModelVersion | None:
    """The version in production, if any (what the runtime and service use by default)."""
    return workspace.db.registry.find(stage=Stage.production)


def named_or_production(workspace: Workspace, name: str | None) -> ModelVersion | None:
    """The version ``name`` (refused when unknown) or, without a name, the one in production, if any."""
    return get_version(workspace, name) if name is not None else production_model(workspace)


def history(workspace: Workspace, version: str | int | ModelVersion | None = None) -> list[StageEvent]:
    """Logged stage changes, oldest first; of one version when given."""
    version_id = None if version is None else get_version(workspace, version).id
    return workspace.db.registry.events(version_id)


def verify_file(version: ModelVersion, workspace: Workspace | None = None) -> SignatureStatus:
    """Refuse (ModelFileError) a version whose model file is missing or no longer matches its record and,
    given its ``workspace``, one registered signed whose signature is not the workspace key's. Returns
    the signature status (``verified``, or ``unsigned`` for a version registered unsigned)."""
    label = f"model version {version.name} ({version.path})"
    data = _checked_bytes(version.path, version.file_sha256, f"model version {version.name}")
    keys = trusted_keys_for(workspace, version) if workspace is not None else ()
    return check_signature(data, keys, label)


def trusted_keys_for(workspace: Workspace, version: ModelVersion) -> tuple[PublicKey, ...]:
    """The keys a version's file must be signed by: the workspace's if it was signed when registered, else none."""
    if version.lineage.get("signed_by") is None:
        return ()
    keys = workspace_trusted_keys(workspace.root)
    if not keys:
        raise ModelFileError(f"model version {version.name} was registered signed by key "
                             f"{version.lineage['signed_by']}, but workspace {workspace.root} has no signing key",
                             "restore the workspace's keys/ folder from backup")
    return keys


def promote(workspace: Workspace, version: str | int | ModelVersion, stage: Stage | str, *, actor: str,
            reason: str | None = None, override: bool = False) -> ModelVersion:
    """Move a version to ``stage``, logged with ``actor`` and ``reason``.

    To production it needs a passed acceptance report against its run's criteria, or ``override``
    with a reason; the version in production until then is retired.
    """
    chosen, target = get_version(workspace, version), _stage(stage)
    actor, reason = _required(actor, "who does this", "--actor NAME"), (reason or "").strip() or None
    if chosen.stage == target:
        raise RegistryError(f"{chosen.name} is already {target}", _LIST_FIX)
    if override and target != Stage.production:
        raise RegistryError("--override only applies to promotion to production",
                            f"promote to {target} without --override")
    if override and reason is None:
        raise RegistryError("an override needs a reason", "say why with --reason TEXT: it is logged with your name")
    if target != Stage.production:
        action = "promote" if _RANK[target] > _RANK[chosen.stage] else "demote"
        workspace.db.registry.change_stages([StageChange(chosen.id, action, chosen.stage, target, actor, reason)])
        return get_version(workspace, chosen.id)
    verify_file(chosen, workspace)
    report_id, missing, hint = _passed_report(workspace, chosen)
    if report_id is None and not override:
        raise RegistryError(f"{chosen.name} cannot go to production: {missing}", hint)
    changes = _retire_production(workspace, actor, f"replaced by {chosen.name}", "replaced")
    changes.append(StageChange(chosen.id, "promote", chosen.stage, Stage.production, actor, reason,
                               report_id, override))
    workspace.db.registry.change_stages(changes)
    return get_version(workspace, chosen.id)


def rollback(workspace: Workspace, *, actor: str, reason: str) -> ModelVersion:
    """Put the previous production version back in production (the current one is retired); return it."""
    actor = _required(actor, "who rolls back", "--actor NAME")
    reason = _required(reason, "why roll back", "--reason TEXT")
    current = production_model(workspace)
    earlier = [v for v in _production_stack(workspace) if current is None or v != current.id]
    if not earlier:
        raise RegistryError("there is no earlier production version to roll back to",
                            "promote a version instead: inspectloop models promote VERSION production --actor NAME")
    target = get_version(workspace, earlier[-1])
    verify_file(target, workspace)
    changes = _retire_production(workspace, actor, reason, "rollback")
    changes.append(StageChange(target.id, "rollback", target.stage, Stage.production, actor, reason))
    workspace.db.registry.change_stages(changes)
    return get_version(workspace, target.id)


def record_acceptance(workspace: Workspace, version: str | int | ModelVersion, criteria_id: int,
                      passed: bool, report: Mapping[str, Any]) -> int:
    """Store an acceptance report (what ``accept`` computes) for a version; return its id.

    Refused when the criteria were locked after the version's run started.
    """
    model_version = get_version(workspace, version)
    criteria = get_criteria(workspace, criteria_id)
    run = workspace.db.runs.get(model_version.run_id)
    if run is None:  # a foreign key makes this impossible; say so plainly if a database was edited by hand
        raise RegistryError(f"run {model_version.run_id} of {model_version.name} is missing", _LIST_FIX)
    check_criteria_locked_before(run, criteria)
    return workspace.db.criteria.add_report(model_version.id, criteria.id, bool(passed), dict(report))


# -- helpers --------------------------------------------------------------------------------------

def _passed_report(workspace: Workspace, version: ModelVersion) -> tuple[int | None, str, str]:
    """The latest acceptance report against the run's criteria if it passed; else None, why not and what to do:
    judge a run never judged; improve a model whose report failed (judging it again changes nothing)."""
    if version.criteria_id is None:
        return None, f"its run {version.run_id} named no acceptance criteria", NO_CRITERIA_HINT
    reports = [r for r in workspace.db.criteria.reports(version.id) if r.criteria_id == version.criteria_id]
    if not reports:
        return None, f"no acceptance report against its criteria #{version.criteria_id}", ACCEPT_HINT
    latest = reports[-1]
    if not latest.passed:
        return None, (f"its latest acceptance report (#{latest.id}, criteria #{version.criteria_id}) failed"
                      f"{_failed_criteria_text(latest.report or {})}"), _failed_hint(latest.report or {})
    return int(latest.id), "", ""


def _failed_hint(document: Mapping[str, Any]) -> str:
    page = (document.get("files") or {}).get("html")
    return FAILED_HINT.format(report=page or "the run's acceptance-N/acceptance.html")


def _failed_criteria_text(document: Mapping[str, Any]) -> str:
    """': 2 of 9 criteria not met: scratch recall (must be ≥ 95%, measured 90%), ...' from a report document."""
    results = document.get("results")
    if results is None:  # a report stored before results were kept names the failed criteria only
        names = [str(n) for n in document.get("failed") or []]
        return f": {', '.join(names)} not met" if names else ""
    failed = [r for r in results if not r.get("passed")]
    listed = ", ".join(f"{r['name']} (must be {r.get('limit_text', r.get('limit'))}, measured "
                       f"{r.get('measured_text', r.get('measured'))})" for r in failed)
    return f": {len(failed)} of {len(results)} criteria not met: {listed}" if failed else ""


def _retire_production(workspace: Workspace, actor: str, reason: str, action: str) -> list[StageChange]:
    current = production_model(workspace)
    if current is None:
        return []
    return [StageChange(current.id, action, Stage.production, Stage.retired, actor, reason)]


def _production_stack(workspace: Workspace) -> list[int]:
    """Versions that held production, in order, replaying the log; a rollback pops the one rolled back.

    A version taken out of production on purpose (rolled back or demoted) is not one to return to;
    one replaced by a newer production version is.
    """
    stack: list[int] = []
    for event in workspace.db.registry.events():
        version = event.model_version_id
        if event.to_stage == Stage.production:
            if not stack or stack[-1] != version:
                stack.append(version)
        elif event.from_stage == Stage.production and event.action != "replaced" and version in stack:
            del stack[len(stack) - 1 - stack[::-1].index(version)]
    return stack


def _checked_bytes(path: Path, expected: str, what: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelFileError(f"model file of {what} cannot be read at {path}: {exc.strerror or exc}",
                             "restore the file from backup, or train and register a new version") from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise ModelFileError(
            f"model file {path} of {what} does not match its record (sha256 {actual[:12]}..., recorded "
            f"{expected[:12]}...): it was changed or replaced after export",
            "restore the original file from backup, or train and register a new version; never edit a model file")
    return data


def _registration_signature(workspace: Workspace, data: bytes, label: str) -> SignatureStatus:
    """A signed file must be signed by the workspace's key; an unsigned one (exported before signing) is let in."""
    unchecked = check_signature(data, (), label)  # refuses a broken signature; says whether there is one
    if unchecked.state == "unsigned":
        return unchecked
    keys = workspace_trusted_keys(workspace.root)
    if not keys:
        raise ModelFileError(f"{label} is signed by key {unchecked.key_id}, but workspace {workspace.root} has no "
                             "signing key to check it against", "restore the workspace's keys/ folder from backup")
    return check_signature(data, keys, label)


def _lineage(run: TrainingRun, model: ModelFile, data: bytes) -> dict[str, Any]:
    from inspectloop.runtime.metadata import read_model_metadata

    metadata = read_model_metadata(data, str(model.path))
    return {
        "dataset_version": run.dataset_version,
        "criteria_id": run.criteria_id,
        "code_version": run.code_version,
        "metrics": (run.metrics or {}).get("test"),
        "thresholds": dict(metadata.thresholds),
        "temperature": metadata.temperature,
        "class_names": list(metadata.class_names),
        "good_class": metadata.good_class,
        "weights_sha256": model.weights_sha256,
        "model_sha256": metadata.sha256,
    }


def _default_name(workspace: Workspace) -> str:
    base = workspace.config.name if NAME.match(workspace.config.name) else "model"
    number = len(workspace.db.registry.list()) + 1
    while workspace.db.registry.find(name=f"{base}-v{number}") is not None:
        number += 1
    return f"{base}-v{number}"


def _check_name(workspace: Workspace, name: str) -> str:
    name = name.strip()
    if not NAME.match(name) or name.isdigit():
        raise RegistryError(f"bad version name {name!r}",
                            "use letters, digits, '_', '.' or '-' (not only digits), e.g. line3-v4")
    if workspace.db.registry.find(name=name) is not None:
        raise RegistryError(f"model version name {name!r} is taken", "choose another --name")
    return name


def _stage(stage: Stage | str) -> Stage:
    try:
        return Stage(str(stage).strip().lower())
    except ValueError:
        raise RegistryError(f"unknown stage {stage!r}", f"use one of: {', '.join(s.value for s in Stage)}") from None


def _required(value: str | None, what: str, option: str) -> str:
    if value is None or not value.strip():
        raise RegistryError(f"{what} is not given", f"say it with {option}: it is logged")
    return value.strip()
