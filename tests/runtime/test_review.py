"""The runtime's three-way decisions follow the review band exactly as ``inspectloop.decisions`` defines it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inspectloop.decisions.conformal import PASS, REJECT, REVIEW, ReviewBand, decide, threshold_array
from inspectloop.errors import ModelFileError
from inspectloop.runtime import EdgeModel
from inspectloop.runtime.metadata import ModelMetadata

pytest.importorskip("torch")
from tests.test_export import CLASSES, export_tiny, synthetic_images, tiny_metadata  # noqa: E402

CODES = {PASS: "pass", REJECT: "reject", REVIEW: "review"}


def band(good_index: int | None, auto_above: float, reject_below: float | None) -> ReviewBand:
    return ReviewBand(good_index=good_index, num_classes=len(CLASSES), alpha=0.01, confidence=0.9,
                      auto_above=auto_above, reject_below=reject_below, false_reject_target=0.02,
                      calibration_defects=100, calibration_good=100, allowed_escapes=0,
                      min_calibration_defects=100, certifiable=True, reject_certified=True,
                      guarantee="test band", note="")


def review_field(b: ReviewBand) -> dict[str, object]:
    return {"auto_above": b.auto_above, "reject_below": b.reject_below, "alpha": b.alpha,
            "confidence": b.confidence, "certifiable": b.certifiable, "guarantee": b.guarantee}


@pytest.mark.parametrize("good, auto_above, reject_below", [
    ("good", 0.9, 0.2), ("good", 0.6, None), ("good", 0.999, 0.5), (None, 0.8, None),
])
def test_runtime_decisions_match_the_decisions_package(tmp_path: Path, good: str | None, auto_above: float,
                                                      reject_below: float | None) -> None:
    good_index = CLASSES.index(good) if good else None
    b = band(good_index, auto_above, reject_below)
    path = export_tiny(tmp_path / "m.onnx", good_class=good, review=review_field(b)).path
    model = EdgeModel(path)
    images, _ = synthetic_images(8, seed=5)
    predictions = [model.predict(image) for image in images]
    probs = np.array([[p.scores[c] for c in CLASSES] for p in predictions])
    expected = decide(probs, b)
    assert [p.decision for p in predictions] == [CODES[int(c)] for c in expected.codes]
    for p, code, cls in zip(predictions, expected.codes, expected.classes, strict=True):
        if code != REVIEW:
            assert p.label == CLASSES[int(cls)]


@pytest.mark.parametrize("good, flag", [("good", ("scratch",)), ("good", ("scratch", "dark")), (None, ("good", "dark"))])
def test_operating_point_thresholds_are_applied_as_the_decisions_package_applies_them(
        tmp_path: Path, good: str | None, flag: tuple[str, ...]) -> None:
    good_index = CLASSES.index(good) if good else None
    b = band(good_index, 0.6, 0.1 if good else None)
    images, _ = synthetic_images(10, seed=7)
    plain = EdgeModel(export_tiny(tmp_path / "plain.onnx", good_class=good, review=review_field(b)).path)
    probs = np.array([[plain.predict(image).scores[c] for c in CLASSES] for image in images])
    # thresholds at each flagged class's median probability, so some images cross them and some do not
    thresholds = {name: float(np.median(probs[:, CLASSES.index(name)])) for name in flag}
    model = EdgeModel(export_tiny(tmp_path / "m.onnx", good_class=good, review=review_field(b),
                                  thresholds=thresholds).path)
    predictions = [model.predict(image) for image in images]
    expected = decide(probs, b, threshold_array(CLASSES, thresholds))
    assert [p.decision for p in predictions] == [CODES[int(c)] for c in expected.codes]
    assert expected.codes.tolist() != decide(probs, b).codes.tolist()  # the thresholds changed something
    for p, code, cls in zip(predictions, expected.codes, expected.classes, strict=True):
        if code != REVIEW:
            assert p.label == CLASSES[int(cls)]


def test_a_flagged_defect_is_never_passed_and_the_bands_rejects_stay_as_they_are() -> None:
    b = band(0, 0.85, 0.05)
    probs = np.array([[0.90, 0.08, 0.02], [0.80, 0.02, 0.18], [0.97, 0.02, 0.01], [0.02, 0.90, 0.08]])
    d = decide(probs, b, threshold_array(CLASSES, {"scratch": 0.05, "dark": 0.15}))
    assert d.codes.tolist() == [REVIEW, REVIEW, PASS, REJECT] and d.classes.tolist() == [-1, -1, 0, 1]
    assert decide(probs, b).codes.tolist() == [PASS, REVIEW, PASS, REJECT]


def test_without_a_band_the_operating_points_decide(tmp_path: Path) -> None:
    images, _ = synthetic_images(10, seed=8)
    plain = EdgeModel(export_tiny(tmp_path / "plain.onnx").path)
    probs = np.array([[plain.predict(image).scores[c] for c in CLASSES] for image in images])
    threshold = float(np.median(probs[:, 1]))
    model = EdgeModel(export_tiny(tmp_path / "m.onnx", thresholds={"scratch": threshold}).path)
    for image, p in zip(images, probs, strict=True):
        got = model.predict(image)
        if p[1] >= threshold:
            assert (got.decision, got.label) == ("reject", "scratch")
        else:
            assert got.decision == ("pass" if p.argmax() == 0 else "reject")


def test_a_band_that_automates_nothing_sends_everything_to_review(tmp_path: Path) -> None:
    review = review_field(band(0, 1.0, None))
    model = EdgeModel(export_tiny(tmp_path / "m.onnx", review=review).path)
    images, _ = synthetic_images(3, seed=6)
    assert {model.predict(image).decision for image in images} == {"review"}


@pytest.mark.parametrize("review", [
    {"auto_above": 0.9},
    {"auto_above": 1.5, "reject_below": None, "alpha": 0.01, "confidence": 0.9, "certifiable": True,
     "guarantee": ""},
    {"auto_above": 0.9, "reject_below": "low", "alpha": 0.01, "confidence": 0.9, "certifiable": True,
     "guarantee": ""},
])
def test_malformed_review_band_is_refused(review: dict[str, object]) -> None:
    with pytest.raises(ModelFileError, match="review"):
        tiny_metadata(review=review)
    assert isinstance(tiny_metadata(), ModelMetadata)


def test_a_file_stays_valid_when_later_metadata_fields_are_added(tmp_path: Path) -> None:
    """The content hash covers the fields as written, so new optional fields do not void old files."""
    import json

    import onnx

    from inspectloop.runtime.metadata import METADATA_KEY, content_hash

    path = export_tiny(tmp_path / "m.onnx").path
    proto = onnx.load(str(path))
    entry = next(e for e in proto.metadata_props if e.key == METADATA_KEY)
    raw = json.loads(entry.value)
    del raw["review"]  # as written by an inspectloop that did not know the field yet
    raw["sha256"] = content_hash(raw)
    entry.value = json.dumps(raw)
    onnx.save(proto, str(tmp_path / "old.onnx"))
    assert EdgeModel(tmp_path / "old.onnx").metadata.review is None
