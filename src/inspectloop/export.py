"""Export a trained classifier to an inspectloop model file, check parity, and optionally make INT8.

A model file is the ONNX graph plus :class:`~inspectloop.runtime.metadata.ModelMetadata` in its
``metadata_props`` and, given the site's signing key, an Ed25519 signature over both
(:mod:`inspectloop.runtime.signing`). A file is only ever written at ``out_path`` once the exact bytes on disk have
been loaded by the edge runtime and agree with the source model on real images; until then it is
a temporary file beside ``out_path`` that is removed on any failure.

The graph is made with the TorchScript exporter (``torch.onnx.export(..., dynamo=False)``): on
torch 2.14 it is tens of times faster than the torch.export-based one, keeps the requested opset,
and prints nothing. If it fails (an operator it lacks, or a torch that no longer ships it) the
torch.export-based exporter is tried instead, at opset 18 or above.
torch, onnx and onnxruntime.quantization are imported only inside the functions that use them.

A classifier made of a ``trunk`` and a ``head`` (:class:`inspectloop.models.classifier.Classifier`)
is exported with a second output, ``features`` (the pooled trunk features the head reads), so drift
monitoring gets embeddings from the same forward pass at no extra cost. Given a novelty bank (the
metadata's ``novelty`` guard, fitted by :mod:`inspectloop.train.novelty`), it gets a third output,
``novelty``: the features' distance to the bank, computed in the graph (:mod:`inspectloop.models.novelty`).
Parity is checked on the logits and the novelty scores; other models keep their single ``logits`` output.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from inspectloop.errors import ExportError, ModelFileError, require
from inspectloop.runtime.backends import REFERENCE  # exported files are checked as onnxruntime runs them
from inspectloop.runtime.images import to_working_mode
from inspectloop.runtime.detection import BOXES_NAME, SCORES_NAME
from inspectloop.runtime.metadata import (
    ANOMALY,
    CLASSIFICATION,
    DETECTION,
    METADATA_KEY,
    ModelMetadata,
    content_hash,
    model_hash,
    utc_timestamp,
)
from inspectloop.runtime.model import (
    ANOMALY_OUTPUTS,
    FEATURES_NAME,
    HEATMAP_NAME,
    INPUT_NAME,
    NOVELTY_NAME,
    OUTPUT_NAME,
    SCORE_NAME,
    EdgeModel,
)
from inspectloop.runtime.signing import PublicKey, SignatureStatus, public_key_of, sign_model

if TYPE_CHECKING:
    import torch
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

INT8_SUFFIX = "+int8"
_CHUNK = 32  # images per forward pass in parity checks
_DYNAMO_MIN_OPSET = 18  # the torch.export-based exporter has no translations below this


@dataclass(frozen=True)
class ExportReport:
    """What an export wrote and how closely the written file agrees with its source model.

    ``max_abs_diff`` is the largest absolute logit difference; ``top1_agreement`` the share of
    ``images_checked`` on which both give the same top class.
    """

    path: Path
    max_abs_diff: float
    top1_agreement: float
    images_checked: int
    weights_sha256: str
    size_bytes: int
    signature: SignatureStatus = SignatureStatus("unsigned")


def export_classifier(model: torch.nn.Module, metadata: ModelMetadata, out_path: Path,
                      parity_images: Sequence[Image.Image], *, atol: float = 1e-3, opset: int = 17,
                      signing_key: Ed25519PrivateKey | None = None,
                      novelty_bank: np.ndarray | None = None) -> ExportReport:
    """Export ``model`` (normalised (N, 3, H, W) input -> logits) to ``out_path`` with ``metadata``.

    ``novelty_bank`` (M, D) unit-length training embeddings go with the metadata's ``novelty`` guard (both
    or neither): the file then scores each image's novelty in the graph (a trunk + head classifier only).

    With ``signing_key`` (the site's, :func:`inspectloop.keys.site_signing_key`) the file is signed,
    and the signature is checked on the written file like everything else.

    The file is checked against the PyTorch model on ``parity_images`` (decoded images, put through
    the metadata's preprocessing): ExportError if any logit differs by more than ``atol`` or any top-1
    class differs, and then nothing is left at ``out_path``. The model is exported in eval mode and
    handed back in the mode it came in. The file names its task: classification.
    """
    if metadata.task != CLASSIFICATION:
        raise ExportError(f"export_classifier writes classification models, but the metadata names task "
                          f"{metadata.task!r}", f"export with task={CLASSIFICATION!r}")
    torch = require("torch", "train")
    onnx = require("onnx", "train")
    _check_novelty(metadata, novelty_bank)
    out_path = Path(out_path)
    batch = _image_batch(parity_images, metadata, "the export parity check")
    guarded = _with_guard(torch, model, novelty_bank, metadata)
    with _eval_mode(model):
        expected = _torch_logits(torch, model, batch, len(metadata.class_names))
        expected_novelty = None if guarded is None else _torch_outputs(torch, guarded, batch)[2]
        proto = _to_onnx(torch, onnx, guarded or model, batch[[0, min(1, len(batch) - 1)]], opset)  # batch of 2
    data, stamped = _stamp(proto, metadata)
    data = _sign(data, signing_key)
    with _staged(out_path, data) as staged:
        logits, signature = _file_logits(staged, batch, signing_key)
        diff, agreement = _compare(expected, logits)
        if expected_novelty is not None:
            diff = max(diff, _novelty_difference(staged, batch, expected_novelty))
        if diff > atol or agreement < 1.0:
            raise ExportError(
                f"the exported ONNX model does not match the PyTorch model: max abs logit"
                f"{'' if guarded is None else ' or novelty'} difference "
                f"{diff:.3g} (tolerance {atol:g}), top-1 agreement {agreement:.1%} on {len(batch)} images",
                "the graph differs from the eager model: look for export-only code paths, data-dependent "
                "Python control flow or operators the exporter changes; nothing was written")
    return ExportReport(out_path, diff, agreement, len(batch), stamped.weights_sha256, len(data), signature)


def quantize_int8(model_path: Path, calibration_images: Sequence[Image.Image], out_path: Path, *,
                  parity_images: Sequence[Image.Image] = (), min_top1_agreement: float = 0.98,
                  signing_key: Ed25519PrivateKey | None = None) -> ExportReport:
    """Make a static INT8 (QDQ, per-channel weights) copy of an exported model at ``out_path``.

    Activation ranges are calibrated on ``calibration_images``. The copy keeps the metadata, with
    ``model_version`` + ``"+int8"`` and its own hash. Its top-1 agreement with the float model is
    measured on ``parity_images`` (the calibration images when none are given, which flatters it);
    below ``min_top1_agreement`` it is an ExportError and nothing is written. With ``signing_key``
    the copy is signed, and the float model must carry a valid signature by that key.
    """
    onnx = require("onnx", "train")
    quantization = require("onnxruntime.quantization", "train", package="onnx")  # it needs onnx
    if not 0.0 < min_top1_agreement <= 1.0:
        raise ValueError(f"min_top1_agreement must be in (0, 1], got {min_top1_agreement!r}")
    float_model = EdgeModel(model_path, threads=_threads(), trusted_keys=_own_key(signing_key), backend=REFERENCE)
    meta = float_model.metadata
    int8_meta = _int8_metadata(meta, model_path)
    calibration = _image_batch(calibration_images, meta, "INT8 calibration")
    checks = _image_batch(parity_images, meta, "the INT8 parity check") if len(parity_images) else calibration
    data, stamped = _stamp(_quantize(onnx, quantization, Path(model_path), calibration), int8_meta)
    data = _sign(data, signing_key)
    expected = _session_logits(float_model, checks)
    with _staged(Path(out_path), data) as staged:
        logits, signature = _file_logits(staged, checks, signing_key)
        diff, agreement = _compare(expected, logits)
        if agreement < min_top1_agreement:
            raise ExportError(
                f"the INT8 model agrees with the float model on only {agreement:.1%} of {len(checks)} images "
                f"(minimum {min_top1_agreement:.1%}; max abs logit difference {diff:.3g})",
                "calibrate on more images that look like production, or deploy the float model; nothing was written")
    return ExportReport(Path(out_path), diff, agreement, len(checks), stamped.weights_sha256, len(data), signature)


def export_anomaly(model: torch.nn.Module, metadata: ModelMetadata, out_path: Path,
                   parity_images: Sequence[Image.Image], *, rtol: float = 1e-3, opset: int = 17,
                   signing_key: Ed25519PrivateKey | None = None) -> ExportReport:
    """Export an anomaly model (normalised (N, 3, H, W) -> logits (N, 2), score (N,), heatmap (N, H, W), features
    (N, D); see :class:`inspectloop.anomaly.model.PatchCore`) to ``out_path`` with ``metadata`` (task ``anomaly``).

    One file carries the backbone, the memory bank and the nearest-neighbour search. It is checked
    against the PyTorch model on ``parity_images``: ExportError, and nothing written, if a score or a
    heatmap value differs by more than ``rtol`` of the largest score, a feature by more than ``rtol`` of the
    largest feature, or a pass/anomaly side differs.
    ``signing_key`` signs the file as :func:`export_classifier` does.
    """
    if metadata.task != ANOMALY or len(metadata.class_names) != 2:
        raise ExportError(f"export_anomaly writes anomaly models with two classes (good, anomaly), but the metadata "
                          f"names task {metadata.task!r} and {len(metadata.class_names)} classes",
                          f"export with task={ANOMALY!r} and class_names=(good class, 'anomaly')")
    torch = require("torch", "train")
    onnx = require("onnx", "train")
    out_path = Path(out_path)
    batch = _image_batch(parity_images, metadata, "the export parity check")
    with _eval_mode(model):
        expected = _torch_outputs(torch, model, batch)
        proto = _named_onnx(torch, onnx, model, batch[[0, min(1, len(batch) - 1)]], opset,
                            list(ANOMALY_OUTPUTS), "anomaly model")
    data, stamped = _stamp(proto, metadata)
    data = _sign(data, signing_key)
    with _staged(out_path, data) as staged:
        got, signature = _file_outputs(staged, batch, ANOMALY_OUTPUTS, signing_key)
        units = [max(1.0, float(np.abs(expected[1]).max()))] * 2 + [max(1.0, float(np.abs(expected[3]).max()))]
        diff = max(float(np.max(np.abs(e.astype(np.float64) - g.astype(np.float64)))) / unit
                   for e, g, unit in zip(expected[1:], got[1:], units))
        agreement = _side_agreement(expected[0][:, 1], got[0][:, 1])
        if diff > rtol or agreement < 1.0:
            raise ExportError(
                f"the exported anomaly model does not match the PyTorch model: largest score, heatmap or feature "
                f"difference {diff:.3g} of the largest (tolerance {rtol:g}), pass/anomaly agreement {agreement:.1%} on "
                f"{len(batch)} images", "the graph differs from the eager model; nothing was written")
    return ExportReport(out_path, diff, agreement, len(batch), stamped.weights_sha256, len(data), signature)


def _check_novelty(metadata: ModelMetadata, bank: np.ndarray | None) -> None:
    """A novelty guard needs its bank and its threshold; a bank without the threshold would never be used."""
    guard = metadata.novelty
    if (guard is None) != (bank is None):
        raise ExportError("a novelty guard needs both its bank (novelty_bank) and its threshold (metadata.novelty); "
                          f"got {'the threshold' if guard is not None else 'the bank'} alone",
                          "fit the guard with inspectloop.train.novelty.fit_novelty and pass both")
    if guard is not None and bank is not None and (bank.ndim != 2 or len(bank) != guard["bank_size"]):
        raise ExportError(f"the novelty bank has shape {bank.shape}, but the metadata names {guard['bank_size']} rows",
                          "pass the bank and the metadata of the same fitted guard")


def _with_guard(torch: ModuleType, model: torch.nn.Module, bank: np.ndarray | None,
                metadata: ModelMetadata) -> torch.nn.Module | None:
    """The classifier with its novelty guard as one module (None without a bank)."""
    if bank is None or metadata.novelty is None:
        return None
    from inspectloop.models.novelty import GuardedClassifier, NoveltyDistance

    trunk, head = getattr(model, "trunk", None), getattr(model, "head", None)
    if not isinstance(trunk, torch.nn.Module) or not isinstance(head, torch.nn.Module):
        raise ExportError("a novelty guard reads the classifier's pooled trunk features, and this model has no trunk "
                          "and head", "export it without novelty_bank, or build it as "
                          "inspectloop.models.classifier.Classifier")
    guarded = GuardedClassifier(trunk, head, NoveltyDistance(bank, metadata.novelty["k"]))
    guarded.train(model.training)
    return guarded


def _novelty_difference(path: Path, batch: np.ndarray, expected: np.ndarray) -> float:
    """Largest absolute difference between the file's novelty scores and the eager guard's."""
    model = EdgeModel(path, threads=_threads(), verify_hash=False, backend=REFERENCE)
    got = np.concatenate([model.novelty_scores(batch[start:start + _CHUNK]) for start in range(0, len(batch), _CHUNK)])
    return float(np.max(np.abs(got.astype(np.float64) - expected.astype(np.float64))))


def export_detector(model: torch.nn.Module, metadata: ModelMetadata, out_path: Path,
                    parity_images: Sequence[Image.Image], *, atol: float = 1e-3, box_atol: float = 0.05,
                    opset: int = 17, signing_key: Ed25519PrivateKey | None = None) -> ExportReport:
    """Export a detector (normalised (N, 3, S, S) -> boxes (N, A, 4) in input pixels, scores (N, A, K); see
    :class:`inspectloop.detect.model.Detector`) to ``out_path`` with ``metadata`` (task ``detection``, the good
    class then the K box classes). Decoding, NMS and tiling run in numpy at the edge
    (:mod:`inspectloop.runtime.detection`).

    Checked against the PyTorch model on ``parity_images`` (resized to the input): ExportError, and nothing
    written, if a score differs by more than ``atol``, a box side by more than ``box_atol`` pixels, or the
    image's most confident class differs. ``signing_key`` signs the file as :func:`export_classifier` does.
    """
    defects = len(metadata.class_names) - 1
    if metadata.task != DETECTION or getattr(model, "num_classes", defects) != defects \
            or metadata.good_class != metadata.class_names[0]:
        raise ExportError(f"export_detector writes detection models whose class names are the good class then one "
                          f"per box class, but the metadata names task {metadata.task!r} and "
                          f"{len(metadata.class_names)} classes", f"export with task={DETECTION!r} and class_names="
                          "(good class, *box classes)")
    torch = require("torch", "train")
    onnx = require("onnx", "train")
    out_path = Path(out_path)
    batch = _image_batch(parity_images, metadata, "the export parity check")
    with _eval_mode(model):
        expected = _torch_outputs(torch, model, batch)
        proto = _named_onnx(torch, onnx, model, batch[[0, min(1, len(batch) - 1)]], opset,
                            [BOXES_NAME, SCORES_NAME], "detector")
    data, stamped = _stamp(proto, metadata)
    data = _sign(data, signing_key)
    with _staged(out_path, data) as staged:
        got, signature = _file_outputs(staged, batch, (BOXES_NAME, SCORES_NAME), signing_key)
        box_diff = float(np.max(np.abs(expected[0].astype(np.float64) - got[0])))
        score_diff = float(np.max(np.abs(expected[1].astype(np.float64) - got[1])))
        agreement = float(np.mean(expected[1].max(1).argmax(1) == got[1].max(1).argmax(1)))
        if score_diff > atol or box_diff > box_atol or agreement < 1.0:
            raise ExportError(
                f"the exported detector does not match the PyTorch model: largest score difference {score_diff:.3g} "
                f"(tolerance {atol:g}), largest box difference {box_diff:.3g} px (tolerance {box_atol:g}), "
                f"top-class agreement {agreement:.1%} on {len(batch)} images",
                "the graph differs from the eager model; nothing was written")
    return ExportReport(out_path, score_diff, agreement, len(batch), stamped.weights_sha256, len(data), signature)


def quantize_detector(model_path: Path, calibration_images: Sequence[Image.Image], out_path: Path, *,
                      parity_images: Sequence[Image.Image] = (), max_score_diff: float = 0.1,
                      min_agreement: float = 0.0,
                      signing_key: Ed25519PrivateKey | None = None) -> ExportReport:
    """Make a static INT8 (QDQ, per-channel weights) copy of an exported detector at ``out_path``, as
    :func:`quantize_int8` does for classifiers. Activation ranges come from ``calibration_images`` (model
    inputs: tiles of production frames at native scale, not whole frames shrunk). ExportError, and nothing
    written, when a class score on ``parity_images`` (default: the calibration images) differs from the
    float model's by more than ``max_score_diff``, or when the share of images whose most confident class
    stays the same (the report's ``agreement``) is below ``min_agreement``. Its box accuracy is for the
    caller to measure (mAP)."""
    if not 0.0 <= min_agreement <= 1.0:
        raise ValueError(f"min_agreement must be in [0, 1], got {min_agreement!r}")
    onnx = require("onnx", "train")
    quantization = require("onnxruntime.quantization", "train", package="onnx")
    float_model = EdgeModel(model_path, threads=_threads(), trusted_keys=_own_key(signing_key), backend=REFERENCE)
    meta = float_model.metadata
    if meta.task != DETECTION:
        raise ExportError(f"{model_path} is a {meta.task} model, not a detector", "use quantize_int8 for it")
    calibration = _image_batch(calibration_images, meta, "INT8 calibration")
    checks = _image_batch(parity_images, meta, "the INT8 parity check") if len(parity_images) else calibration
    data, stamped = _stamp(_quantize(onnx, quantization, Path(model_path), calibration),
                           _int8_metadata(meta, model_path))
    data = _sign(data, signing_key)
    names = (BOXES_NAME, SCORES_NAME)
    expected = [np.concatenate(parts) for parts in zip(*(float_model.session.run(names, {INPUT_NAME: checks[i:i + 8]})
                                                          for i in range(0, len(checks), 8)))]
    with _staged(Path(out_path), data) as staged:
        got, signature = _file_outputs(staged, checks, names, signing_key)
        score_diff = float(np.max(np.abs(expected[1].astype(np.float64) - got[1])))
        agreement = float(np.mean(expected[1].max(1).argmax(1) == got[1].max(1).argmax(1)))
        if score_diff > max_score_diff or agreement < min_agreement:
            raise ExportError(f"the INT8 detector's class scores differ from the float model's by up to "
                              f"{score_diff:.3g} (maximum {max_score_diff:g}) and its most confident class is the "
                              f"float model's on {agreement:.1%} of {len(checks)} images (minimum "
                              f"{min_agreement:.0%})", "calibrate on more tiles that look like production, or "
                              "deploy the float model; nothing was written")
    return ExportReport(Path(out_path), score_diff, agreement, len(checks), stamped.weights_sha256, len(data), signature)


def _named_onnx(torch: ModuleType, onnx: ModuleType, model: torch.nn.Module, example: np.ndarray, opset: int,
                outputs: list[str], kind: str) -> Any:
    """A model with several named outputs as an onnx.ModelProto (TorchScript exporter), batch axis dynamic."""
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # exporter notices, not actionable here
            torch.onnx.export(model, (torch.from_numpy(example),), buffer, input_names=[INPUT_NAME],
                              output_names=outputs, opset_version=opset, dynamo=False, do_constant_folding=True,
                              dynamic_axes={INPUT_NAME: {0: "batch"}, **{name: {0: "batch"} for name in outputs}})
    except Exception as exc:  # torch raises many unrelated types here
        raise ExportError(f"torch.onnx cannot export the {kind} ({exc})",
                          "replace the operator named above, or export with a newer opset") from exc
    return onnx.load_from_string(buffer.getvalue())


def _side_agreement(expected: np.ndarray, got: np.ndarray, tie: float = 1e-3) -> float:
    """Share of images on the same side of the threshold in both; an image within ``tie`` of it (a held-out
    image can be the threshold itself) may fall either way on float rounding and is not counted."""
    clear = np.abs(expected) > tie
    return float(np.mean((expected[clear] > 0) == (got[clear] > 0))) if clear.any() else 1.0


def _torch_outputs(torch: ModuleType, model: torch.nn.Module, batch: np.ndarray) -> list[np.ndarray]:
    chunks: list[list[np.ndarray]] = []
    with torch.no_grad():
        for start in range(0, len(batch), 8):
            chunks.append([o.float().numpy() for o in model(torch.from_numpy(batch[start:start + 8]))])
    return [np.concatenate(parts) for parts in zip(*chunks)]


def _file_outputs(path: Path, batch: np.ndarray, names: tuple[str, ...],
                  signing_key: Ed25519PrivateKey | None) -> tuple[list[np.ndarray], SignatureStatus]:
    """The named outputs of the file on disk, loaded exactly as the edge loads it, and its signature status."""
    try:
        model = EdgeModel(path, threads=_threads(), trusted_keys=_own_key(signing_key), backend=REFERENCE)
    except ModelFileError as exc:
        raise ExportError(f"the exported file does not load in the edge runtime: {exc.message}", exc.hint) from exc
    chunks = [model.session.run(names, {INPUT_NAME: batch[start:start + 8]}) for start in range(0, len(batch), 8)]
    return [np.concatenate(parts) for parts in zip(*chunks)], model.signature


# --- shared steps ------------------------------------------------------------------------------------

def _threads() -> int:
    return os.cpu_count() or 1


def _image_batch(images: Sequence[Image.Image], meta: ModelMetadata, purpose: str) -> np.ndarray:
    """Decoded images -> one normalised (N, 3, H, W) float32 batch, through the model's own preprocessing."""
    if len(images) == 0:
        raise ExportError(f"{purpose} needs at least one image, got none",
                          "pass decoded images from the dataset (for example its validation split)")
    preprocess = meta.preprocess()
    arrays = [preprocess(to_working_mode(image, f"{purpose}: image {i}")) for i, image in enumerate(images)]
    return np.concatenate(arrays)


@contextlib.contextmanager
def _eval_mode(model: torch.nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _torch_logits(torch: ModuleType, model: torch.nn.Module, batch: np.ndarray, classes: int) -> np.ndarray:
    outputs = []
    with torch.no_grad():
        for start in range(0, len(batch), _CHUNK):
            outputs.append(model(torch.from_numpy(batch[start:start + _CHUNK])))
    logits = torch.cat(outputs).float().numpy()
    if logits.shape != (len(batch), classes):
        raise ExportError(f"the model gives outputs of shape {tuple(logits.shape)}, expected "
                          f"({len(batch)}, {classes}): one logit per class in the metadata",
                          "make the model return (N, classes) logits, or fix class_names in the metadata")
    return logits


def _to_onnx(torch: ModuleType, onnx: ModuleType, model: torch.nn.Module, example: np.ndarray, opset: int) -> Any:
    """The model as an onnx.ModelProto with a dynamic batch axis: TorchScript exporter, else torch.export."""
    try:
        return _torchscript_export(torch, onnx, model, example, opset)
    except Exception as torchscript_error:  # torch raises many unrelated types here
        try:
            return _dynamo_export(torch, model, example, opset)
        except Exception as dynamo_error:
            raise ExportError(f"torch.onnx cannot export the model (TorchScript exporter: {torchscript_error}; "
                              f"torch.export-based exporter: {dynamo_error})",
                              "replace the operators named above, or export with a newer opset") from dynamo_error


def _torchscript_export(torch: ModuleType, onnx: ModuleType, model: torch.nn.Module, example: np.ndarray,
                        opset: int) -> Any:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "legacy exporter" notices, not actionable here
        warnings.filterwarnings("ignore", message="Constant folding", category=UserWarning)  # harmless Slice note
        graph, outputs = _graph_module(torch, model)
        torch.onnx.export(graph, (torch.from_numpy(example),), buffer, input_names=[INPUT_NAME],
                          output_names=outputs, opset_version=opset, dynamo=False, do_constant_folding=True,
                          dynamic_axes={INPUT_NAME: {0: "batch"}, **{name: {0: "batch"} for name in outputs}})
    return onnx.load_from_string(buffer.getvalue())


def _dynamo_export(torch: ModuleType, model: torch.nn.Module, example: np.ndarray, opset: int) -> Any:
    graph, outputs = _graph_module(torch, model)
    program = torch.onnx.export(graph, (torch.from_numpy(example),), None, input_names=[INPUT_NAME],
                                output_names=outputs, opset_version=max(opset, _DYNAMO_MIN_OPSET),
                                dynamo=True, verbose=False, external_data=False,
                                dynamic_shapes=({0: torch.export.Dim("batch")},))
    return program.model_proto


def _graph_module(torch: ModuleType, model: torch.nn.Module) -> tuple[torch.nn.Module, list[str]]:
    """The module to trace and its output names: ``(logits, features)`` for a trunk + head classifier,
    ``(logits, features, novelty)`` for one with its novelty guard."""
    from inspectloop.models.novelty import GuardedClassifier

    if isinstance(model, GuardedClassifier):
        return model, [OUTPUT_NAME, FEATURES_NAME, NOVELTY_NAME]
    trunk, head = getattr(model, "trunk", None), getattr(model, "head", None)
    if not isinstance(trunk, torch.nn.Module) or not isinstance(head, torch.nn.Module):
        return model, [OUTPUT_NAME]

    class _WithFeatures(torch.nn.Module):
        # the same submodules, not copies: the traced weights are the model's own
        def __init__(self) -> None:
            super().__init__()
            self.trunk, self.head = trunk, head

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            features = torch.flatten(self.trunk(x), 1)
            return self.head(features), features

    wrapped = _WithFeatures()
    wrapped.train(model.training)
    return wrapped, [OUTPUT_NAME, FEATURES_NAME]


def _stamp(proto: Any, metadata: ModelMetadata) -> tuple[bytes, ModelMetadata]:
    """Hash the graph and weights (metadata cleared), then embed the metadata carrying that hash."""
    del proto.metadata_props[:]
    try:
        bare = proto.SerializeToString()
    except ValueError as exc:  # protobuf refuses messages over 2 GB
        raise ExportError(f"the model is too large for one ONNX file ({exc})",
                          "use a smaller backbone; inspectloop model files hold their weights inline") from exc
    stamped = dataclasses.replace(metadata, weights_sha256=model_hash(bare), sha256="")
    stamped = dataclasses.replace(stamped, sha256=content_hash(stamped))
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, stamped.to_json()
    return proto.SerializeToString(), stamped


@contextlib.contextmanager
def _staged(out_path: Path, data: bytes) -> Iterator[Path]:
    """Write ``data`` to a temporary file beside ``out_path``; move it there only if the block succeeds."""
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".partial", dir=out_path.parent)
    except OSError as exc:
        raise _unwritable(out_path, exc) from exc
    staged = Path(name)
    try:
        try:
            with os.fdopen(handle, "wb") as stream:
                stream.write(data)
                stream.flush()
                os.fsync(stream.fileno())
            staged.chmod(0o644)
        except OSError as exc:
            raise _unwritable(out_path, exc) from exc
        yield staged
        try:
            os.replace(staged, out_path)
        except OSError as exc:
            raise _unwritable(out_path, exc) from exc
    finally:
        staged.unlink(missing_ok=True)


def _unwritable(out_path: Path, exc: OSError) -> ExportError:
    return ExportError(f"cannot write the model file {out_path} ({exc.strerror or exc})",
                       "check that the folder exists, is writable and has free space")


def _file_logits(path: Path, batch: np.ndarray,
                 signing_key: Ed25519PrivateKey | None) -> tuple[np.ndarray, SignatureStatus]:
    """Logits from the file on disk, loaded exactly as the edge loads it (metadata, hash and, when
    signed, the signature checked against the signing key), and its signature status."""
    try:
        model = EdgeModel(path, threads=_threads(), trusted_keys=_own_key(signing_key), backend=REFERENCE)
    except ModelFileError as exc:
        raise ExportError(f"the exported file does not load in the edge runtime: {exc.message}", exc.hint) from exc
    return _session_logits(model, batch), model.signature


# --- signing (kept apart: the format lives in inspectloop.runtime.signing) ---------------------------

def _sign(data: bytes, signing_key: Ed25519PrivateKey | None) -> bytes:
    """The stamped model bytes, signed with ``signing_key`` when one is given."""
    return data if signing_key is None else sign_model(data, signing_key)


def _own_key(signing_key: Ed25519PrivateKey | None) -> tuple[PublicKey, ...]:
    """The signing key's public half as the one trusted key (none when not signing)."""
    return () if signing_key is None else (public_key_of(signing_key, "the signing key"),)


def _session_logits(model: EdgeModel, batch: np.ndarray) -> np.ndarray:
    chunks = [model.session.run((OUTPUT_NAME,), {INPUT_NAME: batch[start:start + _CHUNK]})[0]
              for start in range(0, len(batch), _CHUNK)]
    return np.concatenate(chunks)


def _compare(expected: np.ndarray, got: np.ndarray) -> tuple[float, float]:
    """(max abs difference, top-1 agreement) of two logit arrays of the same shape."""
    if expected.shape != got.shape:
        raise ExportError(f"the exported model gives outputs of shape {got.shape}, the source {expected.shape}",
                          "re-export; the graph lost or changed its batch or class dimension")
    diff = float(np.max(np.abs(expected.astype(np.float64) - got.astype(np.float64))))
    agreement = float(np.mean(expected.argmax(axis=1) == got.argmax(axis=1)))
    return diff, agreement


# --- INT8 --------------------------------------------------------------------------------------------

def _int8_metadata(meta: ModelMetadata, model_path: Path) -> ModelMetadata:
    if meta.model_version.endswith(INT8_SUFFIX):
        raise ExportError(f"{model_path} is already an INT8 model ({meta.model_version})",
                          "quantize the float model it was made from")
    return dataclasses.replace(meta, model_version=meta.model_version + INT8_SUFFIX, created_at=utc_timestamp())


def _quantize(onnx: ModuleType, quantization: ModuleType, model_path: Path, calibration: np.ndarray) -> Any:
    """Static QDQ quantisation (QUInt8 activations, per-channel QInt8 weights), MinMax calibration."""
    proto = onnx.load_from_string(model_path.read_bytes())
    del proto.metadata_props[:]
    with tempfile.TemporaryDirectory(prefix="inspectloop-int8-") as work:
        source, prepared, target = (str(Path(work) / name) for name in ("float.onnx", "prepared.onnx", "int8.onnx"))
        onnx.save_model(proto, source)
        try:
            quantization.quant_pre_process(source, prepared)  # shape inference + graph optimisation first
            quantization.quantize_static(
                prepared, target, _calibration_reader(quantization, calibration),
                quant_format=quantization.QuantFormat.QDQ, per_channel=True,
                activation_type=quantization.QuantType.QUInt8, weight_type=quantization.QuantType.QInt8,
                calibrate_method=quantization.CalibrationMethod.MinMax,
                nodes_to_exclude=_guard_nodes(onnx.load(prepared)))
        except Exception as exc:  # onnxruntime.quantization raises untyped errors
            raise ExportError(f"onnxruntime could not quantize the model ({exc})",
                              "deploy the float model, or report the failing operator") from exc
        return onnx.load_from_string(Path(target).read_bytes())


def _guard_nodes(proto: Any) -> list[str]:
    """The novelty guard's nodes: kept in float, since its threshold was set on float distances, and an
    8-bit distance to the nearest of thousands of bank rows would blur the margin the threshold sits on."""
    return [node.name for node in proto.graph.node if "/distance/" in node.name]


def _calibration_reader(quantization: ModuleType, calibration: np.ndarray) -> Any:
    """A CalibrationDataReader feeding ``calibration`` in small batches."""

    class _Reader(quantization.CalibrationDataReader):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            self._batches = iter([calibration[i:i + 8] for i in range(0, len(calibration), 8)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._batches, None)
            return None if batch is None else {INPUT_NAME: batch}

    return _Reader()
