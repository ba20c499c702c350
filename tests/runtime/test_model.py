"""The edge runtime: model file checks, predictions from every kind of source, the CLI."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inspectloop.errors import ImageError, ModelFileError
from inspectloop.runtime import Decision, EdgeModel, ModelMetadata, Preprocess, iter_predictions
from inspectloop.runtime.metadata import METADATA_KEY, TASKS, content_hash, stored_metadata
from tests.runtime.fixtures.make_fixtures import HEAD_WEIGHT
from tests.runtime.helpers import (
    CLASSES,
    INPUT_SIZE,
    TINY,
    TINY_FEATURES,
    restamped,
    synthetic_image,
    tiny_metadata,
    with_metadata_value,
    without_metadata,
)

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture(scope="module")
def model_path() -> Path:
    return TINY


@pytest.fixture(scope="module")
def model(model_path: Path) -> EdgeModel:
    return EdgeModel(model_path)


@pytest.fixture(scope="module")
def image_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("images")
    files = {"good.jpg": synthetic_image("good", 1), "scratch.png": synthetic_image("scratch", 2),
             "dark_rgb.jpg": synthetic_image("dark", 3, mode="RGB")}
    for name, image in files.items():
        image.save(folder / name, quality=92)
    (folder / "broken.jpg").write_bytes((folder / "good.jpg").read_bytes()[:300])
    return {name: folder / name for name in [*files, "broken.jpg"]}


def _edit_metadata(path: Path, target: Path, edit: object) -> Path:
    """A copy of ``path`` whose stored metadata JSON was edited in place, without re-stamping its hashes."""
    raw = stored_metadata(path.read_bytes())
    edit(raw)  # type: ignore[operator]
    target.write_bytes(with_metadata_value(path.read_bytes(), json.dumps(raw)))
    return target


# --- metadata ----------------------------------------------------------------------------------------

def test_metadata_json_round_trip() -> None:
    meta = tiny_metadata(thresholds={"scratch": 0.3}, temperature=1.7, jpeg_draft=True)
    assert ModelMetadata.from_json(meta.to_json()) == meta


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d.update(format_version=2), "format version 2 is not supported"),
    (lambda d: d.pop("class_names"), "missing fields: class_names"),
    (lambda d: d.update(good_class="ok"), "good_class 'ok' is not one of the class names"),
    (lambda d: d.update(colour_order="bgr"), "unknown fields: colour_order"),
    (lambda d: d.update(input_size="64"), "input_size must be an integer"),
    (lambda d: d.update(class_names=["a", "a"]), "duplicates"),
    (lambda d: d.update(thresholds={"dent": 0.5}), "threshold for unknown class 'dent'"),
    (lambda d: d.update(std=[0.2, 0.0, 0.2]), "std values must be positive"),
    (lambda d: d.update(input_height=8), "input_height must be an integer from 16 to 4096"),
    (lambda d: d.update(task="detection", input_height=576), "a detection model's input is square"),
])
def test_metadata_refuses_bad_json(edit: object, message: str) -> None:
    raw = json.loads(tiny_metadata().to_json())
    edit(raw)  # type: ignore[operator]
    with pytest.raises(ModelFileError, match=message) as caught:
        ModelMetadata.from_json(json.dumps(raw))
    assert caught.value.hint


def test_a_square_input_is_written_as_before_and_a_tall_one_round_trips() -> None:
    assert "input_height" not in json.loads(tiny_metadata().to_json())  # old files hash unchanged
    tall = tiny_metadata(input_height=576)
    assert ModelMetadata.from_json(tall.to_json()) == tall
    assert tall.preprocess().shape == (576, tall.input_size)


def test_metadata_refuses_text_that_is_not_json() -> None:
    with pytest.raises(ModelFileError, match="not valid JSON"):
        ModelMetadata.from_json("{class_names: good}")


@pytest.mark.parametrize("task", TASKS)
def test_metadata_names_its_task(task: str) -> None:
    assert ModelMetadata.from_json(tiny_metadata(task=task).to_json()).task == task


def test_metadata_written_before_the_task_field_is_classification() -> None:
    raw = json.loads(tiny_metadata().to_json())
    del raw["task"]
    assert ModelMetadata.from_json(json.dumps(raw)).task == "classification"


def test_metadata_refuses_an_unknown_task() -> None:
    with pytest.raises(ModelFileError, match=r"task 'segmentation' is not supported \(supported: classification, "
                                             r"anomaly, detection\)"):
        tiny_metadata(task="segmentation")


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


# --- the model file ----------------------------------------------------------------------------------

def test_loads_metadata_and_preprocessing(model: EdgeModel) -> None:
    assert model.metadata.class_names == CLASSES
    assert model.preprocess == Preprocess(INPUT_SIZE, model.metadata.mean, model.metadata.std)


def test_refuses_a_changed_weight_byte(model_path: Path, tmp_path: Path) -> None:
    data = bytearray(model_path.read_bytes())
    weights = HEAD_WEIGHT.tobytes()
    at = bytes(data).index(weights) + len(weights) // 2
    data[at] ^= 0x01
    tampered = tmp_path / "tampered.onnx"
    tampered.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="model file was modified after export"):
        EdgeModel(tampered)
    EdgeModel(tampered, verify_hash=False)  # still a loadable graph: only the hash catches it


def test_refuses_a_changed_hash_in_the_metadata(model_path: Path, tmp_path: Path) -> None:
    def edit(raw: dict[str, object]) -> None:
        raw["weights_sha256"] = "0" * 64

    with pytest.raises(ModelFileError, match="model file was modified after export"):
        EdgeModel(_edit_metadata(model_path, tmp_path / "t.onnx", edit))


@pytest.mark.parametrize(("content", "message"), [
    (None, "model file not found"),
    (b"", "no 'inspectloop' metadata"),
    (b"\xff\xff\xff\xff not protobuf", "not an ONNX model file"),
])
def test_refuses_files_that_are_not_models(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "m.onnx"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelFileError, match=message):
        EdgeModel(path)


def test_refuses_plain_onnx_without_inspectloop_metadata(model_path: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain.onnx"
    plain.write_bytes(without_metadata(model_path.read_bytes()))
    with pytest.raises(ModelFileError, match="not an inspectloop model") as caught:
        EdgeModel(plain)
    assert "export the model with inspectloop" in (caught.value.hint or "")


@pytest.mark.parametrize(("changes", "message"), [
    ({"input_size": 96}, r"expected \(N, 3, 96, 96\)"),
    ({"class_names": ("good", "scratch", "dark", "dent")}, "the metadata names 4 classes"),
])
def test_refuses_metadata_that_does_not_fit_the_graph(tmp_path: Path, changes: dict[str, object],
                                                      message: str) -> None:
    with pytest.raises(ModelFileError, match=message):
        EdgeModel(restamped(tmp_path, **changes))  # a validly stamped file: only the graph check catches it


@pytest.mark.parametrize("task, message", [  # a classifier's graph, relabelled
    ("anomaly", "an anomaly model must give 'logits' of shape \\(None, 2\\)"),
    ("detection", "a detection model must give 'boxes' \\(N, A, 4\\) and 'scores'"),
])
def test_refuses_a_model_of_another_task(tmp_path: Path, task: str, message: str) -> None:
    with pytest.raises(ModelFileError, match=message):
        EdgeModel(restamped(tmp_path, task=task))


def test_refuses_metadata_edited_after_export(model_path: Path, tmp_path: Path) -> None:
    def edit(raw: dict[str, object]) -> None:
        raw["class_names"] = list(reversed(raw["class_names"]))  # type: ignore[call-overload]

    assert METADATA_KEY == "inspectloop"  # same graph, silently swapped meaning:
    with pytest.raises(ModelFileError, match="metadata was modified after export"):
        EdgeModel(_edit_metadata(model_path, tmp_path / "t.onnx", edit))


def test_a_file_stays_valid_when_later_metadata_fields_are_added(model_path: Path, tmp_path: Path) -> None:
    """The content hash covers the fields as written, so new optional fields do not void old files."""
    def edit(raw: dict[str, object]) -> None:
        del raw["review"], raw["task"]  # as written by an inspectloop that did not know the fields yet
        raw["sha256"] = content_hash(raw)

    old = EdgeModel(_edit_metadata(model_path, tmp_path / "old.onnx", edit))
    assert old.metadata.review is None and old.metadata.task == "classification"


def test_committed_fixtures_carry_real_metadata_and_hashes() -> None:
    for path in (TINY, TINY_FEATURES):
        metadata = EdgeModel(path).metadata  # verify_hash: the weights and metadata hashes match
        assert metadata == dataclasses.replace(tiny_metadata(), weights_sha256=metadata.weights_sha256,
                                               sha256=metadata.sha256)
        assert metadata.sha256 == content_hash(metadata)


# --- predictions -------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["jpeg path", "png path", "bytes", "pil", "rgb jpeg"])
def test_predicts_from_every_source(model: EdgeModel, image_files: dict[str, Path], kind: str) -> None:
    source: object = {
        "jpeg path": image_files["good.jpg"], "png path": str(image_files["scratch.png"]),
        "bytes": image_files["good.jpg"].read_bytes(), "pil": synthetic_image("scratch", 9),
        "rgb jpeg": image_files["dark_rgb.jpg"],
    }[kind]
    prediction = model.predict(source)  # type: ignore[arg-type]
    assert set(prediction.scores) == set(CLASSES)
    assert sum(prediction.scores.values()) == pytest.approx(1.0, abs=1e-6)
    assert prediction.confidence == max(prediction.scores.values()) == prediction.scores[prediction.label]
    assert prediction.decision == ("pass" if prediction.label == "good" else "reject")
    assert isinstance(prediction.decision, Decision) and prediction.regions is None
    assert set(prediction.latency_ms) == {"decode", "preprocess", "infer", "total"}
    assert json.loads(json.dumps(prediction.to_dict())) == prediction.to_dict()


def test_predicts_the_right_class_and_decision(model: EdgeModel, image_files: dict[str, Path]) -> None:
    assert (model.predict(image_files["good.jpg"]).label, model.predict(image_files["good.jpg"]).decision) \
        == ("good", "pass")
    assert (model.predict(image_files["scratch.png"]).label, model.predict(image_files["scratch.png"]).decision) \
        == ("scratch", "reject")
    assert model.predict(image_files["dark_rgb.jpg"]).label == "dark"


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "I;16"])
def test_fast_path_matches_the_reference_preprocessing(model: EdgeModel, mode: str) -> None:
    grey = synthetic_image("scratch", 4, size=70)
    working = grey.convert("RGB") if mode in ("RGB", "RGBA") else grey  # what load_image makes of the source
    source = {"L": grey, "RGB": working, "RGBA": working.convert("RGBA"),
              "I;16": Image.fromarray(np.asarray(grey).astype(np.uint16) * 257)}[mode]
    reference = model.predict_array(model.preprocess(working))[0]
    assert list(model.predict(source).scores.values()) == reference.tolist()


def test_predict_array_applies_the_temperature(tmp_path: Path) -> None:
    hot = EdgeModel(restamped(tmp_path, temperature=2.0))
    batch = np.concatenate([hot.preprocess(synthetic_image(label, 5)) for label in CLASSES])
    logits = hot.runner.run(["logits"], {"input": batch})[0].astype(np.float64) / 2.0
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(hot.predict_array(batch), expected, rtol=1e-6)


def test_predict_array_names_the_expected_shape(model: EdgeModel) -> None:
    with pytest.raises(ValueError, match=r"expected a preprocessed batch of shape \(N, 3, 64, 64\), got \(3, 64, 64\)"):
        model.predict_array(np.zeros((3, 64, 64), np.float32))


def test_without_a_good_class_every_prediction_is_a_reject(tmp_path: Path) -> None:
    model = EdgeModel(restamped(tmp_path, good_class=None))
    predictions = [model.predict(synthetic_image(label, 6)) for label in CLASSES]
    assert [p.label for p in predictions] == list(CLASSES)
    assert {p.decision for p in predictions} == {"reject"}


@pytest.mark.parametrize("name", ["broken.jpg", "missing.png"])
def test_unusable_image_raises_image_error(model: EdgeModel, image_files: dict[str, Path], name: str) -> None:
    path = image_files.get(name, image_files["broken.jpg"].parent / name)
    with pytest.raises(ImageError, match=name):
        model.predict(path)
    with pytest.raises(ImageError, match="not an image file"):
        model.predict(b"not an image", name="upload")


def test_predict_is_safe_from_several_threads(model: EdgeModel) -> None:
    images = [synthetic_image(CLASSES[i % 3], 20 + i) for i in range(24)]
    expected = [model.predict(image).scores for image in images]
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(lambda image: model.predict(image).scores, images)) == expected


def test_features_come_from_the_same_forward_pass(image_files: dict[str, Path]) -> None:
    model = EdgeModel(TINY_FEATURES)
    assert model.has_features and not EdgeModel(TINY).has_features
    image = synthetic_image("dark", 11)
    prediction, features = model.predict_with_features(image)
    assert prediction == dataclasses.replace(model.predict(image), latency_ms=prediction.latency_ms)
    assert features is not None and features.shape == (2,) and features[0] > 0.1  # the share of dark pixels
    assert EdgeModel(TINY).predict_with_features(image)[1] is None


def test_iter_predictions_checks_the_model_before_iterating(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError):
        iter_predictions(tmp_path / "missing.onnx", [])


# --- command line ------------------------------------------------------------------------------------

def _cli(*args: object) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "inspectloop.runtime", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=60, check=False)


def test_cli_prints_a_json_line_per_image_and_reports_bad_ones(model_path: Path,
                                                               image_files: dict[str, Path]) -> None:
    result = _cli(model_path, image_files["good.jpg"], image_files["broken.jpg"], image_files["scratch.png"],
                  "--threads", 2)
    assert result.returncode == 1, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["image"] for line in lines] == [str(image_files[n]) for n in ("good.jpg", "broken.jpg", "scratch.png")]
    assert (lines[0]["label"], lines[0]["decision"]) == ("good", "pass")
    assert "error" in lines[1] and "broken.jpg" in lines[1]["error"]
    assert lines[2]["label"] == "scratch"


def test_cli_exits_0_when_every_image_is_classified(model_path: Path, image_files: dict[str, Path]) -> None:
    result = _cli(model_path, image_files["good.jpg"])
    assert result.returncode == 0 and len(result.stdout.splitlines()) == 1


def test_cli_reports_a_bad_model_file_in_one_line(tmp_path: Path, image_files: dict[str, Path]) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07" + bytes(range(200, 256)))
    result = _cli(bad, image_files["good.jpg"])
    assert result.returncode == 2
    assert result.stdout == "" and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("error: ")
