"""Sites that sync with a centre: a trusted peer and one entry of the sync log."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ROLES = ("site", "central")  # a site this centre trusts | the centre this site syncs with


@dataclass(frozen=True)
class SyncPeer:
    """The other end of a sync: its name, role, the key it signs bundles with, and when it was trusted."""

    name: str
    role: str
    key_id: str
    public_key: str  # PEM
    added_at: str
    added_by: str
    revoked_at: str | None = None

    @property
    def trusted(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True)
class SyncLogEntry:
    """One bundle written, applied or refused: direction (up | down), peer, digests, status and counts."""

    id: int
    direction: str
    action: str
    peer: str
    key_id: str | None
    bundle: str
    bundle_sha256: str
    sequence: int | None
    status: str
    counts: dict[str, Any] = field(default_factory=dict)
    message: str | None = None
    started_at: str = ""
    finished_at: str | None = None
