"""Acceptance criteria: the pass/fail limits a model must meet, fixed before the training it judges.

A quality engineer writes them as YAML (``examples/criteria.yaml``): per-class minimum recall and
precision, maximum escape rate, false alerts per hour at the line rate, p95 latency and calibration
error. Locking stores the file with the hash of its canonical form, the time and who locked it; a
training run names the criteria it will be judged by, and criteria locked after a run started can
never judge it (the limits must not be fitted to the result).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from inspectloop.errors import CriteriaError
from inspectloop.workspace import Workspace

NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]{0,63}$")
_LOCK_FIX = "lock the criteria with: inspectloop criteria lock FILE --by NAME (see: inspectloop criteria list)"

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class _Strict(BaseModel):
    # strict: a number written as text ("0.95") or true/false is a mistake, not a number
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class ClassLimits(_Strict):
    """Limits for one class on the frozen test set; at least one must be given."""

    min_recall: Fraction | None = None
    min_precision: Fraction | None = None

    @model_validator(mode="after")
    def _has_a_limit(self) -> ClassLimits:
        if self.min_recall is None and self.min_precision is None:
            raise ValueError("give min_recall, min_precision or both")
        return self


class LineContext(_Strict):
    """The production line the model will run on: needed to turn error rates into alerts per hour."""

    parts_per_hour: Annotated[float, Field(gt=0.0)]
    defect_rate: Fraction


class AcceptanceCriteria(_Strict):
    """Pass/fail criteria for a model version. A limit left out is not judged."""

    name: str
    classes: Annotated[dict[str, ClassLimits], Field(min_length=1)]
    max_escape_rate: Annotated[float, Field(gt=0.0, le=0.5)] | None = None
    max_false_alerts_per_hour: Annotated[float, Field(ge=0.0)] | None = None
    max_p95_latency_ms: Annotated[float, Field(gt=0.0)] | None = None
    max_calibration_error: Fraction | None = None
    line: LineContext | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME.match(value):
            raise ValueError(f"must start with a letter and hold only letters, digits, '_', '.' or '-' "
                             f"(at most 64), got {value!r}")
        return value

    @model_validator(mode="after")
    def _line_for_alerts(self) -> AcceptanceCriteria:
        if self.max_false_alerts_per_hour is not None and self.line is None:
            raise ValueError("line: needed to judge max_false_alerts_per_hour; give line.parts_per_hour "
                             "and line.defect_rate")
        return self

    def canonical_yaml(self) -> str:
        """The criteria as sorted YAML: comments and layout do not change it, any limit does."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=True)

    def sha256(self) -> str:
        return hashlib.sha256(self.canonical_yaml().encode()).hexdigest()


@dataclass(frozen=True)
class LockedCriteria:
    """Criteria as locked in a workspace: the validated limits, the text as written, hash, time, who."""

    id: int
    name: str
    sha256: str
    criteria: AcceptanceCriteria
    yaml_text: str
    locked_at: datetime
    locked_by: str

    @property
    def label(self) -> str:
        """How messages name it: ``#3 'line3-release'``."""
        return f"#{self.id} {self.name!r}"


def load_criteria(path: Path, known_classes: Collection[str]) -> AcceptanceCriteria:
    """Read and validate a criteria YAML file; CriteriaError names every bad field and the fix.

    ``name`` defaults to the file name without its suffix. Class names must be among ``known_classes``.
    """
    path = Path(path)
    text = _read(path)
    raw = _parse(path, text)
    raw.setdefault("name", path.stem)
    problems = _unknown_classes(raw.get("classes"), known_classes)
    try:
        criteria = AcceptanceCriteria.model_validate(raw)
    except ValidationError as exc:
        problems = [_describe(error) for error in exc.errors()] + problems
    if problems:
        unknown_only = all(p.startswith("classes: unknown") for p in problems)
        raise CriteriaError(f"{path}: " + "; ".join(problems),
                            "use the workspace's class names (inspectloop classes list) or define the class first "
                            "(inspectloop classes add NAME)" if unknown_only
                            else f"fix the named field{'s' if len(problems) > 1 else ''} in {path} and lock again")
    return criteria


def lock_criteria(workspace: Workspace, path: Path, *, by: str) -> LockedCriteria:
    """Validate ``path`` against the workspace's classes and lock it (hash, time, who).

    Locking the same criteria again (whatever the comments or layout) returns the existing lock.
    """
    if not by.strip():
        raise CriteriaError("who locks the criteria is not given", "name the person: --by NAME")
    criteria = load_criteria(path, workspace.db.classes().keys())
    row = workspace.db.lock_criteria(criteria.name, criteria.sha256(), _read(Path(path)),
                                     criteria.model_dump(mode="json"), by.strip())
    return _locked(row)


def list_criteria(workspace: Workspace) -> list[LockedCriteria]:
    """Every locked criteria file, oldest first."""
    return [_locked(row) for row in workspace.db.criteria_rows()]


def get_criteria(workspace: Workspace, id_or_name: str | int) -> LockedCriteria:
    """Locked criteria by id (``3``) or name (the latest lock of that name)."""
    key = str(id_or_name).strip().removeprefix("#")
    row = (workspace.db.criteria_row(criteria_id=int(key)) if key.isdigit()
           else workspace.db.criteria_row(name=key))
    if row is None:
        raise CriteriaError(f"no locked criteria {str(id_or_name)!r}", _LOCK_FIX)
    return _locked(row)


def check_criteria_locked_before(run: Mapping[str, Any], criteria: LockedCriteria) -> None:
    """Refuse to judge ``run`` (a runs row) by criteria locked after it started.

    Times are recorded to the second; criteria locked in the second the run started count as before.
    """
    started = datetime.fromisoformat(run["started_at"])
    if criteria.locked_at > started:
        raise CriteriaError(
            f"criteria {criteria.label} were locked at {criteria.locked_at.isoformat()}, after run {run['id']} "
            f"started at {started.isoformat()}: a run can only be judged by criteria fixed before it started",
            f"train again with these criteria: inspectloop train --criteria {criteria.name} "
            f"(lock first, then train), or judge run {run['id']} by criteria locked before it started")


def _locked(row: Mapping[str, Any]) -> LockedCriteria:
    return LockedCriteria(id=row["id"], name=row["name"], sha256=row["sha256"],
                          criteria=AcceptanceCriteria.model_validate(row["spec"]), yaml_text=row["yaml"],
                          locked_at=datetime.fromisoformat(row["locked_at"]), locked_by=row["locked_by"])


# -- reading and explaining -------------------------------------------------------------------------

class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a key written twice (a copied block left unrenamed)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CriteriaError(f"no criteria file at {path}",
                            "check the path (an example: examples/criteria.yaml)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CriteriaError(f"cannot read {path}: {exc}", "give a readable UTF-8 YAML file") from None


def _parse(path: Path, text: str) -> dict[str, Any]:
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise CriteriaError(f"{path}{where}: {exc.problem or exc.context}",
                            "fix the YAML there (indentation, a missing ':', an unclosed quote or bracket, "
                            "a key written twice)") from None
    except yaml.YAMLError as exc:
        raise CriteriaError(f"{path} is not valid YAML: {exc}", "fix the YAML syntax") from None
    if not isinstance(raw, dict):
        raise CriteriaError(f"{path} holds {_kind(raw)}, not criteria",
                            "write a mapping with classes: and the limits (see examples/criteria.yaml)")
    return raw


def _unknown_classes(classes: Any, known: Collection[str]) -> list[str]:
    if not isinstance(classes, dict):
        return []
    unknown = [str(name) for name in classes if name not in known]
    if not unknown:
        return []
    listed = ", ".join(sorted(known)) if known else "none yet"
    return [f"classes: unknown class{'es' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
            f"(the workspace's classes: {listed})"]


_FIELDS: dict[str, type[BaseModel]] = {"classes": ClassLimits, "line": LineContext}
_BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}


def _describe(error: Mapping[str, Any]) -> str:
    """One pydantic error as ``field.path: what is wrong, got what``."""
    loc = [str(part) for part in error["loc"] if part != "[key]"]
    kind, value, ctx = error["type"], error.get("input"), error.get("ctx") or {}
    if kind in _BOUNDS:
        bound = next(iter(ctx.values()))
        what = f"must be {_BOUNDS[kind]} {bound:g}, got {_show(value)}"
    elif kind in ("float_type", "int_type", "float_parsing"):
        what = f"must be a number, got {_kind(value)}"
    elif kind == "finite_number":
        what = f"must be a finite number, got {_show(value)}"
    elif kind in ("string_type", "str_type"):
        what = f"must be text, got {_kind(value)}"
    elif kind in ("dict_type", "model_type", "model_attributes_type"):
        shape = "class names to their limits" if loc == ["classes"] else "field names to values"
        what = f"must be a mapping of {shape}, got {_kind(value)}"
    elif kind == "missing":
        what = "is required"
    elif kind == "too_short":
        what = "must list at least one class"
    elif kind == "extra_forbidden":
        what = f"is not a criteria field (expected one of: {', '.join(_allowed(loc))})"
    elif kind == "value_error":
        what = str(error["msg"]).removeprefix("Value error, ")  # a top-level rule names its own field
    else:
        what = str(error["msg"])
    return f"{'.'.join(loc)}: {what}" if loc else what


def _allowed(loc: list[str]) -> list[str]:
    model = _FIELDS.get(loc[0], AcceptanceCriteria) if len(loc) > 1 else AcceptanceCriteria
    return list(model.model_fields)


def _show(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else repr(value)


def _kind(value: Any) -> str:
    """A YAML value described the way the engineer wrote it."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"{str(value).lower()} (yes/no)"
    if isinstance(value, str):
        return f"text {value!r}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)
