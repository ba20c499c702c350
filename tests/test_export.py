"""Export to an inspectloop model file: parity with PyTorch, atomic writes, INT8, the embedded hash.

The helpers at the top (a tiny trained CNN, exported) are reused by tests that need a model trained with
torch; the runtime tests use the torch-free files and images of ``tests.runtime.helpers``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import sys
from collections.abc import Sequence
from typing import Any
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from inspectloop import export as export_module  # noqa: E402
from inspectloop.errors import ExportError, MissingExtraError  # noqa: E402
from inspectloop.export import ExportReport, export_classifier, quantize_int8  # noqa: E402
from inspectloop.runtime import EdgeModel  # noqa: E402
from inspectloop.runtime.metadata import (  # noqa: E402
    METADATA_KEY,
    content_hash,
    model_hash,
    read_metadata_props,
    stored_metadata,
)
from tests.runtime.helpers import (  # noqa: E402  (re-exported: other tests import them from here)
    CLASSES,
    INPUT_SIZE,
    synthetic_image,
    synthetic_images,
    tiny_metadata,
)


class TinyCNN(torch.nn.Module):
    """conv -> relu -> global average pool -> linear: 3 logits from a (N, 3, 64, 64) input."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.head = torch.nn.Linear(8, len(CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def trained_tiny_cnn(seed: int = 0) -> TinyCNN:
    """The tiny CNN, fitted for a moment on synthetic images so its classes are well separated."""
    model = TinyCNN()
    model.load_state_dict(_trained_weights(seed))
    return model.eval()


@functools.cache
def _trained_weights(seed: int) -> dict[str, torch.Tensor]:
    from inspectloop.runtime import Preprocess

    torch.manual_seed(seed)
    model = TinyCNN()
    images, labels = synthetic_images(8, seed=1)
    preprocess = Preprocess(INPUT_SIZE)
    x = torch.from_numpy(np.concatenate([preprocess(image) for image in images]))
    y = torch.tensor(labels)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.05)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small trains 20x faster on one thread than on a busy two
    try:
        for _ in range(60):
            optimiser.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimiser.step()
    finally:
        torch.set_num_threads(threads)
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def export_tiny(path: Path, model: torch.nn.Module | None = None, **changes: object) -> ExportReport:
    """Export the (trained) tiny CNN to ``path``, parity-checked on synthetic images."""
    parity, _ = synthetic_images(3, seed=2)
    return export_classifier(model or trained_tiny_cnn(), tiny_metadata(**changes), path, parity)


class ExportOnlyOffset(TinyCNN):
    """A model whose exported graph differs from its eager forward: the parity check must catch it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = super().forward(x)
        return logits + 1.0 if torch.onnx.is_in_onnx_export() else logits


@pytest.fixture(scope="module")
def tiny() -> TinyCNN:
    return trained_tiny_cnn()


@pytest.fixture(scope="module")
def parity() -> list[Image.Image]:
    return synthetic_images(4, seed=3)[0]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, tiny: TinyCNN, parity: list[Image.Image]) -> ExportReport:
    return export_classifier(tiny, tiny_metadata(), tmp_path_factory.mktemp("export") / "tiny.onnx", parity)


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_export_matches_pytorch_and_reports_it(exported: ExportReport, parity: Sequence[Image.Image]) -> None:
    assert exported.top1_agreement == 1.0
    assert exported.max_abs_diff < 1e-4
    assert exported.images_checked == len(parity)
    assert exported.size_bytes == exported.path.stat().st_size
    assert _files(exported.path.parent) == ["tiny.onnx"]  # no temporary file left behind


def test_metadata_round_trips_through_the_file(exported: ExportReport) -> None:
    loaded = EdgeModel(exported.path).metadata
    assert loaded == dataclasses.replace(tiny_metadata(created_at=loaded.created_at),
                                         weights_sha256=exported.weights_sha256, sha256=loaded.sha256)
    assert loaded.sha256 == content_hash(loaded)
    assert stored_metadata(exported.path.read_bytes())["task"] == "classification"  # the file names its task


def test_hash_covers_the_graph_and_weights_not_the_metadata(exported: ExportReport) -> None:
    data = exported.path.read_bytes()
    proto = onnx.load_from_string(data)
    props = [(p.key, p.value) for p in proto.metadata_props]
    assert read_metadata_props(data) == props and props[0][0] == METADATA_KEY
    del proto.metadata_props[:]
    bare = proto.SerializeToString()
    assert model_hash(data) == model_hash(bare) == hashlib.sha256(bare).hexdigest() == exported.weights_sha256


def test_export_hands_the_model_back_in_its_mode(tmp_path: Path, tiny: TinyCNN, parity: list[Image.Image]) -> None:
    tiny.train()
    try:
        export_classifier(tiny, tiny_metadata(), tmp_path / "m.onnx", parity)
        assert tiny.training
    finally:
        tiny.eval()


def test_mismatching_export_fails_and_writes_nothing(tmp_path: Path, tiny: TinyCNN,
                                                     parity: list[Image.Image]) -> None:
    model = ExportOnlyOffset()
    model.load_state_dict(tiny.state_dict())
    with pytest.raises(ExportError, match=r"max abs logit difference 1 \(tolerance 0.001\)") as caught:
        export_classifier(model, tiny_metadata(), tmp_path / "bad.onnx", parity)
    assert "nothing was written" in (caught.value.hint or "")
    assert _files(tmp_path) == []


def test_failed_export_keeps_the_previous_file(tmp_path: Path, tiny: TinyCNN, parity: list[Image.Image]) -> None:
    target = tmp_path / "model.onnx"
    export_classifier(tiny, tiny_metadata(), target, parity)
    before = target.read_bytes()
    model = ExportOnlyOffset()
    model.load_state_dict(tiny.state_dict())
    with pytest.raises(ExportError):
        export_classifier(model, tiny_metadata(), target, parity)
    assert target.read_bytes() == before
    assert _files(tmp_path) == ["model.onnx"]


@pytest.mark.parametrize(("changes", "images", "message"), [
    ({"class_names": ("good", "scratch", "dark", "dent")}, 2, r"shape \(2, 3\), expected \(2, 4\)"),
    ({}, 0, "needs at least one image"),
    ({"task": "detection"}, 2, "writes classification models, but the metadata names task 'detection'"),
])
def test_export_refuses_bad_input(tmp_path: Path, tiny: TinyCNN, changes: dict[str, object], images: int,
                                  message: str) -> None:
    with pytest.raises(ExportError, match=message):
        export_classifier(tiny, tiny_metadata(**changes), tmp_path / "m.onnx", synthetic_images(1)[0][:images])
    assert _files(tmp_path) == []


def test_falls_back_to_the_torch_export_based_exporter(tmp_path: Path, tiny: TinyCNN, parity: list[Image.Image],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    def unavailable(*args: object, **kwargs: object) -> None:
        raise RuntimeError("TorchScript exporter removed")

    monkeypatch.setattr(export_module, "_torchscript_export", unavailable)
    report = export_classifier(tiny, tiny_metadata(), tmp_path / "m.onnx", parity)
    assert report.top1_agreement == 1.0
    assert EdgeModel(report.path).predict_array(np.zeros((2, 3, INPUT_SIZE, INPUT_SIZE), np.float32)).shape == (2, 3)


def test_missing_torch_is_reported_as_a_missing_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    with pytest.raises(MissingExtraError, match="'torch'") as caught:
        export_classifier(object(), tiny_metadata(), tmp_path / "m.onnx", [])  # type: ignore[arg-type]
    assert caught.value.hint == "pip install 'inspectloop[train]'"


def test_int8_model_agrees_with_float_and_is_a_valid_package(tmp_path: Path, exported: ExportReport) -> None:
    calibration, _ = synthetic_images(6, seed=4)
    checks, labels = synthetic_images(10, seed=5)
    report = quantize_int8(exported.path, calibration, tmp_path / "tiny-int8.onnx", parity_images=checks)
    assert report.top1_agreement >= 0.98 and report.images_checked == len(checks)
    model = EdgeModel(report.path)
    assert model.metadata.model_version == "1.0.0+int8"
    assert model.metadata.class_names == CLASSES and model.metadata.weights_sha256 == report.weights_sha256
    ops = {node.op_type for node in onnx.load(str(report.path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    predicted = [CLASSES.index(model.predict(image).label) for image in checks]
    assert np.mean(np.array(predicted) == np.array(labels)) >= 0.9
    assert _files(tmp_path) == ["tiny-int8.onnx"]


def test_int8_refuses_an_int8_model(tmp_path: Path, exported: ExportReport) -> None:
    images, _ = synthetic_images(2)
    first = quantize_int8(exported.path, images, tmp_path / "q.onnx")
    with pytest.raises(ExportError, match="already an INT8 model"):
        quantize_int8(first.path, images, tmp_path / "qq.onnx")


def test_unwritable_destination_is_an_export_error(tmp_path: Path, tiny: TinyCNN, parity: list[Image.Image]) -> None:
    (tmp_path / "model.onnx").mkdir()  # a folder where the file should go
    with pytest.raises(ExportError, match="cannot write the model file"):
        export_classifier(tiny, tiny_metadata(), tmp_path / "model.onnx", parity)
    assert _files(tmp_path) == ["model.onnx"]


def tiny_classifier() -> torch.nn.Module:
    """The tiny CNN's weights as a trunk + head :class:`Classifier` (exported with a ``features`` output)."""
    from inspectloop.models.classifier import Classifier

    source = trained_tiny_cnn()
    trunk = torch.nn.Sequential(source.conv, torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    model = Classifier(trunk, 8, len(CLASSES))
    model.head[1].load_state_dict(source.head.state_dict())
    return model.eval()


def test_a_trunk_and_head_classifier_exports_its_features(tmp_path: Path, parity: list[Image.Image]) -> None:
    from inspectloop.monitor.embeddings import EmbeddingModel

    model = tiny_classifier()
    report = export_classifier(model, tiny_metadata(), tmp_path / "c.onnx", parity)
    edge = EdgeModel(report.path)
    assert edge.has_features and [o.name for o in edge.session.get_outputs()] == ["logits", "features"]
    prediction, features = edge.predict_with_features(parity[0])
    assert prediction == dataclasses.replace(edge.predict(parity[0]), latency_ms=prediction.latency_ms)
    batch = torch.from_numpy(edge.preprocess(parity[0]))
    with torch.no_grad():
        expected = model.trunk(batch).numpy()[0]
    assert features is not None and features.shape == (8,)
    np.testing.assert_allclose(features, expected, atol=1e-4)
    embedder = EmbeddingModel(report.path)
    assert embedder.features_output == "features"
    np.testing.assert_allclose(embedder.embed([parity[0]])[0], features, atol=1e-5)
    calibration, _ = synthetic_images(6, seed=4)
    int8 = EdgeModel(quantize_int8(report.path, calibration, tmp_path / "c-int8.onnx", parity_images=parity).path)
    assert int8.has_features and int8.predict_with_features(parity[0])[1].shape == (8,)  # type: ignore[union-attr]


def test_a_model_without_trunk_and_head_keeps_one_output(exported: ExportReport, parity: list[Image.Image]) -> None:
    edge = EdgeModel(exported.path)
    assert not edge.has_features and edge.predict_with_features(parity[0])[1] is None


# --- signatures (issue 10: model authenticity) -----------------------------------------------------------

def forged_export(signed: Path, target: Path) -> Path:
    """Issue 10's attack on a real export: every weight zeroed, the classes swapped, and the hashes
    recomputed with the library's own functions (the signature, which needs the private key, dropped)."""
    from onnx import numpy_helper

    from inspectloop.runtime.metadata import read_model_metadata
    from tests.runtime.helpers import stamp

    data = signed.read_bytes()
    proto = onnx.load_from_string(data)
    for initializer in proto.graph.initializer:
        zeros = np.zeros_like(numpy_helper.to_array(initializer))
        initializer.CopyFrom(numpy_helper.from_array(zeros, initializer.name))
    meta = read_model_metadata(data, str(signed))
    target.write_bytes(stamp(proto.SerializeToString(),
                             dataclasses.replace(meta, class_names=tuple(reversed(meta.class_names)))))
    return target


@pytest.fixture(scope="module")
def signing_key() -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def signed_export(tmp_path_factory: pytest.TempPathFactory, tiny: TinyCNN, parity: list[Image.Image],
                  signing_key: Any) -> ExportReport:
    return export_classifier(tiny, tiny_metadata(), tmp_path_factory.mktemp("signed") / "tiny.onnx", parity,
                             signing_key=signing_key)


def test_export_signs_with_the_site_key_and_checks_the_written_file(signed_export: ExportReport,
                                                                    signing_key: Any) -> None:
    from inspectloop.runtime.signing import public_key_of

    public = public_key_of(signing_key)
    assert signed_export.signature.state == "verified" and signed_export.signature.key_id == public.key_id
    assert EdgeModel(signed_export.path, trusted_keys=[public]).signature.state == "verified"
    assert onnx.load(str(signed_export.path)).graph.node  # still a valid ONNX file for the onnx package


def test_export_without_a_key_says_the_file_is_unsigned(exported: ExportReport) -> None:
    assert exported.signature.state == "unsigned" and EdgeModel(exported.path).signature.state == "unsigned"


def test_a_forged_copy_of_a_signed_export_is_refused_by_trusted_keys(signed_export: ExportReport, signing_key: Any,
                                                                     parity: list[Image.Image],
                                                                     tmp_path: Path) -> None:
    from inspectloop.errors import ModelFileError
    from inspectloop.runtime.signing import public_key_of

    forged = forged_export(signed_export.path, tmp_path / "forged.onnx")
    unchecked = EdgeModel(forged)  # every hash is consistent: this is what predict FILE used to accept
    assert unchecked.metadata.class_names == tuple(reversed(CLASSES)) and unchecked.signature.state == "unsigned"
    with pytest.raises(ModelFileError, match="model file is not signed"):
        EdgeModel(forged, trusted_keys=[public_key_of(signing_key)])


def test_int8_copy_of_a_signed_model_is_signed(signed_export: ExportReport, signing_key: Any,
                                               tmp_path: Path) -> None:
    from inspectloop.runtime.signing import public_key_of

    calibration, _ = synthetic_images(3, seed=4)
    report = quantize_int8(signed_export.path, calibration, tmp_path / "q.onnx", signing_key=signing_key)
    assert EdgeModel(report.path, trusted_keys=[public_key_of(signing_key)]).signature.state == "verified"
    assert report.signature.state == "verified"
