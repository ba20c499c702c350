"""The shadow report: how a candidate compares with production and with human QC, and whether it is ready.

Agreement is measured twice. *Label agreement*: both models name the same class. *Decision agreement*:
the part's fate is the same (:func:`same_fate`): both pass it, or both stop it (reject or review) as the
same class. A candidate that rejects what production sends to review, or the other way round, as the
same class, stops the same part for the same reason: that difference is counted
(``same_class_reject_vs_review``) but is no disagreement, is never a confusion and is never queued.

An anomaly model names no defect class: it stops a part as "anomaly" (unlike the good parts it
learned). Wherever two labels are compared (the models with each other, or with QC) its "anomaly"
matches every class that is not good (:func:`same_class`), so an anomaly candidate beside a
classifier (or the other way round) disagrees only where the part's fate, or good vs defect, differs.

Two detectors are also compared by their boxes (:func:`compare_boxes`): on each shadowed frame the boxes
are paired one to one by IoU (Hungarian assignment, IoU >= ``BOX_IOU``) whatever their class; a pair of
different classes, or a box only one model drew, is a box disagreement. The report counts them per class
and lists the frames where the boxes disagree most (``box_comparison``). Decisions, agreement and
readiness stay with the image-level scores, as for every task kind; boxes say *where* the models differ.

Readiness rule (stated in every report): the candidate is ready when (1) at least ``min_compared``
production inputs were shadowed, (2) at least ``min_qc`` of them carry a human QC verdict, (3) its
agreement with QC is not worse than production's: production's QC agreement lies at or below the upper
end of the candidate's 95 % Wilson interval, and (4) it adds no new escapes: no part QC called defective
that the candidate passes while production did not.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inspectloop import registry
from inspectloop.anomaly.threshold import ANOMALY_CLASS
from inspectloop.domain import ModelVersion, ShadowComparison, Stage
from inspectloop.errors import RegistryError
from inspectloop.regions.agreement import ClassAgreement as BoxCounts
from inspectloop.regions.agreement import match_boxes
from inspectloop.runtime.decision import Decision
from inspectloop.evaluate.metrics import wilson_interval
from inspectloop.store import atomic_write_text, now_iso
from inspectloop.workspace import Workspace

EDGE_CASES = 10
BOX_IOU = 0.5  # two detectors' boxes of one defect overlap at least this much (the COCO mAP50 criterion)


def same_fate(production_label: str, production_decision: str, shadow_label: str, shadow_decision: str, *,
              good: Collection[str] = ()) -> bool:
    """Whether the shadow would do the same to the part as production: both pass it, or both stop it (reject or
    send it to review) as the same class (:func:`same_class`; ``good``: the good classes). Reject vs review
    of one class is the same fate: the part is held either way, for the same defect."""
    if production_decision == Decision.PASS or shadow_decision == Decision.PASS:
        return production_decision == shadow_decision
    return same_class(production_label, shadow_label, good)


def same_class(label: str, other: str, good: Collection[str]) -> bool:
    """Whether two labels name the same class, an anomaly model's "anomaly" standing for every class not in
    ``good`` (the defect it saw is not named, so any defect class agrees with it, a good class never)."""
    if label == other:
        return True
    return ANOMALY_CLASS in (label, other) and label not in good and other not in good


def anomaly_good_class(scores: Mapping[str, float]) -> str | None:
    """The good class of an anomaly model's (P(good), P(anomaly)) scores; None for another model's."""
    names = [name for name in scores if name != ANOMALY_CLASS]
    return names[0] if len(scores) == 2 and len(names) == 1 else None


def compare_boxes(production: Sequence[Mapping[str, Any]], shadow: Sequence[Mapping[str, Any]],
                  threshold: float = BOX_IOU) -> dict[str, Any]:
    """Two detectors' boxes on one frame (each ``{"class", "box": [x0, y0, x1, y1]}``, in the same pixels),
    paired one to one by IoU whatever their class: ``pairs`` [production class, shadow class, IoU], and
    the classes of the boxes ``only_production`` or ``only_shadow`` drew. JSON-ready (the shadow row keeps it)."""
    a = np.array([b["box"] for b in production], dtype=np.float64).reshape(-1, 4)
    b = np.array([s["box"] for s in shadow], dtype=np.float64).reshape(-1, 4)
    pairs = match_boxes(a, b, threshold)
    paired_a, paired_b = {i for i, _, _ in pairs}, {j for _, j, _ in pairs}
    return {"pairs": [[production[i]["class"], shadow[j]["class"], round(iou, 4)] for i, j, iou in pairs],
            "only_production": [production[i]["class"] for i in range(len(production)) if i not in paired_a],
            "only_shadow": [shadow[j]["class"] for j in range(len(shadow)) if j not in paired_b]}


def box_disagreements(compared: Mapping[str, Any]) -> int:
    """How many boxes of a :func:`compare_boxes` result disagree: pairs of different classes, and boxes only
    one model drew."""
    return (sum(1 for p, s, _ in compared["pairs"] if p != s) + len(compared["only_production"])
            + len(compared["only_shadow"]))


@dataclass(frozen=True)
class ClassAgreement:
    """Agreement on the inputs production called ``name``, and on those QC called ``name``."""

    name: str
    compared: int
    label_agreement: float | None
    decision_agreement: float | None
    qc_compared: int
    shadow_qc_agreement: float | None
    production_qc_agreement: float | None


@dataclass
class ShadowReport:
    version: str
    version_id: int
    compared: int
    label_agreement: float | None  # share of inputs on which both models name the same class
    decision_agreement: float | None  # share on which the part's fate is the same (same_fate)
    same_class_reject_vs_review: int  # one rejects, the other sends to review, as the same class: not a disagreement
    qc_compared: int
    shadow_qc_agreement: float | None
    shadow_qc_interval: tuple[float, float] | None
    production_qc_agreement: float | None
    new_escapes: int
    per_class: list[ClassAgreement]
    confusions: list[dict[str, Any]]  # production label -> shadow label, where they differ
    decision_changes: list[dict[str, Any]]  # production decision -> shadow decision, where one passes and one not
    edge_cases: list[dict[str, Any]]
    ready: bool
    reasons: list[str]
    rule: str
    box_comparison: dict[str, Any] | None = None  # detectors only: boxes matched by IoU (_box_comparison)
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
    return compare(chosen, rows, workspace.db.labels.good_classes(), min_compared=min_compared, min_qc=min_qc)


def compare(chosen: ModelVersion, rows: list[ShadowComparison], good: Collection[str], *, min_compared: int = 200,
            min_qc: int = 30) -> ShadowReport:
    """The shadow report of ``chosen`` from its results beside production's (logged live, or re-scored on
    history by :mod:`inspectloop.shadow_history`): one rule for both."""
    judged = [r for r in rows if r.qc_label is not None]
    shadow_right = sum(same_class(r.shadow_label, r.qc_label, good) for r in judged)
    production_right = sum(same_class(r.production_label, r.qc_label, good) for r in judged)
    interval = wilson_interval(shadow_right, len(judged)) if judged else None
    new_escapes = sum(1 for r in judged if r.qc_label not in good and r.shadow_decision == Decision.PASS
                      and r.production_decision != Decision.PASS)
    report = ShadowReport(
        version=chosen.name, version_id=chosen.id, compared=len(rows), label_agreement=_label_agreement(rows, good),
        decision_agreement=_decision_agreement(rows, good),
        same_class_reject_vs_review=sum(_agrees(r, good) and r.production_decision != r.shadow_decision
                                        for r in rows),
        qc_compared=len(judged), shadow_qc_agreement=_share(shadow_right, len(judged)), shadow_qc_interval=interval,
        production_qc_agreement=_share(production_right, len(judged)), new_escapes=new_escapes,
        per_class=_per_class(rows, good), confusions=_confusions(rows, good),
        decision_changes=_decision_changes(rows), edge_cases=_edge_cases(rows, good), ready=False, reasons=[],
        rule=RULE.format(min_compared=min_compared, min_qc=min_qc), box_comparison=_box_comparison(rows))
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


def _per_class(rows: list[ShadowComparison], good: Collection[str]) -> list[ClassAgreement]:
    names = sorted({r.production_label for r in rows} | {r.qc_label for r in rows if r.qc_label})
    result = []
    for name in names:
        mine = [r for r in rows if r.production_label == name]
        judged = [r for r in rows if r.qc_label == name]
        result.append(ClassAgreement(
            name=name, compared=len(mine), label_agreement=_label_agreement(mine, good),
            decision_agreement=_decision_agreement(mine, good), qc_compared=len(judged),
            shadow_qc_agreement=_share(sum(same_class(r.shadow_label, name, good) for r in judged), len(judged)),
            production_qc_agreement=_share(sum(same_class(r.production_label, name, good) for r in judged),
                                           len(judged))))
    return result


def _agrees(row: ShadowComparison, good: Collection[str]) -> bool:
    """Same fate, recomputed from the logged labels and decisions (rows logged under an older rule included)."""
    return same_fate(row.production_label, row.production_decision, row.shadow_label, row.shadow_decision,
                     good=good)


def _label_agreement(rows: list[ShadowComparison], good: Collection[str]) -> float | None:
    return _share(sum(same_class(r.production_label, r.shadow_label, good) for r in rows), len(rows))


def _decision_agreement(rows: list[ShadowComparison], good: Collection[str]) -> float | None:
    return _share(sum(_agrees(r, good) for r in rows), len(rows))


def _confusions(rows: list[ShadowComparison], good: Collection[str]) -> list[dict[str, Any]]:
    """Label pairs where the two models name different classes, most frequent first."""
    pairs = Counter((r.production_label, r.shadow_label) for r in rows
                    if not same_class(r.production_label, r.shadow_label, good))
    return [{"production": p, "shadow": s, "count": n} for (p, s), n in pairs.most_common()]


def _decision_changes(rows: list[ShadowComparison]) -> list[dict[str, Any]]:
    """Decision pairs where one model passes the part and the other does not, most frequent first."""
    pairs = Counter((r.production_decision, r.shadow_decision) for r in rows
                    if (r.production_decision == Decision.PASS) != (r.shadow_decision == Decision.PASS))
    return [{"production": p, "shadow": s, "count": n} for (p, s), n in pairs.most_common()]


def _edge_cases(rows: list[ShadowComparison], good: Collection[str]) -> list[dict[str, Any]]:
    """The disagreements (different fates) where the candidate was most sure of itself."""
    disagreements = sorted((r for r in rows if not _agrees(r, good)), key=lambda r: -r.shadow_confidence)
    keys = ("prediction_id", "request_id", "image_sha256", "camera", "production_label", "production_decision",
            "production_confidence", "shadow_label", "shadow_decision", "shadow_confidence", "qc_label")
    return [{k: getattr(r, k) for k in keys} for r in disagreements[:EDGE_CASES]]


def _box_comparison(rows: list[ShadowComparison]) -> dict[str, Any] | None:
    """Box agreement over the frames where both models drew boxes (None when neither is a detector): per class
    matched boxes (same class, IoU >= the threshold), boxes only one model drew (a pair of different classes
    counts as one of each), F1; class confusions among matched boxes; the frames that disagree most."""
    judged = [r for r in rows if r.boxes is not None]
    if not judged:
        return None
    per_class: dict[str, BoxCounts] = defaultdict(BoxCounts)
    confusions: Counter[tuple[str, str]] = Counter()
    for row in judged:
        for production, shadow, iou in row.boxes["pairs"]:
            if production == shadow:
                per_class[production].matched += 1
                per_class[production].ious.append(iou)
            else:
                confusions[(production, shadow)] += 1
                per_class[production].only_a += 1
                per_class[shadow].only_b += 1
        for name in row.boxes["only_production"]:
            per_class[name].only_a += 1
        for name in row.boxes["only_shadow"]:
            per_class[name].only_b += 1
    total = BoxCounts()
    for counts in per_class.values():
        total.add(counts)
    agreeing = sum(1 for r in judged if box_disagreements(r.boxes) == 0)
    worst = sorted((r for r in judged if box_disagreements(r.boxes)), key=lambda r: -box_disagreements(r.boxes))
    return {"frames": len(judged), "frames_agreeing": agreeing, "frame_agreement": _share(agreeing, len(judged)),
            "iou_threshold": BOX_IOU, "overall": _box_counts(total),
            "per_class": {name: _box_counts(c) for name, c in sorted(per_class.items())},
            "confusions": [{"production": p, "shadow": s, "count": n} for (p, s), n in confusions.most_common()],
            "disagreeing_frames": [{"prediction_id": r.prediction_id, "image_sha256": r.image_sha256,
                                    "camera": r.camera, "disagreeing_boxes": box_disagreements(r.boxes),
                                    **r.boxes} for r in worst[:EDGE_CASES]]}


def _box_counts(counts: BoxCounts) -> dict[str, Any]:
    """Production is annotator ``a`` and the shadow ``b`` of :class:`regions.agreement.ClassAgreement`."""
    summary = counts.to_dict()
    return {"matched": summary["matched"], "only_production": summary["only_a"], "only_shadow": summary["only_b"],
            "mean_iou": summary["mean_iou"], "f1": summary["f1"]}


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
    if not report.qc_compared:  # allowed with min_qc=0: there is no QC agreement to quote
        return True, [f"{report.compared} inputs, none with QC; no new escapes"]
    summary = (f"{report.compared} inputs, {report.qc_compared} with QC; candidate agrees with QC "
               f"{report.shadow_qc_agreement:.3f} vs production {report.production_qc_agreement:.3f}; no new escapes")
    return True, [summary]


def _share(part: int, total: int) -> float | None:
    return None if total == 0 else round(part / total, 4)

