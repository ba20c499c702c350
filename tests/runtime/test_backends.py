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
from inspectloop.runtime.backends import BACKEND_ENV, parity_difference
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


class _Skewed:
    """A runner that agrees with onnxruntime except for a small offset on every output."""

    def __init__(self, session: object, offset: float) -> None:
        self.session, self.offset = session, offset

    def run(self, names: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        return [out + self.offset for out in self.session.run(names, feed)]  # type: ignore[attr-defined]


def test_parity_check_names_the_output_that_differs() -> None:
    session = EdgeModel(TINY_FEATURES, backend="onnxruntime").session
    assert parity_difference(session, _Skewed(session, 0.0), INPUT_NAME) is None
    found = parity_difference(session, _Skewed(session, 0.5), INPUT_NAME)
    assert found is not None and found.startswith("output 'logits' differs by 0.5")


@pytest.mark.openvino
def test_auto_with_openvino_runs_on_it_with_the_same_answers() -> None:
    _openvino_or_skip()
    reference = EdgeModel(TINY_FEATURES, backend="onnxruntime")
    model = EdgeModel(TINY_FEATURES)
    assert (model.backend_name, model.backend_reason) == ("openvino", "in parity with onnxruntime at load")
    for seed in range(6):
        image = synthetic_image(("good", "scratch", "dark")[seed % 3], seed)
        got, features = model.predict_with_features(image)
        want, want_features = reference.predict_with_features(image)
        assert (got.label, got.decision) == (want.label, want.decision)
        assert got.scores == pytest.approx(want.scores, abs=1e-4)
        assert features == pytest.approx(want_features, abs=1e-3)


@pytest.mark.openvino
def test_openvino_takes_other_batch_sizes_too() -> None:
    _openvino_or_skip()
    batch = np.random.default_rng(5).normal(0, 1, (4, 3, 64, 64)).astype(np.float32)
    got = EdgeModel(TINY, backend="openvino").predict_array(batch)
    want = EdgeModel(TINY, backend="onnxruntime").predict_array(batch)
    assert got.shape == (4, 3)
    assert got == pytest.approx(want, abs=1e-4)


@pytest.mark.openvino
def test_out_of_parity_falls_back_to_onnxruntime_with_the_reason_logged(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    _openvino_or_skip()
    from inspectloop.runtime import backends

    real_run = backends.OpenVinoRunner.run
    monkeypatch.setattr(backends.OpenVinoRunner, "run",  # an OpenVINO build that computes one logit wrongly
                        lambda self, names, feed: [out + 0.25 for out in real_run(self, names, feed)])
    with caplog.at_level(logging.WARNING, logger="inspectloop.runtime.backends"):
        model = EdgeModel(TINY)
    assert model.backend_name == "onnxruntime"
    assert model.backend_reason.startswith("OpenVINO's outputs differ from onnxruntime's: output 'logits' differs")
    assert "running on onnxruntime: OpenVINO's outputs differ" in caplog.text
    with pytest.raises(BackendError, match="the OpenVINO backend was asked for, but OpenVINO's outputs differ"):
        EdgeModel(TINY, backend="openvino")
