"""``inspectloop regions``: import, export and agreement through the CLI; bad input is one line, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from inspectloop.cli.app import app
from tests.regions_helpers import image_folder, sample_regions, workspace_with_images

runner = CliRunner()


def invoke(*args: object) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def test_import_export_and_agreement(tmp_path: Path) -> None:
    images = image_folder(tmp_path / "images")
    with workspace_with_images(tmp_path / "a", images) as source:
        source.db.regions.add(sample_regions(images, "ana") + sample_regions(images, "bo")[:2])
    code, stdout, _ = invoke("regions", "export", tmp_path / "coco", "--format", "coco", "-w", tmp_path / "a")
    assert code == 0 and "wrote 7 region(s) on 2 image(s)" in stdout
    workspace_with_images(tmp_path / "b", images, classes=("scratch",)).close()
    code, stdout, _ = invoke("regions", "import", tmp_path / "coco", "--format", "coco", "-w", tmp_path / "b")
    assert code == 0 and "added 4 region(s)" in stdout and "unknown class 'pit'" in stdout
    code, stdout, _ = invoke("regions", "import", tmp_path / "coco", "--format", "coco", "-w", tmp_path / "b",
                             "--add-classes", "--json")
    assert code == 0 and json.loads(stdout)["classes_added"] == ["pit"]
    code, stdout, _ = invoke("regions", "agreement", "-w", tmp_path / "b", "--json")
    assert code == 0 and json.loads(stdout)[0]["per_class"]["pit"]["matched"] == 1
    code, stdout, _ = invoke("regions", "agreement", "-w", tmp_path / "b")
    assert code == 0 and "ana vs bo" in stdout


def test_errors_are_one_line_with_a_fix(tmp_path: Path) -> None:
    images = image_folder(tmp_path / "images")
    workspace_with_images(tmp_path / "ws", images).close()
    code, _, stderr = invoke("regions", "import", tmp_path / "nothing", "--format", "voc", "-w", tmp_path / "ws")
    assert code == 1 and "does not exist" in stderr and "Traceback" not in stderr
    code, _, stderr = invoke("regions", "export", tmp_path / "out", "--format", "yolo", "-w", tmp_path / "ws")
    assert code == 1 and "no region annotations to export" in stderr and "fix:" in stderr
    (tmp_path / "labels").mkdir()
    code, _, stderr = invoke("regions", "import", tmp_path / "labels", "--format", "yolo", "-w", tmp_path / "ws")
    assert code == 1 and "no class names for the YOLO class ids" in stderr
