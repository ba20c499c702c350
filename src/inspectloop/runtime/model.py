"""The edge runtime: load one inspectloop ONNX file, classify images, decide pass, reject or review.

Depends on numpy, Pillow and onnxruntime only. The per-image path is tuned for a small CPU:
one decode (``load_image``), one resize (``Preprocess.resize``), a lookup-table normalisation into
reused buffers (bit-identical to ``Preprocess.to_array``, about 5x faster), one ``session.run``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from PIL import Image

from inspectloop.errors import ImageError, ModelFileError, ModelTaskError
from inspectloop.runtime.backends import ParityCheck, Runner, choose_backend, image_probes, parity_tolerance
from inspectloop.runtime.decision import DecisionPolicy, softmax
from inspectloop.runtime.images import Decoded, convert_to_working, decode_image
from inspectloop.runtime import detection
from inspectloop.runtime.metadata import (
    ANOMALY,
    CLASSIFICATION,
    DETECTION,
    ModelMetadata,
    read_model_metadata,
    verify_model_hash,
)
from inspectloop.runtime.prediction import Prediction
from inspectloop.runtime.regions import Regions
from inspectloop.runtime.preprocess import Preprocess
from inspectloop.runtime.signing import PublicKey, SignatureStatus, check_signature, load_trusted_keys

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
FEATURES_NAME = "features"  # optional second output: pooled backbone features, for drift monitoring
SCORE_NAME = "score"  # anomaly models: the raw image anomaly score (N,)
HEATMAP_NAME = "heatmap"  # anomaly models: the per-pixel anomaly map (N, H, W) at the model input's size
# an anomaly file's outputs; files exported before embedding drift for anomaly models lack the features
ANOMALY_OUTPUTS = (OUTPUT_NAME, SCORE_NAME, HEATMAP_NAME, FEATURES_NAME)
NOVELTY_NAME = "novelty"  # classifiers with a novelty guard: distance (N,) to the nearest training embeddings
RUNNABLE_TASKS = (CLASSIFICATION, ANOMALY, DETECTION)

ImageSource = str | Path | bytes | Image.Image
TrustedKey = PublicKey | str | Path  # a loaded key, or the path of a PEM public key file


class EdgeModel:
    """An exported inspectloop model (a classifier or an anomaly model), ready to predict.

    The file's metadata is validated and, with ``verify_hash``, its graph and weights are checked
    against the hash recorded at export (ModelFileError if either fails). ``threads`` is the number
    of CPU threads one inference may use. ``predict`` may be called from several threads at once.

    With ``trusted_keys`` (public keys, or PEM files as ``inspectloop keys export`` writes), the file
    must be signed by one of them (ModelFileError naming the problem otherwise). Without, it runs
    whether signed or not; ``signature`` says which (``unverified`` or ``unsigned``): say so to the user.

    Each image is decided by the file's :class:`~inspectloop.runtime.decision.DecisionPolicy`
    (``policy``): its good class, per-class operating points and review band. The file's ``task``
    is classification or anomaly. ``session`` is the onnxruntime session (raw ``logits``, and
    ``features`` when the file has them: ``has_features``; see ``predict_with_features``).

    An anomaly model's scores are (P(good), P(anomaly)), a monotone map of its raw anomaly score that is
    0.5 at the calibrated threshold; its predictions also carry ``anomaly_score`` and a heatmap in
    ``regions`` (see :meth:`heatmap`).

    A classifier exported with a novelty guard (``has_novelty``) also scores each image's distance to
    what it was trained on (``Prediction.novelty``); a part that would pass but lies beyond the guard's
    threshold goes to review. Files without a guard decide as before.

    ``backend`` (``auto``, ``onnxruntime`` or ``openvino``; default the ``INSPECTLOOP_EDGE_BACKEND``
    variable, else ``auto``) is what infers: see :mod:`~inspectloop.runtime.backends`. ``backend_name``
    says which one runs and ``backend_reason`` why. ``session`` stays the onnxruntime reference either way.
    """

    def __init__(self, path: str | Path, *, threads: int = 1, verify_hash: bool = True,
                 trusted_keys: Sequence[TrustedKey] = (), backend: str | None = None) -> None:
        if type(threads) is not int or threads < 1:
            raise ValueError(f"threads must be a positive integer, got {threads!r}")
        self.path = Path(path)
        data, self.metadata = read_model(self.path, verify_hash=verify_hash)
        self.signature: SignatureStatus = verify_origin(data, trusted_keys, str(self.path))
        _check_task(self.metadata, str(self.path))
        self.session: ort.InferenceSession = open_session(data, threads, str(self.path))
        if self.metadata.task == DETECTION:
            detection.check_outputs({o.name: o.shape for o in self.session.get_outputs()}, self.metadata.input_size,
                                    len(self.metadata.class_names) - 1, str(self.path))
        else:
            _check_signature(self.session, self.metadata, str(self.path))
        self.preprocess = self.metadata.preprocess()
        self._lut = _normalisation_table(self.preprocess)
        self._uniform_lut = bool(np.array_equal(self._lut[0], self._lut[1]) and np.array_equal(self._lut[0], self._lut[2]))
        self._draft = self.preprocess.draft_size if self.metadata.jpeg_draft else None
        self._mode = "L" if self.metadata.colour_mode == "L" else None
        self._class_names = self.metadata.class_names
        self.policy = DecisionPolicy.from_metadata(self.metadata)
        self._local = threading.local()
        choice = choose_backend(backend, self.session, data, threads, INPUT_NAME, str(self.path), self._parity_check)
        self.runner: Runner = choice.runner
        self.backend_name, self.backend_reason = choice.name, choice.reason
        self.has_features = FEATURES_NAME in [o.name for o in self.session.get_outputs()]
        self.task = self.metadata.task
        if self.task == ANOMALY:
            _check_anomaly_outputs(self.session, self.metadata, str(self.path))
        self.has_novelty = _check_novelty_output(self.session, self.metadata, str(self.path))
        self._outputs = (OUTPUT_NAME, NOVELTY_NAME) if self.has_novelty else (OUTPUT_NAME,)
        # a detector's boxes reject at their class's threshold (its operating point) and review from review_from
        self._box_rule = detection.BoxRule.of(self._class_names[1:], self.metadata.thresholds,
                                              (self.metadata.detection or {}).get("review_from", {}))

    def _parity_check(self) -> ParityCheck:
        """Image-like probes through this model's own preprocessing, its temperature, the site's tolerance."""
        mode = "L" if self._mode == "L" else "RGB"
        probes = image_probes(self._prepare, self.metadata.input_size, mode)
        return ParityCheck(probes, self.metadata.temperature, parity_tolerance())

    def __repr__(self) -> str:
        meta = self.metadata
        return (f"EdgeModel({str(self.path)!r}, model={meta.model_name} {meta.model_version}, "
                f"classes={len(meta.class_names)}, backend={self.backend_name})")

    def predict(self, source: ImageSource, *, name: str | None = None) -> Prediction:
        """Classify one image (a path, the file's bytes, or a PIL image); ImageError if it cannot be used.

        A PIL image is taken as already decoded (``jpeg_draft`` applies to paths and bytes only).
        """
        return self._predict(source, name, with_features=False)[0]

    def predict_with_features(self, source: ImageSource, *,
                              name: str | None = None) -> tuple[Prediction, np.ndarray | None]:
        """``predict`` plus the image's backbone features (D,) from the same forward pass (an anomaly model's:
        its patch features averaged over the image).

        The features are None when the file has no ``features`` output (exported before it existed,
        or not a trunk + head classifier); ``inspectloop.monitor.embeddings`` can still recover them.
        """
        return self._predict(source, name, with_features=self.has_features)

    def _predict(self, source: ImageSource, name: str | None,
                 with_features: bool) -> tuple[Prediction, np.ndarray | None]:
        start = time.perf_counter()
        image, warnings = self._decode(source, name)
        decoded = time.perf_counter()
        if self.task == DETECTION:
            return self._detect(image, warnings, start, decoded), None
        batch = self._prepare(image)
        prepared = time.perf_counter()
        outputs = self._outputs + ((FEATURES_NAME,) if with_features else ())
        if self.task == ANOMALY:
            outputs = ANOMALY_OUTPUTS if with_features else ANOMALY_OUTPUTS[:3]
        results = self.runner.run(outputs, {INPUT_NAME: batch})
        probabilities = softmax(results[0], self.metadata.temperature)[0]
        inferred = time.perf_counter()
        novelty = float(results[1][0]) if self.has_novelty else None
        index, decision = self.policy.decide_one(probabilities, novelty)
        scores = dict(zip(self._class_names, probabilities.tolist()))
        end = time.perf_counter()
        latency = {"decode": _ms(decoded - start), "preprocess": _ms(prepared - decoded),
                   "infer": _ms(inferred - prepared), "total": _ms(end - start)}
        if self.task == ANOMALY:
            prediction = _anomaly_prediction(self._class_names[index], scores, decision, latency, results, image.size)
            return prediction, results[3][0] if with_features else None
        features = np.asarray(results[-1][0], dtype=np.float32).reshape(-1) if with_features else None
        label = self._class_names[index]
        return Prediction(label, scores[label], scores, decision, latency, warnings=warnings,
                          novelty=novelty), features

    def _detect(self, image: Image.Image, warnings: tuple[str, ...], start: float, decoded: float) -> Prediction:
        """A detection model's prediction: the frame tiled, boxes merged, image-level scores from the worst box."""
        meta = self.metadata
        boxes, scores, classes = detection.detect_frame(image, meta.input_size, self.run_tiles, meta.detection)
        inferred = time.perf_counter()
        shown = self._box_rule.shown(scores, classes)
        probabilities = detection.class_scores(detection.image_scores(scores, classes, len(self._class_names) - 1))
        index, decision = detection.frame_decision(self._box_rule, scores, classes,
                                                   *self.policy.decide_one(probabilities), banded=meta.review is not None)
        scored = dict(zip(self._class_names, probabilities.tolist()))
        regions = Regions(image_size=(int(image.size[0]), int(image.size[1])), class_ids=classes[shown] + 1,
                          scores=scores[shown], boxes=boxes[shown])
        end = time.perf_counter()
        latency = {"decode": _ms(decoded - start), "preprocess": 0.0, "infer": _ms(inferred - decoded),
                   "total": _ms(end - start)}
        label = self._class_names[index]
        return Prediction(label, scored[label], scored, decision, latency, regions=regions, warnings=warnings)

    def run_tiles(self, tiles: list[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
        """A detection graph's raw (boxes (N, A, 4), scores (N, A, C)) for model inputs of the input size."""
        size = self.metadata.input_size
        batch = np.empty((len(tiles), 3, size, size), dtype=np.float32)  # one call: the batch axis is dynamic
        for n, tile in enumerate(tiles):
            batch[n] = self._prepare(tile)[0]  # copied out: _prepare reuses one buffer
        boxes, scores = self.runner.run((detection.BOXES_NAME, detection.SCORES_NAME), {INPUT_NAME: batch})
        return boxes, scores

    def predict_array(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities (N, C), softmax(logits / temperature), for a preprocessed (N, 3, H, W) batch."""
        if self.task == DETECTION:
            raise ModelTaskError(f"{self.path}: a detection model gives boxes with class scores, not class "
                                 "probabilities", "use predict(image).regions for its boxes and .scores for its "
                                 "image-level score per class")
        if self.task == ANOMALY:
            raise ModelTaskError(f"{self.path}: an anomaly model gives an anomaly score and a heatmap, not class "
                                 "probabilities", "use predict(image).anomaly_score and .regions.heatmap, or "
                                 "anomaly_outputs(batch)")
        height, width = self.preprocess.shape
        if batch.ndim != 4 or batch.shape[1:] != (3, height, width) or batch.shape[0] < 1:
            raise ValueError(f"expected a preprocessed batch of shape (N, 3, {height}, {width}), got {batch.shape}")
        return self._probabilities(np.ascontiguousarray(batch, dtype=np.float32))

    def novelty_scores(self, batch: np.ndarray) -> np.ndarray:
        """The novelty guard's scores (N,) for a preprocessed (N, 3, H, W) batch; ModelTaskError without a guard."""
        if not self.has_novelty:
            raise ModelTaskError(f"{self.path}: this model has no novelty guard",
                                 "re-export the classifier with this inspectloop (every exported classifier has one)")
        return self.runner.run((NOVELTY_NAME,), {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)})[0]

    def heatmap(self, source: ImageSource, *, name: str | None = None) -> np.ndarray:
        """An anomaly model's per-pixel anomaly map (H, W) of one image; ModelTaskError for a classifier."""
        if self.task != ANOMALY:
            raise ModelTaskError(f"{self.path}: a {self.task} model gives class probabilities"
                                 f"{' and features' if self.has_features else ''}, not a heatmap",
                                 "heatmaps come from anomaly models (inspectloop train --task anomaly)")
        regions = self.predict(source, name=name).regions
        return regions.heatmap  # type: ignore[union-attr, return-value]  # the anomaly path always sets it

    def anomaly_outputs(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """An anomaly model's raw scores (N,) and heatmaps (N, H, W) for a preprocessed (N, 3, H, W) batch."""
        if self.task != ANOMALY:
            raise ModelTaskError(f"{self.path}: a {self.task} model gives class probabilities, not anomaly scores "
                                 "or heatmaps", "use predict_array(batch) for its class probabilities")
        score, heatmap = self.runner.run((SCORE_NAME, HEATMAP_NAME),
                                          {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)})
        return score, heatmap

    def _probabilities(self, batch: np.ndarray) -> np.ndarray:
        logits = self.runner.run((OUTPUT_NAME,), {INPUT_NAME: batch})[0]
        return softmax(logits, self.metadata.temperature)

    def _decode(self, source: ImageSource, name: str | None) -> tuple[Image.Image, tuple[str, ...]]:
        """The working image and the decoder's warnings (a PIL image is taken as already oriented)."""
        if isinstance(source, Image.Image):
            image, warnings = _working_image(source, name or "<image>")
            return (image.convert("L") if self._mode == "L" and image.mode != "L" else image), warnings
        decoded: Decoded = decode_image(source, name=name, draft=self._draft, mode=self._mode)
        return decoded.image, decoded.warnings

    def _prepare(self, image: Image.Image) -> np.ndarray:
        """Same numbers as ``self.preprocess(image)``, written into this thread's reused buffers.

        Each 8-bit plane is widened into a reused index array once, then every channel is one
        table lookup (``np.take`` with native indices and no bounds branch is the fast path).
        """
        pixels = np.asarray(self.preprocess.resize(image))
        batch, index = self._buffers()
        if pixels.ndim == 2:
            np.copyto(index[0], pixels, casting="unsafe")
            if self._uniform_lut:  # one lookup, two copies: same numbers, a third of the table work
                np.take(self._lut[0], index[0], out=batch[0, 0], mode="clip")
                batch[0, 1] = batch[0, 0]
                batch[0, 2] = batch[0, 0]
                return batch
            planes = (index[0], index[0], index[0])
        else:
            np.copyto(index, pixels.transpose(2, 0, 1), casting="unsafe")
            planes = (index[0], index[1], index[2])
        for channel, plane in enumerate(planes):
            np.take(self._lut[channel], plane, out=batch[0, channel], mode="clip")
        return batch

    def _buffers(self) -> tuple[np.ndarray, np.ndarray]:
        buffers = getattr(self._local, "buffers", None)
        if buffers is None:
            height, width = self.preprocess.shape
            buffers = (np.empty((1, 3, height, width), dtype=np.float32), np.empty((3, height, width), dtype=np.intp))
            self._local.buffers = buffers
        return buffers


def iter_predictions(model_path: str | Path, images: Iterable[str | Path], threads: int = 1, *,
                     trusted_keys: Sequence[TrustedKey] = ()) -> Iterator[dict[str, Any]]:
    """Load the model now (ModelFileError at once if it is bad or, with ``trusted_keys``, not signed by
    one of them), then yield one record per image.

    A record is ``{"image": path, **prediction.to_dict()}`` (its ``warnings`` say where the decode lost
    information), or ``{"image": path, "error": message}`` for an image that cannot be used; the
    iteration goes on after a bad image.
    """
    model = EdgeModel(model_path, threads=threads, trusted_keys=trusted_keys)
    return predict_records(model, images)


def verify_origin(data: bytes, trusted_keys: Sequence[TrustedKey], label: str) -> SignatureStatus:
    """The model file's signature status, checked against ``trusted_keys`` (see ``signing.check_signature``)."""
    if isinstance(trusted_keys, (str, Path, PublicKey)):  # one key given where a list is expected
        trusted_keys = [trusted_keys]
    paths = [key for key in trusted_keys if not isinstance(key, PublicKey)]
    keys = [key for key in trusted_keys if isinstance(key, PublicKey)] + list(load_trusted_keys(paths))
    return check_signature(data, keys, label)


def predict_records(model: EdgeModel, images: Iterable[str | Path]) -> Iterator[dict[str, Any]]:
    """One record per image, as ``iter_predictions`` yields them, from a loaded model."""
    for image in images:
        try:
            yield {"image": str(image), **model.predict(image).to_dict()}
        except ImageError as exc:
            yield {"image": str(image), "error": str(exc)}


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 4)


def _working_image(image: Image.Image, label: str) -> tuple[Image.Image, tuple[str, ...]]:
    try:
        image.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{label}: image data cannot be read ({exc})", "re-copy the file from the camera") from exc
    return convert_to_working(image, label)


def _normalisation_table(preprocess: Preprocess) -> np.ndarray:
    """(3, 256) float32: every 8-bit value normalised per channel exactly as ``Preprocess.to_array`` does."""
    values = np.arange(256, dtype=np.float32)[:, None]
    scale = np.asarray(preprocess.std, dtype=np.float32) * 255.0
    offset = np.asarray(preprocess.mean, dtype=np.float32) * 255.0
    return np.ascontiguousarray(((values - offset) / scale).T)


def read_model(path: Path, *, verify_hash: bool = True) -> tuple[bytes, ModelMetadata]:
    """A model file's bytes and validated metadata; with ``verify_hash``, its content checked against
    the hash recorded at export. ModelFileError (naming the file and the fix) otherwise."""
    data = _read_model_file(path)
    metadata = read_model_metadata(data, str(path))
    if verify_hash:
        verify_model_hash(data, metadata, str(path))
    return data, metadata


def _read_model_file(path: Path) -> bytes:
    """The bytes of a model file; ModelFileError naming the path and the fix when it cannot be read."""
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise ModelFileError(f"{path}: model file not found", "check the path to the exported .onnx file") from exc
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read model file ({exc.strerror})",
                             "check the path and permissions") from exc


def open_session(data: bytes, threads: int, label: str) -> ort.InferenceSession:
    """An onnxruntime CPU session tuned for batch-1 edge inference; ModelFileError when it cannot load."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: the edge log is for our records, not ORT's notices
    try:
        return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors for bad graphs
        raise ModelFileError(
            f"{label}: onnxruntime cannot load the model ({exc})",
            "re-export the model; the file may be damaged or use operators this onnxruntime lacks") from exc


def _check_task(meta: ModelMetadata, label: str) -> None:
    if meta.task not in RUNNABLE_TASKS:
        raise ModelFileError(f"{label}: a {meta.task} model; this inspectloop runs {' and '.join(RUNNABLE_TASKS)} "
                             "models only",
                             "install the inspectloop version that exported the model on this device")


def _check_signature(session: ort.InferenceSession, meta: ModelMetadata, label: str) -> None:
    inputs, outputs = session.get_inputs(), session.get_outputs()
    (height, width), classes = meta.preprocess().shape, len(meta.class_names)
    if [i.name for i in inputs] != [INPUT_NAME] or OUTPUT_NAME not in [o.name for o in outputs]:
        raise ModelFileError(f"{label}: the graph must take one input '{INPUT_NAME}' and give '{OUTPUT_NAME}', "
                             f"got inputs {[i.name for i in inputs]} and outputs {[o.name for o in outputs]}",
                             "export the model with inspectloop.export")
    if not _shape_fits(inputs[0].shape, (None, 3, height, width)):
        raise ModelFileError(f"{label}: the graph input has shape {inputs[0].shape}, "
                             f"expected (N, 3, {height}, {width})",
                             "the metadata's input size does not match the network; re-export the model")
    logits = next(o for o in outputs if o.name == OUTPUT_NAME)
    if not _shape_fits(logits.shape, (None, classes)):
        raise ModelFileError(
            f"{label}: the graph gives {logits.shape} scores, but the metadata names {classes} classes",
            "the class list does not match the network; re-export the model")


def _shape_fits(shape: list[Any], expected: tuple[int | None, ...]) -> bool:
    """True when every static dimension matches (symbolic dimensions match anything)."""
    if len(shape) != len(expected):
        return False
    return all(want is None or not isinstance(got, int) or got == want for got, want in zip(shape, expected))


def _check_anomaly_outputs(session: ort.InferenceSession, meta: ModelMetadata, label: str) -> None:
    """An anomaly model file gives logits (N, 2), a score (N,), a heatmap (N, H, W) at its input's shape and,
    since embedding drift covers anomaly models, features (N, D)."""
    outputs = {o.name: o.shape for o in session.get_outputs()}
    height, width = meta.preprocess().shape
    expected = {OUTPUT_NAME: (None, 2), SCORE_NAME: (None,), HEATMAP_NAME: (None, height, width)}
    if FEATURES_NAME in outputs:
        expected[FEATURES_NAME] = (None, None)
    for name, shape in expected.items():
        if name not in outputs or not _shape_fits(outputs[name], shape):
            raise ModelFileError(f"{label}: an anomaly model must give {name!r} of shape {shape}, got outputs {outputs}",
                                 "export the model with inspectloop.export.export_anomaly")


def _check_novelty_output(session: ort.InferenceSession, meta: ModelMetadata, label: str) -> bool:
    """Whether the file has a novelty guard: a ``novelty`` (N,) output and its threshold in the metadata (both
    or neither; a file from before the guard has neither and decides as it always did)."""
    outputs = {o.name: o.shape for o in session.get_outputs()}
    has_output, has_threshold = NOVELTY_NAME in outputs, meta.novelty is not None
    if has_output != has_threshold:
        raise ModelFileError(f"{label}: the file has {'a' if has_output else 'no'} {NOVELTY_NAME!r} output but "
                             f"{'no' if not has_threshold else 'a'} novelty threshold in its metadata",
                             "re-export the model with inspectloop.export")
    if has_output and not _shape_fits(outputs[NOVELTY_NAME], (None,)):
        raise ModelFileError(f"{label}: the {NOVELTY_NAME!r} output has shape {outputs[NOVELTY_NAME]}, expected (N,)",
                             "re-export the model with inspectloop.export")
    return has_output


def _anomaly_prediction(label: str, scores: dict[str, float], decision: Any, latency: dict[str, float],
                        results: list[np.ndarray], image_size: tuple[int, int]) -> Prediction:
    """An anomaly model's prediction: its (P(good), P(anomaly)) scores, raw score and heatmap."""
    heatmap = np.asarray(results[2][0], dtype=np.float32)
    return Prediction(label, scores[label], scores, decision, latency,
                      regions=Regions(image_size=(int(image_size[0]), int(image_size[1])), heatmap=heatmap),
                      anomaly_score=float(results[1][0]))
