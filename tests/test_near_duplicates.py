import io
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import delete

from inspectloop.datasets import SplitPlan, create_version
from inspectloop.errors import DatasetError
from inspectloop.ingest import ingest
from inspectloop.near_duplicates import (
    HASH_KIND, NearDuplicate, image_hashes, merge_groups, near_duplicate_pairs, perceptual_hash, version_pairs,
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
