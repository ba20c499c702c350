"""Who syncs with whom: a site's own settings (its name, its centre, the exchange folder) and the keys each
end trusts. A site trusts its centre's key for bundles and for model files (``keys/trusted/``); a centre
trusts each site's key by name, and refuses (and logs) a bundle signed by any other."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from inspectloop.domain.sites import SyncPeer
from inspectloop.errors import ModelFileError, SyncError
from inspectloop.fileio import atomic_write_text
from inspectloop.keys import TRUSTED_DIR, site_key
from inspectloop.runtime.signing import PublicKey, load_public_key, public_key_pem
from inspectloop.workspace import Workspace

SITE_CONFIG = "site.yaml"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
CENTRAL = "central"  # the peer name a site gives its centre


@dataclass(frozen=True)
class SiteConfig:
    """This workspace as a site: its name, and the exchange folder (shared folder or USB stick) it syncs through."""

    name: str
    exchange: Path


def check_name(name: str) -> str:
    name = (name or "").strip()
    if not NAME.match(name):
        raise SyncError(f"bad site name {name!r}", "use letters, digits, '_', '.' or '-', e.g. plant2-line3")
    return name


def init_site(workspace: Workspace, name: str, exchange: Path, central_key: Path, *, by: str) -> SiteConfig:
    """Make this workspace a site named ``name`` that syncs through ``exchange`` with the centre whose public
    key is ``central_key`` (trusted for bundles and model files). Refused if it is a site already."""
    name = check_name(name)
    if (workspace.root / SITE_CONFIG).exists():
        raise SyncError(f"workspace {workspace.root} is already site {site_config(workspace).name!r}",
                        f"see: inspectloop site status (to start over, remove {SITE_CONFIG} and the centre's peer)")
    key = _public_key(central_key)
    if key.key_id == site_key(workspace.root).public.key_id:
        raise SyncError("the centre's key is this workspace's own key",
                        "give the public key of the central workspace (there: inspectloop keys export FILE)")
    trusted = workspace.root / TRUSTED_DIR / f"{CENTRAL}-{key.key_id}.pub.pem"
    trusted.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(trusted, public_key_pem(key.raw).decode("ascii"))
    if workspace.db.sync.peer(name=CENTRAL) is None:
        workspace.db.sync.add_peer(CENTRAL, "central", key.key_id, public_key_pem(key.raw).decode("ascii"), by)
    config = SiteConfig(name, Path(exchange))
    atomic_write_text(workspace.root / SITE_CONFIG,
                      yaml.safe_dump({"name": name, "exchange": str(exchange)}, sort_keys=False))
    return config


def site_config(workspace: Workspace) -> SiteConfig:
    """This workspace's site settings; SyncError naming the fix when it is not a site."""
    path = workspace.root / SITE_CONFIG
    if not path.exists():
        raise SyncError(f"workspace {workspace.root} is not set up as a site",
                        "set it up: inspectloop site init --name NAME --exchange FOLDER --central-key FILE")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
        return SiteConfig(check_name(raw["name"]), Path(raw["exchange"]))
    except (yaml.YAMLError, KeyError, TypeError) as exc:
        raise SyncError(f"{path} is malformed ({exc})", "restore it, or set the site up again") from exc


def trust_site(workspace: Workspace, name: str, public_key: Path, *, by: str) -> SyncPeer:
    """On the centre: accept bundles from site ``name`` signed by ``public_key``."""
    name = check_name(name)
    if name == CENTRAL:
        raise SyncError(f"{CENTRAL!r} names the centre", "give the site another name")
    key = _public_key(public_key)
    for peer in workspace.db.sync.peers():
        if peer.name == name or peer.key_id == key.key_id:
            raise SyncError(f"site {peer.name!r} is already trusted with key {peer.key_id}"
                            f"{' (revoked)' if not peer.trusted else ''}",
                            "a key belongs to one site; see: inspectloop site status")
    workspace.db.sync.add_peer(name, "site", key.key_id, public_key_pem(key.raw).decode("ascii"), by)
    found = workspace.db.sync.peer(name=name)
    assert found is not None  # written just now
    return found


def revoke_site(workspace: Workspace, name: str) -> None:
    """On the centre: refuse every bundle signed by site ``name``'s key from now on."""
    if not workspace.db.sync.revoke_peer(check_name(name)):
        raise SyncError(f"no trusted site {name!r}", "see the trusted sites: inspectloop site status")


def trusted_key(workspace: Workspace, role: str) -> Callable[[str], PublicKey | None]:
    """``key_id -> PublicKey | None`` over the unrevoked peers of ``role`` (what ``open_bundle`` asks)."""

    def lookup(key_id: str) -> PublicKey | None:
        peer = workspace.db.sync.peer(key_id=key_id)
        if peer is None or not peer.trusted or peer.role != role:
            return None
        return peer_key(peer)

    return lookup


def peer_key(peer: SyncPeer) -> PublicKey:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_public_key(peer.public_key.encode("ascii"))
    return PublicKey(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw), peer.name)


def _public_key(path: Path) -> PublicKey:
    try:
        return load_public_key(path)
    except ModelFileError as exc:
        raise SyncError(exc.message.replace("trusted key", "public key"), exc.hint) from None
