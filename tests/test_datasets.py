from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from inspectloop.datasets import SplitPlan, create_version, load_version
from inspectloop.domain import CaptureMeta
from inspectloop.errors import DatasetError
from inspectloop.ingest import SourceItem, ingest
from inspectloop.workspace import Workspace, init_workspace
from tests.conftest import save, surface


def make_parts(root: Path, counts: dict[str, int], views: int = 2, start: int = 0) -> list[SourceItem]:
    """``counts[label]`` parts per class, ``views`` images of each part (near-duplicates)."""
    items = []
    seed = start * 1000
    for label, parts in counts.items():
        for part in range(start, start + parts):
            for view in range(views):
                seed += 1
                path = save(Image.fromarray(surface(seed, defect=label != "good"), "L"),
                            root / label / f"{label}-{part}-{view}.png")
                items.append(SourceItem(path=path, label=label,
                                        meta=CaptureMeta(part_id=f"{label}-{part}", session=f"s{part % 4}")))
    return items


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    workspace = init_workspace(tmp_path / "ws")
    ingest(workspace, make_parts(tmp_path / "src", {"good": 20, "scratch": 10, "pit": 6}), source="parts")
    yield workspace
    workspace.close()


def splits_by_group(version) -> dict[str, set[str]]:  # noqa: ANN001
    groups: dict[str, set[str]] = {}
    for item in version.items:
        groups.setdefault(item.group_key, set()).add(item.split)
    return groups


def test_groups_never_straddle_splits_and_every_class_is_in_every_split(ws: Workspace) -> None:
    version = create_version(ws, SplitPlan(group_by="part_id", seed=3))
    assert all(len(splits) == 1 for splits in splits_by_group(version).values())
    per_split = {s: Counter(i.label for i in version.split(s)) for s in ("train", "val", "test")}
    for label in ("good", "scratch", "pit"):
        assert all(per_split[s][label] >= 2 for s in per_split)
    assert per_split["train"]["good"] > per_split["test"]["good"]
    assert version.name == "v1" and version.summary["count"] == 72


def test_split_is_deterministic_for_a_seed(ws: Workspace) -> None:
    a = create_version(ws, SplitPlan(seed=1), name="a", parent=None)
    b = create_version(ws, SplitPlan(seed=1), name="b", parent=None)
    assert [(i.sha256, i.split) for i in a.items] == [(i.sha256, i.split) for i in b.items]


def test_held_out_sessions_form_the_test_set(ws: Workspace) -> None:
    version = create_version(ws, SplitPlan(group_by="part_id", test_field="session", test_values=("s0",)))
    records = ws.db.images.get_many()
    assert {records[i.sha256].meta.session for i in version.split("test")} == {"s0"}
    assert "s0" not in {records[i.sha256].meta.session for i in version.split("train") + version.split("val")}
    assert {i.label for i in version.split("val")} == {"good", "scratch", "pit"}


def test_too_few_images_names_the_class_and_count(tmp_path: Path) -> None:
    ws = init_workspace(tmp_path / "ws2")
    ingest(ws, make_parts(tmp_path / "src", {"good": 10, "crack": 2}), source="parts")
    with pytest.raises(DatasetError, match=r"class 'crack' has 4 image\(s\)") as info:
        create_version(ws, SplitPlan(group_by="part_id"))
    assert "add more 'crack' images" in info.value.hint
    assert ws.db.datasets.list() == []  # nothing half-written
    ws.close()


def test_new_version_appends_and_keeps_the_frozen_test_set(ws: Workspace, tmp_path: Path) -> None:
    v1 = create_version(ws)
    ingest(ws, make_parts(tmp_path / "more", {"good": 6, "scratch": 4}, start=50), source="more")
    v2 = create_version(ws)
    assert v2.parent == "v1" and v2.summary["added"] == 20
    assert {i.sha256 for i in v2.split("test")} == {i.sha256 for i in v1.split("test")}
    old = {i.sha256: i.split for i in v1.items}
    assert all(old[i.sha256] == i.split for i in v2.items if i.sha256 in old)
    assert load_version(ws, "v1").summary["count"] == 72  # v1 is unchanged


def test_new_image_of_a_known_part_joins_its_split(ws: Workspace, tmp_path: Path) -> None:
    v1 = create_version(ws)
    test_part = v1.split("test")[0].group_key.removeprefix("part_id:")
    label = v1.split("test")[0].label
    path = save(Image.fromarray(surface(999, defect=label != "good"), "L"), tmp_path / "extra" / "view9.png")
    ingest(ws, [SourceItem(path=path, label=label, meta=CaptureMeta(part_id=test_part))], source="extra")
    v2 = create_version(ws)
    assert next(i.split for i in v2.items if i.group_key == f"part_id:{test_part}" and i.sha256 not in
                {x.sha256 for x in v1.items}) == "test"


def test_bad_plans_and_names_are_refused(ws: Workspace) -> None:
    with pytest.raises(DatasetError, match="cannot group by"):
        create_version(ws, SplitPlan(group_by="colour"))
    with pytest.raises(DatasetError, match="impossible"):
        create_version(ws, SplitPlan(val_fraction=0.6, test_fraction=0.5))
    create_version(ws, name="base")
    with pytest.raises(DatasetError, match="already exists"):
        create_version(ws, name="base")
    with pytest.raises(DatasetError, match="no dataset version 'nope'"):
        load_version(ws, "nope")


def test_calibration_split_is_grouped_stratified_and_optional(ws: Workspace) -> None:
    plain = create_version(ws, name="plain", parent=None)
    assert set(plain.summary["splits"]) == {"train", "val", "test"}
    version = create_version(ws, SplitPlan(calib_fraction=0.2, seed=2), name="with-calib", parent=None)
    assert {i.label for i in version.split("calib")} == {"good", "scratch", "pit"}
    assert all(len(splits) == 1 for splits in splits_by_group(version).values())
    assert set(version.summary["splits"]) == {"train", "val", "calib", "test"}


def test_calibration_split_is_carved_from_training_and_keeps_the_frozen_test_set(ws: Workspace) -> None:
    v1 = create_version(ws)
    v2 = create_version(ws, SplitPlan(calib_fraction=0.2))  # refused before: "too few to give calib at least 1"
    assert {i.sha256 for i in v2.split("test")} == {i.sha256 for i in v1.split("test")}
    assert {i.sha256 for i in v2.split("val")} == {i.sha256 for i in v1.split("val")}
    old_train = {i.sha256 for i in v1.split("train")}
    assert {i.sha256 for i in v2.split("calib")} <= old_train  # carved from training, nothing else
    assert {i.label for i in v2.split("calib")} == {"good", "scratch", "pit"}
    assert all(len(splits) == 1 for splits in splits_by_group(v2).values())
    assert v2.summary["calib_carved"] == len(v2.split("calib"))
    assert v2.summary["count"] == v1.summary["count"]


def test_carving_calibration_is_refused_only_when_training_cannot_spare_a_group(tmp_path: Path) -> None:
    ws = init_workspace(tmp_path / "ws3")
    ingest(ws, make_parts(tmp_path / "src", {"good": 12, "crack": 3}), source="parts")
    create_version(ws)  # crack: one part each in train, val and test
    with pytest.raises(DatasetError, match=r"class 'crack' has 2 training image\(s\) in 1 group") as info:
        create_version(ws, SplitPlan(calib_fraction=0.2))
    assert "--new-test" in info.value.hint and "add more 'crack' images" in info.value.hint
    assert len(ws.db.datasets.list()) == 1
    ws.close()


def test_an_image_of_the_parent_whose_labels_now_conflict_is_left_out_and_named(ws: Workspace, tmp_path: Path) -> None:
    v1 = create_version(ws)
    train_item = next(i for i in v1.split("train") if i.label == "good")
    path = tmp_path / "again" / "scratch" / "same-bytes.png"
    path.parent.mkdir(parents=True)
    path.write_bytes(ws.blobs.get(train_item.sha256))
    assert len(ingest(ws, [SourceItem(path=path, label="scratch", meta=CaptureMeta())], source="again").conflicts) == 1
    v2 = create_version(ws)
    assert train_item.sha256 not in {i.sha256 for i in v2.items} and len(v2.items) == len(v1.items) - 1
    assert v2.summary["conflicts_excluded"] == 1 and v2.summary["conflicts_dropped_from_parent"] == [train_item.sha256]
