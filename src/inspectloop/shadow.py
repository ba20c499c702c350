"""The shadow report: how a candidate compares with production and with human QC, and whether it is ready.

Readiness rule (stated in every report): the candidate is ready when (1) at least ``min_compared``
production inputs were shadowed, (2) at least ``min_qc`` of them carry a human QC verdict, (3) its
agreement with QC is not worse than production's: production's QC agreement lies at or below the upper
end of the candidate's 95 % Wilson interval, and (4) it adds no new escapes: no part QC called defective
that the candidate passes while production did not.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from inspectloop import registry
from inspectloop.domain import ModelVersion, ShadowComparison, Stage
from inspectloop.errors import RegistryError
from inspectloop.evaluate.metrics import wilson_interval
from inspectloop.store import atomic_write_text, now_iso
from inspectloop.workspace import Workspace

EDGE_CASES = 10


@dataclass(frozen=True)
class ClassAgreement:
    """Agreement on the inputs production called ``name``, and on those QC called ``name``."""

    name: str
    compared: int
    agreement: float | None
    qc_compared: int
    shadow_qc_agreement: float | None
    production_qc_agreement: float | None


@dataclass
class ShadowReport:
    version: str
    version_id: int
    compared: int
    agreement: float | None
    qc_compared: int
    shadow_qc_agreement: float | None
    shadow_qc_interval: tuple[float, float] | None
    production_qc_agreement: float | None
    new_escapes: int
    per_class: list[ClassAgreement]
    confusions: list[dict[str, Any]]
    edge_cases: list[dict[str, Any]]
    ready: bool
    reasons: list[str]
    rule: str
    created_at: str = field(default_factory=now_iso)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


RULE = ("ready when >= {min_compared} inputs shadowed, >= {min_qc} with a QC verdict, production's agreement with "
        "QC <= the upper end of the candidate's 95% Wilson interval of agreement with QC, and 0 new escapes "
        "(QC defect that the candidate passes and production did not)")


def shadow_report(workspace: Workspace, version: str | None = None, *, min_compared: int = 200,
                  min_qc: int = 30) -> ShadowReport:
    """Compare a shadowed version's logged results with production and QC (RegistryError if it has none)."""
    chosen = _version(workspace, version)
    rows = workspace.db.predictions.shadow_comparisons(chosen.id)
    good = workspace.db.labels.good_classes()
    judged = [r for r in rows if r.qc_label is not None]
    shadow_right = sum(r.shadow_label == r.qc_label for r in judged)
    production_right = sum(r.production_label == r.qc_label for r in judged)
    interval = wilson_interval(shadow_right, len(judged)) if judged else None
    new_escapes = sum(1 for r in judged if r.qc_label not in good and r.shadow_decision == "pass"
                      and r.production_decision != "pass")
    report = ShadowReport(
        version=chosen.name, version_id=chosen.id, compared=len(rows),
        agreement=_share(sum(bool(r.agrees) for r in rows), len(rows)), qc_compared=len(judged),
        shadow_qc_agreement=_share(shadow_right, len(judged)), shadow_qc_interval=interval,
        production_qc_agreement=_share(production_right, len(judged)), new_escapes=new_escapes,
        per_class=_per_class(rows), confusions=_confusions(rows), edge_cases=_edge_cases(rows),
        ready=False, reasons=[], rule=RULE.format(min_compared=min_compared, min_qc=min_qc))
    report.ready, report.reasons = _verdict(report, min_compared, min_qc)
    return report


def write_shadow_report(workspace: Workspace, report: ShadowReport) -> Path:
    """Write the report as JSON under the workspace's reports folder; return the path."""
    path = workspace.reports_dir / f"shadow-{report.version}.json"
    atomic_write_text(path, json.dumps(report.to_dict(), indent=2, default=str) + "\n")
    return path


def _version(workspace: Workspace, version: str | None) -> ModelVersion:
    if version is not None:
        return registry.get_version(workspace, version)
    shadowing = workspace.db.registry.find(stage=Stage.shadow)
    if shadowing is not None:
        return shadowing
    shadowed = workspace.db.predictions.shadow_version_ids()
    if not shadowed:
        raise RegistryError("no model version has been shadowed yet",
                            "put a candidate in shadow (inspectloop models promote VERSION shadow --actor NAME) "
                            "and let the service run")
    return registry.get_version(workspace, shadowed[-1])


def _per_class(rows: list[ShadowComparison]) -> list[ClassAgreement]:
    names = sorted({r.production_label for r in rows} | {r.qc_label for r in rows if r.qc_label})
    result = []
    for name in names:
        mine = [r for r in rows if r.production_label == name]
        judged = [r for r in rows if r.qc_label == name]
        result.append(ClassAgreement(
            name=name, compared=len(mine), agreement=_share(sum(bool(r.agrees) for r in mine), len(mine)),
            qc_compared=len(judged),
            shadow_qc_agreement=_share(sum(r.shadow_label == name for r in judged), len(judged)),
            production_qc_agreement=_share(sum(r.production_label == name for r in judged), len(judged))))
    return result


def _confusions(rows: list[ShadowComparison]) -> list[dict[str, Any]]:
    pairs = Counter((r.production_label, r.shadow_label) for r in rows if not r.agrees)
    decisions = Counter((r.production_decision, r.shadow_decision) for r in rows if not r.agrees)
    by_label = [{"production": p, "shadow": s, "count": n} for (p, s), n in pairs.most_common()]
    by_decision = [{"production": f"decision {p}", "shadow": f"decision {s}", "count": n}
                   for (p, s), n in decisions.most_common() if p != s]
    return by_label + by_decision


def _edge_cases(rows: list[ShadowComparison]) -> list[dict[str, Any]]:
    """The disagreements where the candidate was most sure of itself."""
    disagreements = sorted((r for r in rows if not r.agrees), key=lambda r: -r.shadow_confidence)
    keys = ("prediction_id", "request_id", "image_sha256", "camera", "production_label", "production_decision",
            "production_confidence", "shadow_label", "shadow_decision", "shadow_confidence", "qc_label")
    return [{k: getattr(r, k) for k in keys} for r in disagreements[:EDGE_CASES]]


def _verdict(report: ShadowReport, min_compared: int, min_qc: int) -> tuple[bool, list[str]]:
    reasons = []
    if report.compared < min_compared:
        reasons.append(f"only {report.compared} inputs shadowed (need {min_compared})")
    if report.qc_compared < min_qc:
        reasons.append(f"only {report.qc_compared} inputs with a QC verdict (need {min_qc})")
    if report.shadow_qc_interval is not None and report.production_qc_agreement is not None:
        upper = report.shadow_qc_interval[1]
        if report.production_qc_agreement > upper:
            reasons.append(f"agrees with QC less than production: production {report.production_qc_agreement:.3f} "
                           f"is above the candidate's 95% upper bound {upper:.3f}")
    if report.new_escapes:
        reasons.append(f"{report.new_escapes} new escapes (QC defects the candidate passes, production did not)")
    if reasons:
        return False, reasons
    summary = (f"{report.compared} inputs, {report.qc_compared} with QC; candidate agrees with QC "
               f"{report.shadow_qc_agreement:.3f} vs production {report.production_qc_agreement:.3f}; no new escapes")
    return True, [summary]


def _share(part: int, total: int) -> float | None:
    return None if total == 0 else round(part / total, 4)

