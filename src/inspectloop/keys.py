"""The site signing key: an Ed25519 key pair kept in the workspace, with which export signs model files.

``<workspace>/keys/signing-key.pem`` is the private key (PKCS#8 PEM, mode 0600, in a 0700 folder:
whoever can read it can make models this site's devices will trust), ``signing-key.pub.pem`` its
public key, the file to copy to edge devices and to pass as ``--trusted-key``. ``inspectloop init``
makes the pair; a workspace made before signing existed gets one at its first export (or with
``inspectloop keys create``), so every model exported from then on is signed.

The private key is not encrypted with a passphrase: training exports unattended. Protect it as
you protect the workspace (file permissions, backups kept as carefully as the key itself).
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from inspectloop.errors import WorkspaceError
from inspectloop.runtime.signing import (
    PublicKey,
    SignatureStatus,
    fingerprint,
    load_public_key,
    public_key_of,
    public_key_pem,
)
from inspectloop.fileio import atomic_write_text

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

log = logging.getLogger(__name__)
KEYS_DIR = "keys"
PRIVATE_KEY_FILE = "signing-key.pem"
PUBLIC_KEY_FILE = "signing-key.pub.pem"
TRUSTED_DIR = "keys/trusted"  # public keys of other workspaces whose models this one runs: a site's centre


@dataclass(frozen=True)
class SiteKey:
    """Where a workspace's key pair lives and its public key (``public.key_id``; ``fingerprint`` in full)."""

    private_path: Path
    public_path: Path
    public: PublicKey

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public.raw)


def private_key_path(root: Path) -> Path:
    """Where the workspace at ``root`` keeps its private signing key."""
    return Path(root) / KEYS_DIR / PRIVATE_KEY_FILE


def create_signing_key(root: Path) -> SiteKey:
    """Make the workspace's key pair; WorkspaceError if it already has one (a key is never replaced silently)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = private_key_path(root)
    if path.exists():
        raise WorkspaceError(f"workspace {root} already has a signing key ({path})",
                             "show it with: inspectloop keys show")
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    try:
        # O_EXCL: two processes creating at once cannot overwrite each other's key; 0600 from the first byte
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(handle, "wb") as stream:
            stream.write(pem)
            stream.flush()
            os.fsync(stream.fileno())
    except FileExistsError:
        raise WorkspaceError(f"workspace {root} already has a signing key ({path})",
                             "show it with: inspectloop keys show") from None
    except OSError as exc:
        raise WorkspaceError(f"cannot write the signing key {path} ({exc.strerror or exc})",
                             "check that the workspace folder is writable") from exc
    public = public_key_of(key, str(path.with_name(PUBLIC_KEY_FILE)))
    atomic_write_text(path.with_name(PUBLIC_KEY_FILE), public_key_pem(public.raw).decode("ascii"))
    return site_key(root)


def site_key(root: Path) -> SiteKey:
    """The workspace's key pair (public part); WorkspaceError naming the fix when it has none."""
    path = private_key_path(root)
    if not path.exists():
        raise WorkspaceError(f"workspace {root} has no signing key",
                             "create one with: inspectloop keys create (export also makes one when it is missing)")
    public_path = path.with_name(PUBLIC_KEY_FILE)
    public = public_key_of(load_signing_key(root), str(public_path))
    return SiteKey(path, public_path, public)


def load_signing_key(root: Path) -> Ed25519PrivateKey:
    """The workspace's private key; WorkspaceError if it is missing, unreadable, not Ed25519 or open to others."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = private_key_path(root)
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except FileNotFoundError:
        raise WorkspaceError(f"workspace {root} has no signing key", "create one with: inspectloop keys create") from None
    except OSError as exc:
        raise WorkspaceError(f"cannot read the signing key {path} ({exc.strerror or exc})",
                             "run as the user that owns the workspace") from exc
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise WorkspaceError(f"the signing key {path} can be read by other users (mode {stat.S_IMODE(mode):o})",
                             f"restrict it: chmod 600 {path}")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise WorkspaceError(f"the signing key {path} cannot be read ({exc})",
                             "restore it from backup; models signed with a lost key must be re-exported") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise WorkspaceError(f"the signing key {path} is not an Ed25519 key", "restore it from backup")
    return key


def site_signing_key(root: Path) -> Ed25519PrivateKey:
    """The key export signs with: the workspace's, made now (and logged) if it has none yet."""
    if not private_key_path(root).exists():
        made = create_signing_key(root)
        log.warning("workspace %s had no signing key: made one (key %s, public key %s); copy the public key to "
                    "edge devices to verify its models", root, made.public.key_id, made.public_path)
    return load_signing_key(root)


def export_public_key(root: Path, destination: Path) -> Path:
    """Write the workspace's public key (PEM) to ``destination`` (a file, or a folder to put it in)."""
    key = site_key(root)
    target = Path(destination)
    if target.is_dir():
        target = target / f"inspectloop-{key.public.key_id}.pub.pem"
    try:
        atomic_write_text(target, public_key_pem(key.public.raw).decode("ascii"))
    except OSError as exc:
        raise WorkspaceError(f"cannot write {target} ({exc.strerror or exc})", "choose a writable path") from exc
    return target


def workspace_trusted_keys(root: Path) -> tuple[PublicKey, ...]:
    """The keys the workspace's own registry trusts: its signing key's public half (none if it has none), and
    the keys in ``keys/trusted/`` (a site's centre, whose models it receives: ``inspectloop site init``).

    Read from the public key files when there are: checking needs no access to the private key.
    """
    public_path = private_key_path(root).with_name(PUBLIC_KEY_FILE)
    own: tuple[PublicKey, ...] = ()
    if public_path.exists():
        own = (load_public_key(public_path),)
    elif private_key_path(root).exists():
        own = (site_key(root).public,)
    others = sorted((Path(root) / TRUSTED_DIR).glob("*.pub.pem"))
    return own + tuple(load_public_key(path) for path in others)


def model_signature(path: Path, trusted_keys: Sequence[Path | PublicKey] = ()) -> SignatureStatus:
    """A model file's signature status after its hashes are checked (ModelFileError as the runtime raises)."""
    from inspectloop.runtime.model import read_model, verify_origin

    data, _ = read_model(Path(path))
    return verify_origin(data, tuple(trusted_keys), str(path))
