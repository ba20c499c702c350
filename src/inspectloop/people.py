"""People who write through the service: reviewers and admins, each with a secret token.

Only the token's SHA-256 is stored; the token is returned once, when the user is added. Admins may
do everything a reviewer may, and also promote, roll back and override.
"""

from __future__ import annotations

import hashlib
import re
import secrets

from inspectloop.domain import Role, User
from inspectloop.errors import AuthError
from inspectloop.workspace import Workspace

USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def add_user(workspace: Workspace, name: str, role: Role | str) -> str:
    """Add a user; return their new token (shown once, stored only as a hash)."""
    if not USER_NAME.match(name or ""):
        raise AuthError(f"invalid user name {name!r}",
                        "use 1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit")
    role = _role(role)
    token = secrets.token_urlsafe(24)
    if not workspace.db.people.add(name, role, token_digest(token)):
        raise AuthError(f"user {name!r} already exists", "choose another name, or reset their token")
    return token


def reset_token(workspace: Workspace, name: str) -> str:
    """Give a user a new token (the old one stops working at once); return it."""
    token = secrets.token_urlsafe(24)
    _update(workspace, name, token_sha256=token_digest(token), disabled=False)
    return token


def disable_user(workspace: Workspace, name: str) -> None:
    _update(workspace, name, disabled=True)


def list_users(workspace: Workspace) -> list[tuple[User, bool]]:
    """Every user with their disabled flag, by name."""
    return [(record.user, record.disabled) for record in workspace.db.people.list()]


def authenticate(workspace: Workspace, token: str | None) -> User:
    """The user holding ``token``; AuthError when it is missing, unknown or disabled."""
    if not token:
        raise AuthError("no credentials given", "send 'Authorization: Bearer <token>' (tokens come from "
                        "'inspectloop users add')")
    record = workspace.db.people.by_token(token_digest(token))
    if record is None or record.disabled:
        raise AuthError("unknown or disabled token", "ask an admin for a token: inspectloop users add NAME")
    return record.user


def require(user: User, role: Role | str) -> User:
    """``user`` when they hold ``role``; AuthError saying who may, otherwise."""
    role = _role(role)
    if not user.can(role):
        raise AuthError(f"{user.name} is a {user.role.value}; this needs the {role.value} role",
                        "ask an admin to do it")
    return user


def _update(workspace: Workspace, name: str, *, token_sha256: str | None = None, disabled: bool | None = None) -> None:
    if not workspace.db.people.update(name, token_sha256=token_sha256, disabled=disabled):
        raise AuthError(f"no user named {name!r}", "list users with: inspectloop users list")


def _role(role: Role | str) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise AuthError(f"unknown role {role!r}", "use 'reviewer' or 'admin'") from None
