"""Filling the training image cache ahead of a run: one process or Ray, the same pixels the run reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inspectloop.batch.engine import RayEngine
from inspectloop.datasets import SplitPlan, create_version, load_version
from inspectloop.ingest import ingest, scan_folder
from inspectloop.train.config import TrainConfig
from inspectloop.train.data import load_image_set
from inspectloop.train.image_cache import fill_image_cache, training_images
from inspectloop.workspace import Workspace, init_workspace
from tests.ray_helpers import local_ray  # noqa: F401 (fixture)

CONFIG = TrainConfig(input_size=64)


@pytest.fixture
def ws(tmp_path: Path, class_tree: Path) -> Workspace:
    workspace = init_workspace(tmp_path / "ws")
    ingest(workspace, scan_folder(class_tree), source="tree")
    create_version(workspace, SplitPlan(group_by="none", val_fraction=0.25, test_fraction=0.25))
    yield workspace
    workspace.close()


def _decoded_without_cache(ws: Workspace) -> dict[str, np.ndarray]:
    version = load_version(ws)
    preprocess, colour, _ = training_images(ws, version, CONFIG)
    images = load_image_set(version.items, version.class_names, ws.blobs.get, preprocess, mode=colour)
    return {digest: np.asarray(image) for digest, image in zip(images.digests, images.images)}


def test_ray_fills_the_entries_a_run_reads_with_the_pixels_it_would_decode(ws: Workspace, local_ray: object) -> None:
    with RayEngine(workers=2, chunk_size=3) as engine:
        filled = fill_image_cache(ws, "v1", CONFIG, engine=engine)
    assert filled.images == 12 and filled.decoded == 12 and filled.engine["engine"] == "ray"
    _, _, cache = training_images(ws, load_version(ws), CONFIG)
    expected = _decoded_without_cache(ws)
    for digest, pixels in expected.items():
        cached = cache.get(digest)
        assert cached is not None and np.array_equal(np.asarray(cached), pixels)
    assert fill_image_cache(ws, "v1", CONFIG).decoded == 0  # a second fill finds everything there


def test_another_input_size_is_another_cache(ws: Workspace) -> None:
    fill_image_cache(ws, "v1", CONFIG)
    other = fill_image_cache(ws, "v1", TrainConfig(input_size=96))
    assert other.decoded == 12 and "96px" in other.folder


def test_the_cli_takes_the_runs_own_settings(ws: Workspace) -> None:
    from typer.testing import CliRunner

    from inspectloop.cli.app import app

    runner = CliRunner()
    shown = runner.invoke(app, ["dataset", "cache", "-w", str(ws.root), "--input-size", "64", "--set", "colour=L"])
    assert shown.exit_code == 0, shown.output
    assert "12 of 12 images decoded" in shown.stdout and "64px-L-full" in shown.stdout
    bad = runner.invoke(app, ["dataset", "cache", "-w", str(ws.root), "--set", "colour=purple"])
    assert bad.exit_code == 1 and "colour" in bad.stderr and "Traceback" not in bad.output
