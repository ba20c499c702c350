"""The synthetic production line: shape of the output, determinism, realism, and folder safety."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inspectloop import synthetic
from inspectloop.errors import IngestError, InspectloopError
from inspectloop.synthetic import CLASSES, DEMO_SIZE, SyntheticLine, generate_line

COLUMNS = ["path", "label", "camera", "line", "shift", "lighting", "part_id", "session", "captured_at", "operator"]
PER_CLASS, SIZE = 60, 160  # smaller than the quickstart's line (fast), at the size the defects are tuned at


@pytest.fixture(scope="module")
def line(tmp_path_factory: pytest.TempPathFactory) -> SyntheticLine:
    """A line generated once for the module."""
    return generate_line(tmp_path_factory.mktemp("line") / "out", per_class=PER_CLASS, size=SIZE)


@pytest.fixture(scope="module")
def rows(line: SyntheticLine) -> list[dict[str, str]]:
    with line.manifest.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_same_bytes_and_other_seed_differs(tmp_path: Path) -> None:
    first = generate_line(tmp_path / "a", per_class=5, seed=7)
    second = generate_line(tmp_path / "b", per_class=5, seed=7)
    other = generate_line(tmp_path / "c", per_class=5, seed=8)
    assert first.manifest.read_bytes() == second.manifest.read_bytes()
    assert _files(first.root) == _files(second.root)
    assert _files(first.root) != _files(other.root)


def test_result_describes_the_line(line: SyntheticLine, rows: list[dict[str, str]]) -> None:
    assert line.classes == CLASSES == ("good", "scratch", "pit", "stain")
    assert line.manifest == line.root / "manifest.csv"
    assert line.count == len(rows) == 4 * PER_CLASS


def test_manifest_columns_and_class_counts(line: SyntheticLine, rows: list[dict[str, str]]) -> None:
    with line.manifest.open(newline="", encoding="utf-8") as handle:
        assert next(csv.reader(handle)) == COLUMNS
    counts = defaultdict(int)
    for row in rows:
        counts[row["label"]] += 1
    assert dict(counts) == {name: PER_CLASS for name in CLASSES}


def test_every_path_exists_in_its_class_folder_and_decodes(line: SyntheticLine, rows: list[dict[str, str]]) -> None:
    formats = set()
    for row in rows:
        path = line.root / row["path"]
        assert Path(row["path"]).parts[:2] == ("images", row["label"])
        with Image.open(path) as image:
            image.load()
            assert image.size == (SIZE, SIZE)
            formats.add((image.format, image.mode))
    assert formats == {("JPEG", "RGB"), ("PNG", "L"), ("JPEG", "L")}
    assert len({row["path"] for row in rows}) == len(rows)


@pytest.mark.parametrize("size", [64, DEMO_SIZE])
def test_images_have_the_asked_size(tmp_path: Path, size: int) -> None:
    line = generate_line(tmp_path / "out", per_class=2, size=size)
    for path in (line.root / "images").rglob("*.*"):
        with Image.open(path) as image:
            assert image.size == (size, size)


def test_production_variability_is_present(rows: list[dict[str, str]]) -> None:
    def values(column: str) -> set[str]:
        return {row[column] for row in rows}

    assert values("camera") == {"cam-A", "cam-B", "cam-C"}
    assert values("line") == {"L1", "L2"}
    assert values("shift") == {"day", "night"}
    assert values("lighting") == {"ring", "dome", "bar"}
    assert values("session") == {f"s0{i}" for i in range(1, 7)}
    assert len(values("operator")) >= 2
    views_per_part = defaultdict(int)
    for row in rows:
        views_per_part[row["part_id"]] += 1
    assert max(views_per_part.values()) > 1 and min(views_per_part.values()) == 1


def test_a_part_has_one_class_line_and_session(rows: list[dict[str, str]]) -> None:
    seen: dict[str, tuple[str, str, str]] = {}
    for row in rows:
        key = (row["label"], row["line"], row["session"])
        assert seen.setdefault(row["part_id"], key) == key, row["part_id"]


def test_timestamps_increase_within_each_session(rows: list[dict[str, str]]) -> None:
    by_session: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        by_session[row["session"]].append(row["captured_at"])
    for session, stamps in by_session.items():
        assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps), session
    night = [row for row in rows if row["shift"] == "night"]
    assert all(row["captured_at"][11:13] in {"21", "22", "23", "00", "01", "02", "03", "04", "05"} for row in night)


def _grey(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("L"), dtype=np.float64)


def _box_mean(image: np.ndarray, radius: int) -> np.ndarray:
    padded = np.pad(image, radius + 1, mode="edge").cumsum(0).cumsum(1)
    n = 2 * radius + 1
    window = padded[n:, n:] - padded[:-n, n:] - padded[n:, :-n] + padded[:-n, :-n]
    return window[: image.shape[0], : image.shape[1]] / (n * n)


def _small_outliers(image: np.ndarray) -> float:
    """Strongest fine detail (top 0.1 % of a high-pass) against the texture's typical level."""
    detail = image - _box_mean(image, 3)
    spread = 1.4826 * np.median(np.abs(detail - np.median(detail)))
    return float(np.percentile(np.abs(detail), 99.9) / spread)


def _dark_blotch(image: np.ndarray) -> float:
    """Deepest dip of an 8x8 block average below a smooth (quadratic) lighting fit, relative to brightness."""
    cell = image.shape[0] // 8
    blocks = image[: 8 * cell, : 8 * cell].reshape(8, cell, 8, cell).mean(axis=(1, 3)).ravel()
    y, x = (g.ravel() for g in np.mgrid[0:8, 0:8] / 7 - 0.5)
    design = np.stack([np.ones_like(y), y, x, y * y, x * x, x * y], axis=1)
    residual = blocks - design @ np.linalg.lstsq(design, blocks, rcond=None)[0]
    return float(-residual.min() / blocks.mean())


def _auc(defect: list[float], good: list[float]) -> float:
    """Probability that a defect image scores above a good one."""
    return float((np.array(defect)[:, None] > np.array(good)[None, :]).mean())


@pytest.mark.parametrize(("label", "statistic", "floor"), [
    ("pit", _small_outliers, 0.8),
    ("scratch", _small_outliers, 0.62),
    ("stain", _dark_blotch, 0.85),
])
def test_defects_separate_from_good_but_not_trivially(line: SyntheticLine, rows: list[dict[str, str]],
                                                      label: str, statistic, floor: float) -> None:
    scores: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        if row["label"] in {"good", label}:
            scores[row["label"]].append(statistic(_grey(line.root / row["path"])))
    auc = _auc(scores[label], scores["good"])
    # A crude hand-made statistic must see the defect class, but not perfectly: a model has work to do.
    assert floor <= auc < 0.999


def test_every_defect_changes_the_image_and_good_stays_clean() -> None:
    shots = synthetic._plan(np.random.default_rng([3, 0]), 6)
    for shot in shots:
        with_defect = synthetic._render(shot, 96, 3).astype(np.int32)
        without = synthetic._render(shot, 96, 3, with_defect=False).astype(np.int32)
        changed = np.abs(with_defect - without).max()
        if shot.label == "good":
            assert changed == 0
        else:
            assert changed >= 6, (shot.label, shot.index)  # several grey levels: visible, in frame


def test_refuses_a_non_empty_folder_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "holiday.jpg").write_bytes(b"not ours")
    with pytest.raises(IngestError) as caught:
        generate_line(tmp_path, per_class=2)
    assert "not empty" in caught.value.message and caught.value.hint
    assert [p.name for p in tmp_path.iterdir()] == ["holiday.jpg"]


def test_replaces_a_previous_line_but_not_files_added_to_it(tmp_path: Path) -> None:
    generate_line(tmp_path, per_class=3, seed=1)
    again = generate_line(tmp_path, per_class=2, seed=2)
    assert again.count == 8 and len(list((tmp_path / "images").rglob("*.*"))) == 8
    stray = tmp_path / "images" / "good" / "my_notes.txt"
    stray.write_text("keep me", encoding="utf-8")
    with pytest.raises(IngestError, match="other file"):
        generate_line(tmp_path, per_class=2)
    assert stray.read_text(encoding="utf-8") == "keep me"
    assert len(list((tmp_path / "images").rglob("*.*"))) == 9


def test_refuses_a_file_and_bad_arguments(tmp_path: Path) -> None:
    target = tmp_path / "a_file"
    target.write_text("x", encoding="utf-8")
    with pytest.raises(IngestError, match="is a file"):
        generate_line(target)
    with pytest.raises(InspectloopError, match="per_class"):
        generate_line(tmp_path / "new", per_class=0)
    with pytest.raises(InspectloopError, match="size"):
        generate_line(tmp_path / "new", size=8)
    with pytest.raises(InspectloopError, match="seed"):
        generate_line(tmp_path / "new", seed=-1)
    assert not (tmp_path / "new").exists()
