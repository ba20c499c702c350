"""``inspectloop serve``, ``inspectloop users ...`` and ``inspectloop shadow report``: the service on the line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from inspectloop.cli.common import WorkspaceOpt, err, fmt, friendly, out, table, workspace
from inspectloop.cli.keys_commands import warn_unverified
from inspectloop.cli.settings import ConfigOptions, SetOption
from inspectloop.errors import ServiceError, require

users_app = typer.Typer(help="People who write through the service: reviewers and admins, with tokens.",
                        no_args_is_help=True)
shadow_app = typer.Typer(help="Shadow mode: how a candidate model compares with production and human QC.",
                         no_args_is_help=True)


def _service_config() -> type:
    from inspectloop.serve.service import ServiceConfig  # imported when needed: it loads the runtime

    return ServiceConfig


SERVE_SETTINGS = ConfigOptions(_service_config, {"model": "model_file", "shadow": "shadow", "camera": "cameras",
                                                 "sample_rate": "sample_rate", "trusted_key": "trusted_keys"},
                               ServiceError)


@friendly
def serve(ws: WorkspaceOpt,
          host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 for the plant network).")] = "127.0.0.1",
          port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
          model: Annotated[Path | None, typer.Option()] = None,  # help and default: ServiceConfig's (see --help)
          shadow: Annotated[str | None, typer.Option()] = None,
          camera: Annotated[list[str], typer.Option(show_default=False)] = [],  # noqa: B006 (repeatable)
          trusted_key: Annotated[list[Path], typer.Option(show_default=False)] = [],  # noqa: B006 (repeatable)
          sample_rate: Annotated[float | None, typer.Option()] = None,
          setting: SetOption = [],  # noqa: B006
          watch: Annotated[Path | None, typer.Option(
              help="Also watch this folder for image files dropped by cameras.")] = None,
          ) -> None:
    """Start the inspection service (HTTP API, optional folder watch); every prediction is logged durably."""
    for module in ("fastapi", "uvicorn", "multipart"):
        require(module, "serve", package="python-multipart" if module == "multipart" else None)
    import uvicorn

    from inspectloop.web.app import create_app

    config = SERVE_SETTINGS.build(setting, model=model, shadow=shadow, camera=tuple(camera) or None,
                                  sample_rate=sample_rate, trusted_key=tuple(trusted_key) or None)
    app = create_app(ws, config=config, watch=watch)
    warn_unverified(app.state.service.production.model.signature.warning())
    err.print(f"serving {app.state.service.production.name} on http://{host}:{port}/v1 "
              f"(workspace {ws}; health: /v1/health)", highlight=False)
    uvicorn.run(app, host=host, port=port, log_config=log_config(), timeout_graceful_shutdown=10)


def log_config() -> dict[str, Any]:
    """Uvicorn's logging with every record passed through the secret-redacting filter."""
    from uvicorn.config import LOGGING_CONFIG

    config: dict[str, Any] = {**LOGGING_CONFIG}
    config["filters"] = {"redact": {"()": "inspectloop.web.app.RedactSecrets"}}
    config["handlers"] = {name: {**handler, "filters": ["redact"]} for name, handler in LOGGING_CONFIG["handlers"].items()}
    config["loggers"] = {**LOGGING_CONFIG["loggers"], "inspectloop": {"handlers": ["default"], "level": "INFO"}}
    return config


@users_app.command("add")
@friendly
def users_add(name: str, ws: WorkspaceOpt,
              role: Annotated[str, typer.Option(help="reviewer or admin.")] = "reviewer") -> None:
    """Add a user and print their token (shown once; only its hash is stored)."""
    from inspectloop.people import add_user

    with workspace(ws) as w:
        token = add_user(w, name, role)
    err.print(f"added {name} ({role}); their token, shown once:", highlight=False)
    out.print(token, highlight=False, soft_wrap=True)


@users_app.command("list")
@friendly
def users_list(ws: WorkspaceOpt) -> None:
    """List users with their role and whether they are disabled (tokens are never shown)."""
    from inspectloop.people import list_users

    with workspace(ws) as w:
        users = list_users(w)
    table("users", ["name", "role", "status"], [[u.name, u.role.value, "disabled" if off else "active"]
                                                for u, off in users])


@users_app.command("disable")
@friendly
def users_disable(name: str, ws: WorkspaceOpt) -> None:
    """Disable a user: their token stops working at once."""
    from inspectloop.people import disable_user

    with workspace(ws) as w:
        disable_user(w, name)
    out.print(f"{name} is disabled", highlight=False)


@users_app.command("reset-token")
@friendly
def users_reset_token(name: str, ws: WorkspaceOpt) -> None:
    """Give a user a new token (printed once); the old one stops working."""
    from inspectloop.people import reset_token

    with workspace(ws) as w:
        token = reset_token(w, name)
    err.print(f"new token for {name}, shown once:", highlight=False)
    out.print(token, highlight=False, soft_wrap=True)


@shadow_app.command("report")
@friendly
def shadow_report(ws: WorkspaceOpt,
                  version: Annotated[str | None, typer.Option(
                      help="Shadowed version (default: the one in stage shadow, else the last shadowed).")] = None,
                  min_compared: Annotated[int, typer.Option(help="Inputs compared before a verdict.")] = 200,
                  min_qc: Annotated[int, typer.Option(help="QC-judged inputs needed before a verdict.")] = 30,
                  ) -> None:
    """Per-class agreement with production and human QC, discrepancies, edge cases and a readiness verdict."""
    from inspectloop.shadow import shadow_report as build
    from inspectloop.shadow import write_shadow_report

    with workspace(ws) as w:
        report = build(w, version, min_compared=min_compared, min_qc=min_qc)
        path = write_shadow_report(w, report)
    rows = [[c.name, c.compared, fmt(c.label_agreement), fmt(c.decision_agreement), c.qc_compared,
             fmt(c.shadow_qc_agreement), fmt(c.production_qc_agreement)] for c in report.per_class]
    table(f"shadow {report.version} vs production {report.compared} inputs, {report.qc_compared} with QC",
          ["class (production)", "compared", "same label", "same fate", "QC judged", "shadow = QC",
           "production = QC"], rows)
    out.print(f"same label {fmt(report.label_agreement)}, same fate {fmt(report.decision_agreement)} "
              f"(pass, or stopped as the same class; {report.same_class_reject_vs_review} reject vs review of one "
              "class count as the same fate)", highlight=False)
    for pair in report.confusions[:10] + report.decision_changes:
        out.print(f"  production {pair['production']} -> shadow {pair['shadow']}: {pair['count']}", highlight=False)
    verdict = "[bold green]READY[/]" if report.ready else "[bold yellow]NOT READY[/]"
    out.print(f"{verdict}: {'; '.join(report.reasons)}", highlight=False)
    out.print(f"rule: {report.rule}", highlight=False)
    out.print(f"report: {path}", highlight=False, soft_wrap=True)
