"""Choosing the edge backend: onnxruntime always works; OpenVINO runs when installed and in parity.

The tests that run OpenVINO itself are marked ``openvino``: the edge-only venv (no openvino, as on a camera
PC without the extra) deselects them, and where openvino is missing they skip saying so. The rest run
everywhere, openvino or not.
"""

from __future__ import annotations

import logging
import sys

import numpy as np
import pytest

from inspectloop.errors import BackendError, MissingExtraError
from inspectloop.runtime import EdgeModel
from inspectloop.runtime.backends import (
    BACKEND_ENV, DEFAULT_TOLERANCE, TOLERANCE_ENV, ParityCheck, image_probes, parity_difference,
)
from inspectloop.runtime.model import INPUT_NAME
from tests.runtime.helpers import TINY, TINY_FEATURES, synthetic_image

def _openvino_or_skip() -> None:
    pytest.importorskip("openvino", reason="openvino is not installed: pip install 'inspectloop[openvino]'")


@pytest.fixture
def no_openvino(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on an edge install without the extra: importing openvino fails."""
    monkeypatch.setitem(sys.modules, "openvino", None)


def test_onnxruntime_when_asked_for_by_argument() -> None:
    model = EdgeModel(TINY, backend="onnxruntime")
    assert (model.backend_name, model.backend_reason) == ("onnxruntime", "asked for")
    assert model.runner is model.session


def test_onnxruntime_when_asked_for_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BACKEND_ENV, "ONNXRuntime")
    assert EdgeModel(TINY).backend_name == "onnxruntime"


def test_auto_without_openvino_runs_on_onnxruntime_and_says_why(no_openvino: None) -> None:
    model = EdgeModel(TINY)
    assert model.backend_name == "onnxruntime"
    assert model.backend_reason == "openvino is not installed (pip install 'inspectloop[openvino]')"
    assert model.predict(synthetic_image("scratch", 3)).label in ("good", "scratch", "dark")


def test_forcing_openvino_without_it_names_the_extra(no_openvino: None) -> None:
    with pytest.raises(MissingExtraError) as caught:
        EdgeModel(TINY, backend="openvino")
    assert caught.value.hint == "pip install 'inspectloop[openvino]'"


def test_an_unknown_backend_is_refused_with_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BACKEND_ENV, "tensorrt")
    with pytest.raises(BackendError) as caught:
        EdgeModel(TINY)
    assert caught.value.message == f"unknown edge backend 'tensorrt' in {BACKEND_ENV}"
    assert "auto, onnxruntime, openvino" in (caught.value.hint or "")


def _skew(outputs: list[np.ndarray], logit: float = 0.0, features: float = 0.0) -> list[np.ndarray]:
    """onnxruntime's outputs with the first class's logit raised by ``logit`` and every feature by ``features``."""
    logits = outputs[0].copy()
    logits[:, 0] += logit
    return [logits, *(out + features for out in outputs[1:])]


class _Skewed:
    """A runner that agrees with onnxruntime except for the given offsets (see ``_skew``)."""

    def __init__(self, session: object, **offsets: float) -> None:
        self.session, self.offsets = session, offsets

    def run(self, names: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        return _skew(self.session.run(names, feed), **self.offsets)  # type: ignore[attr-defined]


def _check(model: EdgeModel, tolerance: float = DEFAULT_TOLERANCE) -> ParityCheck:
    return ParityCheck(image_probes(model._prepare, model.metadata.input_size, "L"), tolerance=tolerance)


def test_parity_is_judged_on_probabilities_and_named_per_output() -> None:
    model = EdgeModel(TINY_FEATURES, backend="onnxruntime")
    session, check = model.session, _check(model)
    assert parity_difference(session, _Skewed(session), INPUT_NAME, check) is None
    assert parity_difference(session, _Skewed(session, logit=1e-3), INPUT_NAME, check) is None  # p moves < 1e-3
    found = parity_difference(session, _Skewed(session, logit=0.5), INPUT_NAME, check)
    assert found is not None and found.startswith("class probabilities differ by 0.")
    assert f"(tolerance {DEFAULT_TOLERANCE:g}) on probe " in found
    assert parity_difference(session, _Skewed(session, logit=0.5), INPUT_NAME, _check(model, 0.5)) is None
    found = parity_difference(session, _Skewed(session, features=10.0), INPUT_NAME, check)
    assert found is not None and found.startswith("output 'features' differs by 10")


def test_probes_look_like_images_not_noise() -> None:
    """Random tensors give a trained model small logits and hide the differences real images show."""
    model = EdgeModel(TINY, backend="onnxruntime")
    probes = _check(model).probes
    assert len(probes) == 8 and all(p.shape == (1, 3, 64, 64) for p in probes)
    assert len({p.tobytes() for p in probes}) == 8  # all different ...
    assert all(np.array_equal(a, b) for a, b in zip(probes, _check(model).probes))  # ... and the same every load
    pixels = probes[0][0, 0] * model.preprocess.std[0] + model.preprocess.mean[0]
    assert 0 <= pixels.min() and pixels.max() <= 1  # in the 8-bit range, as decoded images are


def test_a_bad_tolerance_is_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOLERANCE_ENV, "five percent")
    with pytest.raises(BackendError) as caught:
        EdgeModel(TINY, backend="openvino")
    assert caught.value.message == f"{TOLERANCE_ENV}='five percent' is not a probability difference between 0 and 1"


@pytest.mark.openvino
def test_auto_with_openvino_runs_on_it_with_the_same_answers() -> None:
    _openvino_or_skip()
    reference = EdgeModel(TINY_FEATURES, backend="onnxruntime")
    model = EdgeModel(TINY_FEATURES)
    assert model.backend_name == "openvino"
    assert model.backend_reason.startswith("in parity with onnxruntime at load (")
    for seed in range(6):
        image = synthetic_image(("good", "scratch", "dark")[seed % 3], seed)
        got, features = model.predict_with_features(image)
        want, want_features = reference.predict_with_features(image)
        assert (got.label, got.decision) == (want.label, want.decision)
        assert got.scores == pytest.approx(want.scores, abs=DEFAULT_TOLERANCE)
        assert features == pytest.approx(want_features, rel=0.02, abs=0.02)


@pytest.mark.openvino
def test_openvino_takes_other_batch_sizes_too() -> None:
    _openvino_or_skip()
    batch = np.random.default_rng(5).normal(0, 1, (4, 3, 64, 64)).astype(np.float32)
    got = EdgeModel(TINY, backend="openvino").predict_array(batch)
    want = EdgeModel(TINY, backend="onnxruntime").predict_array(batch)
    assert got.shape == (4, 3)
    assert got == pytest.approx(want, abs=DEFAULT_TOLERANCE)


@pytest.mark.openvino
def test_out_of_parity_falls_back_to_onnxruntime_with_the_reason_logged(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    _openvino_or_skip()
    from inspectloop.runtime import backends

    real_run = backends.OpenVinoRunner.run
    monkeypatch.setattr(backends.OpenVinoRunner, "run",  # an OpenVINO build that computes one logit wrongly
                        lambda self, names, feed: _skew(real_run(self, names, feed), logit=0.5))
    monkeypatch.setattr(backends, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="inspectloop.runtime.backends"):
        model = EdgeModel(TINY)
        again = EdgeModel(TINY)  # the same model loaded again in this process: the same reason, not warned twice
    assert model.backend_name == again.backend_name == "onnxruntime"
    assert model.backend_reason == again.backend_reason
    assert model.backend_reason.startswith("OpenVINO's outputs differ from onnxruntime's: ")
    assert "out of parity: class probabilities differ by" in model.backend_reason
    assert caplog.text.count("running on onnxruntime: OpenVINO's outputs differ") == 1
    with pytest.raises(BackendError, match="the OpenVINO backend was asked for, but OpenVINO's outputs differ"):
        EdgeModel(TINY, backend="openvino")


@pytest.mark.openvino
def test_asked_for_by_name_openvino_falls_back_to_float32(monkeypatch: pytest.MonkeyPatch) -> None:
    """Auto takes OpenVINO for its speed (its native precision) or not at all; asked for by name, OpenVINO
    runs in float32 when its native precision is out of parity."""
    _openvino_or_skip()
    from inspectloop.runtime import backends

    real_run = backends.OpenVinoRunner.run
    monkeypatch.setattr(backends.OpenVinoRunner, "run",  # the native precision too coarse; float32 exact
                        lambda self, names, feed: _skew(real_run(self, names, feed),
                                                        logit=0.0 if self.precision == "f32" else 0.5))
    native = backends.OpenVinoRunner(TINY.read_bytes(), 1, INPUT_NAME, "native").precision
    forced = EdgeModel(TINY, backend="openvino")
    assert forced.backend_name == "openvino"
    assert forced.backend_reason.startswith("in parity with onnxruntime at load (f32, tolerance 0.01)")
    auto = EdgeModel(TINY)
    assert auto.backend_name == ("openvino" if native == "f32" else "onnxruntime")


def test_the_command_line_names_a_missing_backend_in_one_line(no_openvino: None,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from inspectloop.runtime.__main__ import main

    assert main([str(TINY), "never-read.png", "--backend", "openvino"]) == 2  # refused before any image is read
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == ("error: this needs the 'openvino' package, which is not installed "
                            "(pip install 'inspectloop[openvino]')\n")
