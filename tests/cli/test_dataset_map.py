"""``inspectloop dataset map``: computes and keeps a version's map; bad input is one line, exit 1."""

from __future__ import annotations

from pathlib import Path

from inspectloop.datamap.build import load_map
from inspectloop.workspace import open_workspace
from tests.cli.test_app import invoke


def test_dataset_map_keeps_the_map_and_refuses_unknown_input(tmp_path: Path, class_tree: Path) -> None:
    ws = tmp_path / "ws"
    assert invoke("init", ws)[0] == 0
    assert invoke("ingest", class_tree, "-w", ws)[0] == 0
    assert invoke("dataset", "create", "-w", ws, "--group-by", "none", "--val", "0.25", "--test", "0.25")[0] == 0
    code, out, _ = invoke("dataset", "map", "v1", "-w", ws, "--features", "pixels", "--method", "pca")
    assert code == 0 and "map of v1: 12 images (12 embedded" in out and "/browse?version=v1" in out
    with open_workspace(ws) as workspace:
        assert load_map(workspace, "v1").method == "pca"
    for args, message in ((("v9",), "no dataset version 'v9' (known: v1)"),
                          (("v1", "--method", "umap"), "unknown map method 'umap'"),
                          (("v1", "--features", "vgg"), "unknown features 'vgg'")):
        code, out, err = invoke("dataset", "map", *args, "-w", ws)
        assert code == 1 and message in " ".join(err.split()) and "Traceback" not in err + out
