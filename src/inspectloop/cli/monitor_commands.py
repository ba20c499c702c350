"""``inspectloop monitor``, ``camera`` and ``recalibrate``: keeping a deployed model accurate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from inspectloop.cli.common import (
    RayAddressOpt,
    RayOpt,
    SinceOpt,
    UntilOpt,
    WorkersOpt,
    WorkspaceOpt,
    batch_engine,
    err,
    fmt,
    friendly,
    out,
    print_json,
    table,
    workspace,
)

monitor_app = typer.Typer(help="Drift monitoring per camera against the baseline recorded at deployment.")
camera_app = typer.Typer(help="Camera health checks: flat field, slanted-edge sharpness, lighting.",
                         no_args_is_help=True)
recalibrate_app = typer.Typer(help="Recalibration cycles: re-annotate recent production, retrain on evidence.")


@monitor_app.callback(invoke_without_command=True)
@friendly
def monitor(ctx: typer.Context, ws: WorkspaceOpt,
            window: Annotated[str, typer.Option(help="How much recent production to check: 12h, 7d, 2w.")] = "7d",
            min_predictions: Annotated[int, typer.Option(help="Cameras with fewer predictions are left out.")] = 50,
            alpha: Annotated[float, typer.Option(help="Family-wise false-alarm rate per camera and check.")] = 0.01,
            review: Annotated[int, typer.Option(help="Drifted images per camera sent to the review queue.")] = 5,
            fail_on_alert: Annotated[bool, typer.Option("--fail-on-alert", help="Exit 2 when an alert is sent.")] = False,
            as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False) -> None:
    """Check each camera's recent production for drift; print every signal with effect size and p-value."""
    if ctx.invoked_subcommand is not None:
        return
    from inspectloop.monitor import run as monitoring

    with workspace(ws) as w:
        result = monitoring.monitor(w, window=monitoring.parse_window(window), min_predictions=min_predictions,
                                    alpha=alpha, review_per_camera=review)
    if as_json:
        print_json(result.to_dict())
    else:
        table(f"drift of {result.model_version}, {result.window_start[:16]} to {result.window_end[:16]}",
              ["camera", "signal", "effect", "p (Holm)", "fired", "what changed"],
              [[s.camera, s.signal, f"{fmt(s.effect)} {s.effect_unit}", f"{s.p_value:.3g}", "ALERT" if s.fired else "",
                s.message.split(": ", 1)[-1]] for s in result.signals])
        for camera, why in result.skipped.items():
            err.print(f"  {camera} not checked: {why}", highlight=False)
        for message in result.alerts:
            out.print(f"[bold red]alert:[/] {message}", highlight=False)
        if result.review_items:
            out.print(f"{len(result.review_items)} drifted images sent to review", highlight=False)
    if fail_on_alert and result.alerts:
        raise typer.Exit(2)


@monitor_app.command("baseline")
@friendly
def monitor_baseline(ws: WorkspaceOpt,
                     version: Annotated[Optional[str], typer.Option(help="Model version (default: production).")] = None,
                     source: Annotated[str, typer.Option(help="test: the frozen test/calib images; production: "
                                                              "the version's first predictions.")] = "test",
                     camera: Annotated[list[str], typer.Option(help="Camera (repeatable).")] = [],  # noqa: B006
                     first: Annotated[int, typer.Option(help="Predictions per camera with --source production.")] = 200,
                     ) -> None:
    """Record each camera's drift baseline for a model version."""
    from inspectloop.monitor import run as monitoring

    with workspace(ws) as w:
        records = monitoring.record_drift_baseline(w, version, source=source, cameras=camera, first=first)
    table("drift baselines", ["camera", "version", "source", "images", "embedded"],
          [[r.camera, r.model_version, r.source, r.images, r.embedded] for r in records])


@monitor_app.command("history")
@friendly
def monitor_history(ws: WorkspaceOpt, since: SinceOpt, until: UntilOpt = None,
                    window: Annotated[str, typer.Option(help="Length of each window checked: 1d, 7d, 2w.")] = "7d",
                    version: Annotated[Optional[str], typer.Option(help="Model version (default: production).")] = None,
                    min_predictions: Annotated[int, typer.Option(help="Windows with fewer are not tested.")] = 50,
                    ray: RayOpt = False, ray_address: RayAddressOpt = None, workers: WorkersOpt = None,
                    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
                    ) -> None:
    """Look back over a long period: every window on every camera, every stored image embedded."""
    from datetime import UTC, datetime

    from inspectloop.monitor.history import drift_over_period, write_period_report
    from inspectloop.monitor.run import parse_window

    with workspace(ws) as w, batch_engine(ray, ray_address, workers) as engine:
        result = drift_over_period(w, start=since, end=until or datetime.now(UTC), window=parse_window(window),
                                   version=version, engine=engine, min_predictions=min_predictions)
        path = write_period_report(w, result)
    if as_json:
        print_json(result.to_dict())
        return
    table(f"drift of {result.model_version} by window, {result.start[:10]} to {result.end[:10]} "
          f"({result.images_embedded} images embedded on {result.engine['engine']} in {result.seconds:.1f} s)",
          ["camera", "window", "predictions", "embedded", "fired"],
          [[w.camera, f"{w.start[:10]} to {w.end[:10]}", w.predictions, w.embedded,
            ", ".join(w.fired) or (f"not tested: {w.skipped}" if w.skipped else "")] for w in result.windows])
    out.print(f"report: {path}", highlight=False, soft_wrap=True)


FlatOpt = Annotated[Optional[Path], typer.Option(help="Capture of the flat-field card.")]
EdgeOpt = Annotated[Optional[Path], typer.Option(help="Capture of the slanted-edge target.")]
FromCameraOpt = Annotated[bool, typer.Option("--from-camera", help="Take both captures with the camera itself "
                                             "(the line config's camera of this name, its locked settings), "
                                             "not from files.")]
LineConfigOpt = Annotated[Optional[Path], typer.Option(
    "--config", help="Line config YAML naming the camera (default: line.yaml in the workspace).")]
PromptOpt = Annotated[bool, typer.Option("--prompt/--no-prompt", help="With --from-camera: wait for Enter before "
                                         "each capture while the target is put in view.")]


def _targets(ws: Path, camera: str, *, flat: Path | None, edge: Path | None, from_camera: bool,
             config: Path | None, prompt: bool) -> tuple[object, object]:
    """The flat-field and slanted-edge captures: the files given, or frames from the camera itself."""
    if not from_camera:
        return flat, edge
    from inspectloop.camera.run import capture_targets
    from inspectloop.errors import CameraCheckError
    from inspectloop.line.config import LINE_CONFIG_FILE, load_line_config

    if flat is not None or edge is not None:
        raise CameraCheckError("--from-camera takes both captures itself; --flat and --edge were given too",
                               "drop --flat and --edge, or drop --from-camera")
    line = load_line_config(config if config is not None else ws / LINE_CONFIG_FILE)

    def ready(target: str) -> None:
        if prompt:
            typer.prompt(f"put the {target} target in front of {camera}, then press Enter", default="",
                         show_default=False, prompt_suffix=" ")
        out.print(f"capturing the {target} target with {camera}", highlight=False)

    return capture_targets(line.camera(camera), ready=ready)


@camera_app.command("baseline")
@friendly
def camera_baseline(camera: str, ws: WorkspaceOpt, flat: FlatOpt = None, edge: EdgeOpt = None,
                    from_camera: FromCameraOpt = False, config: LineConfigOpt = None, prompt: PromptOpt = True) -> None:
    """Record a camera's health baseline from its flat-field and slanted-edge captures (files, or taken by
    the camera itself with --from-camera)."""
    from inspectloop.camera.run import record_camera_baseline

    flat_capture, edge_capture = _targets(ws, camera, flat=flat, edge=edge, from_camera=from_camera, config=config,
                                          prompt=prompt)
    with workspace(ws) as w:
        b = record_camera_baseline(w, camera, flat=flat_capture, edge=edge_capture)  # type: ignore[arg-type]
    out.print(f"{camera}: baseline recorded (uniformity {b.uniformity:.3f}, corner ratio {b.corner_ratio:.3f}, "
              f"intensity {b.intensity:.1f}, MTF50 {b.mtf50:.3f} cycles/px)", highlight=False)


@camera_app.command("check")
@friendly
def camera_check(camera: str, ws: WorkspaceOpt, flat: FlatOpt = None, edge: EdgeOpt = None,
                 from_camera: FromCameraOpt = False, config: LineConfigOpt = None, prompt: PromptOpt = True) -> None:
    """Check a camera against its baseline (captures from files, or taken by the camera itself with
    --from-camera); a failure marks its predictions suspect until a check passes."""
    from inspectloop.camera.run import check

    flat_capture, edge_capture = _targets(ws, camera, flat=flat, edge=edge, from_camera=from_camera, config=config,
                                          prompt=prompt)
    with workspace(ws) as w:
        result = check(w, camera, flat=flat_capture, edge=edge_capture)  # type: ignore[arg-type]
    table(f"{camera}: {result.status}", ["check", "measured", "baseline", "change", "status"],
          [[c.check, f"{c.measured:.3g}", f"{c.baseline:.3g}", f"{c.change:+.1%}", str(c.status)]
           for c in result.report.checks])
    if result.status == "fail":
        out.print(f"[bold red]{camera} failed:[/] its predictions are marked suspect until a check passes "
                  f"({result.marked_suspect} since its last good check)", highlight=False)
        raise typer.Exit(2)


@recalibrate_app.callback(invoke_without_command=True)
@friendly
def recalibrate(ctx: typer.Context, ws: WorkspaceOpt,
                window_days: Annotated[float, typer.Option(help="Days of production to sample.")] = 90,
                sample_size: Annotated[int, typer.Option(help="Predictions in the stratified sample.")] = 200,
                review_fraction: Annotated[float, typer.Option(help="Share of the sample sent to review.")] = 1.0,
                trigger: Annotated[float, typer.Option(help="Recall drop (fraction) that calls for retraining.")] = 0.03,
                trigger_source: Annotated[str, typer.Option(help="Why: manual, calendar or drift.")] = "manual",
                retrain_on: Annotated[Optional[str], typer.Option(
                    "--retrain-on", help="drop: retrain only when a class lost more than the trigger; drift: also "
                    "when a drift alert opened the cycle and at least 20 images were labelled (learn the new "
                    "appearance before recall drops). Default: drift for drift-triggered cycles, else drop.")] = None,
                continue_: Annotated[Optional[int], typer.Option("--continue", help="Finish this cycle once its "
                                                                 "images are reviewed.")] = None,
                actor: Annotated[str, typer.Option(help="Who moves a retrained model to shadow.")] = "recalibration",
                if_due: Annotated[bool, typer.Option("--if-due", help="For a scheduler: continue a cycle whose labels "
                                                     "are in, or start one only when a quarter has passed or a drift "
                                                     "alert fired.")] = False,
                period_days: Annotated[float, typer.Option(help="With --if-due: the calendar period.")] = 91,
                adapt_first: Annotated[bool, typer.Option("--adapt-first", help="Adapt-then-label: adapt the "
                                                          "production model at once to each camera with a drift "
                                                          "alert (a candidate, judged, shadowed if it passes); the "
                                                          "cycle's labels confirm it.")] = False,
                ) -> None:
    """Start a recalibration cycle (sample production for review), or finish one whose labels are in."""
    if ctx.invoked_subcommand is not None:
        return
    from inspectloop.recalibration import cycle as cycles

    with workspace(ws) as w:
        if if_due:
            scheduled = cycles.run_scheduled(w, period_days=period_days, window_days=window_days,
                                             sample_size=sample_size, review_fraction=review_fraction, trigger=trigger,
                                             retrain_on=retrain_on, adapt_first=adapt_first)
            out.print(f"{scheduled.action}: {scheduled.reason}", highlight=False)
            if scheduled.cycle is not None and scheduled.action != "waiting":
                _print_cycle(scheduled.cycle)
            return
        if continue_ is not None:
            result = cycles.continue_cycle(w, continue_, actor=actor, retrain_on=retrain_on)
        else:
            result = cycles.recalibrate(w, window_days=window_days, sample_size=sample_size,
                                        review_fraction=review_fraction, trigger=trigger, trigger_source=trigger_source,
                                        retrain_on=retrain_on, adapt_first=adapt_first)
    _print_cycle(result)


def _print_cycle(result: object) -> None:
    c = result  # a Cycle
    out.print(f"cycle {c.id}: {c.outcome or c.status}: {c.message or ''}", highlight=False)  # type: ignore[attr-defined]
    if c.result.get("retrain_reason"):  # type: ignore[attr-defined]
        out.print(f"  retrained because of: {c.result['retrain_reason']}", highlight=False)  # type: ignore[attr-defined]
    for line in c.result.get("comparison", {}).get("reasons", []):  # type: ignore[attr-defined]
        out.print(f"  {line}", highlight=False)
    for camera, a in c.sample.get("adaptations", {}).items():  # type: ignore[attr-defined]
        out.print(f"  adapted to {camera}: {a['model_version']} {a['acceptance']} acceptance, now {a['stage']}"
                  if a.get("adapted") else f"  not adapted to {camera}: {a['reason']}", highlight=False)
    if c.report_path:  # type: ignore[attr-defined]
        out.print(f"report: {c.report_path}", highlight=False)  # type: ignore[attr-defined]


@recalibrate_app.command("status")
@friendly
def recalibrate_status(ws: WorkspaceOpt,
                       as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
                       ) -> None:
    """List recalibration cycles with their outcome and report."""
    from inspectloop.recalibration import cycle as cycles

    with workspace(ws) as w:
        found = cycles.list_cycles(w)
    if as_json:
        print_json(cycles.cycle_summary(found))
        return
    table("recalibration cycles", ["id", "status", "outcome", "trigger", "window", "message"],
          [[c.id, c.status, c.outcome, c.trigger_source, f"{c.window_start[:10]} to {c.window_end[:10]}", c.message]
           for c in found])


@recalibrate_app.command("due")
@friendly
def recalibrate_due(ws: WorkspaceOpt,
                    period_days: Annotated[float, typer.Option(help="Calendar period between cycles.")] = 91) -> None:
    """Say whether a quarterly cycle or a drift alert calls for a recalibration now."""
    from inspectloop.recalibration import cycle as cycles

    with workspace(ws) as w:
        verdict = cycles.due(w, period_days=period_days)
    out.print(f"{'due' if verdict.due else 'not due'}: {verdict.reason}", highlight=False)
    if verdict.due:
        out.print(f"run: inspectloop recalibrate --trigger-source {verdict.source}", highlight=False)
