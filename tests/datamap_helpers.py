"""A seeded review workspace (``tests.review_helpers``) whose images are labelled, in a dataset version,
with a kept map of cheap pixel features: what the dataset browser's tests start from."""

from __future__ import annotations

from pathlib import Path

from inspectloop.datamap.build import PIXELS, compute_map
from inspectloop.datasets import SplitPlan, create_version
from inspectloop.labels import annotate
from tests.review_helpers import Seeded, seed

VERSION = "v2"  # the seeded workspace already holds an empty v1 (and run-1, without per-image outcomes)


def mapped(root: Path, items: int = 24, *, method: str = "pca") -> Seeded:
    """``items`` production images labelled (every third a scratch) and the 8 class reference images in
    version ``VERSION``, its pixel map kept."""
    seeded = seed(root, items=items)
    for i, digest in enumerate(seeded.images):
        annotate(seeded.workspace, digest, "scratch" if i % 3 == 0 else "good", annotator="import", source="import")
    made = create_version(seeded.workspace, SplitPlan(group_by="none", val_fraction=0.25, test_fraction=0.25),
                          parent=None, min_per_split=0)
    assert made.name == VERSION
    compute_map(seeded.workspace, VERSION, features=PIXELS, method=method)
    return seeded


def fake_run(seeded: Seeded, run_id: str = "run-map") -> dict[str, str]:
    """A finished run whose report holds per-image test outcomes: the model calls every test image 'good'.

    Returns digest -> predicted class."""
    import json

    from inspectloop.evaluate.outcomes import ImageOutcome

    workspace = seeded.workspace
    run_dir = workspace.runs_dir / run_id
    (run_dir / "report").mkdir(parents=True)
    test = [i for i in workspace.db.datasets.items(VERSION) if i.split == "test"]
    outcomes = [ImageOutcome(i.sha256, i.label, "good", 0.9, 0.9 if i.label == "good" else 0.1, 0.5) for i in test]
    (run_dir / "report" / "metrics.json").write_text(json.dumps({"outcomes": [o.to_dict() for o in outcomes]}))
    workspace.db.runs.add(run_id, VERSION, {}, "test", str(run_dir))
    workspace.db.runs.finish(run_id, "finished", metrics={})
    return {o.sha256: o.predicted for o in outcomes}
