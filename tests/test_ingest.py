import csv
import hashlib
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter
from sqlalchemy import text

from inspectloop.domain import QualityStats
from inspectloop.errors import IngestError
from inspectloop.datasets import SplitPlan, create_version
from inspectloop.ingest import ingest, scan_folder, scan_manifest, scan_manifest_source, scan_source
from inspectloop.labels import annotate, label_summary
from inspectloop.maintenance.doctor import doctor
from inspectloop.quality import quality_stats
from inspectloop.store.images import ImageRepository
from inspectloop.workspace import Workspace, init_workspace, open_workspace
from tests.conftest import save, surface


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    workspace = init_workspace(tmp_path / "ws")
    yield workspace
    workspace.close()


def test_folder_tree_ingests_every_mode_with_labels(ws: Workspace, class_tree: Path) -> None:
    report = ingest(ws, scan_folder(class_tree), source=str(class_tree))
    assert (report.added, report.skipped, report.duplicates) == (12, [], [])
    assert set(ws.db.labels.classes()) == {"good", "scratch"}
    assert ws.db.labels.classes()["good"].is_good and not ws.db.labels.classes()["scratch"].is_good
    records = ws.db.images.get_many()
    assert {r.original_mode for r in records.values()} == {"L", "RGB", "I;16"}
    assert {r.working_mode for r in records.values()} <= {"L", "RGB"}
    assert report.annotations_added == 12


def test_sixteen_bit_maps_by_full_range(tmp_path: Path) -> None:
    from inspectloop.runtime.images import load_image

    values = np.array([[0, 257 * 100, 65535]] * 16 + [[0, 0, 0]] * 0, dtype=np.uint16).repeat(6, axis=1)
    path = save(Image.fromarray(values), tmp_path / "deep.png")
    pixels = np.asarray(load_image(path))
    assert pixels.dtype == np.uint8 and pixels[0, 0] == 0 and pixels[0, 6] == 100 and pixels[0, -1] == 255


def test_palette_and_alpha_become_rgb(tmp_path: Path) -> None:
    from inspectloop.runtime.images import load_image

    palette = Image.fromarray(surface(3), "L").convert("P")
    rgba = Image.fromarray(np.stack([surface(4)] * 4, -1), "RGBA")
    assert load_image(save(palette, tmp_path / "p.png")).mode == "RGB"
    assert load_image(save(rgba, tmp_path / "a.png")).mode == "RGB"


@pytest.mark.parametrize("kind, reason", [
    ("truncated", "truncated"), ("corrupt", "corrupt"), ("not_image", "not an image"),
    ("empty", "not an image"), ("tiny", "smaller than 16 px"), ("float", "floating-point"),
])
def test_bad_files_are_reported_with_path_and_skipped(ws: Workspace, class_tree: Path, broken_files: dict[str, Path],
                                                      kind: str, reason: str) -> None:
    items = scan_folder(class_tree) + scan_folder(broken_files[kind].parent.parent)
    report = ingest(ws, items, source="mixed")
    skipped = dict(report.skipped)
    assert str(broken_files[kind]) in skipped
    assert reason in skipped[str(broken_files[kind])]
    assert report.added == 12  # the good files of the batch still went in


def test_duplicates_are_stored_once_and_reported_with_paths(ws: Workspace, class_tree: Path) -> None:
    copy = class_tree / "good" / "copy_of_0.png"
    copy.write_bytes((class_tree / "good" / "good_0.png").read_bytes())
    report = ingest(ws, scan_folder(class_tree), source="tree")
    assert report.added == 12
    assert [Path(p).name for p, _ in report.duplicates] == ["good_0.png"] or \
        [Path(p).name for p, _ in report.duplicates] == ["copy_of_0.png"]
    digest = next(d for d, r in ws.db.images.get_many().items() if len(ws.db.images.sources(d)) == 2)
    assert {Path(p).name for p in ws.db.images.sources(digest)} == {"good_0.png", "copy_of_0.png"}


def test_reingest_adds_nothing_and_never_replaces_data(ws: Workspace, class_tree: Path) -> None:
    ingest(ws, scan_folder(class_tree), source="tree")
    before = {d: ws.blobs.get(d) for d in ws.db.images.get_many()}
    again = ingest(ws, scan_folder(class_tree), source="tree")
    assert again.added == 0 and len(again.duplicates) == 12 and again.annotations_added == 0
    assert {d: ws.blobs.get(d) for d in ws.db.images.get_many()} == before


def write_manifest(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_manifest_carries_metadata_and_extra_columns(ws: Workspace, class_tree: Path) -> None:
    rows = [{"path": "good/good_0.png", "label": "good", "camera": "cam-1", "line": "L2", "shift": "night",
             "lighting": "dome", "part_id": "P-1", "session": "s1", "captured_at": "2026-03-01T22:15:00",
             "operator": "ana"}]
    items, refused = scan_manifest(write_manifest(class_tree / "m.csv", rows))
    report = ingest(ws, items, source="m.csv", kind="manifest", refused=refused)
    assert report.added == 1
    record = next(iter(ws.db.images.get_many().values()))
    assert (record.meta.camera, record.meta.shift, record.meta.part_id) == ("cam-1", "night", "P-1")
    assert record.meta.captured_at.year == 2026 and record.meta.extra == {"operator": "ana"}


def test_manifest_rows_with_bad_dates_or_missing_files_are_reported(ws: Workspace, class_tree: Path) -> None:
    rows = [{"path": "good/good_0.png", "label": "good", "captured_at": "yesterday"},
            {"path": "good/missing.png", "label": "good", "captured_at": ""},
            {"path": "good/good_3.png", "label": "good", "captured_at": "2026-01-01"}]
    items, refused = scan_manifest(write_manifest(class_tree / "m.csv", rows))
    report = ingest(ws, items, source="m.csv", refused=refused)
    reasons = dict(report.skipped)
    assert any("m.csv:2" in path and "captured_at" in reason or "isoformat" in reason for path, reason in reasons.items())
    assert any(path.endswith("missing.png") and "cannot read" in reason for path, reason in reasons.items())
    assert report.added == 1


@pytest.mark.parametrize("column", ["camera", "operator"])
def test_manifest_rows_with_oversized_metadata_are_refused(class_tree: Path, column: str) -> None:
    rows = [{"path": "good/good_0.png", "label": "good", column: "x" * 100_000},
            {"path": "good/good_1.png", "label": "good", column: "cam-2"}]
    items, refused = scan_manifest(write_manifest(class_tree / "m.csv", rows))
    assert [item.path.name for item in items] == ["good_1.png"]
    assert len(refused) == 1 and "m.csv:2" in refused[0][0] and "over the 256 allowed" in refused[0][1]


def test_manifest_without_path_column_is_refused(class_tree: Path) -> None:
    manifest = write_manifest(class_tree / "m.csv", [{"file": "a.png", "label": "good"}])
    with pytest.raises(IngestError, match="no 'path' column"):
        scan_manifest(manifest)


def test_unknown_class_is_refused_in_strict_mode(ws: Workspace, class_tree: Path) -> None:
    report = ingest(ws, scan_folder(class_tree), source="tree", create_classes=False)
    assert report.added == 0 and len(report.skipped) == 12
    assert "unknown class 'good'" in report.skipped[0][1] and "classes add" in report.skipped[0][1]


def test_missing_source_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="is not a folder"):
        scan_folder(tmp_path / "nope")


def test_exclude_skips_mask_folders(class_tree: Path) -> None:
    save(Image.fromarray(surface(9), "L"), class_tree / "scratch" / "masks" / "m.png")
    assert not any("masks" in str(i.path) for i in scan_folder(class_tree, exclude=["*/masks/*"]))


def test_crash_mid_chunk_leaves_no_rows_and_no_partial_files(ws: Workspace, class_tree: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    original = ImageRepository.add_sources

    def flaky(self, sources, ingest_id):  # noqa: ANN001, ANN202
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("power cut")  # after the image rows of the chunk, before its commit
        return original(self, sources, ingest_id)

    monkeypatch.setattr(ImageRepository, "add_sources", flaky)
    with pytest.raises(RuntimeError):
        ingest(ws, scan_folder(class_tree), source="tree")
    with ws.db.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM images")).scalar() == 0
        assert conn.execute(text("SELECT count(*) FROM annotations")).scalar() == 0
    assert not list(ws.blobs.root.rglob(".tmp-*"))
    monkeypatch.undo()
    assert ingest(ws, scan_folder(class_tree), source="tree").added == 12  # a re-run completes the job


def test_quality_stats_track_blur_noise_and_clipping() -> None:
    rng = np.random.default_rng(0)
    flat = np.full((128, 128), 120.0)
    noisy = Image.fromarray(np.clip(flat + rng.normal(0, 5, flat.shape), 0, 255).astype(np.uint8), "L")
    stats = quality_stats(noisy)
    assert isinstance(stats, QualityStats)
    assert 110 < stats.brightness < 130 and 4.0 < stats.noise < 6.0 and stats.clipped_fraction == 0
    sharp = Image.fromarray(surface(0, size=128), "L")
    blurred = sharp.filter(ImageFilter.GaussianBlur(2))
    assert quality_stats(blurred).sharpness < quality_stats(sharp).sharpness / 4
    clipped = Image.fromarray(np.where(np.arange(128 * 128).reshape(128, 128) % 4 == 0, 255, 100).astype(np.uint8))
    assert abs(quality_stats(clipped).clipped_fraction - 0.25) < 1e-6


def test_folder_names_that_are_not_class_names_are_reported(ws: Workspace, class_tree: Path) -> None:
    save(Image.fromarray(surface(11), "L"), class_tree / "(old) scratch?" / "x.png")
    report = ingest(ws, scan_folder(class_tree), source="tree")
    assert report.added == 12
    assert any("not a valid class name" in reason for _, reason in report.skipped)


def test_empty_folder_and_empty_manifest_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(IngestError, match="no files found"):
        scan_folder(tmp_path / "empty")
    (tmp_path / "m.csv").write_text("path,label\n")
    with pytest.raises(IngestError, match="no rows"):
        scan_manifest(tmp_path / "m.csv")


def test_duplicate_files_in_json_name_the_hash_and_the_first_path(ws: Workspace, class_tree: Path) -> None:
    (class_tree / "good" / "copy_of_0.png").write_bytes((class_tree / "good" / "good_0.png").read_bytes())
    duplicates = ingest(ws, scan_folder(class_tree), source="tree").to_dict()["duplicate_files"]
    assert len(duplicates) == 1 and re.fullmatch(r"[0-9a-f]{64}", duplicates[0]["sha256"])  # was a path
    assert {Path(duplicates[0]["path"]).name, Path(duplicates[0]["same_as"]).name} == {"good_0.png", "copy_of_0.png"}


@pytest.mark.parametrize("second_ingest", [False, True], ids=["same batch", "later ingest"])
def test_the_same_bytes_under_two_classes_are_a_reported_conflict_left_out_of_training(
        ws: Workspace, class_tree: Path, tmp_path: Path, second_ingest: bool) -> None:
    data = (class_tree / "good" / "good_0.png").read_bytes()
    copy = save(Image.new("L", (1, 1)), class_tree / "scratch" / "mislabelled.png")
    copy.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    if second_ingest:
        copy.unlink()
        ingest(ws, scan_folder(class_tree), source="tree")
        (tmp_path / "more" / "scratch").mkdir(parents=True)
        copy = tmp_path / "more" / "scratch" / "mislabelled.png"
        copy.write_bytes(data)
    report = ingest(ws, scan_folder(copy.parent.parent), source="tree")
    assert [(c.path, c.sha256, c.label, c.other_labels) for c in report.conflicts] == \
        [(str(copy), digest, "scratch", ("good",))]
    assert report.to_dict()["conflict_files"][0]["same_as"].endswith("good_0.png")
    assert {(a.class_name, a.annotator) for a in ws.db.labels.annotations() if a.sha256 == digest} == \
        {("good", "import"), ("scratch", "import")}  # both kept: the later file no longer wins
    summary = label_summary(ws)
    assert summary["conflicts"] == 1 and summary["disagreements"][0]["conflict"]
    assert digest not in {i.sha256 for i in create_version(ws, SplitPlan(group_by="none")).items}
    annotate(ws, digest, "good", annotator="qe-ana")  # a person settles it
    assert label_summary(ws)["conflicts"] == 0
    assert digest in {i.sha256 for i in create_version(ws, SplitPlan(group_by="none"), new_test=True).items}


def test_conflicts_are_printed_per_file_by_the_cli(tmp_path: Path, class_tree: Path) -> None:
    from typer.testing import CliRunner

    from inspectloop.cli.app import app

    init_workspace(tmp_path / "ws").close()
    (class_tree / "scratch" / "mislabelled.png").write_bytes((class_tree / "good" / "good_0.png").read_bytes())
    result = CliRunner().invoke(app, ["ingest", str(class_tree), "-w", str(tmp_path / "ws")])
    assert result.exit_code == 0 and "label conflicts 1" in result.stdout
    squeezed = re.sub(r"\s+", "", result.stdout)  # Rich wraps long paths anywhere
    assert re.search(r"conflict:.*mislabelled.pngis'scratch'butthesamebytesare'good'", squeezed)
    labels = CliRunner().invoke(app, ["labels", "-w", str(tmp_path / "ws"), "--json"])
    assert json.loads(labels.stdout)["conflicts"] == 1


def manifest_row_paths(class_tree: Path, outside: Path) -> dict[str, str]:
    (class_tree / "link.png").symlink_to(outside)
    return {"dotdot": "../outside.png", "absolute": str(outside), "symlink": "link.png"}


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_manifest_rows_outside_its_folder_are_refused_unless_allowed(ws: Workspace, class_tree: Path,
                                                                     kind: str) -> None:
    outside = save(Image.fromarray(surface(42), "L"), class_tree.parent / "outside.png")
    path = manifest_row_paths(class_tree, outside)[kind]
    manifest = write_manifest(class_tree / "m.csv", [{"path": path, "label": "good"},
                                                     {"path": str(class_tree / "good" / "good_0.png"), "label": "good"}])
    items, refused = scan_manifest(manifest)
    assert [i.path.name for i in items] == ["good_0.png"]  # an absolute path inside the folder is fine
    assert len(refused) == 1 and refused[0][0].endswith("m.csv:2")
    assert "outside the manifest's folder" in refused[0][1] and "--allow-outside" in refused[0][1]
    items, refused = scan_manifest(manifest, allow_outside=True)
    assert len(items) == 2 and refused == []


def test_a_manifest_without_a_label_column_says_so(class_tree: Path) -> None:
    scan = scan_manifest_source(write_manifest(class_tree / "m.csv", [{"path": "good/good_0.png", "Class": "good"}]))
    assert scan.notes == ["m.csv has no 'label' column: its 1 image(s) are ingested unlabelled "
                          "(rename column 'Class' to 'label')"]
    labelled = scan_manifest_source(write_manifest(class_tree / "n.csv", [{"path": "good/good_0.png", "label": "good"}]))
    assert labelled.notes == []


def test_symlink_loops_in_a_folder_are_counted_and_named(class_tree: Path) -> None:
    (class_tree / "good" / "loop").symlink_to(class_tree)  # a folder link back up the tree
    (class_tree / "scratch" / "self.png").symlink_to(class_tree / "scratch" / "self.png")
    scan = scan_source(class_tree)
    assert len(scan.items) == 12
    assert scan.notes == [f"2 symlink loop(s) skipped; first: {class_tree / 'good' / 'loop'}"]


KILLED_INGEST = """
import os, sys, time
from pathlib import Path
from inspectloop.ingest import ingest, scan_folder
from inspectloop.workspace import open_workspace
os.sync = lambda: time.sleep(60)  # hold the first chunk between writing its temporary files and renaming them
with open_workspace(Path(sys.argv[1])) as ws:
    ingest(ws, scan_folder(Path(sys.argv[2])), source="tree")
"""


def test_an_ingest_killed_mid_write_leaves_nothing_after_the_next_open(tmp_path: Path, class_tree: Path) -> None:
    init_workspace(tmp_path / "ws").close()
    staging = tmp_path / "ws" / "blobs" / ".staging"
    process = subprocess.Popen([sys.executable, "-c", KILLED_INGEST, str(tmp_path / "ws"), str(class_tree)])
    deadline = time.monotonic() + 60
    while len(list(staging.glob(".tmp-*"))) < 12 and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert len(list(staging.glob(".tmp-*"))) == 12  # what kill -9 leaves
    with open_workspace(tmp_path / "ws") as ws:
        assert list(ws.blobs.root.rglob(".tmp-*")) == []
        assert ingest(ws, scan_folder(class_tree), source="tree").added == 12  # a re-run completes the job
        assert doctor(ws).healthy


def test_decoder_warnings_and_exif_orientation_are_reported_per_file(ws: Workspace, tmp_path: Path) -> None:
    """An animated GIF went in as its first frame without a word; a rotated JPEG was stored sideways."""
    from benchmarks.hostile_corpus import animated_gif, exif_rotated_jpeg, png_of_zeros

    folder = tmp_path / "src" / "good"
    folder.mkdir(parents=True)
    (folder / "anim.gif").write_bytes(animated_gif())
    (folder / "turned.jpg").write_bytes(exif_rotated_jpeg(6))
    (folder / "bomb.png").write_bytes(png_of_zeros(30000, 30000))
    report = ingest(ws, scan_folder(folder.parent), source="src")
    assert report.warnings == [(str(folder / "anim.gif"), "GIF with 5 frames: only the first is used")]
    assert report.reoriented == [(str(folder / "turned.jpg"), 6)]
    assert dict(report.skipped)[str(folder / "bomb.png")].startswith("image is 900.0 MP, over the 89.0 MP limit")
    sizes = {(r.width, r.height) for r in ws.db.images.get_many().values()}
    assert (64, 96) in sizes  # upright, as training and serving decode it
    assert report.to_dict()["reoriented_files"] == [{"path": str(folder / "turned.jpg"), "exif_orientation": 6}]


@pytest.mark.parametrize(("column", "values", "warned"), [
    ("defect_score", ["0.3333333333333333", "0.3333333333333333", "0", "0"], True),
    ("camera", ["cam-1", "cam-2", "cam-1", "cam-2"], False),  # a real slice
    ("severity_text", ["deep", "deep", "", ""], True),  # set for scratches only
])
def test_a_manifest_column_that_repeats_the_label_is_warned_about(class_tree: Path, column: str, values: list[str],
                                                                 warned: bool) -> None:
    rows = [{"path": f"{label}/{label}_{i}.png", "label": label, column: value}
            for i, (label, value) in enumerate(zip(["scratch", "scratch", "good", "good"], values))]
    scan = scan_manifest_source(write_manifest(class_tree / "m.csv", rows))
    echoes = [note for note in scan.notes if "repeats the label" in note]
    assert len(echoes) == (1 if warned else 0)
    if warned:
        assert echoes[0].startswith(f"column '{column}' repeats the label (every 'good' is ")
        assert "evaluation reports do not slice by it" in echoes[0] and "\n" not in echoes[0]


def test_every_manifest_column_is_documented_in_the_readme_and_the_help() -> None:
    from typer.testing import CliRunner

    from inspectloop.cli.app import app
    from inspectloop.domain import METADATA_FIELDS
    from inspectloop.ingest import MANIFEST_COLUMNS

    names = [name for name, _ in MANIFEST_COLUMNS]
    assert set(names) == {"path", "label", "defect_probability", *METADATA_FIELDS}
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("### The manifest", 1)[1].split("\n### ", 1)[0]
    assert all(f"| `{name}` |" in section for name in names) and "anything else" in section
    help_text = CliRunner().invoke(app, ["ingest", "--help"], env={"COLUMNS": "160"}).stdout
    for name, meaning in MANIFEST_COLUMNS:
        assert re.search(rf"\b{name}\s+{re.escape(meaning)}", help_text), name
    assert "Any other column" in help_text
