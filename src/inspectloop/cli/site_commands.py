"""``inspectloop site ...``: an edge site that works offline and syncs with a central workspace through an
exchange folder (shared folder or USB stick)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from inspectloop.cli.common import WorkspaceOpt, err, friendly, out, print_json, table, workspace

site_app = typer.Typer(help="Sites that work offline and sync with a central workspace: models and criteria "
                            "down, labelled review items, predictions, drift and metrics up.", no_args_is_help=True)

ExchangeOpt = Annotated[Path | None, typer.Option(
    "--exchange", help="Exchange folder (shared folder or USB stick); default: the one given at site init.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@site_app.command("init")
@friendly
def site_init(ws: WorkspaceOpt,
              name: Annotated[str, typer.Option(help="This site's name, as the centre trusts it.")],
              exchange: Annotated[Path, typer.Option(help="Exchange folder shared with the centre.")],
              central_key: Annotated[Path, typer.Option(help="The centre's public key (there: inspectloop keys "
                                                             "export FILE).")],
              by: Annotated[str, typer.Option(help="Who sets the site up (logged).")] = "admin") -> None:
    """Make this workspace a site of a centre; then, on the centre: inspectloop site trust NAME KEY_FILE."""
    from inspectloop.keys import site_key
    from inspectloop.sites import init_site

    with workspace(ws) as opened:
        config = init_site(opened, name, exchange, central_key, by=by)
        key = site_key(opened.root)
    out.print(f"site {config.name} syncs through {config.exchange}; the centre must trust its key {key.public.key_id}: "
              f"copy {key.public_path} to the centre and run there: inspectloop site trust {config.name} FILE",
              highlight=False, soft_wrap=True)


@site_app.command("trust")
@friendly
def site_trust(name: Annotated[str, typer.Argument(help="The site's name.")],
               key: Annotated[Path, typer.Argument(help="The site's public key (there: inspectloop keys export).")],
               ws: WorkspaceOpt, by: Annotated[str, typer.Option(help="Who trusts it (logged).")] = "admin") -> None:
    """On the centre: accept bundles from site NAME signed by KEY."""
    from inspectloop.sites import trust_site

    with workspace(ws) as opened:
        peer = trust_site(opened, name, key, by=by)
    out.print(f"site {peer.name} trusted (key {peer.key_id}); its bundles are applied by inspectloop site receive",
              highlight=False)


@site_app.command("revoke")
@friendly
def site_revoke(name: Annotated[str, typer.Argument(help="The site's name.")], ws: WorkspaceOpt) -> None:
    """On the centre: refuse (and log) every bundle from site NAME from now on."""
    from inspectloop.sites import revoke_site

    with workspace(ws) as opened:
        revoke_site(opened, name)
    out.print(f"site {name} revoked: its bundles are refused and logged", highlight=False)


@site_app.command("sync")
@friendly
def site_sync(ws: WorkspaceOpt, exchange: ExchangeOpt = None,
              central_url: Annotated[str | None, typer.Option(
                  help="Sync over HTTP with the centre's inspectloop serve at this URL instead of a folder.")] = None,
              token: Annotated[str | None, typer.Option(
                  envvar="INSPECTLOOP_TOKEN", show_default=False,
                  help="A service user's token on the centre, for --central-url (default: $INSPECTLOOP_TOKEN).")]
              = None,
              as_json: JsonOpt = False) -> None:
    """On a site: take the centre's models and criteria, and send what the centre has not confirmed."""
    from inspectloop.sites import sync
    from inspectloop.sites.http import sync_http

    if central_url is not None and not token:
        raise typer.BadParameter("--central-url needs a token: --token TOKEN or $INSPECTLOOP_TOKEN")
    with workspace(ws) as opened:
        report = sync_http(opened, central_url, token or "") if central_url else sync(opened, exchange=exchange)
    if as_json:
        print_json({"site": report.site, "received": report.received, "received_counts": report.received_counts,
                    "sent": str(report.sent) if report.sent else None, "sent_counts": report.sent_counts,
                    "message": report.message})
        return
    if report.received:
        counts = report.received_counts
        out.print(f"received {report.received}: models {', '.join(counts['models']) or 'none'}, "
                  f"{counts['criteria']} criteria, {counts['classes']} classes", highlight=False, soft_wrap=True)
        for refused in counts["refused_models"]:
            err.print(f"[bold yellow]warning:[/] model refused: {refused}", highlight=False, soft_wrap=True)
    if report.sent:
        listed = ", ".join(f"{n} {k}" for k, n in report.sent_counts.items() if n)
        out.print(f"sent {report.sent.name}: {listed}", highlight=False, soft_wrap=True)
    else:
        out.print(report.message, highlight=False)


@site_app.command("receive")
@friendly
def site_receive(exchange: Annotated[Path, typer.Argument(help="The exchange folder the sites write to.")],
                 ws: WorkspaceOpt, as_json: JsonOpt = False) -> None:
    """On the centre: apply every trusted site's new bundles, refuse (and log) others, write each site's down
    bundle. Safe to run again, or after an interruption: what was applied is skipped."""
    from inspectloop.sites import receive

    with workspace(ws) as opened:
        results = receive(opened, exchange)
    if as_json:
        print_json([vars(r) for r in results])
    for result in results if not as_json else []:
        if result.status == "refused":
            err.print(f"[bold red]refused[/] {result.site}/{result.bundle}: {result.message}", highlight=False,
                      soft_wrap=True)
        elif result.status == "already":
            out.print(f"{result.site}/{result.bundle}: applied before, nothing to do", highlight=False)
        else:
            listed = ", ".join(f"{c['new']} new {k}" for k, c in result.counts.items() if c["new"])
            out.print(f"{result.site}/{result.bundle}: {listed or 'nothing new'}", highlight=False, soft_wrap=True)
    if any(r.status == "refused" for r in results):
        raise typer.Exit(1)


@site_app.command("status")
@friendly
def site_status(ws: WorkspaceOpt, as_json: JsonOpt = False) -> None:
    """Where this site (or centre) stands: whom it trusts, what is confirmed or received, the latest log."""
    from inspectloop.sites import sync_status

    with workspace(ws) as opened:
        status = sync_status(opened)
    if as_json:
        print_json(status.to_dict())
        return
    if status.site is not None:
        out.print(f"site {status.site}; exchange {status.exchange} ({'present' if status.exchange_present else 'absent: offline'}); "
                  f"confirmed by the centre up to bundle {status.cursors.get('acked_sequence', '0')}; "
                  f"unconfirmed bundles: {', '.join(status.unconfirmed) or 'none'}", highlight=False, soft_wrap=True)
    table("peers", ["name", "role", "key", "trusted", "by", "since"],
          [[p.name, p.role, p.key_id, "yes" if p.trusted else f"revoked {p.revoked_at}", p.added_by, p.added_at]
           for p in status.peers])
    if status.received:
        table("received", ["site", "records"], [[site, _counts(c)] for site, c in status.received.items()])
    table("sync log (newest first)", ["at", "direction", "action", "peer", "bundle", "status", "message"],
          [[e.started_at, e.direction, e.action, e.peer, e.bundle, e.status, e.message] for e in status.log])


def _counts(counts: dict[str, Any]) -> str:
    return ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "none"
