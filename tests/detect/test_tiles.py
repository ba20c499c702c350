"""An exported (untrained) detector at the edge: batched tiles equal one-at-a-time, the file's box rule decides,
and its INT8 copy."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from inspectloop.detect.model import build_detector
from inspectloop.export import export_detector, quantize_detector
from inspectloop.runtime import EdgeModel
from inspectloop.runtime.decision import Decision
from inspectloop.runtime.detection import detect_frame, tiles_of
from inspectloop.runtime.metadata import DETECTION, ModelMetadata
from tests.runtime.helpers import stamp

SIZE = 64
CLASSES = ("good", "scratch", "pit")
META = ModelMetadata(task=DETECTION, model_name="tiny-detector", model_version="1", class_names=CLASSES,
                     good_class="good", input_size=SIZE, colour_mode="L", thresholds={"scratch": 0.5, "pit": 0.5},
                     detection={"tile_overlap": 16, "min_score": 0.0})


def surface(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    pixels = rng.normal(120, 12, (height, width))
    pixels[40:46, 30:150] = 40  # a scratch across tile borders
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def detector(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiles") / "detector.onnx"
    model = build_detector(2, input_size=SIZE)  # the installed ImageNet trunk
    with torch.no_grad():  # an untrained head scores every location alike; spread its scores out
        for head in model.heads:
            head.cls[-1].weight.mul_(20.0)
            head.cls[-1].bias.fill_(-2.0)
    export_detector(model, META, path, [surface(SIZE, SIZE)])
    return path


def floor_of(model: EdgeModel, frame: Image.Image) -> float:
    """A score floor a few hundred of the untrained head's locations pass (its scores sit near the prior)."""
    scores = model.run_tiles([crop for _, crop in tiles_of(frame, SIZE, 16)])[1]
    return float(np.quantile(scores, 0.9))


def test_batched_tiles_give_the_outputs_and_boxes_of_one_at_a_time(detector: Path) -> None:
    model = EdgeModel(detector)
    frame = surface(200, 150)
    crops = [crop for _, crop in tiles_of(frame, SIZE, 16)]
    one = [np.concatenate(parts) for parts in zip(*(model.run_tiles([crop]) for crop in crops))]
    many = model.run_tiles(crops)
    np.testing.assert_allclose(many[0], one[0], atol=1e-3)  # box corners, input pixels
    np.testing.assert_allclose(many[1], one[1], atol=1e-5)  # scores
    settings = {**model.metadata.detection, "min_score": float(np.quantile(one[1], 0.99)), "max_boxes": 1000}
    found = [detect_frame(frame, SIZE, model.run_tiles, settings, batch=batch) for batch in (1, 8)]
    order = [np.lexsort((f[0][:, 1], f[0][:, 0], f[2])) for f in found]
    assert len(order[0]) >= 3
    np.testing.assert_array_equal(found[1][2][order[1]], found[0][2][order[0]])
    np.testing.assert_allclose(found[1][0][order[1]], found[0][0][order[0]], atol=1e-3)
    np.testing.assert_allclose(found[1][1][order[1]], found[0][1][order[0]], atol=1e-5)


def with_rule(tmp_path: Path, detector: Path, thresholds: dict[str, float], review_from: dict[str, float],
              floor: float) -> EdgeModel:
    meta = dataclasses.replace(META, thresholds=thresholds,
                               detection={"tile_overlap": 16, "min_score": floor, "review_from": review_from})
    path = tmp_path / "ruled.onnx"
    path.write_bytes(stamp(detector.read_bytes(), meta))
    return EdgeModel(path)


@pytest.mark.parametrize(("case", "expected"), [("reject", Decision.REJECT), ("review", Decision.REVIEW),
                                                ("pass", Decision.PASS)])
def test_the_files_per_class_box_rule_decides_the_frame(tmp_path: Path, detector: Path, case: str,
                                                       expected: Decision) -> None:
    frame = surface(200, 150)
    plain = EdgeModel(detector)
    floor = floor_of(plain, frame)
    _, scores, classes = detect_frame(frame, SIZE, plain.run_tiles, {**plain.metadata.detection, "min_score": floor})
    top = {name: float(scores[classes == k].max()) for k, name in enumerate(CLASSES[1:])}
    worst = max(top, key=top.get)  # type: ignore[arg-type]
    other = next(n for n in top if n != worst)
    thresholds = {worst: top[worst] - 1e-4 if case == "reject" else top[worst] + 1e-4, other: 1.0}
    review = {worst: floor if case == "review" else thresholds[worst]}
    model = with_rule(tmp_path, detector, thresholds, review, floor)
    prediction = model.predict(frame)
    assert prediction.decision == expected
    if case != "pass":
        assert prediction.label == worst
    shown = prediction.regions
    assert shown is not None and (len(shown) > 0) == (case != "pass")
    if case == "review":
        assert shown.scores.min() >= floor - 1e-6 and shown.scores.max() < thresholds[worst]


def test_a_review_floor_above_the_threshold_is_refused() -> None:
    from inspectloop.errors import ModelFileError
    with pytest.raises(ModelFileError, match="review_from must lie at or below each class's threshold; it does "
                                             "not for scratch"):
        dataclasses.replace(META, detection={"tile_overlap": 16, "review_from": {"scratch": 0.9}})


def test_an_int8_copy_is_checked_against_the_float_scores(tmp_path: Path, detector: Path) -> None:
    from inspectloop.errors import ExportError
    tiles = [crop for _, crop in tiles_of(surface(200, 150), SIZE, 16)]
    with pytest.raises(ExportError, match="class scores differ from the float model's"):
        quantize_detector(detector, tiles, tmp_path / "strict.onnx", max_score_diff=1e-4)
    assert not (tmp_path / "strict.onnx").exists()
    with pytest.raises(ValueError, match="min_agreement must be in \\[0, 1\\]"):
        quantize_detector(detector, tiles, tmp_path / "strict.onnx", max_score_diff=1.0, min_agreement=1.5)
    report = quantize_detector(detector, tiles, tmp_path / "int8.onnx", max_score_diff=0.3)  # a head scaled x20
    model = EdgeModel(tmp_path / "int8.onnx")
    assert model.metadata.model_version == "1+int8" and report.images_checked == len(tiles)
    assert report.max_abs_diff <= 0.3 and model.predict(surface(200, 150)).regions is not None
