"""Inference backends for the edge runtime: onnxruntime (the core, always there) and OpenVINO (the
``openvino`` extra; faster on Intel CPUs at batch 1).

``choose_backend`` picks one when a model loads: ``auto`` (the default) takes OpenVINO when it is
installed *and* in parity with onnxruntime on that model, else onnxruntime, with the reason logged.
``onnxruntime`` or ``openvino`` force one, by the ``backend`` argument of
:class:`~inspectloop.runtime.EdgeModel` or the ``INSPECTLOOP_EDGE_BACKEND`` variable. A backend is
anything with onnxruntime's ``run(output_names, {input_name: array})``.

Parity is checked at load on image-like probes (smooth shading, texture, noise and a stripe, through the
model's own preprocessing; plain random tensors give small logits and hide differences real images show),
where decisions are made: every class probability within the tolerance and the same top class; every
other output (features, novelty, anomaly maps, boxes) within the tolerance times its largest magnitude.
The tolerance is ``DEFAULT_TOLERANCE``, or ``INSPECTLOOP_PARITY_TOLERANCE``.

OpenVINO's speed-up on CPUs with AMX or AVX-512 BF16 comes from running in bfloat16, its native precision
there; ``auto`` tries that precision only (float32 OpenVINO was slower than onnxruntime here: no reason to
take it). Asked for by name, OpenVINO falls back to float32 when its native precision is out of parity. On a
trained EfficientNet-Lite0 NEU classifier, bfloat16 moved class probabilities by up to 0.055 on real images
(median 0.0004) and its features by ~0.13: out of parity at the default 0.01, so ``auto`` runs onnxruntime.
A site whose review band absorbs such shifts can accept bfloat16 with ``INSPECTLOOP_PARITY_TOLERANCE=0.06``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from PIL import Image

from inspectloop.errors import BackendError, InspectloopError, MissingExtraError, require
from inspectloop.runtime.decision import softmax

log = logging.getLogger(__name__)
BACKEND_ENV = "INSPECTLOOP_EDGE_BACKEND"
TOLERANCE_ENV = "INSPECTLOOP_PARITY_TOLERANCE"
BACKENDS = ("auto", "onnxruntime", "openvino")
REFERENCE = "onnxruntime"  # what other backends are checked against; export checks files with it
DEFAULT_TOLERANCE = 0.01  # one point of probability: a tenth of a typical review band
OUTPUT_ATOL = 1e-4
LOGITS = "logits"
PRECISIONS = ("native", "f32")  # the CPU's fastest precision, then (OpenVINO asked for by name) float32
PROBES = 8  # image-like probes per check: the same ones on every load, on every machine
_warned: set[tuple[str, str]] = set()  # (model, reason) fallbacks already logged by this process


class Runner(Protocol):
    """What the runtime calls to infer: onnxruntime's ``InferenceSession.run`` signature."""

    def run(self, output_names: Sequence[str], input_feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The named outputs for one batch."""


@dataclass(frozen=True)
class BackendChoice:
    """The backend a model runs on (``name``), its runner, and why it was chosen (for the log and ``repr``)."""

    name: str
    runner: Runner
    reason: str


class OpenVinoRunner:
    """A model compiled by OpenVINO for the CPU: batch 1 compiled static (the edge path), other batch sizes
    through a dynamic-batch compile made on first use; ``threads`` CPU threads, one stream. ``precision``
    ``native`` is the CPU's own inference precision (``self.precision`` says which it is: bf16 where the CPU
    has AMX or AVX-512 BF16, else f32), ``f32`` forces float32; the dynamic-batch compile uses the same
    precision (parity is checked at batch 1, the edge path). ``run`` may be called from several threads."""

    def __init__(self, data: bytes, threads: int, input_name: str, precision: str = "f32") -> None:
        ov = require("openvino", "openvino")
        self._core = ov.Core()
        self._data = data
        self._input = input_name
        # No CPU pinning: on a station PC the inference thread shares its cores with acquisition and
        # publishing, and a thread pinned to a busy core waited ~40% longer here (load average 13 on 2 cores).
        self._config: dict[str, Any] = {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1,
                                        "PERFORMANCE_HINT": "LATENCY", "ENABLE_CPU_PINNING": False}
        if precision == "f32":
            self._config["INFERENCE_PRECISION_HINT"] = "f32"
        model = self._core.read_model(data)
        shape = model.input(input_name).get_partial_shape()
        if shape.rank.is_static and shape[0].is_dynamic:
            model.reshape({input_name: [1, *(int(str(d)) for d in list(shape)[1:])]})
        self._single = self._core.compile_model(model, "CPU", self._config)
        self.precision: str = self._single.get_property("INFERENCE_PRECISION_HINT").get_type_name()  # bf16, f32
        self._dynamic: Any = None
        self._lock = threading.Lock()
        self._local = threading.local()

    def run(self, output_names: Sequence[str], input_feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The named outputs, as onnxruntime's ``run`` gives them."""
        batch = input_feed[self._input]
        compiled, request = self._request(batch.shape[0] == 1)
        results = request.infer({self._input: batch})
        return [np.asarray(results[compiled.output(name)]) for name in output_names]

    def _request(self, single: bool) -> tuple[Any, Any]:
        key = "single" if single else "dynamic"
        found = getattr(self._local, key, None)
        if found is None:
            compiled = self._single if single else self._dynamic_model()
            found = (compiled, compiled.create_infer_request())
            setattr(self._local, key, found)
        return found

    def _dynamic_model(self) -> Any:
        with self._lock:
            if self._dynamic is None:
                self._dynamic = self._core.compile_model(self._core.read_model(self._data), "CPU", self._config)
            return self._dynamic


def requested_backend(backend: str | None) -> str:
    """The backend asked for: the argument, else ``INSPECTLOOP_EDGE_BACKEND``, else ``auto``."""
    asked = backend if backend is not None else os.environ.get(BACKEND_ENV, "auto")
    name = asked.strip().lower()
    if name not in BACKENDS:
        where = "the backend argument" if backend is not None else f"{BACKEND_ENV}"
        raise BackendError(f"unknown edge backend {asked!r} in {where}",
                           f"use one of {', '.join(BACKENDS)} (auto: OpenVINO when installed and in parity)")
    return name


@dataclass(frozen=True)
class ParityCheck:
    """What a candidate backend must reproduce: the reference's outputs on ``probes`` (model inputs, batch 1),
    class probabilities at ``temperature``, within ``tolerance`` (see the module doc)."""

    probes: tuple[np.ndarray, ...]
    temperature: float = 1.0
    tolerance: float = DEFAULT_TOLERANCE


def parity_tolerance() -> float:
    """``INSPECTLOOP_PARITY_TOLERANCE`` when set (BackendError when it is not a number in (0, 1)), else the default."""
    raw = os.environ.get(TOLERANCE_ENV)
    if raw is None:
        return DEFAULT_TOLERANCE
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0 < value < 1:
        raise BackendError(f"{TOLERANCE_ENV}={raw!r} is not a probability difference between 0 and 1",
                           f"unset it (default {DEFAULT_TOLERANCE:g}) or set e.g. {TOLERANCE_ENV}=0.05")
    return value


def image_probes(prepare: Callable[[Image.Image], np.ndarray], size: int, mode: str) -> tuple[np.ndarray, ...]:
    """``PROBES`` fixed image-like inputs (``mode`` L or RGB, ``size`` pixels square) through ``prepare``, the
    model's own preprocessing (which may reuse one buffer: each result is copied)."""
    probes = []
    for seed in range(PROBES):
        rng = np.random.default_rng(seed)
        planes = [_probe_plane(rng, size) for _ in range(1 if mode == "L" else 3)]
        pixels = planes[0] if mode == "L" else np.stack(planes, axis=-1)
        probes.append(np.array(prepare(Image.fromarray(pixels, mode)), dtype=np.float32, copy=True))
    return tuple(probes)


def _probe_plane(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth shading at a random contrast, sensor-like noise, a bright or dark stripe (a scratch or seam)."""
    low = Image.fromarray(rng.integers(0, 256, (6, 6), dtype=np.uint8)).resize((size, size), Image.BICUBIC)
    pixels = np.asarray(low, np.float64) * rng.uniform(0.3, 1.0) + rng.normal(0, rng.uniform(3, 25), (size, size))
    row = int(rng.integers(0, size - 8))
    pixels[row:row + int(rng.integers(2, 8)), :] += rng.choice([-80.0, 80.0])
    return np.clip(pixels + rng.uniform(-40, 40), 0, 255).astype(np.uint8)


def choose_backend(backend: str | None, session: Any, data: bytes, threads: int, input_name: str,
                   label: str, parity: Callable[[], ParityCheck]) -> BackendChoice:
    """The backend for one model: see the module doc. ``session`` is the model's onnxruntime session, the
    reference OpenVINO must agree with by ``parity()`` (made only when OpenVINO is tried); BackendError
    when a forced OpenVINO cannot run or disagrees."""
    name = requested_backend(backend)
    if name == "onnxruntime":
        return BackendChoice("onnxruntime", session, "asked for")
    if name == "auto":
        try:
            require("openvino", "openvino")  # only whether it is installed
        except MissingExtraError as missing:
            return BackendChoice("onnxruntime", session, f"openvino is not installed ({missing.hint})")
    check = parity()
    differences: list[str] = []
    for precision in PRECISIONS if name == "openvino" else PRECISIONS[:1]:  # auto: only the fast precision
        try:
            runner = OpenVinoRunner(data, threads, input_name, precision)
            difference = parity_difference(session, runner, input_name, check)
        except InspectloopError:
            raise
        except Exception as exc:  # noqa: BLE001 (OpenVINO raises its own untyped errors for graphs it cannot take)
            return _fallback(name, session, label, f"OpenVINO cannot compile the model ({type(exc).__name__}: {exc})")
        if difference is None:
            reason = f"in parity with onnxruntime at load ({runner.precision}, tolerance {check.tolerance:g})"
            if differences:
                reason += f"; {'; '.join(differences)}"
            log.info("%s: running on OpenVINO, %s", label, reason)
            return BackendChoice("openvino", runner, reason)
        differences.append(f"{runner.precision} out of parity: {difference}")
        if runner.precision == "f32":
            break  # native was float32 already: nothing more precise to try
    return _fallback(name, session, label, "OpenVINO's outputs differ from onnxruntime's: " + "; ".join(differences))


def parity_difference(reference: Runner, candidate: Runner, input_name: str, check: ParityCheck) -> str | None:
    """None when ``candidate`` agrees with ``reference`` (an onnxruntime session) on every probe of ``check``;
    else what differs first."""
    names = [o.name for o in reference.get_outputs()]  # type: ignore[attr-defined]
    for index, probe in enumerate(check.probes):
        expected = reference.run(names, {input_name: probe})
        got = candidate.run(names, {input_name: probe})
        for name, want, have in zip(names, expected, got):
            found = _output_difference(name, want, have, check)
            if found is not None:
                return f"{found} on probe {index}"
    return None


def _output_difference(name: str, want: np.ndarray, have: np.ndarray, check: ParityCheck) -> str | None:
    if want.shape != have.shape:
        return f"output {name!r} has shape {have.shape}, expected {want.shape}"
    if name == LOGITS:
        want_p, have_p = softmax(want, check.temperature), softmax(have, check.temperature)
        worst = float(np.max(np.abs(want_p - have_p), initial=0.0))
        if not worst <= check.tolerance:
            return f"class probabilities differ by {worst:.3g} (tolerance {check.tolerance:g})"
        if not np.array_equal(want.argmax(axis=-1), have.argmax(axis=-1)):
            return "the top class differs"
        return None
    allowed = OUTPUT_ATOL + check.tolerance * float(np.max(np.abs(want), initial=0.0))
    worst = float(np.max(np.abs(want.astype(np.float64) - have), initial=0.0))
    if not worst <= allowed:
        return f"output {name!r} differs by {worst:.3g} (allowed {allowed:.3g})"
    return None


def _fallback(asked: str, session: Any, label: str, why: str) -> BackendChoice:
    """onnxruntime, with ``why`` logged, in auto mode; BackendError when OpenVINO was asked for by name."""
    if asked == "openvino":
        raise BackendError(f"{label}: the OpenVINO backend was asked for, but {why}",
                           f"run on onnxruntime (unset {BACKEND_ENV} or set it to onnxruntime), or re-export "
                           "the model and report the difference")
    if (label, why) not in _warned:  # one warning per model and reason: a job that loads a model thrice says it once
        _warned.add((label, why))
        log.warning("%s: running on onnxruntime: %s", label, why)
    return BackendChoice("onnxruntime", session, why)
