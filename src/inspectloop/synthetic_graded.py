"""A synthetic graded line: machined parts whose scratches are graded minor < major < critical.

Like :mod:`inspectloop.synthetic` (the quickstart's line), it lets the project measure itself without
copying plant images. Here what matters is the grading: a scratch's severity is its length times its
contrast, and the grade is read off that severity, so neighbouring grades blur into each other the way
a plant's grades do, while minor and critical never look alike. Good parts carry faint, short tool marks
(an acceptable mark) below the minor band. The manifest has a ``defect_probability`` soft label for the
minor scratches near the acceptable band, where an annotator would hesitate.

Only numpy and Pillow are used; the same seed gives the same bytes.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from inspectloop.errors import InspectloopError
from inspectloop.synthetic import SyntheticLine

SCALE = "scratch"
GRADES = ("minor", "major", "critical")  # lowest first: `inspectloop classes grade scratch minor major critical`
CLASSES = ("good", *GRADES)
SEVERITY = {"minor": "minor", "major": "major", "critical": "critical", "good": "none"}
# Severity (length fraction x contrast fraction, 0..1) bands of each class; a gap keeps good marks apart.
BANDS = {"good": (0.0, 0.06), "minor": (0.10, 0.30), "major": (0.30, 0.55), "critical": (0.55, 1.0)}
_MARKER = ".inspectloop-graded-synthetic"
_MAX_CONTRAST = 0.32  # of the surface's reflectance


def generate_graded_line(out_dir: Path, *, per_class: int = 120, size: int = 96, seed: int = 0) -> SyntheticLine:
    """Write ``per_class`` greyscale images of each class (good and the three grades) and their manifest."""
    if per_class < 4 or not 48 <= size <= 512:
        raise InspectloopError(f"per_class {per_class} and size {size} make no usable line",
                               "give per_class >= 4 and size from 48 to 512")
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / _MARKER).exists():
        raise InspectloopError(f"{out_dir} is not empty and was not made by this generator",
                               "give a new or empty folder")
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / _MARKER).write_text(f"per_class={per_class} size={size} seed={seed}\n")
    rng = np.random.default_rng([seed, 16])
    rows = []
    for label in CLASSES:
        (out_dir / "images" / label).mkdir(exist_ok=True)
        for i in range(per_class):
            severity = float(rng.uniform(*BANDS[label]))
            pixels = render_part(np.random.default_rng([seed, CLASSES.index(label), i]), size, severity,
                                 mark=label != "good" or rng.random() < 0.7)
            name = f"images/{label}/{label}_{i:05d}.png"
            Image.fromarray(pixels, "L").save(out_dir / name)
            rows.append({"path": name, "label": label, "camera": f"cam-{1 + i % 2}", "part_id": f"{label[:2]}-{i:05d}",
                         "session": f"s{i % 4}", "defect_probability": _soft_label(label, severity)})
    manifest = out_dir / "manifest.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return SyntheticLine(out_dir, manifest, CLASSES, len(rows))


def _soft_label(label: str, severity: float) -> str:
    """An annotator's hesitation: minor scratches near the acceptable band are defective with p < 1."""
    if label != "minor":
        return ""
    low, high = BANDS["minor"]
    return f"{min(1.0, 0.6 + 0.4 * (severity - low) / (0.5 * (high - low))):.2f}"


def render_part(rng: np.random.Generator, size: int, severity: float, *, mark: bool = True) -> np.ndarray:
    """8-bit greyscale pixels of one part with a scratch of ``severity`` (length fraction x contrast fraction)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    angle = float(rng.uniform(0, np.pi))
    along = x * np.cos(angle) + y * np.sin(angle)
    surface = float(rng.uniform(0.45, 0.6)) + 0.03 * np.sin(along / float(rng.uniform(1.5, 3.0)))
    surface += 0.02 * _smooth(rng, size, 12) + 0.01 * _smooth(rng, size, 4)
    if mark:
        # severity = length x contrast: split it at random, so long faint and short strong scratches share a grade
        length = float(np.clip(np.sqrt(severity) * rng.uniform(0.7, 1.4), max(severity, 0.12), 1.0))
        contrast = severity / length
        surface += _scratch(rng, y, x, size, length, contrast * _MAX_CONTRAST)
    light = 1.0 - 0.12 * ((x / size - rng.uniform(0.3, 0.7)) ** 2 + (y / size - rng.uniform(0.3, 0.7)) ** 2)
    signal = surface * light * 230 * float(rng.normal(1, 0.04))
    noisy = signal + rng.normal(0, 2.5, size=signal.shape)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def _scratch(rng: np.random.Generator, y: np.ndarray, x: np.ndarray, size: int, length: float,
             amplitude: float) -> np.ndarray:
    """A straight-ish stroke of ``length`` (fraction of the frame, up to 0.85 of it) and contrast ``amplitude``."""
    half = 0.5 * 0.85 * size * length
    theta = float(rng.uniform(0, np.pi))
    centre = rng.uniform(0.5 - 0.35 * (1 - length) - 0.1, 0.5 + 0.35 * (1 - length) + 0.1, size=2) * size
    direction = np.array([np.cos(theta), np.sin(theta)])
    t = np.clip((x - centre[0]) * direction[0] + (y - centre[1]) * direction[1], -half, half)
    bend = 0.08 * half * float(rng.uniform(-1, 1)) * (1 - (t / max(half, 1e-6)) ** 2)
    px, py = centre[0] + t * direction[0] - bend * direction[1], centre[1] + t * direction[1] + bend * direction[0]
    distance = np.hypot(x - px, y - py)
    width = max(0.8, size / 96)
    sign = 1.0 if rng.random() < 0.6 else -1.0  # raised edges glint, grooves go dark
    return sign * amplitude * np.exp(-0.5 * (distance / width) ** 2)


def _smooth(rng: np.random.Generator, size: int, cell: int) -> np.ndarray:
    """Low-frequency noise in about [-1, 1]: a coarse grid upsampled bilinearly."""
    coarse = rng.standard_normal((size // cell + 2, size // cell + 2))
    image = Image.fromarray(coarse.astype(np.float32), "F").resize((size, size), Image.BILINEAR)
    return np.asarray(image, dtype=np.float64)
