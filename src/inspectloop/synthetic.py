"""A synthetic production-line sample: machined metal parts with scratches, pits and stains.

Real plant images may not be copied into the repository, so the quickstart demo and the tests use
this generator. It imitates what makes real lines hard rather than what makes pretty pictures:
three cameras with their own optics, noise and file formats, two lines, day and night shifts,
several lighting fixtures, several views per part and dated capture sessions, so that ingest,
grouped splits and drift checks all have something real to work on.

Only numpy and Pillow are used. The same seed gives the same bytes (on the same platform).
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from PIL import Image

from inspectloop.errors import IngestError, InspectloopError

CLASSES = ("good", "scratch", "pit", "stain")
MANIFEST_COLUMNS = (
    "path", "label", "camera", "line", "shift", "lighting", "part_id", "session", "captured_at", "operator",
)
_MARKER = ".inspectloop-synthetic"  # says "this folder is a generated line": only then may we overwrite it
_MANIFEST = "manifest.csv"
_REFERENCE_SIZE = 160  # defect geometry is tuned at this size and scaled with it
# The quickstart's line: after its split (inspectloop.quickstart.DEMO_SPLIT) at least 60 frozen-test
# images per class, at a size two CPU cores fine-tune on within the quickstart's few minutes.
DEMO_PER_CLASS = 180
DEMO_SIZE = 160


@dataclass(frozen=True)
class SyntheticLine:
    """A generated sample: ``root/images/<class>/<file>`` plus ``root/manifest.csv``."""

    root: Path
    manifest: Path
    classes: tuple[str, ...]
    count: int


@dataclass(frozen=True)
class _Camera:
    name: str
    line: str
    fixture: str       # the lighting fixture normally mounted at this station
    colour: bool       # True: RGB sensor; False: 8-bit monochrome
    suffix: str        # ".png" or ".jpg"
    quality: int       # JPEG quality the camera software uses
    vignetting: float  # relative fall-off in the corners
    read_noise: float  # sensor noise, in 8-bit grey levels
    blur: float        # Gaussian sigma in pixels: how far from perfect focus the lens sits
    gain: float
    file_pattern: str  # each vendor's software names files its own way


_CAMERAS = (
    _Camera("cam-A", "L1", "ring", True, ".jpg", 92, 0.22, 1.6, 0.55, 1.00, "IMG_{seq:06d}.jpg"),
    _Camera("cam-B", "L1", "dome", False, ".png", 0, 0.10, 1.0, 0.40, 1.08, "camB_{stamp}_{part}_{view}.png"),
    _Camera("cam-C", "L2", "bar", False, ".jpg", 85, 0.32, 2.0, 0.90, 0.92, "C-{stamp}-{seq:04d}.jpg"),
)
_OWNED_FILE = re.compile(r"IMG_\d{6,}\.jpg|camB_\d{8}T\d{6}_L\d-\d{6,}_\d\.png|C-\d{8}T\d{6}-\d{4,}\.jpg")


@dataclass(frozen=True)
class _Session:
    name: str
    start: datetime
    line: str
    operator: str  # free text, as typed at the station

    @property
    def shift(self) -> str:
        return "day" if 6 <= self.start.hour < 18 else "night"


_SESSIONS = (
    _Session("s01", datetime(2024, 3, 4, 6, 40), "L1", "m.keller"),
    _Session("s02", datetime(2024, 3, 4, 22, 15), "L1", "J. Tanaka"),
    _Session("s03", datetime(2024, 3, 5, 7, 5), "L2", "a.rossi"),
    _Session("s04", datetime(2024, 3, 5, 21, 50), "L2", "J. Tanaka"),
    _Session("s05", datetime(2024, 3, 6, 6, 55), "L1", "a.rossi (trainee: p.ng)"),
    _Session("s06", datetime(2024, 3, 6, 22, 30), "L2", "m.keller"),
)
# A fixture swapped during maintenance, so lighting is not a mere alias of the camera.
_FIXTURE_SWAPS = {("s05", "cam-A"): "dome"}


@dataclass(frozen=True)
class _Shot:
    """One planned image: what it shows and how it was captured."""

    index: int
    label: str
    camera: _Camera
    session: _Session
    lighting: str
    part_id: str
    view: int
    finish: str  # "ground" (straight streaks) or "turned" (concentric lathe marks)
    captured_at: datetime
    seq: int     # the camera's own frame counter


def generate_line(out_dir: Path, *, per_class: int = DEMO_PER_CLASS, size: int = DEMO_SIZE,
                  seed: int = 0) -> SyntheticLine:
    """Write ``per_class`` images of each class in :data:`CLASSES` and a manifest into ``out_dir``.

    ``out_dir`` must be new, empty or a line this function generated before (which is replaced).
    """
    _check_arguments(per_class, size, seed)
    out_dir = Path(out_dir)
    _prepare_out_dir(out_dir)
    _write_marker(out_dir, per_class=per_class, size=size, seed=seed)
    shots = _plan(np.random.default_rng([seed, 0]), per_class)
    rows = [_write_shot(out_dir, shot, size, seed) for shot in shots]
    manifest = _write_manifest(out_dir, rows)
    return SyntheticLine(root=out_dir, manifest=manifest, classes=CLASSES, count=len(rows))


def _check_arguments(per_class: int, size: int, seed: int) -> None:
    if seed < 0:
        raise InspectloopError(f"seed must be 0 or more, got {seed}", "pass any non-negative integer")
    if not 1 <= per_class <= 100_000:
        raise InspectloopError(f"per_class must be between 1 and 100000, got {per_class}",
                               "ask for a sensible number of images per class, e.g. 60")
    if not 64 <= size <= 2048:
        raise InspectloopError(f"size must be between 64 and 2048 pixels, got {size}",
                               "defects need room to be visible; 160 is the demo default")


# ---------------------------------------------------------------------------------------- the folder

def _prepare_out_dir(out_dir: Path) -> None:
    """Create ``out_dir``, or clear a previous synthetic line; refuse anything else."""
    if out_dir.exists() and not out_dir.is_dir():
        raise IngestError(f"{out_dir} is a file, not a folder", "pass a folder path for the synthetic line")
    out_dir.mkdir(parents=True, exist_ok=True)
    if not any(out_dir.iterdir()):
        return
    if not (out_dir / _MARKER).is_file():
        raise IngestError(f"{out_dir} is not empty and does not hold a synthetic line",
                          "pass a new or empty folder; nothing was written or deleted")
    owned, foreign = _sort_files(out_dir)
    if foreign:
        raise IngestError(f"{out_dir} holds a synthetic line plus {len(foreign)} other file(s), e.g. {foreign[0]}",
                          "move those files elsewhere or pass a new folder; nothing was deleted")
    for path in owned:
        path.unlink()
    for folder in sorted((p for p in out_dir.rglob("*") if p.is_dir()), reverse=True):
        folder.rmdir()  # all files are gone by now, so deepest-first removal succeeds


def _sort_files(out_dir: Path) -> tuple[list[Path], list[Path]]:
    """Split the files under ``out_dir`` into ours (to delete) and anything else (to protect)."""
    owned: list[Path] = []
    foreign: list[Path] = []
    for path in sorted(out_dir.rglob("*")):
        parts = path.relative_to(out_dir).parts
        if path.is_dir() and not path.is_symlink():
            if not _is_owned_dir(parts):
                foreign.append(path)
        else:
            (owned if _is_owned_file(path, parts) else foreign).append(path)
    return owned, foreign


def _is_owned_dir(parts: tuple[str, ...]) -> bool:
    return parts == ("images",) or (len(parts) == 2 and parts[0] == "images" and parts[1] in CLASSES)


def _is_owned_file(path: Path, parts: tuple[str, ...]) -> bool:
    if path.is_symlink():  # never follow or delete a link: it may point at real data
        return False
    if parts in {(_MARKER,), (_MANIFEST,), (_MANIFEST + ".tmp",)}:
        return True
    return len(parts) == 3 and _is_owned_dir(parts[:2]) and _OWNED_FILE.fullmatch(parts[2]) is not None


def _write_marker(out_dir: Path, **params: int) -> None:
    # Written first, so that a run interrupted half-way is still recognised (and replaced) next time.
    text = json.dumps({"generator": "inspectloop.synthetic", "version": 1, **params}, sort_keys=True)
    (out_dir / _MARKER).write_text(text + "\n", encoding="utf-8")


def _write_manifest(out_dir: Path, rows: list[dict[str, str]]) -> Path:
    # Written last and renamed into place: a manifest exists only for a complete line.
    path = out_dir / _MANIFEST
    tmp = path.with_name(_MANIFEST + ".tmp")
    with tmp.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)
    return path


def _write_shot(out_dir: Path, shot: _Shot, size: int, seed: int) -> dict[str, str]:
    """Render and save one image; return its manifest row."""
    stamp = shot.captured_at.strftime("%Y%m%dT%H%M%S")
    name = shot.camera.file_pattern.format(seq=shot.seq, stamp=stamp, part=shot.part_id, view=shot.view)
    relative = Path("images") / shot.label / name
    (out_dir / relative).parent.mkdir(parents=True, exist_ok=True)
    pixels = _render(shot, size, seed)
    image = Image.fromarray(pixels)
    if shot.camera.suffix == ".png":
        image.save(out_dir / relative, format="PNG")
    else:
        image.save(out_dir / relative, format="JPEG", quality=shot.camera.quality)
    return {
        "path": relative.as_posix(), "label": shot.label, "camera": shot.camera.name,
        "line": shot.session.line, "shift": shot.session.shift, "lighting": shot.lighting,
        "part_id": shot.part_id, "session": shot.session.name,
        "captured_at": shot.captured_at.isoformat(timespec="seconds"), "operator": shot.session.operator,
    }


# ---------------------------------------------------------------------------------------- the plan

def _plan(rng: np.random.Generator, per_class: int) -> list[_Shot]:
    """Decide every image: parts with 1-3 views, spread over sessions, in capture order."""
    parts = _plan_parts(rng, per_class)
    by_session: list[list[tuple[str, int]]] = [[] for _ in _SESSIONS]
    for label, views in parts:
        by_session[int(rng.integers(len(_SESSIONS)))].append((label, views))
    serials = {line: int(rng.integers(1000, 5000)) for line in ("L1", "L2")}
    frame_counters = {cam.name: int(rng.integers(1, 9000)) for cam in _CAMERAS}
    shots: list[_Shot] = []
    for session, session_parts in zip(_SESSIONS, by_session):
        shots += _plan_session(rng, session, session_parts, serials, frame_counters, len(shots))
    return shots


def _plan_parts(rng: np.random.Generator, per_class: int) -> list[tuple[str, int]]:
    """(class, number of views) per part, exactly ``per_class`` views per class, in random order."""
    parts: list[tuple[str, int]] = []
    for label in CLASSES:
        left = per_class
        while left:
            views = min(left, int(rng.choice([1, 2, 3], p=[0.35, 0.45, 0.2])))
            parts.append((label, views))
            left -= views
    order = rng.permutation(len(parts))
    return [parts[i] for i in order]


def _plan_session(rng: np.random.Generator, session: _Session, parts: list[tuple[str, int]],
                  serials: dict[str, int], frame_counters: dict[str, int], first_index: int) -> list[_Shot]:
    """Timestamps, part serials and cameras for one session's parts, in capture order."""
    cameras = [cam for cam in _CAMERAS if cam.line == session.line]
    turned_share = 0.7 if session.line == "L2" else 0.2  # the two lines machine different features
    clock = session.start + timedelta(seconds=float(rng.uniform(30, 300)))
    shots: list[_Shot] = []
    for label, views in parts:
        serials[session.line] += int(rng.integers(1, 6))  # most parts pass uninspected by this sample
        part_id = f"{session.line}-{serials[session.line]:06d}"
        finish = "turned" if rng.random() < turned_share else "ground"
        clock += timedelta(seconds=float(rng.uniform(20, 240)))
        for view in range(1, views + 1):
            camera = cameras[int(rng.integers(len(cameras)))]
            frame_counters[camera.name] += 1
            clock += timedelta(seconds=float(rng.uniform(1.0, 4.0)))
            lighting = _FIXTURE_SWAPS.get((session.name, camera.name), camera.fixture)
            shots.append(_Shot(first_index + len(shots), label, camera, session, lighting, part_id, view,
                               finish, clock.replace(microsecond=0), frame_counters[camera.name]))
    return shots


# ---------------------------------------------------------------------------------------- rendering

def _render(shot: _Shot, size: int, seed: int, *, with_defect: bool = True) -> np.ndarray:
    """The 8-bit pixels of one shot (``size``x``size``, plus 3 channels for a colour camera).

    Texture, defect and sensor noise draw from separate streams, so ``with_defect=False`` gives
    the very same image without its defect (the tests use this to measure the defect alone).
    """
    texture_seq, defect_seq, sensor_seq = np.random.SeedSequence([seed, 1, shot.index]).spawn(3)
    texture_rng, defect_rng = np.random.default_rng(texture_seq), np.random.default_rng(defect_seq)
    surface = _surface(texture_rng, size, shot.finish)
    tint = None
    if with_defect and shot.label != "good":
        mask = _DEFECTS[shot.label](defect_rng, surface)
        if mask is not None:
            tint = mask[..., None] * (_STAIN_CASTS[int(defect_rng.integers(2))] - 1)
    _add_dust(texture_rng, surface)
    light = _illumination(texture_rng, size, shot)
    signal = _gaussian_blur(surface * light, shot.camera.blur * float(texture_rng.uniform(0.85, 1.2)))
    return _sensor(np.random.default_rng(sensor_seq), signal, shot, tint, seed)


def _centred_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (y, x) relative to the image centre."""
    axis = np.arange(size, dtype=np.float64) - (size - 1) / 2
    return np.meshgrid(axis, axis, indexing="ij")


def _streak_noise(rng: np.random.Generator, across: np.ndarray, along: np.ndarray,
                  cell_across: float, cell_along: float) -> np.ndarray:
    """Unit noise correlated over ``cell_across`` pixels across the tool marks and ``cell_along`` along.

    A random lattice sampled bilinearly at the (rotated or curved) mark coordinates, through flat
    indices into one array: the fastest gather numpy offers.
    """
    u = (across - across.min()) / cell_across
    v = (along - along.min()) / cell_along
    rows, cols = int(u.max()) + 2, int(v.max()) + 2
    flat = rng.standard_normal(rows * cols)
    iu, iv = u.astype(np.intp), v.astype(np.intp)  # coordinates are >= 0, so this is floor
    fu, fv = u - iu, v - iv
    first = iu * cols + iv
    top = np.take(flat, first) * (1 - fv) + np.take(flat, first + 1) * fv
    bottom = np.take(flat, first + cols) * (1 - fv) + np.take(flat, first + cols + 1) * fv
    return top * (1 - fu) + bottom * fu


def _smooth_noise(rng: np.random.Generator, size: int, cell: float) -> np.ndarray:
    """Isotropic unit noise with features about ``cell`` pixels wide (separable spline noise)."""
    weights = _spline_matrix(size, cell)
    knots = weights.shape[1]
    lattice = rng.standard_normal((knots, knots))
    # einsum rather than @: these products are tiny, and handing them to a multi-threaded BLAS
    # costs more in thread wake-ups than the arithmetic (2x slower on a busy 2-core machine).
    return np.einsum("ik,jk->ij", np.einsum("ik,kl->il", weights, lattice), weights)


def _spline_matrix(size: int, cell: float) -> np.ndarray:
    """Row k: cubic B-spline weights of pixel k on a lattice with ``cell`` spacing, scaled to unit variance.

    B-splines are smooth through the knots; linear or smoothstep weights would show the lattice
    as creases or square plateaus once a stain's edge is cut through the noise.
    """
    position = np.arange(size) / cell
    index = position.astype(np.intp)
    f = (position - index)[:, None]
    local = np.hstack([(1 - f) ** 3, 3 * f ** 3 - 6 * f ** 2 + 4, -3 * f ** 3 + 3 * f ** 2 + 3 * f + 1, f ** 3]) / 6
    weights = np.zeros((size, int(position[-1]) + 4))
    rows = np.arange(size)[:, None]
    weights[rows, index[:, None] + np.arange(4)] = local
    return weights / np.sqrt(np.mean(np.sum(local ** 2, axis=1)))


def _finish_coordinates(rng: np.random.Generator, size: int, finish: str) -> tuple[np.ndarray, np.ndarray]:
    """(across, along) coordinates of the tool marks: straight for grinding, arcs for turning."""
    y, x = _centred_grid(size)
    if finish == "ground":
        # Parts are fixtured, so the grinding direction is nearly fixed; views come from two sides.
        angle = float(rng.choice([0.0, np.pi / 2]) + rng.normal(0, 0.05))
        return -x * np.sin(angle) + y * np.cos(angle), x * np.cos(angle) + y * np.sin(angle)
    # A turned face seen off-centre: the spindle axis lies outside the frame.
    distance, direction = size * float(rng.uniform(0.8, 2.5)), float(rng.uniform(0, 2 * np.pi))
    dy, dx = y - distance * np.sin(direction), x - distance * np.cos(direction)
    radius = np.hypot(dy, dx)
    # Angle seen from the spindle, measured from the line towards the frame: near 0 over the whole
    # frame, so arctan2's jump at +-pi never falls inside it.
    theta = np.arctan2(dx * np.sin(direction) - dy * np.cos(direction),
                       -dx * np.cos(direction) - dy * np.sin(direction))
    return radius, radius * theta


def _surface(rng: np.random.Generator, size: int, finish: str) -> np.ndarray:
    """Reflectance of a machined steel face: fine tool streaks over low-frequency grain."""
    across, along = _finish_coordinates(rng, size, finish)
    streak_length = float(rng.uniform(15, 45))
    surface = float(rng.uniform(0.45, 0.62)) + np.zeros((size, size))
    surface += float(rng.uniform(0.025, 0.045)) * _streak_noise(rng, across, along, 1.0, streak_length)
    surface += float(rng.uniform(0.015, 0.03)) * _streak_noise(rng, across, along, 3.0, streak_length * 3)
    if finish == "turned":  # the feed leaves regular grooves at the tool's pitch
        pitch = float(rng.uniform(2.5, 5.0))
        surface += float(rng.uniform(0.008, 0.02)) * np.sin(2 * np.pi * across / pitch + rng.uniform(0, 6.3))
    surface += float(rng.uniform(0.008, 0.02)) * _smooth_noise(rng, size, 40.0)
    surface += float(rng.uniform(0.003, 0.008)) * _smooth_noise(rng, size, 10.0)
    return surface


def _scale(surface: np.ndarray) -> float:
    """How much larger than the reference size this image is (defect geometry grows with it)."""
    return surface.shape[0] / _REFERENCE_SIZE


def _bezier(rng: np.random.Generator, size: int) -> np.ndarray:
    """Points (n, 2) along a gently curved stroke of random length and angle, mostly in frame."""
    length = size * float(rng.uniform(0.2, 0.75))
    angle = float(rng.uniform(0, np.pi))
    centre = rng.uniform(0.25, 0.75, size=2) * size
    half = 0.5 * length * np.array([np.sin(angle), np.cos(angle)])
    normal = np.array([np.cos(angle), -np.sin(angle)])
    control = centre + normal * length * float(rng.uniform(-0.18, 0.18))
    t = np.linspace(0, 1, 17)[:, None]
    return (1 - t) ** 2 * (centre - half) + 2 * (1 - t) * t * control + t ** 2 * (centre + half)


def _distance_to_polyline(points: np.ndarray, y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance from each pixel to the polyline and the position (0..1) of the nearest point on it."""
    best = np.full(y.shape, np.inf)
    where = np.zeros(y.shape)
    segments = len(points) - 1
    for k in range(segments):
        a, b = points[k], points[k + 1]
        step = b - a
        t = np.clip(((y - a[0]) * step[0] + (x - a[1]) * step[1]) / max(float(step @ step), 1e-9), 0, 1)
        d = np.hypot(y - a[0] - t * step[0], x - a[1] - t * step[1])
        closer = d < best
        best = np.where(closer, d, best)
        where = np.where(closer, (k + t) / segments, where)
    return best, where


def _add_scratch(rng: np.random.Generator, surface: np.ndarray) -> None:
    """A thin bright or dark stroke whose contrast fades at the ends and varies along it."""
    size = surface.shape[0]
    points = _bezier(rng, size)
    width = float(rng.uniform(0.7, 1.3)) * max(1.0, _scale(surface) ** 0.5)
    top, left = np.maximum(np.floor(points.min(axis=0) - 4 * width - 2), 0).astype(int)
    bottom, right = np.minimum(np.ceil(points.max(axis=0) + 4 * width + 2), size).astype(int)
    y, x = np.mgrid[top:bottom, left:right].astype(np.float64)
    distance, where = _distance_to_polyline(points, y, x)
    knots = rng.uniform(0.5, 1.0, size=6)  # a scratch is never equally deep along its length
    along = np.interp(where, np.linspace(0, 1, 6), knots) * np.clip(np.sin(np.pi * where) * 4, 0, 1)
    sign = 1.0 if rng.random() < 0.6 else -1.0  # raised edges glint; deep grooves swallow light
    amplitude = sign * float(rng.uniform(0.08, 0.25))
    profile = np.exp(-0.5 * (distance / width) ** 2)
    if rng.random() < 0.5:  # the groove beside a burr shows as a faint halo of opposite contrast
        profile -= 0.3 * np.exp(-0.5 * (distance / (2.5 * width)) ** 2)
    surface[top:bottom, left:right] += amplitude * along * profile


def _add_pits(rng: np.random.Generator, surface: np.ndarray) -> None:
    """1-4 small dark craters, each with a rim that catches the light on one side."""
    size = surface.shape[0]
    centre = rng.uniform(0.2, 0.8, size=2) * size
    light_from = float(rng.uniform(0, 2 * np.pi))
    for _ in range(int(rng.integers(1, 5))):
        spread = 0.12 if rng.random() < 0.7 else 0.35  # pits usually cluster (porosity)
        position = np.clip(centre + rng.normal(0, spread * size, size=2), 6, size - 7)
        radius = float(rng.uniform(1.5, 3.5)) * _scale(surface) ** 0.7
        box = int(np.ceil(radius * 3 + 2))
        cy, cx = np.round(position).astype(int)
        y, x = np.mgrid[max(cy - box, 0):min(cy + box + 1, size), max(cx - box, 0):min(cx + box + 1, size)]
        dy, dx = y - position[0], x - position[1]
        aspect, tilt = float(rng.uniform(0.7, 1.0)), float(rng.uniform(0, np.pi))
        u = (dy * np.cos(tilt) - dx * np.sin(tilt)) / aspect
        r = np.hypot(u, dy * np.sin(tilt) + dx * np.cos(tilt))
        crater = -float(rng.uniform(0.12, 0.38)) / (1 + np.exp((r - radius) / 0.45))
        lit = 1 + 0.7 * np.cos(np.arctan2(dy, dx) - light_from)
        rim = float(rng.uniform(0.04, 0.14)) * lit * np.exp(-(((r - 1.3 * radius) / 0.8) ** 2))
        surface[y, x] += crater + rim


def _add_stain(rng: np.random.Generator, surface: np.ndarray) -> np.ndarray:
    """A soft irregular blotch (oil, coolant residue, rust bloom); returns its mask for tinting."""
    size = surface.shape[0]
    y, x = _centred_grid(size)
    radius = size * float(rng.uniform(0.1, 0.28))
    centre = rng.uniform(-0.3, 0.3, size=2) * size
    aspect, tilt = float(rng.uniform(0.5, 1.0)), float(rng.uniform(0, np.pi))
    dy, dx = y - centre[0], x - centre[1]
    u = (dy * np.cos(tilt) - dx * np.sin(tilt)) / aspect
    envelope = 1 - np.hypot(u, dy * np.sin(tilt) + dx * np.cos(tilt)) / radius
    ragged = envelope + 0.2 * _smooth_noise(rng, size, radius / 2) + 0.07 * _smooth_noise(rng, size, radius / 6)
    mask = 1 / (1 + np.exp(-ragged / float(rng.uniform(0.1, 0.3))))
    depth = float(rng.uniform(0.1, 0.22))
    tide_line = float(rng.uniform(0.1, 0.7)) * 4 * mask * (1 - mask)  # drying liquid darkens its edge
    mean = float(surface.mean())
    surface -= (surface - mean) * float(rng.uniform(0.1, 0.3)) * mask  # a film fills the fine tool marks
    surface *= 1 - depth * (mask + tide_line)
    return mask * float(rng.uniform(0.3, 1.0))  # how strongly this residue is coloured


_DEFECTS: dict[str, Callable[[np.random.Generator, np.ndarray], np.ndarray | None]] = {
    "scratch": _add_scratch, "pit": _add_pits, "stain": _add_stain,
}
_STAIN_CASTS = (np.array([1.04, 0.99, 0.9]), np.array([0.96, 0.99, 1.04]))  # rust/oil brown, heat-tint blue


def _add_dust(rng: np.random.Generator, surface: np.ndarray) -> None:
    """Harmless specks on any part, so that 'a small blob' alone does not mean 'pit'."""
    if rng.random() > 0.25:
        return
    size = surface.shape[0]
    y, x = _centred_grid(size)
    for _ in range(int(rng.integers(1, 4))):
        cy, cx = rng.uniform(-0.45, 0.45, size=2) * size
        sigma = float(rng.uniform(0.5, 1.0))
        amplitude = float(rng.choice([-1.0, 1.0])) * float(rng.uniform(0.03, 0.08))
        surface += amplitude * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * sigma ** 2))


def _illumination(rng: np.random.Generator, size: int, shot: _Shot) -> np.ndarray:
    """Light reaching the sensor: fixture pattern x lens vignetting x exposure."""
    y, x = (c / (size / 2) for c in _centred_grid(size))
    offset = rng.normal(0, 0.08, size=2)  # fixtures are never perfectly centred
    r2 = (y - offset[0]) ** 2 + (x - offset[1]) ** 2
    if shot.lighting == "ring":
        field = 1 - 0.16 * r2 + 0.07 * np.exp(-(((np.sqrt(r2) - 0.8) / 0.15) ** 2))  # the ring's reflection
    elif shot.lighting == "dome":
        field = 1 - 0.05 * r2
    else:  # a bar light along one edge: bright near it, falling off across the part
        field = 1.12 - 0.2 * (y + 1) / 2 + 0.03 * x
    field *= 1 - shot.camera.vignetting * (y ** 2 + x ** 2) / 2
    night = 0.72 if shot.session.shift == "night" else 1.0  # no daylight through the hall roof
    exposure = shot.camera.gain * night * float(rng.normal(1, 0.03))
    return field * exposure * 250


def _gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur with edge padding (numpy only: the lens's point spread)."""
    radius = max(1, int(np.ceil(3 * sigma)))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    for axis in (0, 1):
        padded = np.pad(image, [(radius, radius) if a == axis else (0, 0) for a in (0, 1)], mode="edge")
        length = image.shape[axis]
        image = sum(w * np.take(padded, np.arange(i, i + length), axis=axis) for i, w in enumerate(kernel))
    return image


def _sensor(rng: np.random.Generator, signal: np.ndarray, shot: _Shot, tint: np.ndarray | None,
            seed: int) -> np.ndarray:
    """Photon and read noise, the camera's fixed pattern and colour response, then 8-bit output."""
    camera = shot.camera
    read_noise = camera.read_noise * (1.7 if shot.session.shift == "night" else 1.0)
    pattern = _fixed_pattern(camera, signal.shape[0], seed)
    channels = _colour(signal, tint) if camera.colour else signal[..., None]
    noise_sd = np.sqrt(read_noise ** 2 + 0.05 * np.clip(channels, 0, None))  # shot noise grows with signal
    noisy = channels + pattern[..., None] + noise_sd * rng.standard_normal(channels.shape)
    pixels = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    return pixels if camera.colour else pixels[..., 0]


def _fixed_pattern(camera: _Camera, size: int, seed: int) -> np.ndarray:
    """Column offsets and a few hot pixels: the same in every frame from this camera."""
    rng = np.random.default_rng([seed, 2, _CAMERAS.index(camera)])
    pattern = np.zeros((size, size))
    pattern += rng.normal(0, 0.4 * camera.read_noise, size=size)[None, :]
    hot = rng.integers(0, size, size=(3, 2))
    pattern[hot[:, 0], hot[:, 1]] += rng.uniform(25, 70, size=3)
    return pattern


def _colour(signal: np.ndarray, tint: np.ndarray | None) -> np.ndarray:
    """RGB response: steel is near-neutral under white LEDs; a stain adds its cast (``tint``, per channel)."""
    balance = np.array([0.97, 1.0, 1.04])  # the LED's slightly cool white, not fully balanced out
    rgb = signal[..., None] * balance
    return rgb * (1 + tint) if tint is not None else rgb
