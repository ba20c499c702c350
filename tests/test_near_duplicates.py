import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import delete

from inspectloop.datasets import SplitPlan, create_version
from inspectloop.errors import DatasetError
from inspectloop.ingest import ingest
from inspectloop.datamap.build import compute_map
from inspectloop.embeddings import image_embeddings
from inspectloop.near_duplicates import (
    HASH_KIND, NearDuplicate, combine_pairs, image_hashes, merge_groups, near_duplicate_pairs, perceptual_hash,
    similar_pairs, version_pairs,
)
from inspectloop.store import schema as s
from inspectloop.workspace import Workspace, init_workspace
from tests.near_duplicates_helpers import copies, textured


def reencoded(image: Image.Image, **options: object) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, **options)
    return Image.open(io.BytesIO(buffer.getvalue()))


def distance(a: Image.Image, b: Image.Image) -> int:
    return (perceptual_hash(a) ^ perceptual_hash(b)).bit_count()


@pytest.mark.parametrize(("change", "at_most"), [
    (lambda im: reencoded(im, format="JPEG", quality=70), 2),
    (lambda im: im.resize((96, 96)), 2),
    (lambda im: Image.eval(im, lambda v: min(255, v + 12)), 2),  # a little brighter
    (lambda im: im.convert("RGB"), 0),
])
def test_the_hash_survives_what_a_copy_goes_through(change, at_most: int) -> None:  # noqa: ANN001
    image = textured(1)
    assert distance(image, change(image)) <= at_most


def test_different_pictures_are_far_apart() -> None:
    distances = [distance(textured(i), textured(i + 100)) for i in range(10)]
    assert min(distances) > 12


def test_pairs_are_every_pair_within_the_distance_closest_first() -> None:
    hashes = {"a": 0b0000, "b": 0b0001, "c": 0b0111, "d": 0xFFFF_FFFF_FFFF_FFFF}
    assert near_duplicate_pairs(hashes, 2) == [NearDuplicate("a", "b", 1), NearDuplicate("b", "c", 2)]
    assert near_duplicate_pairs(hashes, 0) == [] and near_duplicate_pairs({}, 4) == []
    assert near_duplicate_pairs({"x": 2**64 - 1, "y": 2**64 - 1}, 0) == [NearDuplicate("x", "y", 0)]


def pair(a: str, b: str) -> NearDuplicate:
    return NearDuplicate(a, b, 0)


@pytest.mark.parametrize(("groups", "pairs", "kept", "apart", "expected"), [
    # an image with no group of its own joins its near-duplicate's group
    ({"a": "part:1", "b": "image:b"}, [pair("a", "b")], set(), set(), {"a": "part:1", "b": "part:1"}),
    # two loose images become one group, and a chain of copies stays one group
    ({"a": "image:a", "b": "image:b", "c": "image:c"}, [pair("a", "b"), pair("b", "c")], set(), set(),
     {"a": "image:a", "b": "image:a", "c": "image:a"}),
    # two real groups (two sessions of one tile) are never chained together
    ({"a": "session:1", "b": "session:2"}, [pair("a", "b")], set(), set(), {"a": "session:1", "b": "session:2"}),
    # the held-out test set is never merged with what is outside it
    ({"a": "image:a", "b": "image:b"}, [pair("a", "b")], set(), {"b"}, {"a": "image:a", "b": "image:b"}),
    # a kept (parent version's) group names the merged group
    ({"a": "image:a", "z": "image:z"}, [pair("a", "z")], {"image:z"}, set(), {"a": "image:z", "z": "image:z"}),
])
def test_merging_groups(groups, pairs, kept, apart, expected) -> None:  # noqa: ANN001
    assert merge_groups(groups, pairs, kept=kept, apart=apart) == expected


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    workspace = init_workspace(tmp_path / "ws")
    yield workspace
    workspace.close()


def test_a_reencoded_copy_lands_on_its_originals_side_of_every_split(ws: Workspace, tmp_path: Path) -> None:
    twins = {seed: "good" for seed in range(0, 40, 2)}
    ingest(ws, copies(tmp_path / "src", range(40), twins=twins), source="copies")
    version = create_version(ws, SplitPlan(group_by="none", seed=1))
    pairs = version_pairs(ws, version)
    assert len(pairs) == 20 and not any(p.leaks for p in pairs)
    assert version.summary["near_duplicates"] == {"max_distance": 4, "pairs": 20, "across_splits": 0,
                                                  "label_conflicts": 0}
    off = create_version(ws, SplitPlan(group_by="none", seed=1, near_duplicate_distance=None), name="off", parent=None)
    assert any(p.leaks for p in version_pairs(ws, off)) and "near_duplicates" not in off.summary


def test_a_copy_with_another_label_is_a_conflict(ws: Workspace, tmp_path: Path) -> None:
    ingest(ws, copies(tmp_path / "src", range(12), twins={3: "scratch"}, label_of={5: "scratch", 7: "scratch"}),
           source="copies")
    version = create_version(ws, SplitPlan(group_by="none", seed=0))
    conflicts = [p for p in version_pairs(ws, version) if p.conflicts]
    assert len(conflicts) == 1 and sorted(conflicts[0].labels) == ["good", "scratch"]
    assert version.summary["near_duplicates"]["label_conflicts"] == 1


def test_hashes_are_kept_at_ingest_and_recomputed_the_same_for_older_images(ws: Workspace, tmp_path: Path) -> None:
    ingest(ws, copies(tmp_path / "src", range(5), twins={}), source="five")
    digests = list(ws.db.images.get_many())
    at_ingest = ws.db.hashes.get_many(digests, HASH_KIND)
    assert sorted(at_ingest) == sorted(digests)
    with ws.db.engine.begin() as conn:  # an image stored before hashes existed
        conn.execute(delete(s.image_hashes))
    assert image_hashes(ws, digests) == at_ingest == ws.db.hashes.get_many(digests, HASH_KIND)


def test_an_impossible_distance_is_refused(ws: Workspace) -> None:
    with pytest.raises(DatasetError, match="out of range"):
        create_version(ws, SplitPlan(near_duplicate_distance=40))


# -- embedding similarity -------------------------------------------------------------------------------

def unit(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float32)


def test_similar_pairs_are_every_pair_at_or_above_the_threshold_most_alike_first() -> None:
    embeddings = {"a": unit(1, 0, 0), "b": unit(2, 0.1, 0), "c": unit(0.96, 0.28, 0), "d": unit(0, 0, 1)}
    pairs = similar_pairs(embeddings, 0.96)
    assert [(p.first, p.second, p.methods) for p in pairs] == [("a", "b", ("embedding",)), ("b", "c", ("embedding",)),
                                                                ("a", "c", ("embedding",))]
    assert pairs[0].similarity == pytest.approx(0.9988, abs=1e-4) and pairs[-1].similarity == pytest.approx(0.96)
    assert pairs[0].distance is None and similar_pairs({"a": unit(1, 0, 0)}, 0.9) == []
    assert similar_pairs(embeddings, 1.0) == []  # none is exactly parallel


def test_a_pair_both_methods_find_is_reported_once_with_both() -> None:
    by_hash = [NearDuplicate("a", "b", 0), NearDuplicate("c", "d", 3)]
    by_embedding = [NearDuplicate("a", "b", None, 0.99, ("embedding",)), NearDuplicate("e", "f", None, 0.98,
                                                                                        ("embedding",))]
    assert combine_pairs(by_hash, by_embedding) == [
        NearDuplicate("a", "b", 0, 0.99, ("hash", "embedding")), NearDuplicate("c", "d", 3),
        NearDuplicate("e", "f", None, 0.98, ("embedding",))]


def test_an_impossible_similarity_is_refused(ws: Workspace) -> None:
    with pytest.raises(DatasetError, match="similarity 1.5 is out of range"):
        create_version(ws, SplitPlan(near_duplicate_similarity=1.5))
    with pytest.raises(DatasetError, match="with the near-duplicate check off"):
        create_version(ws, SplitPlan(near_duplicate_distance=None, near_duplicate_similarity=0.97))


class CountingEmbedder:
    """Embeds by a fixed table, counting the images it was asked for."""

    def __init__(self, table: dict[str, np.ndarray]) -> None:
        self.table, self.asked = table, 0

    def __call__(self, digests: list[str]) -> np.ndarray:
        self.asked += len(digests)
        return np.stack([self.table[d] for d in digests])


def test_embeddings_are_kept_and_a_maps_own_are_reused(ws: Workspace, tmp_path: Path) -> None:
    ingest(ws, copies(tmp_path / "src", range(6), twins={}), source="six")
    digests = sorted(ws.db.images.get_many())
    table = {d: np.random.default_rng(i).normal(size=8).astype(np.float32) for i, d in enumerate(digests)}
    embed = CountingEmbedder(table)
    first = image_embeddings(ws, digests[:4], embed=embed)
    again = image_embeddings(ws, digests, embed=embed)
    assert embed.asked == 6 and all(np.array_equal(first[d], again[d]) for d in digests[:4])
    assert np.allclose(again[digests[5]], table[digests[5]], atol=1e-2)  # kept as float16
    create_version(ws, SplitPlan(group_by="none"))
    compute_map(ws, features="efficientnet-lite0", method="pca", embed=CountingEmbedder(table))
    at_224 = CountingEmbedder(table)
    assert image_embeddings(ws, digests, input_size=224, embed=at_224).keys() == set(digests) and at_224.asked == 0


def test_embedding_twins_the_hash_misses_stay_together_and_conflicts_are_flagged(ws: Workspace, tmp_path: Path) -> None:
    ingest(ws, copies(tmp_path / "src", range(40), twins={}, label_of=dict.fromkeys(range(0, 40, 4), "scratch")),
           source="copies")
    digests = sorted(ws.db.images.get_many())
    rng = np.random.default_rng(0)
    table = {d: rng.normal(size=16).astype(np.float32) for d in digests}
    twins = [(digests[2 * i], digests[2 * i + 1]) for i in range(10)]  # pictures the hash sees as different
    for a, b in twins:
        table[b] = table[a] + rng.normal(scale=0.05, size=16).astype(np.float32)
    embed = CountingEmbedder(table)
    image_embeddings(ws, digests, embed=embed)  # kept: create_version reads them instead of the backbone
    version = create_version(ws, SplitPlan(group_by="none", seed=3, near_duplicate_similarity=0.97))
    pairs = version_pairs(ws, version, min_similarity=0.97, embed=embed)
    assert {(p.pair.first, p.pair.second) for p in pairs} == set(twins)
    assert all(p.pair.methods == ("embedding",) and not p.leaks for p in pairs)
    assert version.summary["near_duplicates"]["embedding_only"] == 10
    conflicts = [p for p in pairs if p.conflicts]
    assert conflicts and version.summary["near_duplicates"]["label_conflicts"] == len(conflicts)
    blind = create_version(ws, SplitPlan(group_by="none", seed=3), name="blind", parent=None)
    assert any(p.leaks for p in version_pairs(ws, blind, min_similarity=0.97, embed=embed))
