"""Near-duplicates in the shared real datasets: the documented duplicate pairs are found, nothing else at 0."""

from __future__ import annotations

import pytest

from inspectloop.near_duplicates import near_duplicate_pairs, perceptual_hash
from inspectloop.runtime.images import decode_image
from tests.conftest import SHARED_DATASETS

pytestmark = pytest.mark.skipif(not SHARED_DATASETS.is_dir(), reason=f"real datasets not found at {SHARED_DATASETS}")


def test_kolektorsdd_documented_duplicates_are_found_at_zero_bits() -> None:
    root = SHARED_DATASETS / "kolektorsdd"
    # SOURCE.txt: 000-007 == 143-150 and 096-103 == 223-230 (005 and 098 are defect images); 14 good pairs, 2 defect.
    documented = {(f"good/{a:03d}.jpg", f"good/{a + 143:03d}.jpg") for a in range(8) if a != 5}
    documented |= {(f"good/{a:03d}.jpg", f"good/{a + 127:03d}.jpg") for a in range(96, 104) if a != 98}
    documented |= {("defect/005.jpg", "defect/148.jpg"), ("defect/098.jpg", "defect/225.jpg")}
    paths = sorted({p for pair in documented for p in pair} | {"good/010.jpg", "good/011.jpg", "defect/235.jpg"})
    hashes = {p: perceptual_hash(decode_image(root / p).image) for p in paths}
    found = {(p.first, p.second) for p in near_duplicate_pairs(hashes, 0)}
    assert found == documented


def test_embeddings_find_neu_crops_of_one_strip_the_hash_misses() -> None:
    """Pairs checked by eye: the same inclusions and pits, the view shifted (22-30 bits apart by hash)."""
    pytest.importorskip("torch", reason="the embedding pass needs the train extra")
    from inspectloop.labelquality.probabilities import frozen_features
    from inspectloop.near_duplicates import DEFAULT_MIN_SIMILARITY, similar_pairs

    root = SHARED_DATASETS / "neu_det" / "images"
    twins = {("inclusion/inclusion_48.jpg", "inclusion/inclusion_50.jpg"),
             ("inclusion/inclusion_157.jpg", "inclusion/inclusion_158.jpg")}
    others = ["crazing/crazing_1.jpg", "scratches/scratches_1.jpg", "inclusion/inclusion_1.jpg",
              "patches/patches_1.jpg", "inclusion/inclusion_120.jpg", "rolled-in_scale/rolled-in_scale_1.jpg"]
    paths = sorted({p for pair in twins for p in pair} | set(others))
    features = frozen_features(paths, lambda p: (root / p).read_bytes(), input_size=128)
    found = {(p.first, p.second) for p in similar_pairs(dict(zip(paths, features, strict=True)),
                                                        DEFAULT_MIN_SIMILARITY)}
    hashes = {p: perceptual_hash(decode_image(root / p).image) for p in paths}
    assert found == twins and not near_duplicate_pairs(hashes, 4)
