"""Commands. Each one parses its options, calls one library function and presents the result."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from inspectloop.cli.common import (
    RayAddressOpt, RayOpt, WorkersOpt, WorkspaceOpt, batch_engine, err, fmt, friendly, out, print_json, progress_bar,
    table, workspace,
)
from inspectloop.cli.keys_commands import TrustedKeyOpt, keys_app, trusted_key_paths, warn_unverified
from inspectloop.cli.labels_commands import labels_app
from inspectloop.cli.line_commands import line_app, run as station_run
from inspectloop.cli.registry_commands import accept, criteria_app, models_app
from inspectloop.cli.service_commands import SERVE_SETTINGS, serve, shadow_app, users_app
from inspectloop.cli.settings import ConfigOptions, SetOption
from inspectloop.cli.monitor_commands import camera_app, monitor_app, recalibrate_app
from inspectloop.cli.regions_commands import regions_app
from inspectloop.cli.review_commands import review_app
from inspectloop.cli.shift_commands import register as register_shift_commands
from inspectloop.cli.site_commands import site_app
from inspectloop.cli.training_view import TrainingView
from inspectloop.errors import TrainingError
from inspectloop.reports.html import value_text

app = typer.Typer(help="Train, ship and keep accurate vision models on your own site's images.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
classes_app = typer.Typer(help="Class definitions: criteria, severity, reference images.", no_args_is_help=True)
dataset_app = typer.Typer(help="Immutable dataset versions with grouped, stratified splits.", no_args_is_help=True)
app.add_typer(classes_app, name="classes")
app.add_typer(dataset_app, name="dataset")
app.add_typer(criteria_app, name="criteria")
app.add_typer(models_app, name="models")
app.add_typer(review_app, name="review")
app.command()(accept)
app.add_typer(users_app, name="users")
app.add_typer(shadow_app, name="shadow")
app.command(cls=SERVE_SETTINGS.command_class())(serve)
app.add_typer(monitor_app, name="monitor")
app.add_typer(camera_app, name="camera")
app.add_typer(recalibrate_app, name="recalibrate")
app.add_typer(keys_app, name="keys")
app.add_typer(regions_app, name="regions")
app.add_typer(line_app, name="line")
app.add_typer(labels_app, name="labels")
app.add_typer(site_app, name="site")
app.command("run")(station_run)
register_shift_commands(app)


@app.command()
@friendly
def init(path: Annotated[Path, typer.Argument(help="New or empty folder for the workspace.")],
         name: Annotated[Optional[str], typer.Option(help="Workspace name (default: the folder name).")] = None,
         database: Annotated[Optional[str], typer.Option(
             help="Database URL (default: an SQLite file in the folder), e.g. an empty PostgreSQL database "
                  "postgresql+psycopg://USER:PASSWORD@HOST:5432/NAME that several services share.")] = None,
         blobs: Annotated[Optional[str], typer.Option(
             help="Blob store (default: a folder in the workspace), e.g. s3://BUCKET/PREFIX; an S3-compatible "
                  "server's endpoint_url goes under blob_options: in inspectloop.yaml.")] = None) -> None:
    """Create a workspace: config file, database, content-addressed image store and model signing key."""
    from inspectloop.keys import site_key
    from inspectloop.workspace import init_workspace

    init_workspace(path, name, database, blobs).close()
    out.print(f"workspace ready at {path}; models will be signed with key {site_key(path).public.key_id} "
              "(inspectloop keys show)", highlight=False)


@app.command()
@friendly
def ingest(source: Annotated[Path, typer.Argument(help="Folder with one sub-folder per class, or a CSV manifest.")],
           ws: WorkspaceOpt,
           exclude: Annotated[list[str], typer.Option(help="Glob on paths relative to the folder to skip, "
                                                           "e.g. '*/masks/*'. Repeatable.")] = [],  # noqa: B006
           annotator: Annotated[str, typer.Option(help="Who the labels come from.")] = "import",
           strict_classes: Annotated[bool, typer.Option(help="Refuse labels that are not defined classes.")] = False,
           allow_outside: Annotated[bool, typer.Option(help="Ingest manifest rows naming files outside the "
                                                            "manifest's folder (refused by default).")] = False,
           json_out: Annotated[bool, typer.Option("--json", help="Print the full report as JSON.")] = False) -> None:
    """Ingest images with their labels and metadata; duplicates, conflicts and bad files are reported, never fatal.

    A manifest is a UTF-8 CSV with a header row, one row per image. Its columns (names exact, lower-case):

    \b
      path         required: the image file, relative to the manifest's folder (good/0001.png)
      label        its class (scratch); empty: unlabelled; no column: every image unlabelled
      camera       the camera (cam1): drift is monitored per camera, reports slice by it
      line         the production line (L3)
      shift        the shift (night)
      lighting     the lighting or fixture (dome)
      part_id      the part (P-00123): a part's images never straddle train and test
      session      the capture session (s05): 'dataset create --test-value s05' holds one out
      captured_at  when, in ISO 8601 (2026-03-01T22:15:00); another format refuses the row
      defect_probability  soft label: probability 0-1 that the part is defective (0.3); needs a label

    Any other column (operator, batch, ...) is kept as free-form metadata of each image and evaluation
    reports slice by it like the known ones, unless it repeats the label (one value per class: ingest
    warns). Empty cells are no value; a value may hold 256 characters.
    """
    from inspectloop import ingest as ingest_lib

    with workspace(ws) as w:
        scan = ingest_lib.scan_source(source, exclude=exclude, allow_outside=allow_outside)
        with progress_bar(f"ingest {source.name}") as update:
            report = ingest_lib.ingest(w, scan.items, source=str(source), kind=scan.kind, annotator=annotator,
                                       create_classes=not strict_classes, refused=scan.refused, progress=update,
                                       notes=scan.notes)
    if json_out:
        print_json(report.to_dict())
        return
    _print_ingest(report)


def _print_ingest(report: Any) -> None:
    rate = report.seen / report.seconds if report.seconds else 0.0
    out.print(f"added {report.added}, duplicates {len(report.duplicates)}, skipped {len(report.skipped)}, "
              f"label conflicts {len(report.conflicts)} ({rate:.0f} files/s); "
              f"new classes: {', '.join(report.classes_created) or 'none'}")
    for note in report.notes:
        out.print(f"  note: {note}", highlight=False)
    for path, digest in report.duplicates[:20]:
        out.print(f"  duplicate: {path} (same bytes as {report.first_paths.get(digest) or digest})", highlight=False)
    for c in report.conflicts:
        out.print(f"  conflict: {c.path} is {c.label!r} but the same bytes are {', '.join(map(repr, c.other_labels))}"
                  f"{f' ({c.same_as})' if c.same_as else ''}; both kept, left out of training until settled: "
                  f"inspectloop label {c.sha256} CLASS --annotator NAME", highlight=False)
    for path, reason in report.skipped:
        out.print(f"  skipped: {path}: {reason}", highlight=False)
    for path, warning in report.warnings:
        out.print(f"  warning: {path}: {warning}", highlight=False)
    if report.reoriented:
        out.print(f"  EXIF orientation applied to {len(report.reoriented)} file(s)", highlight=False)


@classes_app.command("add")
@friendly
def classes_add(name: str, ws: WorkspaceOpt,
                criterion: Annotated[str, typer.Option(help="What a quality engineer checks for.")] = "",
                severity: Annotated[str, typer.Option(help="critical, major, minor or none (good class).")] = "major",
                good: Annotated[bool, typer.Option("--good/--no-good", help="This class means a pass.")] = False) -> None:
    """Define a class or update its criterion and severity."""
    from pydantic import ValidationError

    from inspectloop.domain import ClassDefinition
    from inspectloop.errors import LabelError
    from inspectloop.labels import define_class

    try:
        definition = ClassDefinition(name=name, criterion=criterion, severity=severity, is_good=good)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise LabelError(f"bad class {first['loc'][0]}: {first['msg']}", "see: inspectloop classes add --help") from None
    with workspace(ws) as w:
        define_class(w, definition)
    out.print(f"class {name!r} saved")


@classes_app.command("list")
@friendly
def classes_list(ws: WorkspaceOpt) -> None:
    """List classes with their criterion, severity and reference images."""
    with workspace(ws) as w:
        rows = [[c.name, c.severity.value, "yes" if c.is_good else "", f"{c.scale} {c.grade}" if c.graded else "",
                 c.criterion, len(w.db.labels.references(c.name))]
                for c in w.db.labels.classes().values()]
    table("classes", ["name", "severity", "good", "grade", "criterion", "references"], rows)


@classes_app.command("grade")
@friendly
def classes_grade(scale: Annotated[str, typer.Argument(help="The scale's name (scratch).")], ws: WorkspaceOpt,
                  ordered: Annotated[Optional[list[str]], typer.Argument(
                      metavar="CLASS...", help="Its classes, lowest grade first (minor major critical).")] = None,
                  clear: Annotated[bool, typer.Option("--clear", help="Ungrade every class of the scale.")] = False
                  ) -> None:
    """Order defect classes into a grade scale (lowest first): training and reports then treat them as grades."""
    from inspectloop.errors import LabelError
    from inspectloop.grades import set_grade_order

    if bool(ordered) == clear:
        raise LabelError("give the scale's classes, lowest grade first, or --clear",
                         f"e.g. inspectloop classes grade {scale} minor major critical")
    with workspace(ws) as w:
        changed = set_grade_order(w, scale, ordered or [])
    out.print(f"scale {scale!r}: {' < '.join(ordered) if ordered else 'cleared'} "
              f"({len(changed)} class definition(s) updated)", highlight=False)


@classes_app.command("reference")
@friendly
def classes_reference(name: str,
                      image: Annotated[str, typer.Argument(metavar="IMAGE",
                                                           help="An ingested image: its file path or sha256.")],
                      ws: WorkspaceOpt,
                      note: Annotated[Optional[str], typer.Option(help="Why this is a good example.")] = None) -> None:
    """Attach an ingested image (file path or sha256) as a reference example of a class."""
    from inspectloop.labels import add_reference_image

    with workspace(ws) as w:
        sha256 = add_reference_image(w, name, image, note)
    out.print(f"reference {sha256[:12]}... added to {name!r}")


@app.command()
@friendly
def label(sha256: str, class_name: str, ws: WorkspaceOpt,
          annotator: Annotated[str, typer.Option(help="Who says so (required).")],
          note: Annotated[Optional[str], typer.Option()] = None) -> None:
    """Annotate an image with a class. Earlier annotations by others are kept."""
    from inspectloop.labels import annotate

    with workspace(ws) as w:
        annotate(w, sha256, class_name, annotator=annotator, note=note)
    out.print("annotation saved")


@dataset_app.command("create")
@friendly
def dataset_create(ws: WorkspaceOpt,
                   group_by: Annotated[str, typer.Option(help="part_id, session, camera, line or none.")] = "part_id",
                   val: Annotated[float, typer.Option(help="Validation fraction.")] = 0.15,
                   test: Annotated[float, typer.Option(help="Test fraction (unused with --test-value).")] = 0.15,
                   calib: Annotated[float, typer.Option(help="Calibration fraction: a split no training "
                                                                 "step sees, for confidence calibration. Added to "
                                                                 "an existing version, it is carved from training "
                                                                 "data and the frozen test set stays.")] = 0.0,
                   test_field: Annotated[str, typer.Option(help="Metadata field for --test-value.")] = "session",
                   test_value: Annotated[list[str], typer.Option(help="Hold out images whose --test-field has this "
                                                                      "value as the test set. Repeatable.")] = [],  # noqa: B006
                   seed: Annotated[int, typer.Option()] = 0,
                   name: Annotated[Optional[str], typer.Option(help="Version name (default v1, v2, ...).")] = None,
                   new_test: Annotated[bool, typer.Option(help="Re-split everything, replacing the frozen "
                                                                "test set of the previous version.")] = False,
                   near_duplicates: Annotated[int, typer.Option(help="Keep images whose perceptual hashes differ "
                                                                      "in at most this many bits of 64 on one side "
                                                                      "of the split; -1 turns it off.")] = 4,
                   similarity: Annotated[Optional[float], typer.Option(
                       help="Also keep images whose frozen-backbone embeddings have at least this cosine "
                            "similarity (e.g. 0.98) on one side; needs the train extra, embeds each image once."
                   )] = None) -> None:
    """Snapshot the labelled images into a new dataset version (the frozen test set carries over)."""
    from inspectloop.datasets import SplitPlan, create_version

    plan = SplitPlan(val_fraction=val, test_fraction=test, calib_fraction=calib, group_by=group_by,
                     test_field=test_field, test_values=tuple(test_value), seed=seed,
                     near_duplicate_distance=None if near_duplicates < 0 else near_duplicates,
                     near_duplicate_similarity=similarity)
    with workspace(ws) as w:
        version = create_version(w, plan, name=name, new_test=new_test)
    _show_version(version.name, version.parent, version.summary)


@dataset_app.command("list")
@friendly
def dataset_list(ws: WorkspaceOpt) -> None:
    """List dataset versions."""
    with workspace(ws) as w:
        rows = [[v.name, v.parent, v.created_at, v.summary["count"],
                 " ".join(f"{k}={sum(c.values())}" for k, c in v.summary["splits"].items())]
                for v in w.db.datasets.list()]
    table("dataset versions", ["name", "parent", "created", "images", "splits"], rows)


@dataset_app.command("show")
@friendly
def dataset_show(ws: WorkspaceOpt, name: Annotated[str, typer.Argument()] = "latest") -> None:
    """Class counts per split of a dataset version."""
    from inspectloop.datasets import load_version

    with workspace(ws) as w:
        version = load_version(w, name)
    _show_version(version.name, version.parent, version.summary)


@dataset_app.command("duplicates")
@friendly
def dataset_duplicates(ws: WorkspaceOpt, name: Annotated[str, typer.Argument()] = "latest",
                       max_distance: Annotated[int, typer.Option(help="Bits of 64 two hashes may differ in.")] = 4,
                       similarity: Annotated[float, typer.Option(help="Cosine similarity of two images' frozen-"
                                                                      "backbone embeddings at or above which they "
                                                                      "are near-duplicates.")] = 0.98,
                       hash_only: Annotated[bool, typer.Option("--hash-only", help="Perceptual hash only (no "
                                                                                   "embeddings: no torch).")] = False,
                       every: Annotated[bool, typer.Option("--all", help="Also list pairs on one side of the split "
                                                                         "with one label.")] = False,
                       json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Exact and near-duplicate images of a dataset version (perceptual hash and embedding similarity): pairs
    across splits (leaks) and pairs with two labels, each with the method that found it."""
    from inspectloop.datasets import load_version
    from inspectloop.near_duplicates import version_pairs

    from inspectloop.errors import MissingExtraError

    with workspace(ws) as w, progress_bar("embedding") as update:
        version = load_version(w, name)
        try:
            pairs = version_pairs(w, version, max_distance, None if hash_only else similarity, progress=update)
        except MissingExtraError as exc:  # embeddings need the training stack; the hash does not
            exc.hint = f"{exc.hint}, or pass --hash-only (perceptual hash only)"
            raise
    shown = [p for p in pairs if every or p.leaks or p.conflicts]
    both = not hash_only  # which method found a pair, and how alike, only when both were asked
    rows = [[p.pair.first[:12], p.pair.second[:12], *([" + ".join(p.pair.methods)] if both else []),
             _or_dash(p.pair.distance), *([_or_dash(p.pair.similarity)] if both else []), " / ".join(p.splits),
             " / ".join(p.labels),
             ", ".join(word for word, on in (("leaks", p.leaks), ("label conflict", p.conflicts)) if on) or "-"]
            for p in shown]
    if json_out:
        print_json([{"first": p.pair.first, "second": p.pair.second, "methods": list(p.pair.methods),
                     "distance": p.pair.distance, "similarity": p.pair.similarity, "splits": list(p.splits),
                     "labels": list(p.labels), "leaks": p.leaks, "conflicts": p.conflicts} for p in shown])
        return
    found_by = f"at most {max_distance} bits apart" + ("" if hash_only else f", or similarity >= {similarity}")
    table(f"near-duplicates in {version.name} ({found_by})",
          ["image", "image", *(["found by"] if both else []), "bits", *(["similarity"] if both else []), "splits",
           "labels", "problem"], rows)
    only = sum(p.pair.methods == ("embedding",) for p in pairs)
    out.print(f"{len(pairs)} pair(s)" + ("" if hash_only else f" ({only} by embedding only)")
              + f"; {sum(p.leaks for p in pairs)} across splits, {sum(p.conflicts for p in pairs)} with two labels"
              + ("; settle the labels with 'inspectloop label', and re-split with 'inspectloop dataset create "
                 "--new-test' to close leaks of the frozen test set" if any(p.leaks or p.conflicts for p in pairs)
                 else ""), highlight=False)


def _or_dash(value: object) -> object:
    return "-" if value is None else value


@dataset_app.command("map")
@friendly
def dataset_map(ws: WorkspaceOpt, name: Annotated[str, typer.Argument()] = "latest",
                features: Annotated[str, typer.Option(help="Frozen backbone that embeds the images, or 'pixels' "
                                                           "(grey thumbnails: no torch needed).")] = "efficientnet-lite0",
                method: Annotated[str, typer.Option(help="tsne (PCA to 50, then t-SNE) or pca (seconds).")] = "tsne",
                seed: Annotated[int, typer.Option(help="Seed of the projection.")] = 0) -> None:
    """Compute a dataset version's 2-D map for the browser page (/browse of 'inspectloop serve'); kept in the workspace."""
    from inspectloop.datamap.build import compute_map

    with workspace(ws) as w, progress_bar("embedding") as update:
        made = compute_map(w, name, features=features, method=method, seed=seed, progress=update)
    out.print(f"map of {made.version}: {len(made.sha256)} images ({made.embedded} embedded, the rest from earlier "
              f"maps) by {made.features} + {made.method} in {made.seconds:.1f} s; open /browse?version={made.version}",
              highlight=False)


@dataset_app.command("cache")
@friendly
def dataset_cache(ws: WorkspaceOpt, name: Annotated[str, typer.Argument()] = "latest",
                  input_size: Annotated[Optional[int], typer.Option(help="As the run's --input-size.")] = None,
                  settings: Annotated[list[str], typer.Option(
                      "--set", metavar="KEY=VALUE", show_default=False,
                      help="The run's training settings (colour=L, jpeg_draft=true: see inspectloop train --help).")
                  ] = [],  # noqa: B006
                  ray: RayOpt = False, ray_address: RayAddressOpt = None, workers: WorkersOpt = None) -> None:
    """Decode a dataset version's images into the training cache ahead of a run (on Ray with --ray); give the
    run's own settings, so it finds them."""
    from inspectloop.train.image_cache import fill_image_cache

    config = TRAIN_SETTINGS.build(settings, input_size=input_size)
    with workspace(ws) as w, batch_engine(ray, ray_address, workers) as engine:
        filled = fill_image_cache(w, name, config, engine=engine)
    out.print(f"dataset {filled.version}: {filled.decoded} of {filled.images} images decoded into the training "
              f"cache ({filled.images - filled.decoded} were there) in {filled.seconds:.1f} s on "
              f"{filled.engine['engine']}: {filled.folder}", highlight=False, soft_wrap=True)


def _show_version(name: str, parent: str | None, summary: dict[str, Any]) -> None:
    splits = summary["splits"]
    names = list(splits)
    rows = [[c, *(splits[s].get(c, 0) for s in names)] for c in summary["classes"]]
    table(f"dataset {name}" + (f" (from {parent})" if parent else ""), ["class", *names], rows)
    out.print(f"{summary['count']} images in {summary['groups']} groups; added {summary['added']}; "
              f"disagreements {summary['disagreements']} ({summary['ties_excluded']} ties excluded)")
    if summary.get("conflicts_excluded"):
        out.print(f"{summary['conflicts_excluded']} image(s) with conflicting labels left out until settled"
                  + (f" ({len(summary['conflicts_dropped_from_parent'])} of them were in {parent})"
                     if summary.get("conflicts_dropped_from_parent") else ""))
    near = summary.get("near_duplicates")
    if near and near["pairs"]:
        only = f" ({near['embedding_only']} by embedding only)" if "embedding_only" in near else ""
        out.print(f"near-duplicates: {near['pairs']} pair(s){only}, {near['across_splits']} across splits, "
                  f"{near['label_conflicts']} with two labels (see: inspectloop dataset duplicates {name})")
    if summary.get("calib_carved"):
        out.print(f"calibration split: {summary['calib_carved']} image(s) carved from {parent}'s training data; "
                  "test set unchanged")


def _train_config() -> type:
    from inspectloop.train.config import TrainConfig

    return TrainConfig


TRAIN_SETTINGS = ConfigOptions(_train_config, {"task": "task", "mode": "mode", "epochs": "epochs",
                                               "input_size": "input_size", "max_minutes": "max_minutes"},
                               TrainingError)


@app.command(cls=TRAIN_SETTINGS.command_class())
@friendly
def train(ws: WorkspaceOpt,
          dataset: Annotated[str, typer.Option(help="Dataset version.")] = "latest",
          task: Annotated[Optional[str], typer.Option()] = None,  # help and default: TrainConfig's (see --help)
          mode: Annotated[Optional[str], typer.Option()] = None,
          epochs: Annotated[Optional[int], typer.Option()] = None,
          input_size: Annotated[Optional[int], typer.Option()] = None,
          max_minutes: Annotated[Optional[float], typer.Option()] = None,
          setting: SetOption = [],  # noqa: B006
          int8: Annotated[bool, typer.Option(help="Also export an INT8-quantised model.")] = False,
          resume: Annotated[Optional[str], typer.Option(help="Resume an interrupted run by id.")] = None,
          criteria: Annotated[Optional[str], typer.Option(help="Locked acceptance criteria (name or id) this run "
                                                               "will be judged by; they set its escape rate, "
                                                               "guarantee and recall targets.")] = None,
          update: Annotated[Optional[str], typer.Option(help="Anomaly models: add the version's new good images "
                                                             "to this run's memory bank and re-export (no "
                                                             "refit).")] = None) -> None:
    """Fine-tune a pretrained backbone on CPU (or, --task anomaly, learn the good class alone), evaluate on the
    frozen test set, export to ONNX."""
    from inspectloop.train.run import train as train_lib

    config = TRAIN_SETTINGS.build(setting, task=task, mode=mode, epochs=epochs, input_size=input_size,
                                  max_minutes=max_minutes)
    with workspace(ws) as w, TrainingView() as view:
        result = train_lib(w, config, dataset=dataset, resume=resume, export_int8=int8, progress=view.update,
                           criteria=criteria, update=update)
    _print_run_result(result.run_id, result.metrics["test"], result.model_path)
    if result.metrics.get("estimate"):
        from inspectloop.train.estimate import duration_text

        out.print(f"training took {duration_text(result.metrics['train_seconds'])} "
                  f"(estimated {duration_text(result.metrics['estimate']['seconds'])})", highlight=False)
    if result.metrics.get("task") == "detect":
        test, image = result.metrics["test"], result.metrics["test"]["image"]
        out.print(f"boxes: test mAP50 {fmt(test['map50'], 1)}, mAP50:95 {fmt(test['map50_95'], 1)}; images: "
                  f"defect recall {fmt(image['defect_recall'])}, false rejects {fmt(image['false_reject_rate'])}",
                  highlight=False, soft_wrap=True)
        if result.metrics.get("int8") is not None:
            out.print(f"int8 model: {result.metrics['int8']['path']}", highlight=False, soft_wrap=True)
    if result.metrics.get("task") == "anomaly":
        ranking = result.metrics["ranking"]
        out.print(f"anomaly: image AUROC {fmt(ranking['auroc'])}, recall at 1% false positives "
                  f"{fmt(ranking['recall_at_1pct_fpr'])} (test set); {result.metrics['review']['guarantee']}",
                  highlight=False)


def _print_run_result(run_id: str, test: dict[str, Any], model_path: Path) -> None:
    rows = [[name, fmt(m["precision"]), fmt(m["recall"]), fmt(m["f1"]), m["support"]]
            for name, m in test["per_class"].items()]
    table(f"{run_id}: frozen test set", ["class", "precision", "recall", "F1", "support"], rows)
    worst = test["worst_slice"]
    out.print(f"macro recall {fmt(test['macro_recall'])}, macro precision {fmt(test['macro_precision'])}"
              + (f"; worst slice {worst['field']}={value_text(worst['value'])} (macro recall {fmt(worst['macro_recall'])})"
                 if worst else ""))
    out.print(f"model: {model_path}\nreport: {test['report']}", highlight=False, soft_wrap=True)  # never a wrapped path


@app.command()
@friendly
def runs(ws: WorkspaceOpt) -> None:
    """List training runs with their status (an interrupted one can be resumed), dataset version, criteria and
    test macro recall."""
    from rich import box
    from rich.table import Table

    from inspectloop.train.record import INTERRUPTED, run_status

    with workspace(ws) as w:
        listed = [(r, run_status(r)) for r in w.db.runs.list()]
    view = Table(title="runs", title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, padding=0)
    # A run id is what --resume and the other commands take, and the status says whether to: neither is ever
    # wrapped or cut, whatever the width (80 columns hold both, and the rest wraps).
    view.add_column("run", no_wrap=True, min_width=max([len(r.id) for r, _ in listed], default=3))
    view.add_column("status", no_wrap=True, min_width=len(INTERRUPTED))
    for column in ("dataset", "mode", "criteria", "test macro recall", "started"):
        view.add_column(column)
    for r, status in listed:
        view.add_row(r.id, status, r.dataset_version, str(r.config.get("mode") or ""),
                     "" if r.criteria_id is None else f"#{r.criteria_id}",
                     fmt(((r.metrics or {}).get("test") or {}).get("macro_recall")),
                     r.started_at[5:16].replace("T", " "))  # MM-DD HH:MM (UTC): the id says the year
    out.print(view)
    if any(status in (INTERRUPTED, "failed") for _, status in listed):
        out.print("an interrupted or failed run resumes from its last finished epoch: "
                  "inspectloop train --resume RUN", highlight=False)


@app.command()
@friendly
def evaluate(model: Path, ws: WorkspaceOpt,
             dataset: Annotated[str, typer.Option()] = "latest",
             split: Annotated[str, typer.Option(help="train, val or test.")] = "test") -> None:
    """Evaluate an exported model file through the edge runtime on a dataset split."""
    from inspectloop.evaluate.run import evaluate_model_file

    with workspace(ws) as w, progress_bar("evaluate") as update:
        result = evaluate_model_file(w, model, dataset=dataset, split=split, progress=update)
    _print_run_result(model.stem, result.summary(), model)


@app.command()
@friendly
def predict(paths: Annotated[list[Path], typer.Argument(metavar="FILES",
                                                        help="The model file, then images; with --production, "
                                                             "images only.")],
            ws: WorkspaceOpt,
            production: Annotated[bool, typer.Option(help="Use the workspace's production model version "
                                                          "(its file hash checked against the registry).")] = False,
            threads: Annotated[int, typer.Option(help="onnxruntime threads.")] = 1,
            trusted_key: TrustedKeyOpt = []) -> None:  # noqa: B006 (repeatable)
    """Run a model file (or the production version) on images; print one JSON line per image."""
    import json
    import sys

    from inspectloop.errors import ImageError
    from inspectloop.runtime import EdgeModel
    from inspectloop.runtime.model import predict_records

    keys: tuple[Any, ...] = trusted_key_paths(trusted_key)
    if production:
        (model, registry_keys), images = _production_file(ws), paths
        keys = (*keys, *registry_keys)
    else:
        model, images = paths[0], paths[1:]
    if not images:
        raise ImageError("no images given", "name them after the model file (or after --production): "
                                            "inspectloop predict MODEL IMAGE...")
    edge = EdgeModel(model, threads=threads, trusted_keys=keys)
    warn_unverified(edge.signature.warning())
    failed = False
    for line in predict_records(edge, images):
        failed |= "error" in line
        sys.stdout.write(json.dumps(line) + "\n")
        for warning in line.get("warnings", []):  # also in the JSON; stderr so a person sees them
            sys.stderr.write(f"warning: {line['image']}: {warning}\n")
    if failed:
        raise typer.Exit(1)


def _production_file(ws: Path) -> tuple[Path, tuple[Any, ...]]:
    """The production version's model file, refused if it no longer matches its registry record or
    signature, and the keys it must be signed by (the workspace's when it was registered signed)."""
    from inspectloop.errors import RegistryError
    from inspectloop.registry import production_model, trusted_keys_for, verify_file

    with workspace(ws) as w:
        version = production_model(w)
        if version is None:
            raise RegistryError(f"workspace {ws} has no model version in production",
                                "promote one: inspectloop models promote VERSION production --actor NAME")
        verify_file(version, w)
        return version.path, trusted_keys_for(w, version)


@app.command()
@friendly
def quickstart(path: Annotated[Path, typer.Argument(help="Workspace folder to create.")] = Path("inspectloop-quickstart"),
               images: Annotated[Optional[Path], typer.Option(help="Your own folder-per-class tree or CSV "
                                                                    "manifest instead of the synthetic line.")] = None,
               epochs: Annotated[Optional[int], typer.Option(help="Training epochs (default: the demo's).")] = None,
               input_size: Annotated[Optional[int], typer.Option(help="Model input size in px (default: the "
                                                                     "demo's).")] = None,
               fresh: Annotated[bool, typer.Option(help="Replace an earlier quickstart workspace at PATH.")] = False,
               criteria: Annotated[Optional[Path], typer.Option(
                   help="Criteria YAML to lock before training and judge the model by (acceptance); a model "
                        "that passes goes to production.")] = None) -> None:
    """The whole loop on a synthetic production line (or your images): ingest, train, evaluate, export, predict,
    and with --criteria also acceptance, promotion and the model card."""
    from inspectloop.quickstart import remove_quickstart, run_quickstart

    if fresh:
        remove_quickstart(path)
    with TrainingView() as view:
        summary = run_quickstart(path, images=images, epochs=epochs, input_size=input_size, criteria=criteria,
                                 say=err.print, progress=view.update)
    typer.echo(summary)  # plain text: JSON lines must not be wrapped


@app.command()
@friendly
def doctor(ws: WorkspaceOpt,
           fix: Annotated[bool, typer.Option("--fix", help="Remove what is safe to remove: temporary files a killed "
                                                           "writer left. Never a blob or a row.")] = False,
           json_out: Annotated[bool, typer.Option("--json", help="Print the full report as JSON.")] = False) -> None:
    """Check rows against blobs, every blob's hash, the database's integrity and left-over files; exit 1 on problems."""
    from inspectloop.maintenance.doctor import doctor as doctor_lib

    with workspace(ws) as w:
        report = doctor_lib(w, fix=fix)
    if json_out:
        print_json(report.to_dict())
    else:
        shown = [f for f in report.findings if f.severity == "problem"] + \
            [f for f in report.findings if f.severity == "warning"][:20]
        for finding in shown:
            state = "fixed" if finding.fixed else finding.severity
            out.print(f"  {state}: {finding.check} {finding.subject}: {finding.detail}"
                      + (f" (fix: {finding.fix})" if finding.fix else ""), highlight=False)
        summary = report.to_dict()
        for what, where in (("database", report.database), ("blobs", report.blobs)):
            if where:
                out.print(f"  {what}: {where}", highlight=False, soft_wrap=True)  # a URL stays whole
        checked = ", ".join(f"{count} {what.replace('_', ' ')}" for what, count in summary["checked"].items())
        out.print(f"{'healthy' if report.healthy else 'PROBLEMS'}: checked {checked}; "
                  f"{summary['problems']} problem(s), {summary['fixed']} fixed, {summary['warnings']} warning(s)",
                  highlight=False)
    if not report.healthy:
        raise typer.Exit(1)


@app.command()
@friendly
def backup(dest: Annotated[Path, typer.Argument(help="New or empty folder for the backup.")], ws: WorkspaceOpt,
           json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False) -> None:
    """Back up a workspace while it runs: a database snapshot, the blobs it names, config, models and reports."""
    from inspectloop.maintenance.backup import backup as backup_lib

    with workspace(ws) as w:
        report = backup_lib(w, dest)
    if json_out:
        print_json(report.to_dict())
    else:
        counts = ", ".join(f"{k} {v}" for k, v in report.counts.items())
        out.print(f"backup written to {report.path} in {report.seconds:.1f} s: {counts}; blobs {report.blobs} "
                  f"({report.blob_bytes / 1e6:.1f} MB); files {report.files}", highlight=False)
    if report.missing_blobs:
        err.print(f"warning: {len(report.missing_blobs)} blob(s) named by the database were missing from the "
                  "workspace (listed in backup.json); run inspectloop doctor", highlight=False)
        raise typer.Exit(1)


@app.command()
@friendly
def restore(backup_dir: Annotated[Path, typer.Argument(metavar="BACKUP", help="A folder 'inspectloop backup' wrote.")],
            dest: Annotated[Path, typer.Argument(help="New or empty folder for the restored workspace.")],
            force: Annotated[bool, typer.Option("--force", help="Replace a non-empty DEST.")] = False,
            database: Annotated[Optional[str], typer.Option(
                help="Put the rows into this empty PostgreSQL database (postgresql+psycopg://USER:${PASSWORD_VAR}"
                     "@HOST:5432/DB) instead of an SQLite file.")] = None,
            blobs: Annotated[Optional[str], typer.Option(
                help="Put the blobs into this object store (s3://BUCKET/PREFIX, reached with the backup's "
                     "blob_options) instead of a folder.")] = None) -> None:
    """Restore a backup into a new workspace folder, verifying every hash first."""
    from inspectloop.maintenance.backup import restore as restore_lib

    report = restore_lib(backup_dir, dest, force=force, database=database, blobs=blobs)
    counts = ", ".join(f"{k} {v}" for k, v in report.counts.items())
    out.print(f"restored to {report.path} (verified): {counts}; blobs {report.blobs}; files {report.files}"
              + ("; the folder's old contents were replaced" if report.replaced else ""), highlight=False)
