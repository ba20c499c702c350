"""Agreement between two annotators' regions: boxes matched one to one by IoU, per class.

On each image and class, the pairing that maximises total IoU (Hungarian assignment,
``scipy.optimize.linear_sum_assignment``) is kept where a pair's IoU reaches the threshold; the
rest are regions only one annotator drew. Disagreement is data: it shows which classes are drawn
consistently and which need a sharper written criterion.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np

from inspectloop.domain import Region
from inspectloop.regions.geometry import box_iou

IOU_THRESHOLD = 0.5


@dataclass
class ClassAgreement:
    """One class's counts: boxes both drew (matched), boxes only ``a`` or only ``b`` drew, and matched IoUs."""

    matched: int = 0
    only_a: int = 0
    only_b: int = 0
    ious: list[float] = field(default_factory=list)

    @property
    def mean_iou(self) -> float | None:
        return float(np.mean(self.ious)) if self.ious else None

    @property
    def f1(self) -> float | None:
        """2 x matched / (all boxes of both): 1 when they drew the same boxes, 0 when none match."""
        total = 2 * self.matched + self.only_a + self.only_b
        return 2 * self.matched / total if total else None

    def add(self, other: ClassAgreement) -> None:
        self.matched += other.matched
        self.only_a += other.only_a
        self.only_b += other.only_b
        self.ious += other.ious

    def to_dict(self) -> dict[str, object]:
        mean, f1 = self.mean_iou, self.f1
        return {"matched": self.matched, "only_a": self.only_a, "only_b": self.only_b,
                "mean_iou": None if mean is None else round(mean, 4), "f1": None if f1 is None else round(f1, 4)}


@dataclass
class PairAgreement:
    """Two annotators on the images both annotated."""

    a: str
    b: str
    images: int
    per_class: dict[str, ClassAgreement]
    threshold: float = IOU_THRESHOLD

    @property
    def overall(self) -> ClassAgreement:
        total = ClassAgreement()
        for counts in self.per_class.values():
            total.add(counts)
        return total

    def to_dict(self) -> dict[str, object]:
        return {"a": self.a, "b": self.b, "images": self.images, "iou_threshold": self.threshold,
                "overall": self.overall.to_dict(),
                "per_class": {name: c.to_dict() for name, c in sorted(self.per_class.items())}}


def match_boxes(a: np.ndarray, b: np.ndarray, threshold: float = IOU_THRESHOLD) -> list[tuple[int, int, float]]:
    """One-to-one pairs ``(i, j, iou)`` of boxes ``a`` (N, 4) and ``b`` (M, 4) maximising total IoU, IoU >= threshold."""
    if len(a) == 0 or len(b) == 0:
        return []
    from scipy.optimize import linear_sum_assignment

    iou = box_iou(a, b)
    rows, cols = linear_sum_assignment(iou, maximize=True)
    return [(int(i), int(j), float(iou[i, j])) for i, j in zip(rows, cols, strict=True) if iou[i, j] >= threshold]


def compare(a: Sequence[Region], b: Sequence[Region], threshold: float = IOU_THRESHOLD) -> dict[str, ClassAgreement]:
    """Per class, how annotator ``a``'s regions and annotator ``b``'s regions on one image agree."""
    result: dict[str, ClassAgreement] = {}
    for name in sorted({r.class_name for r in (*a, *b)}):
        boxes_a = np.array([r.box.as_tuple() for r in a if r.class_name == name]).reshape(-1, 4)
        boxes_b = np.array([r.box.as_tuple() for r in b if r.class_name == name]).reshape(-1, 4)
        pairs = match_boxes(boxes_a, boxes_b, threshold)
        result[name] = ClassAgreement(matched=len(pairs), only_a=len(boxes_a) - len(pairs),
                                      only_b=len(boxes_b) - len(pairs), ious=[iou for _, _, iou in pairs])
    return result


def agreement(regions: Iterable[Region], annotators: Sequence[str] | None = None,
              threshold: float = IOU_THRESHOLD) -> list[PairAgreement]:
    """Agreement of every pair of ``annotators`` (all who drew regions, when None).

    A pair is compared on the images where both drew at least one region: an image one of them
    never looked at is not a disagreement.
    """
    by_image: dict[str, dict[str, list[Region]]] = defaultdict(lambda: defaultdict(list))
    for region in regions:
        by_image[region.sha256][region.annotator].append(region)
    names = sorted(annotators) if annotators else sorted({who for drawn in by_image.values() for who in drawn})
    pairs = []
    for a, b in combinations(names, 2):
        per_class: dict[str, ClassAgreement] = defaultdict(ClassAgreement)
        images = 0
        for drawn in by_image.values():
            if a in drawn and b in drawn:
                images += 1
                for name, counts in compare(drawn[a], drawn[b], threshold).items():
                    per_class[name].add(counts)
        pairs.append(PairAgreement(a, b, images, dict(per_class), threshold))
    return pairs
