"""Probably wrong boxes of a dataset version (workspace-bound): its annotated boxes against a detector's
predictions (a detector model file run on every image) or another annotator's boxes, and the images with
findings sent to the settle queue (reason ``boxes``), most confident first.

Training detectors fold by fold for out-of-fold predictions costs far more than a CPU gives; a detector
trained on another version, a production model, or a second annotator is what a plant has at hand.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from inspectloop.datasets import load_version
from inspectloop.domain import Region
from inspectloop.domain.labelling import BOXES, QueuedSuspect
from inspectloop.errors import LabelError
from inspectloop.labelquality.boxcheck import (
    DEFAULT_MIN_SCORE, MATCH_IOU, NEAR_IOU, BoxFinding, Boxes, check_boxes, check_thresholds,
)
from inspectloop.labels import resolve_labels
from inspectloop.workspace import Workspace

Predictor = Callable[[str], Boxes]  # image sha256 -> its predicted boxes
Progress = Callable[[int, int], None]
_KEPT_PER_IMAGE = 10  # findings kept in a queued image's details (the settle page shows them)


@dataclass(frozen=True)
class ImageFindings:
    """An image's probably wrong boxes, most confident first; its ``confidence`` is the first one's."""

    sha256: str
    split: str
    label: str
    findings: list[BoxFinding]

    @property
    def confidence(self) -> float:
        return self.findings[0].confidence

    def counts(self) -> dict[str, int]:
        return dict(Counter(f.kind for f in self.findings))

    def to_dict(self) -> dict[str, object]:
        return {"sha256": self.sha256, "split": self.split, "label": self.label,
                "confidence": round(self.confidence, 4), "counts": self.counts(),
                "findings": [f.to_dict() for f in self.findings]}


@dataclass(frozen=True)
class BoxReport:
    """What the check found in a version: images with findings (most confident first) and the totals."""

    version: str
    predicted_by: str
    images: int
    annotated_boxes: int
    predicted_boxes: int
    flagged: list[ImageFindings] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for image in self.flagged:
            total.update(image.counts())
        return dict(total)


def find_box_issues(workspace: Workspace, version: str = "latest", *, model: Path | None = None,
                    annotator: str | None = None, min_score: float = DEFAULT_MIN_SCORE, near_iou: float = NEAR_IOU,
                    match_iou: float = MATCH_IOU, predict: Predictor | None = None,
                    progress: Progress | None = None) -> BoxReport:
    """Compare the boxes a version holds with a detector's (``model``) or another ``annotator``'s, image by image.

    With ``annotator``, that person's boxes are the prediction (each counts as sure) and the rest are the
    annotation; images neither drew on are left out. With ``model``, every image of the version is predicted.
    """
    check_thresholds(min_score, near_iou, match_iou)
    dataset = load_version(workspace, version)
    regions = workspace.db.regions.in_version(dataset.name)
    if not regions:
        raise LabelError(f"dataset version {dataset.name} holds no boxes to check",
                         "import boxes (inspectloop regions import ...) and make a new dataset version")
    source, predict, images = _source(workspace, dataset.name, regions, model, annotator, predict)
    annotated = _annotated(regions, exclude=annotator)
    items = {i.sha256: i for i in dataset.items}
    digests = [d for d in (images if images is not None else items) if d in items]
    flagged, predicted_total = [], 0
    for n, digest in enumerate(digests, start=1):
        predicted = predict(digest)
        predicted_total += len(predicted)
        findings = check_boxes(annotated.get(digest, _NONE), predicted, min_score=min_score, near_iou=near_iou,
                               match_iou=match_iou)
        if findings:
            flagged.append(ImageFindings(digest, items[digest].split, items[digest].label, findings))
        if progress and (n % 50 == 0 or n == len(digests)):
            progress(n, len(digests))
    flagged.sort(key=lambda f: (-f.confidence, f.sha256))
    return BoxReport(dataset.name, source, len(digests), sum(len(annotated.get(d, _NONE)) for d in digests),
                     predicted_total, flagged)


def queue_box_issues(workspace: Workspace, report: BoxReport, images: Sequence[ImageFindings]) -> int:
    """Send images with findings to the settle queue (reason ``boxes``; an image already waiting is not queued
    twice); return how many were queued. Its score, 1 - its most confident finding, orders the queue."""
    current = resolve_labels(workspace.db.labels.annotations(), workspace.config.labelling).labels
    return workspace.db.settle.enqueue_suspects([
        QueuedSuspect(id=0, sha256=i.sha256, given=current.get(i.sha256, i.label), suggestion=None,
                      score=round(1.0 - i.confidence, 4), created_at="", reason=BOXES,
                      details={"predicted_by": report.predicted_by, "version": report.version, "split": i.split,
                               "counts": i.counts(), "findings": [f.to_dict() for f in i.findings[:_KEPT_PER_IMAGE]]})
        for i in images])


_NONE = Boxes.of([], [])


def _annotated(regions: Sequence[Region], *, exclude: str | None) -> dict[str, Boxes]:
    by_image: dict[str, list[Region]] = defaultdict(list)
    for region in regions:
        if region.annotator != exclude:
            by_image[region.sha256].append(region)
    return {digest: Boxes.of([r.box.as_tuple() for r in drawn], [r.class_name for r in drawn])
            for digest, drawn in by_image.items()}


def _source(workspace: Workspace, version: str, regions: Sequence[Region], model: Path | None, annotator: str | None,
            predict: Predictor | None) -> tuple[str, Predictor, list[str] | None]:
    """Who predicts, how, and on which images (None: every image of the version)."""
    if predict is not None:
        return str(model or annotator or "given predictions"), predict, None
    if (model is None) == (annotator is None):
        raise LabelError("name one source of predicted boxes", "pass --model DETECTOR_FILE or --annotator NAME")
    if annotator is not None:
        theirs = _annotated([r for r in regions if r.annotator == annotator], exclude=None)
        if not theirs:
            drew = sorted({r.annotator for r in regions})
            raise LabelError(f"{annotator!r} drew no boxes in dataset version {version} "
                             f"(who did: {', '.join(drew) or 'nobody'})", "name one of them, or pass --model")
        mine = {r.sha256 for r in regions if r.annotator != annotator}
        return annotator, lambda d: theirs.get(d, _NONE), sorted(set(theirs) | mine)
    return str(model), model_predictor(workspace, model), None


def model_predictor(workspace: Workspace, path: Path) -> Predictor:
    """A detector model file's boxes on stored images, with its class names (LabelError for another task)."""
    from inspectloop.runtime import EdgeModel

    detector = EdgeModel(path)
    if detector.metadata.task != "detection":
        raise LabelError(f"{path} is a {detector.metadata.task} model; boxes come from a detector",
                         "train one with: inspectloop train --task detect")
    names = detector.metadata.class_names

    def predict(digest: str) -> Boxes:
        regions = detector.predict(workspace.blobs.get(digest), name=digest[:12]).regions
        if regions is None or regions.boxes is None or not len(regions):
            return _NONE
        return Boxes.of(regions.boxes.tolist(), [names[int(c)] for c in regions.class_ids], regions.scores.tolist())

    return predict
