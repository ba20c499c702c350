"""A version's map: computed once, kept in the workspace, features reused by the next version."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from inspectloop.datamap.build import PIXELS, compute_map, load_map, map_path, pixel_features
from inspectloop.datasets import SplitPlan, create_version
from inspectloop.errors import BrowseError
from inspectloop.ingest import ingest, scan_folder
from inspectloop.workspace import Workspace, init_workspace


@pytest.fixture
def ws(tmp_path: Path, class_tree: Path) -> Iterator[Workspace]:
    workspace = init_workspace(tmp_path / "ws")
    ingest(workspace, scan_folder(class_tree), source="tree")
    create_version(workspace, SplitPlan(group_by="none", val_fraction=0.25, test_fraction=0.25))
    yield workspace
    workspace.close()


def counting(calls: list[int]) -> object:
    def embed(digests: Sequence[str]) -> np.ndarray:
        calls.append(len(digests))
        return np.array([[int(d[:8], 16) % 97, int(d[8:16], 16) % 89] for d in digests], dtype=np.float32)
    return embed


def test_a_map_is_kept_and_read_back(ws: Workspace) -> None:
    made = compute_map(ws, "latest", features=PIXELS, method="pca")
    assert made.version == "v1" and len(made.sha256) == 12 and made.embedded == 12
    assert map_path(ws, "v1", PIXELS, "pca").is_file()
    kept = load_map(ws, "v1")
    assert kept.sha256 == made.sha256 and np.array_equal(kept.xy, made.xy) and kept.method == "pca"


def test_features_of_images_already_mapped_are_not_embedded_again(ws: Workspace) -> None:
    calls: list[int] = []
    compute_map(ws, "v1", features="fake", method="pca", embed=counting(calls))  # type: ignore[arg-type]
    create_version(ws, SplitPlan(group_by="none", val_fraction=0.25, test_fraction=0.25))  # v2: the same images
    again = compute_map(ws, "v2", features="fake", method="tsne", embed=counting(calls))  # type: ignore[arg-type]
    assert calls == [12] and again.embedded == 0
    assert load_map(ws, "v2", method="tsne").method == "tsne"


def test_features_label_error_finding_kept_are_not_embedded_again(ws: Workspace) -> None:
    from inspectloop.embeddings import image_embeddings

    calls: list[int] = []
    image_embeddings(ws, list(ws.db.images.get_many()), input_size=224, embed=counting(calls))  # type: ignore[arg-type]
    made = compute_map(ws, "v1", features="efficientnet-lite0", method="pca", embed=counting(calls))  # type: ignore[arg-type]
    assert calls == [12] and made.embedded == 0


def test_pixel_features_are_thumbnails(ws: Workspace) -> None:
    digest = load_map_digest(ws)
    features = pixel_features(ws, [digest])
    assert features.shape == (1, 256) and 0.0 <= features.min() <= features.max() <= 1.0


def load_map_digest(ws: Workspace) -> str:
    return ws.db.datasets.items("v1")[0].sha256


@pytest.mark.parametrize(("call", "kind", "message"), [
    (lambda w: compute_map(w, "v9", features=PIXELS), "not_found", "no dataset version 'v9' (known: v1)"),
    (lambda w: load_map(w, "v1"), "no_map", "inspectloop dataset map v1"),
    (lambda w: compute_map(w, "v1", features="resnet-9000"), "bad_field", "unknown features 'resnet-9000'"),
    (lambda w: compute_map(w, "v1", method="umap"), "bad_field", "unknown map method"),
])
def test_bad_requests_say_what_is_wrong(ws: Workspace, call: object, kind: str, message: str) -> None:
    with pytest.raises(BrowseError) as info:
        call(ws)  # type: ignore[operator]
    assert info.value.kind == kind and message in str(info.value)


def test_a_workspace_without_versions_says_so(tmp_path: Path) -> None:
    with init_workspace(tmp_path / "empty") as workspace, pytest.raises(BrowseError, match="known: none"):
        compute_map(workspace, "latest", features=PIXELS)


def test_the_frozen_backbone_maps_real_features(ws: Workspace) -> None:
    pytest.importorskip("torch", reason="the frozen backbone needs the 'train' extra")
    made = compute_map(ws, "v1", method="tsne")
    assert made.features == "efficientnet-lite0" and made.xy.shape == (12, 2)
