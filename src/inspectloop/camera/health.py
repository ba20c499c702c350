"""Camera health: flat-field uniformity and vignetting, lighting intensity, and MTF50 from a slanted edge.

A camera is measured once at deployment (:class:`CameraBaseline`) and then checked against it
(:func:`check_camera`): each figure is compared with its baseline and graded pass / warn / fail by
relative change against :class:`CameraLimits`. Pure functions on greyscale arrays or PIL images.

MTF50 follows the ISO 12233 slanted-edge method: locate the edge per row, fit a line, project every
pixel onto the edge normal into a 4x oversampled edge-spread function (ESF), differentiate to the
line-spread function (LSF), apply a Hamming window, FFT, and read where the MTF falls to 0.5.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, cast

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, model_validator

from inspectloop.errors import CameraCheckError
from inspectloop.runtime.images import to_grey_array

MIN_SIDE = 64  # smaller captures hold too few pixels for a smoothed field or an edge fit
OVERSAMPLE = 4  # ESF bins per pixel (ISO 12233)
RADIAL_BANDS = 10
_SATURATED_SHARE = 0.01  # more than this at 255 and the flat field's bright areas are clipped
_DARK_MEAN = 10.0  # grey levels: lens cap on, light off
_MIN_EDGE_CONTRAST = 20.0  # grey levels between the two sides of the edge
_MIN_EDGE_ANGLE_DEG = 1.0  # closer to the pixel grid and the phases do not fill the oversampled bins
_MAX_EDGE_RESIDUAL_PX = 1.5  # row edge positions scatter more than this around the fit: no straight edge

Capture = Image.Image | np.ndarray


# --- flat field -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FlatField:
    """A flat-field capture's figures: ``uniformity`` = min/max of the smoothed image (1 = perfectly even);
    ``vignetting`` = mean intensity per radius band (centre to corner) over the centre band's;
    ``corner_ratio`` = the last band's value; ``intensity`` = mean grey level."""

    uniformity: float
    vignetting: tuple[float, ...]
    corner_ratio: float
    intensity: float


def measure_flat_field(capture: Capture) -> FlatField:
    """Uniformity, vignetting profile and mean intensity of a flat-field capture (CameraCheckError if unusable)."""
    grey = _grey(capture, "flat-field")
    _check_flat(grey)
    smoothed = _block_means(grey, max(4, min(grey.shape) // 32))
    profile = radial_profile(grey)
    return FlatField(float(smoothed.min() / smoothed.max()), profile, profile[-1], float(grey.mean()))


def radial_profile(grey: np.ndarray, bands: int = RADIAL_BANDS) -> tuple[float, ...]:
    """Mean intensity in ``bands`` equal-width rings from the image centre to its corners, centre ring = 1."""
    height, width = grey.shape
    yy, xx = np.mgrid[0:height, 0:width]
    radius = np.hypot(yy - (height - 1) / 2.0, xx - (width - 1) / 2.0)
    band = np.minimum((radius / radius.max() * bands).astype(int), bands - 1)
    means = np.bincount(band.ravel(), weights=grey.ravel(), minlength=bands) / np.bincount(band.ravel(), minlength=bands)
    return tuple(float(v) for v in means / means[0])


def _check_flat(grey: np.ndarray) -> None:
    if grey.mean() < _DARK_MEAN:
        raise CameraCheckError(f"the flat-field capture is blank (mean grey level {grey.mean():.1f})",
                               "switch the lighting on, remove the lens cap and capture the flat-field target again")
    saturated = float(np.mean(grey >= 254.5))
    if saturated > _SATURATED_SHARE:
        raise CameraCheckError(f"the flat-field capture is saturated ({saturated:.0%} of pixels at full scale)",
                               "lower the exposure or gain until the brightest area is below full scale, then capture again")
    smoothed = _block_means(grey, max(4, min(grey.shape) // 32))
    if smoothed.min() / smoothed.max() < 0.2 or _texture(grey) > 0.15:
        raise CameraCheckError("the flat-field capture is not flat: it shows edges, texture or a very uneven field",
                               "fill the view with the flat-field target (an evenly lit white or grey card) and capture again")


def _texture(grey: np.ndarray) -> float:
    """Spread of the smoothed field's local detail relative to its mean: near 0 for a flat card."""
    block = max(4, min(grey.shape) // 32)
    fine = _block_means(grey, 2)
    coarse = np.kron(_block_means(fine, block // 2), np.ones((block // 2, block // 2)))
    fine = fine[:coarse.shape[0], :coarse.shape[1]]
    return float(np.std(fine - coarse) / max(grey.mean(), 1.0))


def _block_means(grey: np.ndarray, block: int) -> np.ndarray:
    rows, cols = grey.shape[0] // block, grey.shape[1] // block
    trimmed = grey[:rows * block, :cols * block]
    return trimmed.reshape(rows, block, cols, block).mean(axis=(1, 3))


# --- slanted edge ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EdgeMeasurement:
    """MTF50 in cycles/pixel from a slanted edge; the edge's angle from the pixel grid; the MTF curve."""

    mtf50: float
    angle_deg: float
    frequencies: tuple[float, ...]
    mtf: tuple[float, ...]


def measure_slanted_edge(capture: Capture) -> EdgeMeasurement:
    """MTF50 (cycles/pixel) of a slanted-edge capture (ISO 12233 style); CameraCheckError if no usable edge."""
    grey = _grey(capture, "slanted-edge")
    low, high = np.percentile(grey, [5, 95])
    if high - low < _MIN_EDGE_CONTRAST:
        raise CameraCheckError(f"the slanted-edge capture has no edge (contrast {high - low:.0f} grey levels)",
                               "put the slanted-edge target (a dark/light edge tilted about 5 degrees) in view and capture again")
    if np.abs(np.diff(grey, axis=0)).sum() > np.abs(np.diff(grey, axis=1)).sum():
        grey = grey.T  # a near-horizontal edge: work on rows of the transposed image
    offset, slope = _fit_edge(grey)
    angle = math.degrees(math.atan(slope))
    if abs(angle) < _MIN_EDGE_ANGLE_DEG:
        raise CameraCheckError(f"the edge is aligned with the pixel grid ({angle:.2f} degrees)",
                               "tilt the slanted-edge target by about 5 degrees and capture again")
    esf = _oversampled_esf(grey, offset, slope)
    frequencies, mtf = _mtf(esf)
    return EdgeMeasurement(_mtf50(frequencies, mtf), angle, tuple(frequencies.tolist()), tuple(mtf.tolist()))


def _fit_edge(grey: np.ndarray) -> tuple[float, float]:
    """Edge line x = offset + slope * y from per-row centroids of the windowed derivative, fitted twice."""
    derivative = _edge_weights(np.diff(grey, axis=1))
    columns = np.arange(derivative.shape[1]) + 0.5
    rows = np.arange(grey.shape[0], dtype=np.float64)
    centroids = _centroids(derivative, columns)
    offset, slope = _line(rows, centroids)
    half = max(8.0, grey.shape[1] / 8)  # second pass: only the derivative near the first fit (ISO window)
    window = np.abs(columns[None, :] - (offset + slope * rows)[:, None]) <= half
    centroids = _centroids(derivative * window, columns)
    offset, slope = _line(rows, centroids)
    residual = centroids - (offset + slope * rows)
    if not np.isfinite(residual).all() or np.std(residual) > _MAX_EDGE_RESIDUAL_PX:
        raise CameraCheckError("the slanted-edge capture shows no single straight edge",
                               "frame one straight dark/light edge tilted about 5 degrees, with nothing else in view")
    return offset, slope


def _edge_weights(derivative: np.ndarray) -> np.ndarray:
    """The derivative along rows, with the edge's polarity, minus the noise floor: noise must not pull centroids."""
    signed = derivative if derivative.sum() >= 0 else -derivative
    noise = 1.4826 * float(np.median(np.abs(signed - np.median(signed))))  # MAD: robust to the few edge pixels
    return np.maximum(signed - 3.0 * noise, 0.0)


def _centroids(weights: np.ndarray, columns: np.ndarray) -> np.ndarray:
    total = weights.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (weights * columns[None, :]).sum(axis=1) / total


def _line(rows: np.ndarray, centroids: np.ndarray) -> tuple[float, float]:
    keep = np.isfinite(centroids)
    if keep.sum() < 10:
        raise CameraCheckError("the slanted-edge capture shows no single straight edge",
                               "frame one straight dark/light edge tilted about 5 degrees, with nothing else in view")
    slope, offset = np.polyfit(rows[keep], centroids[keep], 1)
    return float(offset), float(slope)


def _oversampled_esf(grey: np.ndarray, offset: float, slope: float) -> np.ndarray:
    """Mean pixel value per quarter-pixel bin of signed distance to the edge, along its normal."""
    height, width = grey.shape
    yy, xx = np.mgrid[0:height, 0:width]
    distance = (xx - (offset + slope * yy)) / math.sqrt(1.0 + slope * slope)
    reach = min(32.0, float(np.floor(min(np.abs(distance[:, 0]).min(), np.abs(distance[:, -1]).min()))))
    if reach < 8:
        raise CameraCheckError("the edge is too close to the side of the capture",
                               "centre the slanted edge in the view, with at least 10 pixels of each side visible")
    bins = int(2 * reach * OVERSAMPLE)
    index = np.floor((distance + reach) * OVERSAMPLE).astype(int)
    inside = (index >= 0) & (index < bins)
    sums = np.bincount(index[inside], weights=grey[inside], minlength=bins)
    counts = np.bincount(index[inside], minlength=bins)
    filled = counts > 0
    if filled.mean() < 0.9:
        raise CameraCheckError("the edge's tilt does not fill the oversampled profile",
                               "tilt the slanted-edge target by about 5 degrees and use a taller region")
    centres = np.arange(bins)
    return np.interp(centres, centres[filled], sums[filled] / counts[filled])


def _mtf(esf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lsf = np.diff(esf)
    if lsf.sum() < 0:
        lsf = -lsf  # a light-to-dark edge
    centre = float(np.sum(np.arange(len(lsf)) * np.abs(lsf)) / np.sum(np.abs(lsf)))
    half = max(centre, len(lsf) - 1 - centre)
    window = 0.54 + 0.46 * np.cos(np.pi * (np.arange(len(lsf)) - centre) / half)  # Hamming centred on the LSF
    spectrum = np.abs(np.fft.rfft(lsf * window))
    frequencies = np.fft.rfftfreq(len(lsf), d=1.0 / OVERSAMPLE)  # cycles per pixel
    # the two-point derivative is itself a filter (sinc of one bin); undo it as ISO 12233 does
    correction = np.sinc(frequencies / OVERSAMPLE)
    mtf = spectrum / spectrum[0] / np.maximum(correction, 0.1)
    keep = frequencies <= 1.0
    return frequencies[keep], mtf[keep]


def _mtf50(frequencies: np.ndarray, mtf: np.ndarray) -> float:
    below = np.nonzero(mtf < 0.5)[0]
    if len(below) == 0 or below[0] == 0:
        raise CameraCheckError("the edge's MTF never falls to 50% below 1 cycle/pixel",
                               "the capture is aliased or synthetic; use a real optical slanted-edge target")
    i = below[0]
    f0, f1, m0, m1 = frequencies[i - 1], frequencies[i], mtf[i - 1], mtf[i]
    return float(f0 + (m0 - 0.5) * (f1 - f0) / (m0 - m1))


# --- baseline and check -------------------------------------------------------------------------------

class Limit(BaseModel):
    """Relative change (a fraction of the baseline) at which a check warns and at which it fails."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    warn: float
    fail: float

    @model_validator(mode="after")
    def _ordered(self) -> Limit:
        if not 0.0 < self.warn < self.fail:
            raise ValueError(f"need 0 < warn < fail, got warn={self.warn}, fail={self.fail}")
        return self


class CameraLimits(BaseModel):
    """Pass / warn / fail limits per check, as relative change against the baseline.

    Uniformity, vignetting (corner ratio) and MTF50 count drops only; intensity counts either way.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    uniformity: Limit = Limit(warn=0.05, fail=0.10)
    vignetting: Limit = Limit(warn=0.05, fail=0.10)
    mtf50: Limit = Limit(warn=0.10, fail=0.20)
    intensity: Limit = Limit(warn=0.10, fail=0.20)


class Status(StrEnum):
    passed = "pass"
    warn = "warn"
    fail = "fail"


@dataclass(frozen=True)
class CameraBaseline:
    """A camera's figures recorded at deployment, and the capture sizes they came from."""

    camera: str
    uniformity: float
    vignetting: tuple[float, ...]
    intensity: float
    mtf50: float
    flat_size: tuple[int, int]
    edge_size: tuple[int, int]
    recorded_at: str = ""

    @property
    def corner_ratio(self) -> float:
        return self.vignetting[-1]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        data = asdict(self)
        return {**data, "vignetting": list(self.vignetting), "flat_size": list(self.flat_size),
                "edge_size": list(self.edge_size)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CameraBaseline:
        """Inverse of :meth:`to_dict`."""
        try:
            return cls(str(data["camera"]), float(data["uniformity"]), tuple(float(v) for v in data["vignetting"]),
                       float(data["intensity"]), float(data["mtf50"]), _size(data["flat_size"]),
                       _size(data["edge_size"]), str(data.get("recorded_at", "")))
        except (KeyError, TypeError, ValueError) as exc:
            raise CameraCheckError(f"a stored camera baseline cannot be read ({exc!r})",
                                   "record the camera baseline again") from exc


def _size(value: Any) -> tuple[int, int]:
    width, height = value
    return int(width), int(height)


def measure_baseline(camera: str, flat: Capture | None, edge: Capture | None, recorded_at: str = "") -> CameraBaseline:
    """Measure ``camera``'s flat-field and slanted-edge captures into a baseline (nothing is stored)."""
    flat, edge = _targets(flat, edge)
    field = measure_flat_field(flat)
    measured = measure_slanted_edge(edge)
    return CameraBaseline(camera, field.uniformity, field.vignetting, field.intensity, measured.mtf50,
                          _capture_size(flat), _capture_size(edge), recorded_at)


@dataclass(frozen=True)
class CheckResult:
    """One check: the measured value beside the baseline, the relative change and the limits applied."""

    check: str
    status: Status
    measured: float
    baseline: float
    change: float
    warn: float
    fail: float
    message: str


@dataclass(frozen=True)
class CameraReport:
    """Every check of one camera; ``status`` is the worst of them."""

    camera: str
    checks: tuple[CheckResult, ...]

    @property
    def status(self) -> Status:
        statuses = {check.status for check in self.checks}
        return Status.fail if Status.fail in statuses else Status.warn if Status.warn in statuses else Status.passed

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"camera": self.camera, "status": str(self.status),
                "checks": [{**asdict(c), "status": str(c.status)} for c in self.checks]}


def check_camera(baseline: CameraBaseline, flat: Capture | None, edge: Capture | None,
                 limits: CameraLimits | None = None) -> CameraReport:
    """Measure new captures and grade each figure against ``baseline`` (CameraCheckError on unusable input)."""
    limits = limits or CameraLimits()
    flat, edge = _targets(flat, edge)
    _same_size("flat-field", _capture_size(flat), baseline.flat_size)
    _same_size("slanted-edge", _capture_size(edge), baseline.edge_size)
    field = measure_flat_field(flat)
    mtf50 = measure_slanted_edge(edge).mtf50
    name = baseline.camera
    return CameraReport(name, (
        _grade(name, "uniformity", field.uniformity, baseline.uniformity, limits.uniformity, drop_only=True),
        _grade(name, "vignetting", field.corner_ratio, baseline.corner_ratio, limits.vignetting, drop_only=True),
        _grade(name, "intensity", field.intensity, baseline.intensity, limits.intensity, drop_only=False),
        _grade(name, "mtf50", mtf50, baseline.mtf50, limits.mtf50, drop_only=True),
    ))


def _grade(camera: str, check: str, measured: float, baseline: float, limit: Limit, *, drop_only: bool) -> CheckResult:
    change = (measured - baseline) / baseline
    size = max(-change, 0.0) if drop_only else abs(change)
    status = Status.fail if size >= limit.fail else Status.warn if size >= limit.warn else Status.passed
    message = (f"{camera}: {check} {measured:.3g} vs baseline {baseline:.3g} ({change:+.1%}; "
               f"warn at {'-' if drop_only else '±'}{limit.warn:.0%}, fail at {'-' if drop_only else '±'}{limit.fail:.0%})"
               f" -> {status}")
    return CheckResult(check, status, measured, baseline, change, limit.warn, limit.fail, message)


def _targets(flat: Capture | None, edge: Capture | None) -> tuple[Capture, Capture]:
    missing = [name for name, capture in (("flat-field", flat), ("slanted-edge", edge)) if capture is None]
    if missing:
        raise CameraCheckError(f"the camera check needs a {' and a '.join(missing)} capture; none was given",
                               "capture the flat-field card and the slanted-edge target with this camera and pass both")
    return cast(Capture, flat), cast(Capture, edge)  # both present: checked above


def _same_size(target: str, got: tuple[int, int], expected: tuple[int, int]) -> None:
    if got != expected:
        raise CameraCheckError(f"the {target} capture is {got[0]}x{got[1]} pixels; the baseline's was "
                               f"{expected[0]}x{expected[1]}",
                               "capture at the baseline's resolution and region of interest, or record a new baseline")


def _capture_size(capture: Capture) -> tuple[int, int]:
    if isinstance(capture, Image.Image):
        return capture.size
    array = np.asarray(capture)
    return int(array.shape[1]), int(array.shape[0])


def _grey(capture: Capture, target: str) -> np.ndarray:
    if isinstance(capture, Image.Image):
        grey = to_grey_array(capture).astype(np.float64)
    else:
        grey = np.asarray(capture, dtype=np.float64)
        if grey.ndim == 3:
            grey = grey @ np.array([0.299, 0.587, 0.114])[: grey.shape[2]] if grey.shape[2] == 3 else grey.mean(axis=2)
    if grey.ndim != 2 or min(grey.shape) < MIN_SIDE:
        raise CameraCheckError(f"the {target} capture is {'x'.join(map(str, grey.shape[::-1]))} pixels; "
                               f"it needs at least {MIN_SIDE}x{MIN_SIDE}",
                               f"capture the {target} target at full resolution, or with a larger region of interest")
    return grey
