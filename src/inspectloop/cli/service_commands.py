"""``inspectloop serve``, ``inspectloop users ...`` and ``inspectloop shadow report|history``: the service on the line."""

from __future__ import annotations

import getpass
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

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
    table,
    utc_iso,
    workspace,
)
from inspectloop.cli.keys_commands import warn_unverified
from inspectloop.cli.settings import ConfigOptions, SetOption
from inspectloop.errors import ServiceError, require
from inspectloop.store.people import DEFAULT_TOKEN_DAYS

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
          tls_cert: Annotated[Path | None, typer.Option(help="TLS certificate (PEM) to serve HTTPS.")] = None,
          tls_key: Annotated[Path | None, typer.Option(help="Private key (PEM) of --tls-cert.")] = None,
          insecure: Annotated[bool, typer.Option(
              help="Serve plain HTTP on a network address (refused otherwise): tokens travel unencrypted.")] = False,
          ) -> None:
    """Start the inspection service (HTTP API, optional folder watch); every prediction is logged durably.

    Off the loopback interface it needs --tls-cert and --tls-key (or an explicit --insecure)."""
    for module in ("fastapi", "uvicorn", "multipart"):
        require(module, "serve", package="python-multipart" if module == "multipart" else None)
    import uvicorn

    from inspectloop.web.app import create_app
    from inspectloop.web.tls import plan_listen

    plan = plan_listen(host, port, cert=tls_cert, key=tls_key, insecure=insecure)
    config = SERVE_SETTINGS.build(setting, model=model, shadow=shadow, camera=tuple(camera) or None,
                                  sample_rate=sample_rate, trusted_key=tuple(trusted_key) or None)
    app = create_app(ws, config=config, watch=watch)
    server = uvicorn.Server(uvicorn.Config(
        app, host=host, port=port, log_config=log_config(), timeout_graceful_shutdown=10,
        ssl_certfile=str(plan.cert) if plan.cert else None, ssl_keyfile=str(plan.key) if plan.key else None))
    if plan.warning:  # after uvicorn set up logging, so the warning reaches the service log too
        err.print(f"[bold red]{plan.warning}[/]", highlight=False)
        logging.getLogger("inspectloop.serve").warning(plan.warning)
    warn_unverified(app.state.service.production.model.signature.warning())
    err.print(f"serving {app.state.service.production.name} on {plan.scheme}://{host}:{port}/v1 "
              f"(workspace {ws}; health: /v1/health)", highlight=False)
    server.run()


def log_config() -> dict[str, Any]:
    """Uvicorn's logging with every record passed through the secret-redacting filter."""
    from uvicorn.config import LOGGING_CONFIG

    config: dict[str, Any] = {**LOGGING_CONFIG}
    config["filters"] = {"redact": {"()": "inspectloop.web.app.RedactSecrets"}}
    config["handlers"] = {name: {**handler, "filters": ["redact"]} for name, handler in LOGGING_CONFIG["handlers"].items()}
    config["loggers"] = {**LOGGING_CONFIG["loggers"], "inspectloop": {"handlers": ["default"], "level": "INFO"}}
    return config


def _actor(given: str) -> str:
    """The name the audit trail records: --actor, else the OS user."""
    if given:
        return given
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (e.g. a container)
        return "cli"


ExpiresOpt = Annotated[int, typer.Option(help="Days until the token expires (1-3650).")]
ActorOpt = Annotated[str, typer.Option(help="Who makes this change, for the audit trail (default: the OS user).",
                                       show_default=False)]


@users_app.command("add")
@friendly
def users_add(name: str, ws: WorkspaceOpt,
              role: Annotated[str, typer.Option(help="reviewer or admin.")] = "reviewer",
              expires_days: ExpiresOpt = DEFAULT_TOKEN_DAYS, actor: ActorOpt = "") -> None:
    """Add a user and print their token (shown once; only its hash is stored)."""
    from inspectloop.people import add_user

    with workspace(ws) as w:
        token = add_user(w, name, role, expires_days=expires_days, actor=_actor(actor))
    err.print(f"added {name} ({role}); their token, valid {expires_days} days, shown once:", highlight=False)
    out.print(token, highlight=False, soft_wrap=True)


@users_app.command("list")
@friendly
def users_list(ws: WorkspaceOpt) -> None:
    """List users with their role, status and token expiry (tokens are never shown)."""
    from inspectloop.people import list_users

    with workspace(ws) as w:
        users = list_users(w)
    table("users", ["name", "role", "status", "token expires"],
          [[u.user.name, u.user.role.value, _status(u), u.token_expires_at or "-"] for u in users])


def _status(record: Any) -> str:
    from inspectloop.errors import AuthError
    from inspectloop.people import usable

    try:
        usable(record)
    except AuthError:
        return "disabled" if record.disabled else "revoked" if record.token_revoked_at else "expired"
    return "active"


@users_app.command("disable")
@friendly
def users_disable(name: str, ws: WorkspaceOpt, actor: ActorOpt = "") -> None:
    """Disable a user: their token and browser sessions stop working at once."""
    from inspectloop.people import disable_user

    with workspace(ws) as w:
        disable_user(w, name, actor=_actor(actor))
    out.print(f"{name} is disabled", highlight=False)


@users_app.command("token-rotate")
@friendly
def users_token_rotate(name: str, ws: WorkspaceOpt, expires_days: ExpiresOpt = DEFAULT_TOKEN_DAYS,
                       actor: ActorOpt = "") -> None:
    """Give a user a new token (printed once); the old one and their sessions stop working."""
    from inspectloop.people import rotate_token

    with workspace(ws) as w:
        token = rotate_token(w, name, expires_days=expires_days, actor=_actor(actor))
    err.print(f"new token for {name}, valid {expires_days} days, shown once:", highlight=False)
    out.print(token, highlight=False, soft_wrap=True)


@users_app.command("token-revoke")
@friendly
def users_token_revoke(name: str, ws: WorkspaceOpt, actor: ActorOpt = "") -> None:
    """End a user's token and browser sessions now (token-rotate gives them a new one)."""
    from inspectloop.people import revoke_token

    with workspace(ws) as w:
        revoke_token(w, name, actor=_actor(actor))
    out.print(f"the token of {name} is revoked", highlight=False)


@users_app.command("events")
@friendly
def users_events(ws: WorkspaceOpt, name: Annotated[str | None, typer.Argument(help="Only this user.")] = None,
                 limit: Annotated[int, typer.Option(help="Most events shown.")] = 50) -> None:
    """The account audit trail: who added, rotated, revoked or disabled which user, and when."""
    from inspectloop.people import user_events

    with workspace(ws) as w:
        events = user_events(w, name, limit)
    table("user events", ["at", "user", "action", "by", "detail"],
          [[e["at"], e["user_name"], e["action"], e["actor"], e["detail"] or ""] for e in events])


def _box_section(boxes: dict[str, Any] | None) -> None:
    """Two detectors' boxes matched by IoU, per class (shadow reports of detectors only)."""
    if boxes is None:
        return
    rows = [[name, c["matched"], c["only_production"], c["only_shadow"], fmt(c["mean_iou"]), fmt(c["f1"])]
            for name, c in boxes["per_class"].items()]
    table(f"boxes matched at IoU >= {boxes['iou_threshold']}: {boxes['frames_agreeing']} of {boxes['frames']} "
          "frames with the same boxes", ["class", "matched", "only production", "only shadow", "mean IoU", "F1"], rows)
    for pair in boxes["confusions"][:10]:
        out.print(f"  box of production {pair['production']} -> shadow {pair['shadow']}: {pair['count']}",
                  highlight=False)


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
    _box_section(report.box_comparison)
    verdict = "[bold green]READY[/]" if report.ready else "[bold yellow]NOT READY[/]"
    out.print(f"{verdict}: {'; '.join(report.reasons)}", highlight=False)
    out.print(f"rule: {report.rule}", highlight=False)
    out.print(f"report: {path}", highlight=False, soft_wrap=True)


@shadow_app.command("history")
@friendly
def shadow_history(version: Annotated[str, typer.Argument(help="The candidate version to re-score history with.")],
                   ws: WorkspaceOpt, since: SinceOpt, until: UntilOpt = None, ray: RayOpt = False,
                   ray_address: RayAddressOpt = None, workers: WorkersOpt = None,
                   min_compared: Annotated[int, typer.Option(help="Inputs compared before a verdict.")] = 200,
                   min_qc: Annotated[int, typer.Option(help="QC-judged inputs needed before a verdict.")] = 30,
                   ) -> None:
    """Shadow on history: re-score the period's stored production images with a candidate, judged as live shadow."""
    from inspectloop.shadow_history import shadow_on_history, write_history_report

    end = until or datetime.now(UTC)
    with workspace(ws) as w, batch_engine(ray, ray_address, workers) as engine:
        result = shadow_on_history(w, version, start=utc_iso(since), end=utc_iso(end), engine=engine,
                                   min_compared=min_compared, min_qc=min_qc)
        path = write_history_report(w, result)
    report = result.report
    out.print(f"{result.images} stored images re-scored by {report.version} in {result.seconds:.1f} s on "
              f"{result.engine['engine']} ({result.engine['workers']} workers); {report.compared} production "
              f"decisions compared, {report.qc_compared} with QC", highlight=False)
    if result.unreadable:
        err.print(f"  {len(result.unreadable)} images could not be read and are left out (listed in the report)",
                  highlight=False)
    out.print(f"same label {fmt(report.label_agreement)}, same fate {fmt(report.decision_agreement)}",
              highlight=False)
    for pair in report.confusions[:10] + report.decision_changes:
        out.print(f"  production {pair['production']} -> candidate {pair['shadow']}: {pair['count']}",
                  highlight=False)
    verdict = "[bold green]READY[/]" if report.ready else "[bold yellow]NOT READY[/]"
    out.print(f"{verdict}: {'; '.join(report.reasons)}", highlight=False)
    out.print(f"report: {path}", highlight=False, soft_wrap=True)
