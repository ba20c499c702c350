"""``inspectloop keys ...``: the site key that signs exported models, and checking a model file's signature."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from inspectloop.cli.common import WorkspaceOpt, err, friendly, out

keys_app = typer.Typer(help="The site signing key: exported models are signed with it; edge devices and the "
                            "service trust its public key.", no_args_is_help=True)

TrustedKeyOpt = Annotated[list[Path], typer.Option(
    "--trusted-key", metavar="FILE", show_default=False,
    help="Public key (PEM, from 'inspectloop keys export') a model must be signed by; repeatable "
         "(default: the files in $INSPECTLOOP_TRUSTED_KEYS, separated like PATH). Without any, an unsigned "
         "or unverified model runs with a warning.")]


def trusted_key_paths(given: list[Path]) -> tuple[Path, ...]:
    """``--trusted-key`` files, or those named by ``$INSPECTLOOP_TRUSTED_KEYS`` when none is given."""
    from inspectloop.runtime.signing import trusted_key_paths_from_env

    return tuple(given) or trusted_key_paths_from_env()


def warn_unverified(warning: str | None) -> None:
    """Print a model's signature warning as one line on stderr (nothing when it was verified)."""
    if warning:
        err.print(f"[bold yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)


@keys_app.command("show")
@friendly
def keys_show(ws: WorkspaceOpt) -> None:
    """Show the workspace's signing key: key id, SHA-256 fingerprint and where its files are."""
    from inspectloop.keys import site_key
    from inspectloop.workspace import open_workspace

    open_workspace(ws).close()  # a clear error when ws is not a workspace
    key = site_key(ws)
    out.print(f"key id:      {key.public.key_id}\nfingerprint: SHA256:{key.fingerprint}\n"
              f"private key: {key.private_path} (keep it here; never copy it to devices)\n"
              f"public key:  {key.public_path} (copy to edge devices: inspectloop keys export PATH)",
              highlight=False, soft_wrap=True)


@keys_app.command("create")
@friendly
def keys_create(ws: WorkspaceOpt) -> None:
    """Make a signing key for a workspace created before models were signed (refused if it has one)."""
    from inspectloop.keys import create_signing_key
    from inspectloop.workspace import open_workspace

    open_workspace(ws).close()
    key = create_signing_key(ws)
    out.print(f"signing key {key.public.key_id} made: {key.private_path} (private, mode 0600), "
              f"{key.public_path} (public); models exported from now on are signed with it",
              highlight=False, soft_wrap=True)


@keys_app.command("export")
@friendly
def keys_export(destination: Annotated[Path, typer.Argument(help="File (or folder) to write the public key to.")],
                ws: WorkspaceOpt) -> None:
    """Write the workspace's public key (PEM) for edge devices and services: pass it as --trusted-key."""
    from inspectloop.keys import export_public_key
    from inspectloop.workspace import open_workspace

    open_workspace(ws).close()
    path = export_public_key(ws, destination)
    out.print(f"public key written to {path}; on a device: python -m inspectloop.runtime MODEL IMAGE "
              f"--trusted-key {path.name}", highlight=False, soft_wrap=True)


@keys_app.command("verify")
@friendly
def keys_verify(model: Annotated[Path, typer.Argument(help="An exported .onnx model file.")],
                trusted_key: TrustedKeyOpt = []) -> None:  # noqa: B006 (repeatable)
    """Check a model file's hashes and signature; with trusted keys, exit 1 unless one of them signed it."""
    from inspectloop.keys import model_signature

    status = model_signature(model, trusted_key_paths(trusted_key))
    out.print(f"{model}: {status.describe()}", highlight=False, soft_wrap=True)
