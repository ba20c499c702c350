"""``inspectloop dataset duplicates``: leaks and label conflicts of a version, as a table and as JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inspectloop.datasets import SplitPlan, create_version
from inspectloop.domain import CaptureMeta
from inspectloop.ingest import SourceItem, ingest
from inspectloop.workspace import init_workspace
from tests.cli.test_app import invoke
from tests.conftest import SHARED_DATASETS
from tests.near_duplicates_helpers import copies


def test_leaks_and_conflicts_are_listed_and_fixed_by_the_default_split(tmp_path: Path) -> None:
    ws = init_workspace(tmp_path / "ws")
    ingest(ws, copies(tmp_path / "src", range(30), twins={s: "good" for s in range(0, 30, 3)} | {1: "scratch"},
                      label_of=dict.fromkeys((4, 7, 13, 16, 19, 22), "scratch")), source="copies")
    create_version(ws, SplitPlan(group_by="none", near_duplicate_distance=None), name="blind")
    ws.close()
    code, out, _ = invoke("dataset", "duplicates", "blind", "-w", tmp_path / "ws", "--json", "--hash-only")
    found = json.loads(out)
    assert code == 0 and any(p["leaks"] for p in found) and sum(p["conflicts"] for p in found) == 1
    code, out, _ = invoke("dataset", "create", "-w", tmp_path / "ws", "--group-by", "none", "--new-test")
    assert code == 0 and "near-duplicates: 11 pair(s), 0 across splits, 1 with two labels" in out
    code, out, _ = invoke("dataset", "duplicates", "-w", tmp_path / "ws", "--hash-only")
    words = " ".join(out.split())  # the console wraps long lines
    assert code == 0 and "11 pair(s); 0 across splits, 1 with two labels" in words and "conflict" in words


def test_an_unknown_version_is_one_line(tmp_path: Path) -> None:
    init_workspace(tmp_path / "ws").close()
    code, _, err = invoke("dataset", "duplicates", "v3", "-w", tmp_path / "ws")
    assert code != 0 and "dataset version" in err and "Traceback" not in err


@pytest.mark.skipif(not SHARED_DATASETS.is_dir(), reason=f"real datasets not found at {SHARED_DATASETS}")
def test_embeddings_find_a_shifted_view_and_its_other_label(tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="the embedding pass needs the train extra")
    root = SHARED_DATASETS / "neu_det" / "images"
    picked = {f"{c}/{c}_{n}.jpg": c for c in ("crazing", "scratches", "patches") for n in range(1, 6)}
    picked |= {"inclusion/inclusion_48.jpg": "inclusion", "inclusion/inclusion_50.jpg": "patches"}  # checked by eye
    picked |= {f"inclusion/inclusion_{n}.jpg": "inclusion" for n in range(1, 5)}
    ws = init_workspace(tmp_path / "ws")
    ingest(ws, [SourceItem(path=root / p, label=label, meta=CaptureMeta()) for p, label in picked.items()], source="neu")
    ws.close()
    code, out, err = invoke("dataset", "create", "-w", tmp_path / "ws", "--group-by", "none", "--similarity", "0.98")
    assert code == 0, err
    assert "near-duplicates: 1 pair(s) (1 by embedding only), 0 across splits, 1 with two labels" in " ".join(out.split())
    code, out, _ = invoke("dataset", "duplicates", "-w", tmp_path / "ws", "--json")
    [pair] = json.loads(out)
    assert pair["methods"] == ["embedding"] and pair["similarity"] >= 0.98 and pair["distance"] is None
    assert pair["conflicts"] and not pair["leaks"] and sorted(pair["labels"]) == ["inclusion", "patches"]


def test_without_the_training_stack_it_says_to_install_it_or_use_the_hash(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import inspectloop.near_duplicates as near_duplicates
    from inspectloop.errors import MissingExtraError

    def missing(module: str, extra: str) -> None:
        raise MissingExtraError("faiss-cpu", extra)

    ws = init_workspace(tmp_path / "ws")
    ingest(ws, copies(tmp_path / "src", range(12), twins={1: "good"}, label_of=dict.fromkeys((3, 5, 7, 9), "scratch")),
           source="copies")
    create_version(ws, SplitPlan(group_by="none"))
    ws.close()
    monkeypatch.setattr(near_duplicates, "require", missing)
    monkeypatch.setattr("inspectloop.embeddings.image_embeddings",
                        lambda w, digests, **_: {d: [1.0, 0.0] for d in digests})
    code, _, err = invoke("dataset", "duplicates", "-w", tmp_path / "ws")
    words = " ".join(err.split())
    assert code == 1 and "'faiss-cpu' package" in words and "or pass --hash-only" in words and "Traceback" not in err
    assert invoke("dataset", "duplicates", "-w", tmp_path / "ws", "--hash-only")[0] == 0
