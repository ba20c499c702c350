"""``inspectloop labels ...``: label counts, suspected label errors, annotator agreement, and settling."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from inspectloop.cli.common import WorkspaceOpt, fmt, friendly, out, print_json, progress_bar, table, workspace

labels_app = typer.Typer(help="Labels: counts, suspected errors, annotator agreement, the settle queue.",
                         invoke_without_command=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@labels_app.callback()
@friendly
def labels_summary(ctx: typer.Context, ws: WorkspaceOpt, as_json: JsonOpt = False) -> None:
    """Label counts per class, annotators, and images whose annotators disagree."""
    if ctx.invoked_subcommand is not None:
        return
    from inspectloop.labels import label_summary

    with workspace(ws) as w:
        summary = label_summary(w)
    if as_json:
        print_json(summary)
        return
    table("labels", ["class", "images"], [[k, v] for k, v in summary["per_class"].items()])  # type: ignore[union-attr]
    out.print(f"{summary['labelled']} labelled of {summary['images']} images; annotators: "
              f"{', '.join(summary['annotators']) or 'none'}; disagreements: {len(summary['disagreements'])} "  # type: ignore[arg-type]
              f"({summary['ties']} ties left unlabelled, {summary['conflicts']} label conflicts left out of "
              "training until settled: inspectloop labels queue)", highlight=False)


@labels_app.command("suspects")
@friendly
def labels_suspects(ws: WorkspaceOpt,
                    version: Annotated[str, typer.Option(help="Dataset version (default: the latest).")] = "latest",
                    top: Annotated[int, typer.Option(min=1, help="Show (and queue) at most this many.")] = 50,
                    folds: Annotated[int, typer.Option(min=2, max=20, help="Cross-validation folds.")] = 5,
                    rank_by: Annotated[str, typer.Option(help="self_confidence or normalized_margin.")]
                    = "self_confidence",
                    queue: Annotated[bool, typer.Option("--queue", help="Send them to the settle queue.")] = False,
                    as_json: JsonOpt = False) -> None:
    """Rank a version's images whose label is probably wrong (frozen features, out-of-fold confident learning)."""
    from inspectloop.labelquality.suspects import find_suspects, queue_suspects

    with workspace(ws) as w, progress_bar("embedding images") as update:
        report = find_suspects(w, version, folds=folds, rank_by=rank_by, progress=update)  # type: ignore[arg-type]
        shown = report.suspects[:top]
        queued = queue_suspects(w, shown) if queue else 0
    if as_json:
        print_json({"version": report.version, "images": report.images, "flagged": len(report.suspects),
                    "estimated_noise": report.estimated_noise, "oof_accuracy": report.oof_accuracy,
                    "queued": queued, "suspects": [s.to_dict() for s in shown]})
        return
    table(f"suspected label errors in {report.version} (most likely wrong first)",
          ["#", "image", "split", "label", "more likely", "p(label)"],
          [[n, s.sha256[:12], s.split, s.given, s.suggestion, fmt(s.self_confidence)]
           for n, s in enumerate(shown, start=1)])
    out.print(f"{len(report.suspects)} of {report.images} labels flagged (estimated noise "
              f"{report.estimated_noise:.1%}, out-of-fold accuracy {report.oof_accuracy:.1%})"
              + (f"; {queued} sent to the settle queue: inspectloop labels queue" if queue else
                 "; send them to be settled with --queue"), highlight=False)


@labels_app.command("boxes")
@friendly
def labels_boxes(ws: WorkspaceOpt,
                 version: Annotated[str, typer.Option(help="Dataset version (default: the latest).")] = "latest",
                 model: Annotated[Optional[Path], typer.Option(help="A detector model file whose boxes are the "
                                                                    "prediction.")] = None,
                 annotator: Annotated[Optional[str], typer.Option(help="Or: another annotator whose boxes are "
                                                                       "the prediction.")] = None,
                 min_score: Annotated[float, typer.Option(help="A predicted box this sure counts.")] = 0.5,
                 top: Annotated[int, typer.Option(min=1, help="Show (and queue) at most this many images.")] = 50,
                 queue: Annotated[bool, typer.Option("--queue", help="Send them to the settle queue.")] = False,
                 as_json: JsonOpt = False) -> None:
    """Probably wrong boxes: missing, spurious, misplaced or of the wrong class, against a detector's or another
    annotator's boxes; images ranked by the most confident finding."""
    from inspectloop.labelquality.boxes import find_box_issues, queue_box_issues

    with workspace(ws) as w, progress_bar("predicting boxes") as update:
        report = find_box_issues(w, version, model=model, annotator=annotator, min_score=min_score, progress=update)
        shown = report.flagged[:top]
        queued = queue_box_issues(w, report, shown) if queue else 0
    if as_json:
        print_json({"version": report.version, "predicted_by": report.predicted_by, "images": report.images,
                    "annotated_boxes": report.annotated_boxes, "predicted_boxes": report.predicted_boxes,
                    "flagged": len(report.flagged), "counts": report.counts(), "queued": queued,
                    "flagged_images": [i.to_dict() for i in shown]})
        return
    table(f"probably wrong boxes in {report.version} against {report.predicted_by} (most confident first)",
          ["#", "image", "split", "label", "finding", "annotated", "predicted", "confidence"],
          [[n, i.sha256[:12], i.split, i.label, f.kind, f.annotated_class or "-", f.predicted_class or "-",
            fmt(f.confidence)] for n, i in enumerate(shown, start=1) for f in i.findings[:3]])
    counts = ", ".join(f"{v} {k}" for k, v in report.counts().items()) or "none"
    out.print(f"{len(report.flagged)} of {report.images} images flagged ({counts}; {report.annotated_boxes} "
              f"annotated and {report.predicted_boxes} predicted boxes)"
              + (f"; {queued} sent to the settle queue: inspectloop labels queue" if queue else
                 "; send them to be settled with --queue"), highlight=False)


@labels_app.command("agreement")
@friendly
def labels_agreement(ws: WorkspaceOpt,
                     class_name: Annotated[Optional[str], typer.Option("--class", help="One class only.")] = None,
                     as_json: JsonOpt = False) -> None:
    """Agreement between annotators: Fleiss' kappa per class, Cohen's kappa per pair, each vs the settled label."""
    from dataclasses import asdict

    from inspectloop.labelquality.agreement import agreement_report

    with workspace(ws) as w:
        report = agreement_report(w, class_name)
    if as_json:
        print_json(asdict(report))
        return
    table("agreement per class (Fleiss' kappa, class vs the others)", ["class", "kappa", "annotators", "note"],
          [[c.name, fmt(c.kappa), len(c.annotators), c.note] for c in report.classes])
    if class_name is None:
        table("annotator pairs (Cohen's kappa)", ["annotators", "images", "agree", "kappa", "confusion"],
              [[f"{p.first} / {p.second}", p.images, f"{p.agreement:.0%}", fmt(p.kappa), _confusion(p.confusion)]
               for p in report.pairs])
        table("each annotator vs the settled label", ["annotator", "images", "agree", "kappa"],
              [[a.annotator, a.images, f"{a.agreement:.0%}", fmt(a.kappa)] for a in report.annotators])
        out.print(f"overall Fleiss' kappa: {fmt(report.overall_kappa)}", highlight=False)


@labels_app.command("queue")
@friendly
def labels_queue(ws: WorkspaceOpt, as_json: JsonOpt = False) -> None:
    """The settle queue: disagreements, suspected errors, browser selections and box disagreements, each with why,
    every vote and its 'seen' fingerprint."""
    from inspectloop.labelquality.settle import settle_queue

    with workspace(ws) as w:
        cases = settle_queue(w)
    if as_json:
        print_json([c.to_dict() for c in cases])
        return
    table("to settle", ["image", "why", "votes", "label now", "more likely", "seen"],
          [[c.sha256[:12], "; ".join(c.why), ", ".join(f"{a}: {v}" for a, v in c.votes.items()),
            c.current or "(none)", c.suggestion or "", c.seen] for c in cases])
    if cases:
        out.print("settle one with: inspectloop labels settle SHA256 CLASS --by NAME --seen FINGERPRINT",
                  highlight=False)


@labels_app.command("settle")
@friendly
def labels_settle(image: Annotated[str, typer.Argument(help="The image: its sha256 or an ingested file.")],
                  class_name: Annotated[str, typer.Argument(help="The class it shows.")], ws: WorkspaceOpt,
                  by: Annotated[str, typer.Option(help="Who settles it (a quality engineer).")],
                  seen: Annotated[str, typer.Option(help="The 'seen' fingerprint the queue showed.")],
                  note: Annotated[Optional[str], typer.Option(help="Why.")] = None) -> None:
    """Settle an image's label; it outranks every vote. Refused as stale when its votes changed since shown."""
    from inspectloop.labelquality.settle import settle

    with workspace(ws) as w:
        sha256 = settle(w, image, class_name, by=by, seen=seen, note=note)
    out.print(f"{sha256[:12]}... settled as {class_name!r} by {by}", highlight=False)


def _confusion(confusion: dict[str, dict[str, int]]) -> str:
    return "; ".join(f"{a}->{b}: {n}" for a, row in confusion.items() for b, n in row.items() if a != b) or "-"
