"""Acceptance criteria: the pass/fail limits a model must meet, fixed before the training it judges.

A quality engineer writes them as YAML (``examples/criteria.yaml``): per-class minimum recall and
precision, maximum escape rate (with the guarantee the review band certifies it under), maximum review
rate, false alerts per hour at the line rate, p95 latency and calibration error. Locking stores the
file with the hash of its canonical form, the time and who locked it; a training run names the
criteria it will be judged by, and criteria locked after a run started can never judge it (the limits
must not be fitted to the result). The criteria also steer that run's decisions: its review band is
fitted at their escape rate and guarantee, its operating points at their per-class recalls
(:func:`inspectloop.train.config.decision_settings`).

**Attainable by construction.** Locking refuses criteria that no model could meet on the dataset
version they are locked for (:func:`check_attainable`): an escape rate below what its calibration
split can certify, and a review bound that contradicts the escape bound given how the band decides.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from inspectloop.datasets import load_version
from inspectloop.decisions.conformal import DEFAULT_CONFIDENCE, DEFAULT_FALSE_REJECT, min_calibration_size
from inspectloop.domain import CriteriaRecord, TrainingRun
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
    """Pass/fail criteria for a model version. A limit left out is not judged.

    ``guarantee`` and ``confidence`` say how the review band certifies ``max_escape_rate`` (see
    :mod:`inspectloop.decisions.conformal`); they are not judged on the test set. ``max_review_rate``
    bounds the share of frozen test parts sent to a human (1 - the automation rate).
    """

    name: str
    classes: Annotated[dict[str, ClassLimits], Field(min_length=1)]
    max_escape_rate: Annotated[float, Field(gt=0.0, le=0.5)] | None = None
    guarantee: Literal["pac", "marginal"] = "pac"
    confidence: Annotated[float, Field(gt=0.0, lt=1.0)] = DEFAULT_CONFIDENCE
    max_review_rate: Fraction | None = None
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
    """Criteria as locked in a workspace: the validated limits, the text as written, hash, time, who.

    ``checked_on`` is set only on what :func:`lock_criteria` returns: the dataset version the criteria
    were found attainable on (None when there was none to check against). It is not stored.
    """

    id: int
    name: str
    sha256: str
    criteria: AcceptanceCriteria
    yaml_text: str
    locked_at: datetime
    locked_by: str
    checked_on: SplitCounts | None = field(default=None, compare=False)

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


def lock_criteria(workspace: Workspace, path: Path, *, by: str, dataset: str | None = None) -> LockedCriteria:
    """Validate ``path`` against the workspace's classes, check it is attainable, and lock it (hash, time, who).

    Attainable on ``dataset`` (a version name; default: the latest version when it has a calibration
    split, else nothing is checked): see :func:`check_attainable`. Locking the same criteria again
    (whatever the comments or layout) returns the existing lock.
    """
    if not by.strip():
        raise CriteriaError("who locks the criteria is not given", "name the person: --by NAME")
    criteria = load_criteria(path, workspace.db.labels.classes().keys())
    counts = split_counts(workspace, dataset)
    if counts is not None:
        check_attainable(criteria, counts)
    row = workspace.db.criteria.lock(criteria.name, criteria.sha256(), _read(Path(path)),
                                     criteria.model_dump(mode="json"), by.strip())
    return replace(_locked(row), checked_on=counts)


def list_criteria(workspace: Workspace) -> list[LockedCriteria]:
    """Every locked criteria file, oldest first."""
    return [_locked(row) for row in workspace.db.criteria.list()]


def get_criteria(workspace: Workspace, id_or_name: str | int) -> LockedCriteria:
    """Locked criteria by id (``3``) or name (the latest lock of that name)."""
    key = str(id_or_name).strip().removeprefix("#")
    row = (workspace.db.criteria.get(criteria_id=int(key)) if key.isdigit()
           else workspace.db.criteria.get(name=key))
    if row is None:
        raise CriteriaError(f"no locked criteria {str(id_or_name)!r}", _LOCK_FIX)
    return _locked(row)


def check_criteria_locked_before(run: TrainingRun, criteria: LockedCriteria) -> None:
    """Refuse to judge ``run`` by criteria locked after it started.

    Times are recorded to the second; criteria locked in the second the run started count as before.
    """
    started = datetime.fromisoformat(run.started_at)
    if criteria.locked_at > started:
        raise CriteriaError(
            f"criteria {criteria.label} were locked at {criteria.locked_at.isoformat()}, after run {run.id} "
            f"started at {started.isoformat()}: a run can only be judged by criteria fixed before it started",
            f"train again with these criteria: inspectloop train --criteria {criteria.name} "
            f"(lock first, then train), or judge run {run.id} by criteria locked before it started")


# -- attainable by construction ------------------------------------------------------------------

@dataclass(frozen=True)
class SplitCounts:
    """What a dataset version gives the review band (its calibration split) and acceptance (its frozen test split).

    With a good class, the defective parts are those of every other class; without one, every part is.
    """

    dataset: str
    good_class: str | None
    calib_defective: int
    calib_good: int
    test_defective: int
    test_count: int

    def describe(self) -> str:
        """``dataset v2 (calibration: 36 defective, 40 good images)``."""
        good = f", {self.calib_good} good" if self.good_class is not None else ""
        return f"dataset {self.dataset} (calibration: {self.calib_defective} defective{good} images)"


def split_counts(workspace: Workspace, dataset: str | None = None) -> SplitCounts | None:
    """The counts of ``dataset``; by default of the latest version when it has a calibration split, else None.

    A version named explicitly must have a calibration split: criteria cannot be checked against one without.
    """
    if dataset is None:
        if not workspace.db.datasets.list():
            return None
        version = load_version(workspace, "latest")
        if not version.split("calib"):
            return None
    else:
        version = load_version(workspace, dataset)
        if not version.split("calib"):
            raise CriteriaError(f"dataset {version.name} has no calibration split, so the escape and review bounds "
                                "cannot be checked against it",
                                "make a version with one (inspectloop dataset create --calib 0.2), or lock without "
                                "--dataset")
    good = [c.name for c in workspace.db.labels.classes().values() if c.is_good and c.name in version.class_names]
    good_class = good[0] if good else None
    calib, test = version.split("calib"), version.split("test")
    calib_good = sum(item.label == good_class for item in calib)
    return SplitCounts(dataset=version.name, good_class=good_class, calib_defective=len(calib) - calib_good,
                       calib_good=calib_good, test_defective=sum(item.label != good_class for item in test),
                       test_count=len(test))


def check_attainable(criteria: AcceptanceCriteria, counts: SplitCounts) -> None:
    """Refuse criteria that no model could meet on ``counts``' dataset version, naming the numbers.

    Two rules, both from how the review band decides (:mod:`inspectloop.decisions.conformal`):

    1. ``max_escape_rate`` must be certifiable by the calibration split: the band needs at least
       ``min_calibration_size(max_escape_rate, confidence, guarantee)`` defective calibration parts,
       else it passes nothing automatically and every part goes to review.
    2. With a good class, ``max_review_rate`` and ``max_escape_rate`` together: a band rejects a part
       automatically only when the good calibration parts certify that at most 2 % of good parts are
       rejected (``min_calibration_size(0.02, ...)`` of them). With fewer, it rejects nothing, so every
       defective test part either escapes or goes to review: at least ``D - floor(max_escape_rate * D)``
       of the ``D`` defective test parts are reviewed, and a smaller ``max_review_rate`` (times the test
       parts) contradicts the escape bound.

    The line's defect rate does not enter: both bounds are judged on the frozen test split, whose own
    defect share is what counts. Bounds the criteria leave out are not checked (a run's own alpha may
    still automate nothing: acceptance then shows the review rate).
    """
    alpha = criteria.max_escape_rate
    if alpha is None:
        return
    needed = min_calibration_size(alpha, criteria.confidence, criteria.guarantee)
    if counts.calib_defective < needed:
        raise CriteriaError(
            f"max_escape_rate {alpha:g} cannot be certified on {counts.describe()}: a {_guarantee_words(criteria)} "
            f"needs at least {needed} defective calibration images and there are {counts.calib_defective}, so the "
            "review band would pass nothing automatically and send every part to review",
            _escape_fix(criteria, counts, needed))
    if criteria.max_review_rate is not None and counts.good_class is not None:
        _check_review_against_escape(criteria, alpha, criteria.max_review_rate, counts)


def _check_review_against_escape(criteria: AcceptanceCriteria, alpha: float, review: float,
                                 counts: SplitCounts) -> None:
    needed = min_calibration_size(DEFAULT_FALSE_REJECT, criteria.confidence, criteria.guarantee)
    if counts.calib_good >= needed or not counts.test_count:
        return
    defective = counts.test_defective
    reviewed = defective - math.floor(alpha * defective + 1e-9)  # all but the escapes the bound allows
    floor = reviewed / counts.test_count
    if review >= floor:
        return
    raise CriteriaError(
        f"max_review_rate {review:g} contradicts max_escape_rate {alpha:g} on {counts.describe()}: "
        f"{counts.calib_good} good calibration images cannot certify auto-rejecting ({needed} needed to keep false "
        f"rejects at or below {DEFAULT_FALSE_REJECT:.0%}, {_guarantee_words(criteria)}), so the band rejects nothing "
        f"and every defective part that does not escape goes to review: {defective} of the {counts.test_count} test "
        f"parts are defective, so at least {reviewed} ({floor:.1%}) would be reviewed",
        f"add good images to the calibration split (at least {needed}), or raise max_review_rate to at least "
        f"{_round_up(floor):g}")


def _escape_fix(criteria: AcceptanceCriteria, counts: SplitCounts, needed: int) -> str:
    fixes = [f"add defective images to the calibration split (at least {needed})"]
    lowest = _lowest_certifiable(counts.calib_defective, criteria.confidence, criteria.guarantee)
    if lowest <= 0.5:
        fixes.append(f"raise max_escape_rate to {_round_up(lowest):g} (the lowest {counts.calib_defective} can certify)")
    if criteria.guarantee == "pac":
        marginal = min_calibration_size(criteria.max_escape_rate or 0.5, guarantee="marginal")
        fixes.append(f"or use guarantee: marginal (on average over calibration draws; needs {marginal})")
    return ", ".join(fixes)


def _lowest_certifiable(n: int, confidence: float, guarantee: str) -> float:
    """The smallest escape rate ``n`` calibration parts can certify (inf for none)."""
    if n == 0:
        return math.inf
    if guarantee == "marginal":
        return 1.0 / (n + 1)
    return 1.0 - (1.0 - confidence) ** (1.0 / n)


def _round_up(value: float, digits: int = 3) -> float:
    """``value`` rounded up to ``digits`` significant digits, so that a suggested bound is never just short."""
    scale = 10.0 ** (digits - 1 - math.floor(math.log10(value)))
    return math.ceil(value * scale - 1e-9) / scale


def _guarantee_words(criteria: AcceptanceCriteria) -> str:
    if criteria.guarantee == "marginal":
        return "marginal guarantee on average over calibration draws"
    return f"pac guarantee at {criteria.confidence:.0%} confidence"


def _locked(row: CriteriaRecord) -> LockedCriteria:
    return LockedCriteria(id=row.id, name=row.name, sha256=row.sha256,
                          criteria=AcceptanceCriteria.model_validate(row.spec), yaml_text=row.yaml,
                          locked_at=datetime.fromisoformat(row.locked_at), locked_by=row.locked_by)


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
    elif kind == "literal_error":
        what = f"must be one of {ctx.get('expected', '')}, got {_kind(value)}"
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
