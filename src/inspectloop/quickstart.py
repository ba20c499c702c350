"""The first thing a new user runs: the whole loop, end to end, on a synthetic line or their own images."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from inspectloop.accept.criteria import lock_criteria
from inspectloop.datasets import SplitPlan, create_version
from inspectloop.domain import ClassDefinition, Severity
from inspectloop.errors import WorkspaceError
from inspectloop.evaluate.metrics import wilson_interval
from inspectloop.ingest import ingest, scan_folder, scan_manifest
from inspectloop.labels import define_class
from inspectloop.reports.html import number_text, percent_text, value_text
from inspectloop.runtime import EdgeModel
from inspectloop.synthetic import DEMO_PER_CLASS, DEMO_SIZE, generate_line
from inspectloop.train.config import TrainConfig
from inspectloop.train.run import train
from inspectloop.workspace import init_workspace

Say = Callable[[str], None]
QUICKSTART_MARKER = ".inspectloop-quickstart"

# The synthetic demo is sized so that its figures mean something and examples/criteria.yaml can be met:
# - over 60 frozen-test images per class (102: a 95% recall interval 10-15 points wide, not ~40 as on
#   the 9 it had);
# - 120 calibration images per class: a 2% escape rate and 2% false rejects certified with 90%
#   confidence need 114 defective and 114 good ones (decisions.conformal.min_calibration_size), or
#   the band automates nothing and locking the criteria is refused;
# - within about 3 minutes on two CPU cores. A test or calibration image costs one forward pass, a
#   training image a forward and a backward pass per epoch, so the demo spends its images on judging:
#   40% calibration, 34% test, 20% training, 6% validation.
DEMO_EPOCHS = 12
# The early, high-resolution blocks keep ImageNet's edge and texture filters: a training step costs
# about two thirds of one that also trains blocks 3-5 (measured 41 vs 63 ms per image on one thread),
# at a similar test recall (0.80 vs 0.79 in a 6-epoch trial).
DEMO_FREEZE_BLOCKS = 5
DEMO_SPLIT = SplitPlan(group_by="part_id", val_fraction=0.06, calib_fraction=0.4, test_fraction=0.34)
OWN_IMAGES_SPLIT = SplitPlan(group_by="part_id")

# What a quality engineer would write for the synthetic line's classes.
SYNTHETIC_CLASSES = (
    ClassDefinition(name="good", criterion="Uniform machined surface; texture and light variation only.",
                    severity=Severity.none, is_good=True),
    ClassDefinition(name="scratch", criterion="A continuous linear mark, brighter or darker than the surface, "
                    "longer than about 1/10 of the field of view.", severity=Severity.critical),
    ClassDefinition(name="pit", criterion="One or more small round cavities: dark centre, often a bright rim.",
                    severity=Severity.major),
    ClassDefinition(name="stain", criterion="A soft-edged, low-contrast blotch (residue, coolant, oxidation) "
                    "with no depth.", severity=Severity.minor),
)


def run_quickstart(path: Path, *, images: Path | None = None, epochs: int | None = None,
                   input_size: int | None = None, per_class: int = DEMO_PER_CLASS,
                   criteria: Path | None = None, say: Say = print,
                   progress: Callable[[str, dict[str, Any]], None] | None = None) -> str:
    """Create a workspace at ``path`` and run ingest, split, train, evaluate, export and predict.

    ``epochs`` and ``input_size`` default to the demo's (:data:`DEMO_EPOCHS`, :data:`DEMO_SIZE`).

    With ``criteria`` (a criteria YAML), they are locked before training, the run names them, and
    the exported model is judged against them on the frozen test set (acceptance); the model card
    is written either way, and a model that passes is promoted to production.
    """
    epochs = DEMO_EPOCHS if epochs is None else epochs
    input_size = DEMO_SIZE if input_size is None else input_size
    workspace = init_workspace(path)
    (workspace.root / QUICKSTART_MARKER).write_text("made by inspectloop quickstart\n")
    try:
        source = images if images is not None else _synthetic_source(workspace.root, per_class, input_size, say)
        say(f"ingesting {source}")
        items, refused = scan_manifest(source) if source.is_file() else (scan_folder(source), [])
        report = ingest(workspace, items, source=str(source), kind="manifest" if source.is_file() else "folder",
                        refused=refused)
        if images is None:
            _define_synthetic_classes(workspace)
        say(f"  added {report.added}, duplicates {len(report.duplicates)}, skipped {len(report.skipped)}")
        version = create_version(workspace, DEMO_SPLIT if images is None else OWN_IMAGES_SPLIT)
        say(f"dataset {version.name}: " + ", ".join(f"{k} {sum(v.values())}" for k, v in version.summary["splits"].items()))
        locked = lock_criteria(workspace, criteria, by="quickstart") if criteria is not None else None
        if locked is not None:
            say(f"criteria {locked.name} locked before training (sha256 {locked.sha256[:12]})")
        config = TrainConfig(epochs=epochs, input_size=input_size, batch_size=16,  # small sample: more, smaller steps
                             freeze_blocks=DEMO_FREEZE_BLOCKS)
        say(f"training {config.backbone} at {input_size} px for {epochs} epochs on the CPU")
        result = train(workspace, config, progress=progress, criteria=locked.name if locked else None)
        examples = _predict_examples(workspace, result.model_path, version)
        verdict = _accept(workspace, result.run_id, say) if locked is not None else []
        return _summary(result, examples) + "".join(f"\n{line}" for line in verdict)
    finally:
        workspace.close()


def remove_quickstart(path: Path) -> None:
    """Delete an earlier quickstart workspace, and nothing else: the folder must carry the marker."""
    path = Path(path)
    if not path.exists():
        return
    if not (path / QUICKSTART_MARKER).exists():
        raise WorkspaceError(f"{path} exists and is not a quickstart workspace",
                             "choose another folder; --fresh only replaces what quickstart made")
    shutil.rmtree(path)


def _synthetic_source(root: Path, per_class: int, size: int, say: Say) -> Path:
    say(f"generating a synthetic production line: {per_class} images per class at {size} px "
        "(3 cameras, 2 shifts, scratches, pits and stains)")
    line = generate_line(root / "synthetic-line", per_class=per_class, size=size)
    return line.manifest


def _define_synthetic_classes(workspace: Any) -> None:
    for definition in SYNTHETIC_CLASSES:
        define_class(workspace, definition)


def _predict_examples(workspace: Any, model_path: Path, version: Any) -> list[str]:
    model = EdgeModel(model_path)
    lines = []
    for item in version.split("test")[:3]:
        prediction = model.predict(workspace.blobs.get(item.sha256), name=item.sha256[:12])
        lines.append(json.dumps({"image": item.sha256[:12], "truth": item.label, **prediction.to_dict()}))
    return lines


def _accept(workspace: Any, run_id: str, say: Say) -> list[str]:
    """Judge the run against its locked criteria; promote it if it passes; write its model card."""
    from inspectloop.accept.run import accept
    from inspectloop.reports.model_card import write_model_card
    from inspectloop.registry import promote

    say("acceptance: judging the model file on the frozen test set")
    report = accept(workspace, run_id)
    lines = [f"\nacceptance against {report.criteria.name}: {'PASSED' if report.passed else 'FAILED'}"]
    lines += [f"  {'pass' if r.passed else 'FAIL'}  {r.name}: {_value(r.measured, r.unit)} "
              f"(needs {'>=' if r.field.rsplit('.', 1)[-1].startswith('min_') else '<='} {_value(r.limit, r.unit)})"
              for r in report.results]
    lines.append(f"  review: {report.document['review_summary']}")  # stated even when the criteria do not bound it
    if report.unlocks_promotion:
        promote(workspace, report.model_version, "production", actor="quickstart", reason="passed acceptance")
        lines.append(f"{report.model_version.name} is now in production")
    else:
        lines.append(f"{report.model_version.name} stays a candidate: production needs a passed acceptance report "
                     "(or an override by a named person with a reason)")
    lines += [f"acceptance report: {report.html_path}",
              f"model card: {write_model_card(workspace, report.model_version)}"]
    return lines


def _recall(figures: dict[str, Any]) -> str:
    """Recall with its 95% Wilson interval: how far the true recall may be from the measured one."""
    n, recall = int(figures["support"]), figures["recall"] or 0.0
    if n == 0:
        return "recall not measurable (no test images)"
    low, high = wilson_interval(round(recall * n), n)
    return f"recall {recall:.2f} (95% interval {low:.2f}-{high:.2f}, n={n})"


def _value(value: float | None, unit: str) -> str:
    if value is None:
        return "not measurable"
    return percent_text(value) if unit == "share" else f"{number_text(value, 3)} {unit}"


def _summary(result: Any, examples: list[str]) -> str:
    test = result.metrics["test"]
    per_class = "\n".join(f"  {name:<10} precision {m['precision'] or 0:.2f}  {_recall(m)}"
                          for name, m in test["per_class"].items())
    worst = test["worst_slice"]
    worst_text = f"{worst['field']}={value_text(worst['value'])} (macro recall {worst['macro_recall']:.2f})" if worst else "none"
    return "\n".join([
        f"\nrun {result.run_id}: frozen test set, macro recall {test['macro_recall']:.3f}",
        per_class,
        f"  worst slice: {worst_text}",
        f"\nmodel file (runs anywhere with onnxruntime): {result.model_path}",
        f"report: {result.report}",
        "\nexample predictions (python -m inspectloop.runtime MODEL IMAGE...):",
        *(f"  {line}" for line in examples),
    ])
