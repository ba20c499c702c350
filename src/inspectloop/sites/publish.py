"""Publishing a bundle: signed with the workspace key, numbered after the last one written to the same peer,
logged; skipped when the last one, still waiting in the exchange, holds the same content (so running a sync
again writes nothing new)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from inspectloop.keys import site_signing_key
from inspectloop.sites.bundle import BundleWriter, canonical, digest
from inspectloop.workspace import Workspace


def publish(workspace: Workspace, writer: BundleWriter, *, direction: str, peer: str,
            content: Mapping[str, Any], logged: Mapping[str, Any]) -> Path | None:
    """Finish ``writer`` as the next bundle for ``peer`` and log it with ``logged``; None (and nothing written)
    when the last bundle for ``peer`` is still in the exchange with the same members and ``content``."""
    signature = digest(canonical({"members": [[m["name"], m["sha256"]] for m in writer.members], **content}))
    written = workspace.db.sync.log(peer=peer, action="wrote")
    last = written[0] if written else None
    if last and last.counts.get("content_sha256") == signature and (writer.folder / last.bundle).exists():
        writer.abandon()
        return None
    sequence = max((e.sequence or 0 for e in written), default=0) + 1
    path, sha = writer.finish(site_signing_key(workspace.root), sequence)
    workspace.db.sync.log_start(direction=direction, action="wrote", peer=peer, key_id=None, bundle=path.name,
                                bundle_sha256=sha, sequence=sequence, status="done",
                                counts={"content_sha256": signature, **logged})
    return path
