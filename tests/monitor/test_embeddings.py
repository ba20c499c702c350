"""Backbone features from an exported model file: onnxruntime only at run time, equal to PyTorch's."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from inspectloop.errors import ModelFileError
from inspectloop.monitor.embeddings import (
    EmbeddingModel,
    expose_features,
    feature_tensor,
)
from inspectloop.runtime import EdgeModel, Preprocess
from tests.registry_helpers import tiny_model_bytes
from tests.test_export import INPUT_SIZE, synthetic_images, trained_tiny_cnn


@functools.cache
def _model_path() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="inspectloop-embed-"))
    path = folder / "tiny.onnx"
    path.write_bytes(tiny_model_bytes())
    return path


def test_features_match_the_pytorch_trunk() -> None:
    images, _ = synthetic_images(2, seed=5)
    features = EmbeddingModel(_model_path()).embed(images)
    model = trained_tiny_cnn()
    batch = np.concatenate([Preprocess(INPUT_SIZE)(image) for image in images])
    with torch.no_grad():
        expected = torch.relu(model.conv(torch.from_numpy(batch))).mean(dim=(2, 3)).numpy()
    assert features.shape == (len(images), 8) and features.dtype == np.float32
    assert np.allclose(features, expected, atol=1e-4)


def test_the_file_still_gives_the_same_logits_and_is_not_changed() -> None:
    before = _model_path().read_bytes()
    embedder = EmbeddingModel(_model_path())
    batch = np.concatenate([Preprocess(INPUT_SIZE)(image) for image in synthetic_images(1, seed=6)[0]])
    logits = embedder.session.run(("logits",), {"input": batch})[0]
    expected = EdgeModel(_model_path()).session.run(("logits",), {"input": batch})[0]
    assert np.allclose(logits, expected, atol=1e-6)
    assert _model_path().read_bytes() == before


def test_expose_features_adds_the_pooled_tensor_as_a_second_output() -> None:
    data, name = expose_features(_model_path().read_bytes(), "tiny")
    assert name == "/ReduceMean_output_0"
    proto = onnx.load_from_string(data)
    assert [o.name for o in proto.graph.output] == ["logits", name]


def test_a_graph_without_a_linear_head_is_refused() -> None:
    proto = onnx.load_from_string(_model_path().read_bytes())
    gemm = next(node for node in proto.graph.node if node.op_type == "Gemm")
    gemm.op_type = "Sigmoid"
    with pytest.raises(ModelFileError, match="cannot find the backbone features"):
        feature_tensor(proto, "tiny")


def test_a_tampered_file_fails_its_hash(tmp_path: Path) -> None:
    proto = onnx.load_from_string(_model_path().read_bytes())
    proto.graph.initializer[0].raw_data = bytes(len(proto.graph.initializer[0].raw_data))
    path = tmp_path / "tampered.onnx"
    path.write_bytes(proto.SerializeToString())
    with pytest.raises(ModelFileError):
        EmbeddingModel(path)
