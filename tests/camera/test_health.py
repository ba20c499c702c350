"""Camera health: MTF50 from synthetic slanted edges of known blur, flat-field vignetting, grading, bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from inspectloop.camera.health import (
    CameraBaseline,
    CameraLimits,
    Limit,
    Status,
    check_camera,
    measure_baseline,
    measure_flat_field,
    measure_slanted_edge,
)
from inspectloop.errors import CameraCheckError
from tests.camera.targets import flat_field, slanted_edge


def gaussian_mtf50(sigma: float) -> float:
    return math.sqrt(math.log(2.0) / 2.0) / (math.pi * sigma)


@pytest.mark.parametrize("sigma", [0.8, 1.0, 1.5, 2.0, 3.0])
@pytest.mark.parametrize("angle", [3.0, 5.0, -8.0])
def test_mtf50_of_a_gaussian_blurred_edge(sigma: float, angle: float) -> None:
    measured = measure_slanted_edge(slanted_edge(sigma, angle, seed=int(sigma * 10)))
    assert measured.mtf50 == pytest.approx(gaussian_mtf50(sigma), rel=0.05)
    assert measured.angle_deg == pytest.approx(angle, abs=0.2)


def test_mtf50_of_a_horizontal_edge_and_a_pil_image() -> None:
    edge = Image.fromarray(slanted_edge(1.5, 6.0).T.astype(np.uint8), "L")
    assert measure_slanted_edge(edge).mtf50 == pytest.approx(gaussian_mtf50(1.5), rel=0.07)


def test_flat_field_measures_vignetting_and_uniformity() -> None:
    even, vignetted = measure_flat_field(flat_field(0.0)), measure_flat_field(flat_field(0.3))
    assert even.uniformity > 0.95 and even.corner_ratio == pytest.approx(1.0, abs=0.01)
    assert vignetted.corner_ratio == pytest.approx(0.7 / 0.9975, abs=0.04)  # last band: r from 0.9 to 1
    assert vignetted.uniformity < 0.8
    assert list(vignetted.vignetting) == sorted(vignetted.vignetting, reverse=True)
    assert vignetted.intensity == pytest.approx(180 * (1 - 0.3 * 0.37), rel=0.05)


def _baseline() -> CameraBaseline:
    return measure_baseline("cam-2", flat_field(0.1), slanted_edge(1.2), recorded_at="2025-01-01T00:00:00Z")


def test_an_unchanged_camera_passes() -> None:
    report = check_camera(_baseline(), flat_field(0.1, seed=1), slanted_edge(1.2, seed=1))
    assert report.status == Status.passed
    assert [c.check for c in report.checks] == ["uniformity", "vignetting", "intensity", "mtf50"]


def test_focus_drift_dust_and_dimming_are_graded() -> None:
    report = check_camera(_baseline(), flat_field(0.25, level=160, seed=1), slanted_edge(1.45, seed=1))
    checks = {c.check: c for c in report.checks}
    assert checks["mtf50"].status == Status.warn  # 1.2 / 1.45: 17% down
    assert checks["mtf50"].change == pytest.approx(1.2 / 1.45 - 1, abs=0.03)
    assert checks["intensity"].status == Status.warn  # about 16% down
    assert checks["vignetting"].status == Status.fail
    assert report.status == Status.fail
    assert "cam-2: mtf50" in checks["mtf50"].message and "vs baseline" in checks["mtf50"].message
    json.dumps(report.to_dict())


def test_limits_are_configurable_and_validated() -> None:
    strict = CameraLimits(mtf50=Limit(warn=0.02, fail=0.05))
    report = check_camera(_baseline(), flat_field(0.1, seed=1), slanted_edge(1.3, seed=1), strict)
    assert {c.check: c.status for c in report.checks}["mtf50"] == Status.fail
    with pytest.raises(ValidationError):
        Limit(warn=0.2, fail=0.1)


def test_baseline_round_trips_through_json() -> None:
    baseline = _baseline()
    assert CameraBaseline.from_dict(json.loads(json.dumps(baseline.to_dict()))) == baseline


@pytest.mark.parametrize(("flat", "edge", "message"), [
    (None, slanted_edge(1.0), "needs a flat-field capture"),
    (flat_field(), None, "needs a slanted-edge capture"),
    (None, None, "needs a flat-field and a slanted-edge capture"),
    (flat_field(size=(200, 120)), slanted_edge(1.0), "flat-field capture is 200x120 pixels; the baseline's was 160x120"),
    (np.full((120, 160), 3.0), slanted_edge(1.0), "blank"),
    (np.full((120, 160), 255.0), slanted_edge(1.0), "saturated"),
    (slanted_edge(1.0, size=160)[:120], slanted_edge(1.0), "not flat"),
    (flat_field(), np.full((128, 128), 120.0), "no edge"),
    (flat_field(), slanted_edge(1.0, angle_deg=0.0), "aligned with the pixel grid"),
    (flat_field(), np.random.default_rng(0).uniform(0, 255, (128, 128)), "no single straight edge"),
])
def test_bad_captures_name_the_problem_and_the_fix(flat: np.ndarray | None, edge: np.ndarray | None,
                                                    message: str) -> None:
    with pytest.raises(CameraCheckError, match=message) as caught:
        check_camera(_baseline(), flat, edge)
    assert caught.value.hint


def test_a_tiny_capture_is_refused() -> None:
    with pytest.raises(CameraCheckError, match="needs at least 64x64"):
        measure_flat_field(np.full((32, 32), 100.0))
