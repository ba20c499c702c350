"""Secrets kept out of the workspace config: ``${NAME}`` in a setting is read from the environment.

``inspectloop.yaml`` is copied into backups and read by anyone who can see the workspace, so a
database password or an S3 secret belongs in the service's environment (a systemd ``Environment=``
file, a container secret) instead. The config names the variable, e.g.
``database: postgresql+psycopg://inspect:${INSPECTLOOP_DB_PASSWORD}@db:5432/line3`` or
``blob_options: {secret: ${S3_SECRET}}``; it is resolved each time the workspace is opened and never
written back. Only the braced form is a reference, so a literal ``$`` in a value stays as it is.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from inspectloop.errors import WorkspaceError

REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_USERINFO = re.compile(r"(://[^:/@\s]*:)([^@\s]*)(@)")
_LOOSE_USERINFO = re.compile(r"([^:/@\s]*:)([^@\s]*)(@)")  # a malformed URL: hide whatever precedes an @


def expand(value: str, setting: str, environ: Mapping[str, str] | None = None) -> str:
    """``value`` with each ``${NAME}`` replaced by that environment variable; WorkspaceError naming an unset one."""
    environ = os.environ if environ is None else environ

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            raise WorkspaceError(f"{setting} in inspectloop.yaml refers to the environment variable {name}, "
                                 "which is not set", f"set {name} in the environment of this command or service "
                                 "(e.g. export " + name + "=...), or change the setting")
        return environ[name]

    return REFERENCE.sub(lookup, value)


def expand_options(options: Mapping[str, Any], setting: str) -> dict[str, Any]:
    """A copy of nested options with every string's references expanded (``blob_options``)."""
    def walk(value: Any, path: str) -> Any:
        if isinstance(value, str):
            return expand(value, path)
        if isinstance(value, Mapping):
            return {key: walk(item, f"{path}.{key}") for key, item in value.items()}
        if isinstance(value, list):
            return [walk(item, path) for item in value]
        return value

    return walk(dict(options), setting)


def hide_password(text: str) -> str:
    """``text`` with the password of any ``scheme://user:password@`` in it replaced by ``***`` (for messages
    about a URL that could not be parsed, so nothing better knows where its password is)."""
    hidden, count = _USERINFO.subn(r"\1***\3", text)
    return hidden if count else _LOOSE_USERINFO.sub(r"\1***\3", text)


def has_literal_password(url_password: str | None) -> bool:
    """Whether a URL's password is written out in the config rather than referenced from the environment."""
    return bool(url_password) and REFERENCE.fullmatch(url_password or "") is None
