"""Detection metrics: COCO mAP (pycocotools), per-class box precision and recall at the operating point,
and the image-level rates a plant decides by (defect recall, false-reject rate)."""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from inspectloop.errors import require
from inspectloop.runtime.detection import overlap


@dataclass(frozen=True, eq=False)
class Boxes:
    """One image's boxes (K, 4) x0, y0, x1, y1 in its pixels, class indices (K,) and, for predictions, scores (K,)."""

    boxes: np.ndarray
    labels: np.ndarray
    scores: np.ndarray | None = None


def coco_map(truth: Sequence[Boxes], predicted: Sequence[Boxes], class_names: Sequence[str]) -> dict[str, Any]:
    """COCO mAP at IoU 0.5 and averaged over 0.5:0.95, overall and per class (classes without a true box
    in ``truth`` are left out of the mean, as COCO does), in percent."""
    COCO = require("pycocotools.coco", "regions", package="pycocotools").COCO  # noqa: N806 (the library's class)
    COCOeval = require("pycocotools.cocoeval", "regions", package="pycocotools").COCOeval  # noqa: N806
    images, annotations, detections = [], [], []
    for i, (gt, dt) in enumerate(zip(truth, predicted)):
        images.append({"id": i, "width": 1, "height": 1})
        for box, label in zip(gt.boxes.tolist(), gt.labels.tolist()):
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": int(label),
                                "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]], "iscrowd": 0,
                                "area": (box[2] - box[0]) * (box[3] - box[1])})
        for box, label, score in zip(dt.boxes.tolist(), dt.labels.tolist(), (dt.scores if dt.scores is not None
                                                                              else np.ones(len(dt.boxes))).tolist()):
            detections.append({"image_id": i, "category_id": int(label), "score": float(score),
                               "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]]})
    categories = [{"id": i, "name": name} for i, name in enumerate(class_names)]
    per_class = {name: {"ap50": None, "ap50_95": None, "boxes": 0} for name in class_names}
    for annotation in annotations:
        per_class[class_names[annotation["category_id"]]]["boxes"] += 1
    if not annotations:
        return {"map50": None, "map50_95": None, "per_class": per_class}
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gt = COCO()
        gt.dataset = {"images": images, "annotations": annotations, "categories": categories}
        gt.createIndex()
        dt = gt.loadRes(detections) if detections else COCO()
        if not detections:
            dt.dataset = {"images": images, "annotations": [], "categories": categories}
            dt.createIndex()
        evaluation = COCOeval(gt, dt, "bbox")
        evaluation.params.maxDets = [1, 10, 100]
        evaluation.evaluate()
        evaluation.accumulate()
    precision = evaluation.eval["precision"][:, :, :, 0, -1]  # (IoU thresholds, recall points, classes), all areas
    for k, name in enumerate(class_names):
        if per_class[name]["boxes"]:
            p = np.where(precision[:, :, k] < 0, 0.0, precision[:, :, k])
            per_class[name]["ap50"] = round(float(p[0].mean()) * 100, 2)
            per_class[name]["ap50_95"] = round(float(p.mean()) * 100, 2)
    present = [v for v in per_class.values() if v["boxes"]]
    return {"map50": round(float(np.mean([v["ap50"] for v in present])), 2),
            "map50_95": round(float(np.mean([v["ap50_95"] for v in present])), 2), "per_class": per_class}


def shown(prediction: Boxes, thresholds: np.ndarray) -> Boxes:
    """The boxes that reach their class's box confidence threshold (what the runtime reports)."""
    keep = prediction.scores >= thresholds[prediction.labels] if len(prediction.labels) else np.zeros(0, bool)
    return Boxes(prediction.boxes[keep], prediction.labels[keep], prediction.scores[keep])


def box_rates(truth: Sequence[Boxes], predicted: Sequence[Boxes], class_names: Sequence[str],
              thresholds: np.ndarray, iou: float = 0.5) -> dict[str, dict[str, Any]]:
    """Per class, box precision and recall at the operating point: shown boxes matched greedily (highest
    score first) to unmatched true boxes of their class at ``iou``."""
    hits = np.zeros(len(class_names)), np.zeros(len(class_names)), np.zeros(len(class_names))  # tp, shown, true
    for gt, dt in zip(truth, predicted):
        dt = shown(dt, thresholds)
        np.add.at(hits[2], gt.labels, 1)
        np.add.at(hits[1], dt.labels, 1)
        used = np.zeros(len(gt.labels), dtype=bool)
        for j in np.argsort(-dt.scores, kind="stable"):
            candidates = np.flatnonzero((gt.labels == dt.labels[j]) & ~used)
            if candidates.size:
                ious = overlap(dt.boxes[j], gt.boxes[candidates], "iou")
                if ious.max() >= iou:
                    used[candidates[ious.argmax()]] = True
                    hits[0][dt.labels[j]] += 1
    out = {}
    for k, name in enumerate(class_names):
        tp, count, support = hits[0][k], hits[1][k], hits[2][k]
        precision = tp / count if count else None
        recall = tp / support if support else None
        f1 = (2 * precision * recall / (precision + recall) if precision and recall else 0.0) \
            if precision is not None and recall is not None else None
        out[name] = {"precision": _round(precision), "recall": _round(recall), "f1": _round(f1),
                     "support": int(support), "threshold": round(float(thresholds[k]), 4)}
    return out


def image_rates(truth: Sequence[Boxes], predicted: Sequence[Boxes], thresholds: np.ndarray) -> dict[str, Any]:
    """Image level: defect recall (frames with a true box that show a box) and false-reject rate (frames
    without a true box that show one); None where the set has no such frames."""
    flagged = np.array([len(shown(dt, thresholds).labels) > 0 for dt in predicted], dtype=bool)
    defective = np.array([len(gt.labels) > 0 for gt in truth], dtype=bool)
    return {"defect_recall": _round(flagged[defective].mean()) if defective.any() else None,
            "false_reject_rate": _round(flagged[~defective].mean()) if (~defective).any() else None,
            "defective_images": int(defective.sum()), "good_images": int((~defective).sum())}


def review_rates(truth: Sequence[Boxes], predicted: Sequence[Boxes], thresholds: np.ndarray,
                 review_from: np.ndarray) -> dict[str, Any]:
    """With a review band: the share of frames sent to review (a box in its class's band, none above it),
    and defect recall counting a review as caught (a person looks at the frame)."""
    rejected = np.array([len(shown(dt, thresholds).labels) > 0 for dt in predicted], dtype=bool)
    reviewed = ~rejected & np.array([len(shown(dt, review_from).labels) > 0 for dt in predicted], dtype=bool)
    defective = np.array([len(gt.labels) > 0 for gt in truth], dtype=bool)
    return {"review_rate": _round(reviewed.mean()) if len(truth) else None,
            "defect_recall_with_review": _round((rejected | reviewed)[defective].mean()) if defective.any() else None,
            "false_review_rate": _round(reviewed[~defective].mean()) if (~defective).any() else None}


def summary(truth: Sequence[Boxes], predicted: Sequence[Boxes], class_names: Sequence[str],
            thresholds: Mapping[str, float], review_from: Mapping[str, float] | None = None) -> dict[str, Any]:
    """Every detection metric of one split, JSON-ready; with ``review_from`` (per class), the review band's rates."""
    limits = np.array([thresholds[name] for name in class_names], dtype=np.float64)
    per_class = box_rates(truth, predicted, class_names, limits)
    coco = coco_map(truth, predicted, class_names)
    for name in class_names:
        per_class[name].update(coco["per_class"][name])
    recalls = [v["recall"] for v in per_class.values() if v["recall"] is not None]
    precisions = [v["precision"] for v in per_class.values() if v["precision"] is not None]
    return {"map50": coco["map50"], "map50_95": coco["map50_95"], "per_class": per_class,
            "macro_recall": _round(np.mean(recalls)) if recalls else None,
            "macro_precision": _round(np.mean(precisions)) if precisions else None,
            "image": image_rates(truth, predicted, limits), "images": len(truth), "worst_slice": None,
            **({"review": review_rates(truth, predicted, limits, np.array(
                [min(review_from.get(n, thresholds[n]), thresholds[n]) for n in class_names]))} if review_from else {})}


def _round(value: Any) -> float | None:
    return None if value is None else round(float(value), 4)
