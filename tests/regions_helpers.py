"""Small workspaces with ingested images and region annotations, for the regions tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from inspectloop.domain import Box, CaptureMeta, ClassDefinition, Polygon, Region, Task
from inspectloop.ingest import SourceItem, ingest
from inspectloop.store import sha256_bytes
from inspectloop.workspace import Workspace, init_workspace

SIZES = {"part_a.png": (64, 48), "part_b.jpg": (40, 70), "part_c.png": (32, 32)}  # not square: w/h mix-ups show


def image_folder(root: Path) -> Path:
    """Three small images of different sizes, labelled by folder (scratch/ and good/)."""
    rng = np.random.default_rng(0)
    for name, (width, height) in SIZES.items():
        label = "good" if name == "part_c.png" else "scratch"
        path = root / label / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (height, width), dtype=np.uint8), "L").save(path)
    return root


def digest_of(folder: Path, name: str) -> str:
    return sha256_bytes(next(folder.rglob(name)).read_bytes())


def workspace_with_images(root: Path, images: Path, classes: tuple[str, ...] = ("scratch", "pit"),
                          database: str | None = None) -> Workspace:
    """A new workspace holding ``images`` (ingested with folder labels) and detection classes ``classes``."""
    workspace = init_workspace(root, database=database)
    items = [SourceItem(path=p, label=p.parent.name, meta=CaptureMeta()) for p in sorted(images.rglob("*")) if p.is_file()]
    ingest(workspace, items, source=str(images))
    for name in classes:
        workspace.db.labels.upsert_class(ClassDefinition(name=name, task=Task.detection))
    return workspace


def sample_regions(images: Path, annotator: str = "ana") -> list[Region]:
    """Boxes and outlines with fractional pixel coordinates, two classes, on two images."""
    a, b = digest_of(images, "part_a.png"), digest_of(images, "part_b.jpg")
    return [
        Region(sha256=a, class_name="scratch", box=Box(x0=3.25, y0=4.5, x1=20.125, y1=11.0), annotator=annotator),
        Region(sha256=a, class_name="pit", box=Box(x0=0, y0=0, x1=64, y1=48), annotator=annotator),
        Region(sha256=a, class_name="scratch", annotator=annotator, box=None,
               polygon=Polygon(points=[(30.5, 10.25), (50.0, 12.0), (47.333, 30.0), (33.0, 28.5)])),
        Region(sha256=b, class_name="pit", box=Box(x0=10.0, y0=60.0, x1=39.999, y1=70.0), annotator=annotator),
        Region(sha256=b, class_name="scratch", annotator=annotator, box=None,
               polygon=Polygon(points=[(1.0, 1.0), (39.0, 2.0), (20.0, 33.3)])),
    ]


def drawn(workspace: Workspace) -> set[tuple[object, ...]]:
    """The current regions as comparable keys."""
    return {r.key() for r in workspace.db.regions.current()}
