"""``inspectloop criteria ...`` and ``inspectloop models ...``: acceptance criteria and the model registry."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from inspectloop.cli.common import WorkspaceOpt, err, fmt, friendly, out, table, workspace

criteria_app = typer.Typer(help="Acceptance criteria, locked before the training runs they judge.",
                           no_args_is_help=True)
models_app = typer.Typer(help="The model registry: versions with lineage, stages, promotion, rollback.",
                         no_args_is_help=True)


@criteria_app.command("lock")
@friendly
def criteria_lock(file: Annotated[Path, typer.Argument(help="Criteria YAML (see examples/criteria.yaml).")],
                  ws: WorkspaceOpt,
                  by: Annotated[str, typer.Option(help="Who locks them (recorded with the hash and time).")]) -> None:
    """Validate a criteria file against the workspace's classes and lock it: hash, time, who."""
    from inspectloop.criteria import lock_criteria

    with workspace(ws) as w:
        locked = lock_criteria(w, file, by=by)
    out.print(f"criteria {locked.label} locked at {locked.locked_at.isoformat()} by {locked.locked_by} "
              f"(sha256 {locked.sha256[:12]})\ntrain against them with: inspectloop train --criteria {locked.name}",
              highlight=False)


@criteria_app.command("list")
@friendly
def criteria_list(ws: WorkspaceOpt) -> None:
    """List locked criteria with their hash, time and who locked them."""
    from inspectloop.criteria import list_criteria

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
