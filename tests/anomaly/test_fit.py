"""PatchCore fitting: good images only, bounded chunks, scores and heatmaps that find the defect."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inspectloop.anomaly import MIN_GOOD_IMAGES, PatchCoreConfig, fit_patchcore
from inspectloop.anomaly.coreset import greedy_coreset, nearest_distances
from inspectloop.anomaly.fit import PatchCoreModel
from inspectloop.errors import TrainingError
from tests.anomaly.conftest import SIZE, surface


def test_defects_score_above_every_good_part(fitted: PatchCoreModel) -> None:
    scores, heatmaps = fitted.score([surface(100 + i) for i in range(6)] + [surface(200 + i, defect=True)
                                                                              for i in range(6)])
    assert scores.shape == (12,) and heatmaps.shape == (12, SIZE, SIZE)
    assert scores[6:].min() > scores[:6].max()


def test_the_heatmap_peaks_on_the_defect(fitted: PatchCoreModel) -> None:
    image = surface(300, defect=True)
    dark = np.asarray(image) == 10  # the defect's pixels
    _, heatmaps = fitted.score([image])
    row, col = np.unravel_index(heatmaps[0].argmax(), heatmaps[0].shape)
    rows, cols = np.nonzero(dark)
    assert rows.min() - 6 <= row <= rows.max() + 6 and cols.min() - 6 <= col <= cols.max() + 6


def test_the_bank_is_a_coreset_of_the_training_patches(fitted: PatchCoreModel) -> None:
    # 12 images x 8 x 8 patches, 10% kept
    assert fitted.bank.shape == (77, 152) and fitted.patches_seen == 12 * 64 and fitted.images_seen == 12


@pytest.mark.parametrize("count", [0, 3, MIN_GOOD_IMAGES - 1])
def test_too_few_good_images_are_refused_naming_the_count(count: int) -> None:
    with pytest.raises(TrainingError, match=f"at least {MIN_GOOD_IMAGES} good images.*got {count}"):
        fit_patchcore([surface(i) for i in range(count)], PatchCoreConfig(input_size=SIZE))


@pytest.mark.parametrize("field, value", [("stride", 4), ("coreset_ratio", 0.0), ("input_size", 100),
                                          ("max_bank", 3), ("oversample", 0.5), ("score_share", 1.5),
                                          ("stages", (10, 4)), ("stages", (16,)), ("stages", ()),
                                          ("backbone", "efficientnet-lite2")])
def test_bad_settings_are_refused(field: str, value: object) -> None:
    with pytest.raises(TrainingError, match=field.split("_")[0]):
        PatchCoreConfig(**{field: value})


def test_greedy_coreset_covers_outliers_and_is_seeded() -> None:
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.normal(0, 0.1, (500, 8)), [[5.0] * 8]]).astype(np.float32)
    chosen = greedy_coreset(points, 10, seed=1)
    assert 500 in chosen  # the lone far point is kept: k-center picks what nothing else covers
    assert np.array_equal(chosen, greedy_coreset(points, 10, seed=1)) and len(set(chosen.tolist())) == 10
    assert np.array_equal(greedy_coreset(points, 600), np.arange(501))


def test_nearest_distances_are_exact() -> None:
    rng = np.random.default_rng(0)
    queries, bank = rng.normal(size=(50, 16)), rng.normal(size=(30, 16))
    brute = np.sqrt(((queries[:, None] - bank[None]) ** 2).sum(-1)).min(1)
    assert np.allclose(nearest_distances(queries, bank), brute, atol=1e-4)


def test_update_adds_good_images_close_to_a_full_refit(good_images: list[Image.Image]) -> None:
    config = PatchCoreConfig(input_size=SIZE, stride=8, coreset_ratio=0.1, chunk_images=5, threads=1)
    new = [surface(50 + i) for i in range(8)]
    base = fit_patchcore(good_images, config)
    updated = base.update(new)
    refit = fit_patchcore(list(good_images) + new, config)
    assert updated.images_seen == refit.images_seen == 20 and updated.bank.shape == refit.bank.shape
    assert base.bank.shape[0] < updated.bank.shape[0]  # the original model is unchanged
    probe = [surface(400 + i) for i in range(4)] + [surface(500 + i, defect=True) for i in range(4)]
    up, full = updated.image_scores(probe), refit.image_scores(probe)
    assert up[4:].min() > up[:4].max() and np.allclose(up, full, rtol=0.25)


def test_a_saved_model_loads_with_the_same_scores(fitted: PatchCoreModel, tmp_path: Path) -> None:
    fitted.save(tmp_path / "m.npz")
    loaded = PatchCoreModel.load(tmp_path / "m.npz")
    images = [surface(7), surface(8, defect=True)]
    assert np.allclose(loaded.image_scores(images), fitted.image_scores(images), atol=1e-5)


def test_a_change_of_exposure_is_not_an_anomaly(fitted: PatchCoreModel) -> None:
    # sessions differ in lighting (magnetic tile: mean grey 66 in one session, 153 in another)
    parts = [surface(600 + i) for i in range(4)]
    darker = [Image.fromarray((np.asarray(p, dtype=np.float32) * 0.5 + 20).astype(np.uint8), mode="L") for p in parts]
    defects = [surface(700 + i, defect=True) for i in range(4)]
    plain, dimmed, bad = (fitted.image_scores(images) for images in (parts, darker, defects))
    assert np.allclose(dimmed, plain, rtol=0.1) and bad.min() > dimmed.max()


def test_a_model_saved_before_standardisation_loads_as_it_was_fitted(fitted: PatchCoreModel, tmp_path: Path) -> None:
    fitted.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz") as data:
        arrays = {k: data[k] for k in data.files}
    config = json.loads(str(arrays["config"]))
    del config["standardise"], config["score_share"]
    np.savez(tmp_path / "old.npz", **{**arrays, "config": json.dumps(config)})
    old = PatchCoreModel.load(tmp_path / "old.npz")
    assert not old.config.standardise and old.config.score_share == 0.0 and old.module.top == 1
    assert not old.module.features.standardise
