"""Where a workspace stands with sync: as a site (its centre, how far the centre has confirmed, bundles not yet
confirmed) or as a centre (the sites it trusts and what each has sent), with the latest log entries."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inspectloop.domain.sites import SyncLogEntry, SyncPeer
from inspectloop.sites.bundle import SUFFIX
from inspectloop.sites.central import UP
from inspectloop.sites.http import HTTP_EXCHANGE
from inspectloop.sites.peers import CENTRAL, SITE_CONFIG, site_config
from inspectloop.workspace import Workspace


@dataclass
class SyncStatus:
    """``site`` is this workspace's site name (None on a centre); ``peers`` whom it trusts; ``received`` (on a
    centre) records per site and kind; ``unconfirmed`` (on a site) its bundles the centre has not confirmed, in
    the exchange folder or waiting to go over HTTP."""

    site: str | None
    exchange: Path | None
    exchange_present: bool
    peers: list[SyncPeer]
    cursors: dict[str, str] = field(default_factory=dict)
    unconfirmed: list[str] = field(default_factory=list)
    received: dict[str, dict[str, int]] = field(default_factory=dict)
    log: list[SyncLogEntry] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"site": self.site, "exchange": str(self.exchange) if self.exchange else None,
                "exchange_present": self.exchange_present,
                "peers": [{"name": p.name, "role": p.role, "key_id": p.key_id, "trusted": p.trusted,
                           "added_by": p.added_by, "added_at": p.added_at, "revoked_at": p.revoked_at}
                          for p in self.peers],
                "cursors": self.cursors, "unconfirmed": self.unconfirmed, "received": self.received,
                "log": [vars(e) for e in self.log]}


def sync_status(workspace: Workspace, *, log_entries: int = 10) -> SyncStatus:
    """The sync status of a site or a centre."""
    peers = workspace.db.sync.peers()
    log = workspace.db.sync.log(limit=log_entries)
    if not (workspace.root / SITE_CONFIG).exists():
        received = {p.name: workspace.db.sync.counts_by_kind(p.name) for p in peers if p.role == "site"}
        return SyncStatus(None, None, False, peers, received=received, log=log)
    config = site_config(workspace)
    folders = [config.exchange / UP / config.name, workspace.root / HTTP_EXCHANGE / UP / config.name]
    unconfirmed = sorted(p.name for folder in folders if folder.is_dir() for p in folder.glob(f"*{SUFFIX}"))
    return SyncStatus(config.name, config.exchange, config.exchange.is_dir(), peers,
                      cursors=workspace.db.sync.cursors(CENTRAL), unconfirmed=unconfirmed, log=log)
