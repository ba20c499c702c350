"""``inspectloop regions ...``: box and outline annotations: import, export, annotator agreement."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Optional

import typer

from inspectloop.cli.common import WorkspaceOpt, friendly, out, print_json, table, workspace

regions_app = typer.Typer(help="Region annotations (boxes, polygons): import and export COCO, Pascal VOC, YOLO, "
                               "CVAT and Label Studio files; agreement between annotators.", no_args_is_help=True)

MAX_PROBLEMS_SHOWN = 30


class ImportFormat(StrEnum):
    coco = "coco"
    voc = "voc"
    yolo = "yolo"
    cvat = "cvat"
    labelstudio = "labelstudio"
    masks = "masks"


class ExportFormat(StrEnum):
    coco = "coco"
    voc = "voc"
    yolo = "yolo"
    cvat = "cvat"
    labelstudio = "labelstudio"


def _names(value: str | None) -> list[str]:
    return [n.strip() for n in (value or "").split(",") if n.strip()]


@regions_app.command("import")
@friendly
def regions_import(
        source: Annotated[Path, typer.Argument(help="Annotation file, or a folder of them.")],
        ws: WorkspaceOpt,
        fmt: Annotated[ImportFormat, typer.Option("--format", help="The files' format (masks: PNG masks, "
                                                                   "<class>/masks/<image>.png).")],
        images: Annotated[Optional[Path], typer.Option(help="Folder with the images the files name (default: the "
                                                            "annotations' folder; ingested paths are tried too).")] = None,
        annotator: Annotated[Optional[str], typer.Option(help="Who drew the regions (default: the name the file "
                                                              "records, else 'import').")] = None,
        add_classes: Annotated[bool, typer.Option("--add-classes", help="Define classes the workspace lacks "
                                                                        "(refused by default).")] = False,
        classes: Annotated[Optional[str], typer.Option(help="Class names by id, comma-separated (YOLO without a "
                                                            "classes.txt; masks: the one class).")] = None,
        json_out: Annotated[bool, typer.Option("--json", help="Print the full report as JSON.")] = False) -> None:
    """Import boxes and outlines; bad annotations are skipped and reported with file and line, the rest kept."""
    from inspectloop.regions.run import import_regions

    with workspace(ws) as w:
        report = import_regions(w, source, fmt.value, images=images, annotator=annotator, add_classes=add_classes,
                                class_names=_names(classes))
    if json_out:
        print_json(report.to_dict())
        return
    out.print(f"added {report.regions_added} region(s) on {report.images} image(s) from {report.files} file(s); "
              f"already there {report.duplicates}; problems {len(report.problems)}; "
              f"new classes: {', '.join(report.classes_added) or 'none'}", highlight=False)
    for problem in report.problems[:MAX_PROBLEMS_SHOWN]:
        out.print(f"  {problem}", highlight=False, soft_wrap=True)
    if len(report.problems) > MAX_PROBLEMS_SHOWN:
        out.print(f"  ... and {len(report.problems) - MAX_PROBLEMS_SHOWN} more (see --json)", highlight=False)


@regions_app.command("export")
@friendly
def regions_export(
        folder: Annotated[Path, typer.Argument(help="New or empty folder to write.")],
        ws: WorkspaceOpt,
        fmt: Annotated[ExportFormat, typer.Option("--format", help="The format to write.")],
        version: Annotated[Optional[str], typer.Option(help="Dataset version to export (its images without regions "
                                                            "too); default: the current regions.")] = None,
        annotator: Annotated[Optional[str], typer.Option(help="Only this annotator's regions (needed for voc, yolo "
                                                              "and cvat when several drew).")] = None,
        images: Annotated[bool, typer.Option(help="Copy the images into FOLDER/images.")] = True) -> None:
    """Export region annotations with their images, ready for another labelling or training tool."""
    from inspectloop.regions.run import export_regions

    with workspace(ws) as w:
        report = export_regions(w, folder, fmt.value, version=version, annotator=annotator, copy_images=images)
    out.print(f"wrote {report.regions} region(s) on {report.images} image(s) to {folder}: "
              f"{', '.join(report.files[:3])}{' ...' if len(report.files) > 3 else ''}", highlight=False)
    for note in report.notes:
        out.print(f"  note: {note}", highlight=False)


@regions_app.command("agreement")
@friendly
def regions_agreement(
        ws: WorkspaceOpt,
        annotators: Annotated[Optional[str], typer.Option(help="Comma-separated annotators (default: all).")] = None,
        version: Annotated[Optional[str], typer.Option(help="Dataset version (default: the current regions).")] = None,
        iou: Annotated[float, typer.Option(help="IoU at which two boxes are the same region.")] = 0.5,
        json_out: Annotated[bool, typer.Option("--json", help="Print the full result as JSON.")] = False) -> None:
    """How far annotators agree: boxes matched one to one at IoU >= 0.5, per class, on images both annotated."""
    from inspectloop.regions.run import region_agreement

    with workspace(ws) as w:
        pairs = region_agreement(w, version=version, annotators=_names(annotators), threshold=iou)
    if json_out:
        print_json([p.to_dict() for p in pairs])
        return
    for pair in pairs:
        rows = [[name, c.matched, c.only_a, c.only_b, _round(c.mean_iou), _round(c.f1)]
                for name, c in sorted(pair.per_class.items())]
        total = pair.overall
        rows.append(["all", total.matched, total.only_a, total.only_b, _round(total.mean_iou), _round(total.f1)])
        table(f"{pair.a} vs {pair.b}: {pair.images} image(s) both annotated, IoU >= {pair.threshold}",
              ["class", "matched", f"only {pair.a}", f"only {pair.b}", "mean IoU", "F1"], rows)


def _round(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
