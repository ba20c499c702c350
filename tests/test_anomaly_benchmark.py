"""The anomaly benchmark's scoring and splits (benchmarks/anomaly.py, benchmarks/common.py)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from benchmarks.anomaly import aupro, score_side, to_square
from benchmarks.common import DATASETS, kolektorsdd_anomaly_split, magnetic_tile_anomaly_split


def _masks() -> np.ndarray:
    masks = np.zeros((4, 16, 16), dtype=bool)
    masks[1, 2:6, 2:6] = True
    masks[2, 8:12, 8:14] = True
    masks[2, 0:2, 0:2] = True
    return masks


@pytest.mark.parametrize(("maps", "expected"), [
    (lambda m: m.astype(np.float32), 1.0),        # every defect pixel above every good one
    (lambda m: -m.astype(np.float32), 0.0),       # every defect pixel below
])
def test_aupro_bounds(maps, expected) -> None:
    masks = _masks()
    assert aupro(maps(masks), masks) == pytest.approx(expected)


def test_aupro_weights_regions_not_pixels() -> None:
    masks = _masks()
    # Only the small 2x2 region scores above the good pixels, the two large ones below all of them:
    # one region of three is found, so PRO is 1/3 from FPR 0 to the end, whatever the pixel counts.
    maps = np.random.default_rng(0).random(masks.shape).astype(np.float32)
    maps[masks] = -1.0
    maps[2, 0:2, 0:2] = 2.0
    assert aupro(maps, masks, max_fpr=0.3) == pytest.approx(1 / 3, abs=1e-6)


def test_a_tall_heatmap_is_scored_in_the_same_square_as_the_masks() -> None:
    tall = np.zeros((2, 64, 16), dtype=np.float32)
    tall[1, 32:, :] = 1.0  # the lower half of a tall part
    square = to_square(tall, 32)
    assert square.shape == (2, 32, 32) and square[1, 20:].min() > 0.9 and square[1, :12].max() < 0.1
    assert to_square(square, 32) is square


def test_recall_at_1pct_fpr_uses_the_good_scores_99th_percentile(tmp_path) -> None:
    labels = np.array([False] * 100 + [True] * 4)
    scores = np.r_[np.arange(100, dtype=np.float32), [98.5, 99.5, 200.0, 5.0]]
    masks = np.zeros((104, 4, 4), dtype=bool)
    masks[100:, 0, 0] = True
    np.save(tmp_path / "scores.npy", scores)
    np.save(tmp_path / "maps.npy", np.where(masks, 1.0, 0.0).astype(np.float16))
    result = score_side(tmp_path, labels, masks)
    # 99th percentile of 0..99 is 98.01: 98.5, 99.5 and 200 are above it, 5 is not; one good (99) is above.
    assert result["recall_at_1pct_fpr"] == 0.75
    assert result["realised_fpr"] == 0.01
    assert result["pixel_auroc"] == 1.0


@pytest.mark.skipif(not (DATASETS / "kolektorsdd").is_dir(), reason="shared KolektorSDD not present")
def test_kolektorsdd_split_keeps_duplicates_together() -> None:
    split = kolektorsdd_anomaly_split()
    assert split.counts() == {"train_good": 231, "test_good": 116, "test_defect": 52}
    digest = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
    train = {digest(p) for p in split.train}
    assert not train & {digest(c.path) for c in split.test}
    assert kolektorsdd_anomaly_split().to_dict() == split.to_dict()  # deterministic


@pytest.mark.skipif(not (DATASETS / "magnetic_tile").is_dir(), reason="shared magnetic tile data not present")
def test_magnetic_tile_split_is_the_issues() -> None:
    split = magnetic_tile_anomaly_split()
    assert split.counts() == {"train_good": 634, "test_good": 318, "test_defect": 132}
    assert all(p.name.split("_")[0] in {"exp0", "exp1", "exp2", "exp3", "exp4"} for p in split.train)
    assert all(c.mask is not None and c.mask.exists() for c in split.test)


def test_each_side_runs_with_its_librarys_shipped_coreset_share(tmp_path, monkeypatch) -> None:
    import argparse

    from benchmarks import anomaly
    from inspectloop.anomaly import PatchCoreConfig

    monkeypatch.setattr(anomaly, "PEER_PYTHON", tmp_path)  # any existing path: the command is only built
    args = argparse.Namespace(coreset_ratio=anomaly.DEFAULT_CORESET_RATIO, latency=5, update=0,
                              peer_coreset_ratio=anomaly.PEER_CORESET_RATIO, square=False)
    ours = anomaly.child_command("inspectloop", tmp_path / "split.json", tmp_path, args, "kolektorsdd")
    peer = anomaly.child_command("patchcore", tmp_path / "split.json", tmp_path, args, "kolektorsdd")
    assert ours[ours.index("--coreset-ratio") + 1] == str(PatchCoreConfig().coreset_ratio) == "0.04"
    assert peer[peer.index("--coreset-ratio") + 1] == "0.1"  # anomalib's Patchcore default
    assert json.loads(ours[ours.index("--settings") + 1]) == anomaly.TUNED["kolektorsdd"]  # the tuning's choice
    square = anomaly.child_command("inspectloop", tmp_path / "split.json", tmp_path,
                                   argparse.Namespace(**{**vars(args), "square": True}), "kolektorsdd")
    assert json.loads(square[square.index("--settings") + 1]) == {}
