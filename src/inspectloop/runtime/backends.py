"""Inference backends for the edge runtime: onnxruntime (the core, always there) and OpenVINO (the
``openvino`` extra; faster on Intel CPUs at batch 1).

``choose_backend`` picks one when a model loads: ``auto`` (the default) takes OpenVINO when it is
installed *and* gives the same outputs as onnxruntime on that model (checked at load on fixed inputs),
else onnxruntime, with the reason logged. ``onnxruntime`` or ``openvino`` force one, by the ``backend``
argument of :class:`~inspectloop.runtime.EdgeModel` or the ``INSPECTLOOP_EDGE_BACKEND`` variable.
A backend is anything with onnxruntime's ``run(output_names, {input_name: array})``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from inspectloop.errors import BackendError, InspectloopError, require

log = logging.getLogger(__name__)
BACKEND_ENV = "INSPECTLOOP_EDGE_BACKEND"
BACKENDS = ("auto", "onnxruntime", "openvino")
REFERENCE = "onnxruntime"  # what other backends are checked against; export checks files with it
PARITY_RTOL = 1e-3  # of the output's largest magnitude: float32 kernels that sum in another order agree to ~1e-5
PARITY_ATOL = 1e-4
PARITY_SEEDS = (0, 1, 2)  # three fixed inputs: the same check on every load, on every machine


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
    through a dynamic-batch compile made on first use. float32 throughout (OpenVINO's default bf16 on CPUs
    that have it moved logits by 1e-2 here: out of parity); ``threads`` CPU threads, one stream. ``run`` may
    be called from several threads (one request each)."""

    def __init__(self, data: bytes, threads: int, input_name: str) -> None:
        ov = require("openvino", "openvino")
        self._core = ov.Core()
        self._data = data
        self._input = input_name
        # No CPU pinning: on a station PC the inference thread shares its cores with acquisition and
        # publishing, and a thread pinned to a busy core waited ~40% longer here (load average 13 on 2 cores).
        self._config = {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY",
                        "INFERENCE_PRECISION_HINT": "f32", "ENABLE_CPU_PINNING": False}
        model = self._core.read_model(data)
        shape = model.input(input_name).get_partial_shape()
        if shape.rank.is_static and shape[0].is_dynamic:
            model.reshape({input_name: [1, *(int(str(d)) for d in list(shape)[1:])]})
        self._single = self._core.compile_model(model, "CPU", self._config)
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


def choose_backend(backend: str | None, session: Any, data: bytes, threads: int, input_name: str,
                   label: str) -> BackendChoice:
    """The backend for one model: see the module doc. ``session`` is the model's onnxruntime session, the
    reference OpenVINO must agree with; BackendError when a forced OpenVINO cannot run or disagrees."""
    name = requested_backend(backend)
    if name == "onnxruntime":
        return BackendChoice("onnxruntime", session, "asked for")
    if name == "auto":
        try:
            import openvino  # noqa: F401 (only whether it is installed)
        except ImportError:
            why = "openvino is not installed (pip install 'inspectloop[openvino]')"
            return BackendChoice("onnxruntime", session, why)
    try:
        runner = OpenVinoRunner(data, threads, input_name)
        difference = parity_difference(session, runner, input_name)
    except InspectloopError:
        raise
    except Exception as exc:  # noqa: BLE001 (OpenVINO raises its own untyped errors for graphs it cannot take)
        return _fallback(name, session, label, f"OpenVINO cannot compile the model ({type(exc).__name__}: {exc})")
    if difference is not None:
        return _fallback(name, session, label, f"OpenVINO's outputs differ from onnxruntime's: {difference}")
    log.info("%s: running on OpenVINO (in parity with onnxruntime at load)", label)
    return BackendChoice("openvino", runner, "in parity with onnxruntime at load")


def parity_difference(reference: Runner, candidate: Runner, input_name: str) -> str | None:
    """None when ``candidate`` gives every output of ``reference`` (an onnxruntime session) within
    tolerance, and the same top class, on fixed inputs at batch 1; else what differs."""
    inputs = reference.get_inputs()  # type: ignore[attr-defined]
    shape = [1, *(d if isinstance(d, int) else 1 for d in inputs[0].shape[1:])]
    names = [o.name for o in reference.get_outputs()]  # type: ignore[attr-defined]
    for seed in PARITY_SEEDS:
        batch = np.random.default_rng(seed).normal(0.0, 1.0, shape).astype(np.float32)
        expected = reference.run(names, {input_name: batch})
        got = candidate.run(names, {input_name: batch})
        for name, want, have in zip(names, expected, got):
            if want.shape != have.shape:
                return f"output {name!r} has shape {have.shape}, expected {want.shape}"
            allowed = PARITY_ATOL + PARITY_RTOL * float(np.max(np.abs(want), initial=0.0))
            worst = float(np.max(np.abs(want.astype(np.float64) - have), initial=0.0))
            if not worst <= allowed:
                return f"output {name!r} differs by {worst:.3g} (allowed {allowed:.3g}) on fixed input {seed}"
            if name == "logits" and not np.array_equal(want.argmax(axis=-1), have.argmax(axis=-1)):
                return f"the top class differs on fixed input {seed}"
    return None


def _fallback(asked: str, session: Any, label: str, why: str) -> BackendChoice:
    """onnxruntime, with ``why`` logged, in auto mode; BackendError when OpenVINO was asked for by name."""
    if asked == "openvino":
        raise BackendError(f"{label}: the OpenVINO backend was asked for, but {why}",
                           f"run on onnxruntime (unset {BACKEND_ENV} or set it to onnxruntime), or re-export "
                           "the model and report the difference")
    log.warning("%s: running on onnxruntime: %s", label, why)
    return BackendChoice("onnxruntime", session, why)
