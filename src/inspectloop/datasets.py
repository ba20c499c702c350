"""Dataset versions: immutable snapshots of (image, label, split).

Splits are stratified by class and grouped by a key (part id or capture session), so near-duplicate
views of one part never straddle train and test. A new version keeps every row of its parent, with
its split; new images are added around them, and the frozen test set carries over unless asked.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from inspectloop.domain import DatasetItem, DatasetVersion, ImageRecord
from inspectloop.errors import DatasetError
from inspectloop.grades import soft_labels
from inspectloop.labels import resolve_labels
from inspectloop.near_duplicates import (
    DEFAULT_MAX_DISTANCE, NearDuplicate, check_similarity, find_pairs, merge_groups, pair_summary, place_pairs,
)
from inspectloop.workspace import Workspace

GROUP_KEYS = ("part_id", "session", "camera", "line", "none")
SPLITS = ("train", "val", "test")
ALL_SPLITS = ("train", "val", "calib", "test")


@dataclass(frozen=True)
class SplitPlan:
    """How to split: fractions of groups per class, the grouping key, and an optional fixed test set."""

    val_fraction: float = 0.15
    test_fraction: float = 0.15
    calib_fraction: float = 0.0  # a calibration split no training step sees (confidence calibration)
    group_by: str = "part_id"
    test_field: str = "session"  # with test_values: images whose field matches form the test set
    test_values: tuple[str, ...] = ()  # e.g. held-out capture sessions (then test_fraction is unused)
    seed: int = 0
    # Near-duplicates (perceptual hashes this many bits apart) are kept on one side of the split; None: off.
    near_duplicate_distance: int | None = DEFAULT_MAX_DISTANCE
    # Also images whose frozen-backbone embeddings are this alike (cosine); None: off, as it needs torch and a
    # pass over every image (kept, so done once per image). Only with near_duplicate_distance set.
    near_duplicate_similarity: float | None = None

    def validate(self) -> None:
        if self.group_by not in GROUP_KEYS:
            raise DatasetError(f"cannot group by {self.group_by!r}", f"use one of: {', '.join(GROUP_KEYS)}")
        if self.test_field not in GROUP_KEYS[:-1]:
            raise DatasetError(f"cannot hold out by {self.test_field!r}", f"use one of: {', '.join(GROUP_KEYS[:-1])}")
        held = self.val_fraction + self.test_fraction + self.calib_fraction
        if not (0 < self.val_fraction < 1 and 0 <= self.test_fraction < 1 and 0 <= self.calib_fraction < 1
                and held < 1):
            raise DatasetError(f"split fractions val={self.val_fraction}, test={self.test_fraction}, "
                               f"calib={self.calib_fraction} are impossible",
                               "use fractions in [0, 1) that together leave room for training data")
        if self.near_duplicate_distance is not None and not 0 <= self.near_duplicate_distance <= 16:
            raise DatasetError(f"near-duplicate distance {self.near_duplicate_distance} is out of range",
                               "use 0 (identical pictures only) to 16 bits of 64, or none to turn the check off")
        if self.near_duplicate_similarity is not None:
            if self.near_duplicate_distance is None:
                raise DatasetError("near-duplicates by embedding were asked for with the near-duplicate check off",
                                   "give a near-duplicate distance too (the default is 4 bits)")
            check_similarity(self.near_duplicate_similarity)

    @property
    def splits(self) -> tuple[str, ...]:
        return ("train", "val", "calib", "test") if self.calib_fraction else SPLITS


def create_version(workspace: Workspace, plan: SplitPlan | None = None, *, name: str | None = None,
                   parent: str | None = "latest", new_test: bool = False, min_per_split: int = 1) -> DatasetVersion:
    """Snapshot the workspace's labelled images into a new, immutable dataset version."""
    plan = plan or SplitPlan()
    plan.validate()
    parent_version = _parent(workspace, parent)
    annotations = workspace.db.labels.annotations()
    resolution = resolve_labels(annotations, workspace.config.labelling)
    records = workspace.db.images.get_many(list(resolution.labels))
    labels = {d: label for d, label in resolution.labels.items() if d in records}
    if not labels:
        raise DatasetError("no labelled images in the workspace", "ingest a folder-per-class tree or label images first")
    kept = {} if parent_version is None or new_test else {i.sha256: i for i in parent_version.items}
    # An image whose imports conflict is left out until settled, even if the parent had it (and says so).
    conflicted = {d.sha256 for d in resolution.conflicts}
    dropped = sorted(d for d in kept if d in conflicted)
    kept = {d: item for d, item in kept.items() if d not in conflicted}
    groups = {d: kept[d].group_key if d in kept else _group_key(records[d], plan.group_by) for d in labels}
    held_out = {d for d in labels if plan.test_values and getattr(records[d].meta, plan.test_field) in plan.test_values}
    pairs: list[NearDuplicate] = []
    if plan.near_duplicate_distance is not None:
        pairs = find_pairs(workspace, list(labels), plan.near_duplicate_distance, plan.near_duplicate_similarity)
        groups = merge_groups(groups, pairs, kept={i.group_key for i in kept.values()}, apart=held_out)
    items = _assign(labels, groups, held_out, kept, plan, frozen_test=parent_version is not None and not new_test)
    carved = 0
    if plan.calib_fraction and parent_version and kept and not any(i.split == "calib" for i in kept.values()):
        items, carved = carve_calibration(items, plan, min_per_split=min_per_split, source=parent_version.name)
    _check_feasible(items, min_per_split, plan.splits)
    probabilities = soft_labels(annotations, labels)
    items = [replace(item, probability=probabilities.get(item.sha256)) for item in items]
    version_name = name or _next_name(workspace)
    if workspace.db.datasets.get(version_name):
        raise DatasetError(f"dataset version {version_name!r} already exists", "versions are immutable; pick a new name")
    summary = _summary(items, resolution, parent_version, labels) | {
        "calib_carved": carved, "conflicts_excluded": len(resolution.conflicts), "conflicts_dropped_from_parent": dropped}
    if plan.near_duplicate_distance is not None:
        summary["near_duplicates"] = pair_summary(place_pairs(pairs, items), plan.near_duplicate_distance,
                                                  plan.near_duplicate_similarity)
    params = {"val_fraction": plan.val_fraction, "test_fraction": plan.test_fraction,
              "calib_fraction": plan.calib_fraction, "group_by": plan.group_by,
              "test_field": plan.test_field,
              "test_values": list(plan.test_values), "seed": plan.seed, "new_test": new_test,
              "near_duplicate_distance": plan.near_duplicate_distance,
              "near_duplicate_similarity": plan.near_duplicate_similarity}
    # The version holds its images' current region annotations by id: later box edits make new rows it never sees.
    region_ids = [r.id for r in workspace.db.regions.current([i.sha256 for i in items]) if r.id is not None]
    summary["regions"] = len(region_ids)
    with workspace.db.transaction() as tx:
        tx.datasets.add(version_name, parent_version.name if parent_version else None, params, summary, items)
        tx.regions.snapshot(version_name, region_ids)
    return load_version(workspace, version_name)


def load_version(workspace: Workspace, name: str = "latest") -> DatasetVersion:
    """A stored dataset version by name (``latest`` for the newest)."""
    if name == "latest":
        versions = workspace.db.datasets.list()
        if not versions:
            raise DatasetError("the workspace has no dataset version yet", "make one with: inspectloop dataset create")
        name = versions[-1].name
    info = workspace.db.datasets.get(name)
    if info is None:
        known = ", ".join(v.name for v in workspace.db.datasets.list()) or "none"
        raise DatasetError(f"no dataset version {name!r} (known: {known})", "list them with: inspectloop dataset list")
    items = tuple(workspace.db.datasets.items(name))
    return DatasetVersion(name=name, parent=info.parent, params=info.params, summary=info.summary, items=items)


def _parent(workspace: Workspace, parent: str | None) -> DatasetVersion | None:
    if parent is None:
        return None
    if parent == "latest" and not workspace.db.datasets.list():
        return None
    return load_version(workspace, parent)


def _group_key(record: ImageRecord, group_by: str) -> str:
    value = None if group_by == "none" else getattr(record.meta, group_by)
    return f"{group_by}:{value}" if value else f"image:{record.sha256}"


def _assign(labels: dict[str, str], groups: dict[str, str], held_out: set[str], kept: dict[str, DatasetItem],
            plan: SplitPlan, *, frozen_test: bool) -> list[DatasetItem]:
    """Keep the parent's rows; give new images their group's existing split, else split new groups."""
    group_split = {item.group_key: item.split for item in kept.values()}
    items = [DatasetItem(d, labels.get(d, item.label), item.split, item.group_key) for d, item in kept.items()]
    new = [d for d in labels if d not in kept]
    pending: dict[str, list[str]] = defaultdict(list)
    for digest in new:
        key = groups[digest]
        if key in group_split:
            items.append(DatasetItem(digest, labels[digest], group_split[key], key))
        else:
            pending[key].append(digest)
    held_groups = {groups[d] for d in held_out} if not frozen_test else set()
    splits = {key: "test" for key in pending if key in held_groups}  # a held-out image takes its whole group
    rest = {key: members for key, members in pending.items() if key not in held_groups}
    splits |= _split_groups(rest, labels, plan, allow_test=not frozen_test and not plan.test_values)
    for key, members in pending.items():
        items += [DatasetItem(d, labels[d], splits[key], key) for d in members]
    return sorted(items, key=lambda i: i.sha256)


def _split_groups(pending: dict[str, list[str]], labels: dict[str, str], plan: SplitPlan,
                  *, allow_test: bool) -> dict[str, str]:
    """Stratified, grouped assignment: per class (of a group's majority label), fill each split's quota."""
    rng = random.Random(plan.seed)
    by_class: dict[str, list[str]] = defaultdict(list)
    for key in sorted(pending):
        majority = Counter(labels[d] for d in pending[key]).most_common(1)[0][0]
        by_class[majority].append(key)
    fractions = {"val": plan.val_fraction, "calib": plan.calib_fraction,
                 "test": plan.test_fraction if allow_test else 0.0}
    fractions["train"] = 1.0 - sum(fractions.values())
    result: dict[str, str] = {}
    for _cls, keys in sorted(by_class.items()):
        rng.shuffle(keys)
        _fill_quotas(keys, pending, fractions, result)
    return result


def _fill_quotas(keys: list[str], pending: dict[str, list[str]], fractions: dict[str, float],
                 result: dict[str, str]) -> None:
    """Largest groups first, each to the split furthest below its share (small splits get >= 1 group)."""
    total = sum(len(pending[k]) for k in keys)
    filled = {split: 0 for split in fractions}
    order = ["test", "calib", "val", "train"]
    for index, key in enumerate(sorted(keys, key=lambda k: -len(pending[k]))):
        remaining = len(keys) - index
        empty = [s for s in order if fractions[s] > 0 and filled[s] == 0 and s != "train"]
        if empty and remaining <= len(empty) + (1 if filled["train"] == 0 else 0):
            target = empty[0] if filled["train"] > 0 else "train"
        else:
            target = max(order, key=lambda s: fractions[s] * total - filled[s] if fractions[s] > 0 else -1e9)
        result[key] = target
        filled[target] += len(pending[key])


def carve_calibration(items: Sequence[DatasetItem], plan: SplitPlan, *, min_per_split: int = 1,
                      source: str = "the parent version") -> tuple[list[DatasetItem], int]:
    """Move whole training groups to a calibration split, per class, up to ``plan.calib_fraction``.

    For a version whose parent had no calibration split: test and val stay as they are (the test set
    is frozen), so calibration can only come from training data. Returns the items and how many moved.
    """
    by_class: dict[str, list[str]] = defaultdict(list)
    members: dict[str, list[DatasetItem]] = defaultdict(list)
    for item in items:
        members[item.group_key].append(item)
    for key in sorted(members):
        if members[key][0].split == "train":
            by_class[Counter(i.label for i in members[key]).most_common(1)[0][0]].append(key)
    totals = Counter(i.label for i in items)
    have = Counter(i.label for i in items if i.split == "calib")
    rng = random.Random(plan.seed)
    moved: set[str] = set()
    for label, keys in sorted(by_class.items()):
        rng.shuffle(keys)
        target = max(min_per_split, round(plan.calib_fraction * totals[label]))
        while have[label] < target and len(keys) > 1:  # training keeps at least one group
            key = keys.pop()
            moved.add(key)
            have[label] += len(members[key])
        if have[label] < min_per_split:
            spare = sum(len(members[k]) for k in keys)
            raise DatasetError(
                f"class {label!r} has {spare} training image(s) in {len(keys)} group(s) in {source}; "
                f"a calibration split of at least {min_per_split} would leave it no training data",
                f"add more {label!r} images (from separate parts/sessions), or re-split everything with "
                "--new-test (the frozen test set is replaced), or leave out --calib")
    carved = [replace(i, split="calib") if i.group_key in moved else i for i in items]
    return carved, sum(len(members[k]) for k in moved)


def _check_feasible(items: Sequence[DatasetItem], min_per_split: int, splits: Sequence[str]) -> None:
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for item in items:
        counts[item.label][item.split] += 1
    for label, per_split in sorted(counts.items()):
        total = sum(per_split.values())
        short = [s for s in splits if per_split[s] < min_per_split]
        if short:
            raise DatasetError(
                f"class {label!r} has {total} image(s) ({dict(per_split)}), too few to give "
                f"{', '.join(short)} at least {min_per_split}",
                f"add more {label!r} images (from separate parts/sessions), or merge or drop the class")


def _summary(items: Sequence[DatasetItem], resolution: Any, parent: DatasetVersion | None,
             labels: dict[str, str]) -> dict[str, Any]:
    per_split: dict[str, Counter[str]] = defaultdict(Counter)
    for item in items:
        per_split[item.split][item.label] += 1
    relabelled = 0
    if parent is not None:
        relabelled = sum(1 for i in parent.items if labels.get(i.sha256, i.label) != i.label)
    return {
        "classes": sorted({item.label for item in items}),
        "count": len(items),
        "splits": {s: dict(sorted(per_split[s].items())) for s in ALL_SPLITS if s in per_split or s in SPLITS},
        "groups": len({item.group_key for item in items}),
        "added": len({i.sha256 for i in items} - {i.sha256 for i in parent.items} if parent else items),
        "relabelled_since_parent": relabelled,
        "disagreements": len(resolution.disagreements),
        "ties_excluded": len(resolution.ties),
    }


def _next_name(workspace: Workspace) -> str:
    taken = {v.name for v in workspace.db.datasets.list()}
    number = len(taken) + 1
    while f"v{number}" in taken:
        number += 1
    return f"v{number}"
