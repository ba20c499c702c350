"""Backbone features from an exported inspectloop model, with onnxruntime and without torch.

Embedding drift compares the pooled backbone features (the input of the classifier's last linear
layer) of production images with the baseline's. A model exported with a ``features`` output gives
them directly (numpy + onnxruntime only). An older file has ``logits`` only; then the graph is
opened with the ``onnx`` package, the last linear layer is traced back to its data input, and that
tensor is added as a second graph output: one forward pass gives logits and features, and nothing
is recomputed or re-trained. The file's hash is verified before the graph is touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from PIL import Image

from inspectloop.errors import ModelFileError, MonitorError, require
from inspectloop.runtime.images import load_image, to_working_mode
from inspectloop.runtime.model import (
    FEATURES_NAME,
    INPUT_NAME,
    OUTPUT_NAME,
    open_session,
    read_model,
)

_CHUNK = 32  # images per session.run
_LINEAR_OPS = {"Gemm", "MatMul"}
_PASS_THROUGH_OPS = {"Add", "Identity", "Dropout", "DequantizeLinear", "QuantizeLinear", "Cast"}


class EmbeddingModel:
    """An exported classifier or anomaly model opened for its features: ``embed(images)`` -> (N, D) float32.

    ModelFileError if the file is not an inspectloop model, fails its hash, or has no linear last
    layer to read features from; MissingExtraError when the file lacks a ``features`` output and
    the ``onnx`` package (``inspectloop[train]``) is not installed to expose one.
    """

    def __init__(self, path: str | Path, *, threads: int = 1, verify_hash: bool = True) -> None:
        self.path = Path(path)
        data, self.metadata = read_model(self.path, verify_hash=verify_hash)
        session = open_session(data, threads, str(self.path))
        self.features_output = FEATURES_NAME
        if FEATURES_NAME not in [o.name for o in session.get_outputs()]:
            data, self.features_output = expose_features(data, str(self.path))
            session = open_session(data, threads, str(self.path))
        self.session = session
        self.preprocess = self.metadata.preprocess()

    def embed(self, images: Sequence[str | Path | bytes | Image.Image]) -> np.ndarray:
        """Features (N, D) of decoded images or image files, through the model's own preprocessing."""
        if len(images) == 0:
            raise MonitorError("no images to embed", "pass at least one image")
        mode = "L" if self.metadata.colour_mode == "L" else None
        arrays = [self.preprocess(self._decode(image, i, mode)) for i, image in enumerate(images)]
        return self.embed_array(np.concatenate(arrays))

    def embed_array(self, batch: np.ndarray) -> np.ndarray:
        """Features (N, D) of a preprocessed (N, 3, H, W) float32 batch."""
        height, width = self.preprocess.shape
        if batch.ndim != 4 or batch.shape[1:] != (3, height, width) or batch.shape[0] < 1:
            raise ValueError(f"expected a preprocessed batch of shape (N, 3, {height}, {width}), got {batch.shape}")
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        chunks = [self.session.run((self.features_output,), {INPUT_NAME: batch[i:i + _CHUNK]})[0]
                  for i in range(0, len(batch), _CHUNK)]
        features = np.concatenate(chunks)
        return features.reshape(len(batch), -1).astype(np.float32, copy=False)

    @staticmethod
    def _decode(image: str | Path | bytes | Image.Image, index: int, mode: str | None) -> Image.Image:
        if isinstance(image, Image.Image):
            working = to_working_mode(image, f"image {index}")
            return working.convert("L") if mode == "L" and working.mode != "L" else working
        return load_image(image, mode=mode)


def expose_features(model_bytes: bytes, label: str) -> tuple[bytes, str]:
    """Add the last linear layer's data input as a graph output; return (new bytes, its tensor name)."""
    onnx = _onnx()
    proto = onnx.load_from_string(model_bytes)
    name = feature_tensor(proto, label)
    if name not in [o.name for o in proto.graph.output]:
        proto.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return proto.SerializeToString(), name


def feature_tensor(proto: Any, label: str) -> str:
    """Name of the tensor feeding the classifier's last linear layer (Gemm or MatMul) in ``proto``.

    Walks back from ``logits`` through bias adds, casts and quantize/dequantize pairs to the linear
    node, and takes its one non-constant input (weights are initializers or derived from them).
    """
    graph = proto.graph
    producers = {out: node for node in graph.node for out in node.output}
    constants = _constant_tensors(graph)
    tensor = OUTPUT_NAME
    for _ in range(len(graph.node)):
        node = producers.get(tensor)
        if node is None:
            break
        data_inputs = [name for name in node.input if name and name not in constants]
        if node.op_type in _LINEAR_OPS and len(data_inputs) == 1:
            return data_inputs[0]
        if node.op_type not in _PASS_THROUGH_OPS or len(data_inputs) != 1:
            break
        tensor = data_inputs[0]
    raise ModelFileError(f"{label}: cannot find the backbone features (no linear last layer before '{OUTPUT_NAME}')",
                         "re-export the model with a 'features' output (see inspectloop.export)")


def _constant_tensors(graph: Any) -> set[str]:
    """Initializers, Constant outputs and anything computed only from them (e.g. dequantized weights)."""
    constants = {init.name for init in graph.initializer}
    for node in graph.node:  # ONNX nodes are topologically sorted, so one pass suffices
        if node.op_type == "Constant" or (node.input and all(not n or n in constants for n in node.input)):
            constants.update(node.output)
    return constants


def _onnx() -> ModuleType:
    return require("onnx", "train")
