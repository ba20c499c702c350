"""``inspectloop crossval`` and ``inspectloop adapt``: holding accuracy when sessions and cameras shift."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from inspectloop.cli.common import WorkspaceOpt, err, fmt, friendly, out, print_json, table, workspace


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


@friendly
def crossval(ws: WorkspaceOpt,
             by: Annotated[str, typer.Option(help="Capture field whose values are held out in turn: session, "
                                                  "camera, line, shift or any metadata field.")] = "session",
             run: Annotated[Optional[str], typer.Option(help="Run whose recipe (config) and dataset version to use "
                                                             "(default: the latest finished classifier run).")] = None,
             mode: Annotated[Optional[str], typer.Option(help="Override the run's mode: probe takes seconds per "
                                                              "group (recorded with the result).")] = None,
             epochs: Annotated[Optional[int], typer.Option(help="Override the epochs (probe default: 300).")] = None,
             min_group: Annotated[int, typer.Option(help="Groups with fewer images are reported, not held "
                                                         "out.")] = 10,
             as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False) -> None:
    """Leave-one-group-out evaluation: train without each session (camera, line...), score it, report the worst
    group beside the mean; stored with the run, shown on its model card."""
    from inspectloop.evaluate.crossval import crossval as crossval_lib

    def show(stage: str, info: dict[str, Any]) -> None:
        if stage == "group":
            err.print(f"holding out {by}={info['group']} ({info['done'] + 1}/{info['total']})", highlight=False)
        elif stage == "warning":
            err.print(f"warning: {info['message']}", highlight=False)

    with workspace(ws) as w:
        result = crossval_lib(w, by, run=run, mode=mode, epochs=epochs, min_group=min_group, progress=show)
    if as_json:
        print_json(result.to_dict())
        return
    rows = [[group, f["count"], fmt(f["macro_recall"]), _percent(f["good_reject_rate"]),
             f"{f['escapes']}/{f['defective']}",
             " ".join(f"{k}={fmt(v, 2)}" for k, v in f["per_class_recall"].items() if v is not None)]
            for group, f in result.groups.items()]
    table(f"leave-one-{by}-out, recipe of {result.run_id} ({result.mode})",
          [by, "images", "macro recall", "good rejected", "escapes", "recall per class"], rows)
    for group, why in result.skipped.items():
        err.print(f"  {by}={group} not held out: {why}", highlight=False)
    s = result.summary
    if s.get("groups_evaluated"):
        out.print(f"mean macro recall {fmt(s['mean_macro_recall'])}, worst {by} {s['worst_group']} "
                  f"{fmt(s['worst_macro_recall'])}"
                  + (f"; good rejected: mean {_percent(s['mean_good_reject_rate'])}, worst "
                     f"{s['worst_good_reject_group']} {_percent(s['worst_good_reject_rate'])}"
                     if "mean_good_reject_rate" in s else ""), highlight=False)
    out.print(f"stored: {result.path}", highlight=False)


@friendly
def adapt(camera: Annotated[str, typer.Argument(help="The camera whose recent images the model adapts to.")],
          ws: WorkspaceOpt,
          since: Annotated[str, typer.Option(help="How much recent production to read: 12h, 7d, 2w.")] = "7d",
          images: Annotated[Optional[Path], typer.Option(help="A folder of recent captures of the camera instead "
                                                               "of the prediction log's stored images.")] = None,
          model: Annotated[Optional[str], typer.Option(help="Model version to adapt (default: "
                                                            "production).")] = None,
          method: Annotated[str, typer.Option(help="render: estimate the camera's condition (gain, blur, noise, "
                                                   "JPEG) from its images and refit the head on the training images "
                                                   "rendered under it (the default: it held a simulated year best); "
                                                   "features: re-standardise the pooled features to the training "
                                                   "images', folded into the head; batchnorm: re-estimate the "
                                                   "trunk's BatchNorm statistics.")] = "render",
          weight: Annotated[Optional[float], typer.Option(help="Share of the statistics' move applied (1: all of it; "
                                                               "default 0.5 for batchnorm, 1 for features).")] = None,
          reference: Annotated[int, typer.Option(help="Training images the camera's statistics are compared with "
                                                      "(0: the camera's replace the stored ones, plain "
                                                      "AdaBN).")] = 200,
          min_images: Annotated[int, typer.Option(help="Refuse with fewer images than this.")] = 32) -> None:
    """Adapt before labels: fit a classifier to one camera's recent unlabelled images (its imaging condition
    rendered into the training images, or its feature or BatchNorm statistics); the result is a candidate
    version, judged by acceptance and shadow before any promotion."""
    from inspectloop.adapt.run import adapt as adapt_lib
    from inspectloop.monitor.run import parse_window

    with workspace(ws) as w:
        result = adapt_lib(w, camera, since=parse_window(since), folder=images, model_version=model, method=method,
                           weight=weight,
                           min_images=min_images, reference=reference,
                           progress=lambda stage, info: err.print(info["message"], highlight=False)
                           if "message" in info else None)
    a = result.metrics["adaptation"]
    shift = a["on_camera_images"]
    out.print(f"{result.version.name} (candidate, run {result.run_id}): {result.source_version} adapted to camera "
              f"{camera} on {a['images']} images ({a['image_source']}); "
              + _what_moved(a), highlight=False)
    if "defect_share_before" in shift:
        out.print(f"on those images: decided as a defect {_percent(shift['defect_share_before'])} before, "
                  f"{_percent(shift['defect_share_after'])} after; {_percent(shift['changed'])} of decisions "
                  "changed", highlight=False)
    test = result.metrics.get("test")
    if test:
        out.print(f"frozen test set: macro recall {fmt(test['macro_recall'])}", highlight=False)
    out.print(f"next: inspectloop accept {result.run_id}, then inspectloop models promote {result.version.name} "
              "shadow --actor NAME (label a sample of the camera to confirm)", highlight=False)


def _what_moved(a: dict[str, Any]) -> str:
    if "condition" in a:
        c = a["condition"]
        return (f"condition gain {c['gain']}, blur {c['blur_sigma']} px, noise {c['noise_sigma']}"
                + (f", JPEG quality {c['jpeg_quality']}" if c["jpeg_quality"] else "")
                + f"; head refitted on {a['rendered_images']} renders of the training images and the originals")
    if "features" in a:
        return f"{a['features']['dimensions']} feature dimensions aligned, folded into the head"
    return f"{a['batchnorm']['layers']} BatchNorm layers re-estimated"


def register(app: typer.Typer) -> None:
    """Add the commands to the main app."""
    app.command()(crossval)
    app.command()(adapt)
