"""``inspectloop criteria ...``, ``inspectloop accept`` and ``inspectloop models ...``: criteria, acceptance, registry."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from inspectloop.cli.common import WorkspaceOpt, err, fmt, friendly, out, progress_bar, table, workspace

criteria_app = typer.Typer(help="Acceptance criteria, locked before the training runs they judge.",
                           no_args_is_help=True)
models_app = typer.Typer(help="The model registry: versions with lineage, stages, promotion, rollback.",
                         no_args_is_help=True)


@criteria_app.command("lock")
@friendly
def criteria_lock(file: Annotated[Path, typer.Argument(help="Criteria YAML (see examples/criteria.yaml).")],
                  ws: WorkspaceOpt,
                  by: Annotated[str, typer.Option(help="Who locks them (recorded with the hash and time).")],
                  dataset: Annotated[Optional[str], typer.Option(
                      help="Dataset version whose calibration and test splits the criteria must be attainable on "
                           "(default: the latest, when it has a calibration split).")] = None) -> None:
    """Validate a criteria file against the workspace's classes, refuse limits no model could meet, and lock
    it: hash, time, who."""
    from inspectloop.accept.criteria import lock_criteria

    with workspace(ws) as w:
        locked = lock_criteria(w, file, by=by, dataset=dataset)
    checked = (f"attainable on {locked.checked_on.describe()}" if locked.checked_on is not None
               else "not checked: the latest dataset version has no calibration split (name one with --dataset)")
    out.print(f"criteria {locked.label} locked at {locked.locked_at.isoformat()} by {locked.locked_by} "
              f"(sha256 {locked.sha256[:12]}); {checked}\n"
              f"train against them with: inspectloop train --criteria {locked.name}", highlight=False)


@criteria_app.command("list")
@friendly
def criteria_list(ws: WorkspaceOpt) -> None:
    """List locked criteria with their hash, time and who locked them."""
    from inspectloop.accept.criteria import list_criteria

    with workspace(ws) as w:
        locks = list_criteria(w)
    rows = [[c.id, c.name, c.sha256[:12], c.locked_at.isoformat(), c.locked_by, ", ".join(c.criteria.classes)]
            for c in locks]
    table("acceptance criteria", ["id", "name", "sha256", "locked", "by", "classes"], rows)


@models_app.command("register")
@friendly
def models_register(run: Annotated[str, typer.Argument(help="A finished training run (see: inspectloop runs).")],
                    ws: WorkspaceOpt,
                    variant: Annotated[str, typer.Option(help="fp32 or int8.")] = "fp32",
                    name: Annotated[Optional[str], typer.Option(help="Version name (default <workspace>-vN).")] = None,
                    ) -> None:
    """Register a run's exported model as a candidate version, with its lineage."""
    from inspectloop.registry import register

    with workspace(ws) as w:
        version = register(w, run, variant=variant, name=name)
    out.print(f"registered {version.name} (#{version.id}) from {version.run_id} ({version.variant}) as {version.stage}",
              highlight=False)


@models_app.command("list")
@friendly
def models_list(ws: WorkspaceOpt) -> None:
    """List model versions with their stage, lineage and test macro recall."""
    from inspectloop.registry import list_versions

    with workspace(ws) as w:
        versions = list_versions(w)
    rows = [[v.id, v.name, v.stage.value, f"{v.run_id} ({v.variant})", v.lineage.get("dataset_version"),
             "" if v.criteria_id is None else f"#{v.criteria_id}",
             fmt((v.lineage.get("metrics") or {}).get("macro_recall"))] for v in versions]
    table("model versions", ["id", "name", "stage", "run", "dataset", "criteria", "macro recall"], rows)


@models_app.command("card")
@friendly
def models_card(version: Annotated[str, typer.Argument(help="Version name or id.")],
                ws: WorkspaceOpt,
                parts_per_hour: Annotated[Optional[float], typer.Option(
                    help="Line throughput for the line-rate view (default: the line of the run's criteria).")] = None,
                defect_rate: Annotated[Optional[float], typer.Option(
                    help="Share of defective parts on the line, e.g. 0.01 (give with --parts-per-hour).")] = None,
                ) -> None:
    """Write a version's model card: one self-contained HTML page for the quality engineer; print its path."""
    from inspectloop.reports.model_card import write_model_card

    with workspace(ws) as w:
        path = write_model_card(w, version, parts_per_hour=parts_per_hour, defect_rate=defect_rate)
    out.print(str(path), highlight=False, soft_wrap=True)


@models_app.command("promote")
@friendly
def models_promote(version: Annotated[str, typer.Argument(help="Version name or id.")],
                   stage: Annotated[str, typer.Argument(help="candidate, shadow, production or retired.")],
                   ws: WorkspaceOpt,
                   actor: Annotated[str, typer.Option(help="Who decides (logged).")],
                   reason: Annotated[Optional[str], typer.Option(
                       help="Why (logged; required with --override).")] = None,
                   override: Annotated[bool, typer.Option(help="Go to production without a passed acceptance "
                                                               "report (logged with --actor and --reason).")] = False,
                   ) -> None:
    """Move a version to a stage; production needs a passed acceptance report or a logged override."""
    from inspectloop.registry import promote

    with workspace(ws) as w:
        promoted = promote(w, version, stage, actor=actor, reason=reason, override=override)
    if override:
        err.print(f"[bold yellow]override:[/] {promoted.name} is in production without a passed acceptance report; "
                  f"logged with actor {actor!r} and your reason", highlight=False)
    out.print(f"{promoted.name} is now {promoted.stage}", highlight=False)


@models_app.command("rollback")
@friendly
def models_rollback(ws: WorkspaceOpt,
                    actor: Annotated[str, typer.Option(help="Who decides (logged).")],
                    reason: Annotated[str, typer.Option(help="Why (logged).")]) -> None:
    """Put the previous production version back in production; the current one is retired."""
    from inspectloop.registry import rollback

    with workspace(ws) as w:
        restored = rollback(w, actor=actor, reason=reason)
    out.print(f"{restored.name} is back in production", highlight=False)


@friendly
def accept(run: Annotated[str, typer.Argument(help="A finished training run (see: inspectloop runs).")],
           ws: WorkspaceOpt,
           variant: Annotated[str, typer.Option(help="fp32 or int8: the model file to judge.")] = "fp32",
           criteria: Annotated[Optional[str], typer.Option(
               help="Locked criteria (name or id); default: the ones the run named. Others do not unlock "
                    "promotion.")] = None) -> None:
    """Judge a run's model file on the frozen test set against its locked criteria; exit 1 when it fails."""
    from inspectloop.accept.run import accept as accept_lib

    with workspace(ws) as w, progress_bar(f"accept {run}") as update:
        report = accept_lib(w, run, variant=variant, criteria=criteria, progress=update)
    rows = [[r.name, r.limit_text, r.measured_text, "[green]pass[/]" if r.passed else "[bold red]FAIL[/]"]
            for r in report.results]
    table(f"{report.run_id} ({report.variant}) against criteria {report.criteria.label}, "
          f"{report.measurements.count} frozen test images", ["criterion", "limit", "measured", "result"], rows)
    for r in report.failed:
        out.print(f"  {r.name}: {r.detail}", highlight=False)
    out.print(f"review: {report.document['review_summary']}", highlight=False)
    version = report.model_version.name
    if report.passed:
        out.print(f"[bold green]PASSED[/]: all {len(report.results)} criteria met", highlight=False)
    else:
        out.print(f"[bold red]FAILED[/]: {len(report.failed)} of {len(report.results)} criteria not met "
                  f"({', '.join(r.name for r in report.failed)})", highlight=False)
    if report.unlocks_promotion:
        out.print(f"{version} may go to production: inspectloop models promote {version} production --actor NAME",
                  highlight=False, soft_wrap=True)
    elif report.run_criteria_id is None:
        out.print(f"note: run {report.run_id} named no criteria, so no report unlocks promotion of {version} "
                  "(only a logged --override does)", highlight=False)
    elif report.criteria.id != report.run_criteria_id:
        out.print(f"note: run {report.run_id} is judged by criteria #{report.run_criteria_id}; a report against "
                  f"{report.criteria.label} does not unlock promotion of {version}", highlight=False)
    else:
        out.print(f"{version} stays out of production (or promote with a logged --override)", highlight=False)
    out.print(f"report: {report.html_path}", highlight=False, soft_wrap=True)  # a path to copy, unbroken
    if not report.passed:
        raise typer.Exit(1)
