"""Sync over HTTP with the centre's ``inspectloop serve``, for sites with a network link.

The same bundles as the folder transport, moved by HTTP: the site keeps them in its own ``sync-exchange``
folder, uploads each unconfirmed one (``POST /v1/sync/SITE/bundles``, the bundle as the body; the centre
checks its signature like any other and applies it) and stores the down bundle the answer carries
(``GET /v1/sync/SITE/down`` when there is nothing to send). A bearer token of a service user gets the
request in; the site's key signature decides whether its records are taken. Standard library only: an
edge site needs nothing more installed.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from pathlib import Path

from inspectloop.errors import SyncError
from inspectloop.fileio import atomic_write_bytes
from inspectloop.sites.bundle import SUFFIX
from inspectloop.sites.central import DOWN, UP
from inspectloop.sites.peers import SiteConfig, site_config
from inspectloop.sites.site import SyncReport, apply_down, send_up
from inspectloop.workspace import Workspace

HTTP_EXCHANGE = "sync-exchange"  # in the workspace: bundles on their way, on both ends of an HTTP sync
BUNDLE_HEADER = "X-Inspectloop-Bundle"
BUNDLE_NAME = re.compile(r"^[0-9]{6}-[0-9a-f]{16}" + re.escape(SUFFIX) + "$")


def sync_http(workspace: Workspace, url: str, token: str, *, timeout: float = 300.0) -> SyncReport:
    """Sync with the centre's service at ``url``: down bundle first, then every unconfirmed up bundle."""
    config = site_config(workspace)
    local = SiteConfig(config.name, workspace.root / HTTP_EXCHANGE)
    report = SyncReport(config.name)
    _store_down(local, _request(f"{url.rstrip('/')}/v1/sync/{config.name}/down", token, None, timeout))
    apply_down(workspace, local, local.exchange, report)
    send_up(workspace, local, local.exchange, report)
    for path in sorted((local.exchange / UP / config.name).glob(f"*{SUFFIX}")):
        answer = _request(f"{url.rstrip('/')}/v1/sync/{config.name}/bundles", token, path, timeout)
        _store_down(local, answer)
    confirmation = SyncReport(config.name)
    apply_down(workspace, local, local.exchange, confirmation)  # the centre's answer: what it took
    report.received = report.received or confirmation.received
    report.received_counts = report.received_counts or confirmation.received_counts
    return report


def _request(url: str, token: str, bundle: Path | None, timeout: float) -> tuple[str, bytes] | None:
    """GET (no bundle) or POST a bundle; the down bundle answered (name, bytes), or None when there is none."""
    headers = {"Authorization": f"Bearer {token}"}
    data = None
    if bundle is not None:
        data = bundle.read_bytes()
        headers |= {BUNDLE_HEADER: bundle.name, "Content-Type": "application/zip"}
    request = urllib.request.Request(url, data=data, headers=headers, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 (the configured centre)
            if answer.status == 204:
                return None
            return answer.headers.get(BUNDLE_HEADER, ""), answer.read()
    except urllib.error.HTTPError as exc:
        raise SyncError(f"the centre at {url} refused: {_reason(exc)}",
                        "check the site's token and that the centre trusts the site: inspectloop site trust") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SyncError(f"cannot reach the centre at {url} ({reason}): nothing was synced; the site keeps working "
                        "offline", "check the network, or sync through a USB stick: inspectloop site sync "
                        "--exchange FOLDER (on the centre: inspectloop site receive FOLDER)") from None


def _store_down(config: SiteConfig, answer: tuple[str, bytes] | None) -> None:
    if answer is None:
        return
    name, data = answer
    if not BUNDLE_NAME.match(name):
        raise SyncError(f"the centre answered with a bundle named {name!r}", "sync both ends with the same version")
    folder = config.exchange / DOWN / config.name
    atomic_write_bytes(folder / name, data)
    for older in folder.glob(f"*{SUFFIX}"):
        if older.name != name:
            older.unlink(missing_ok=True)


def _reason(exc: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(exc.read() or b"{}")
        return f"{exc.code} {body.get('error', '')}".strip()
    except ValueError:
        return str(exc.code)
