"""People who write through the service: reviewers and admins, each with a secret API token, and the
browser sessions they open by logging in with it.

Only SHA-256 digests of tokens and session ids are stored; a token is returned once, when it is issued.
Tokens expire (``DEFAULT_TOKEN_DAYS`` unless the admin chooses), and can be rotated (a new token, the old
one ends at once) or revoked (no token until the next rotation). Every such change is recorded in the
account audit trail (``user_events``) with who made it. A browser never holds the API token: logging in
exchanges it for a random session id that expires, and that logging out deletes. Admins may do
everything a reviewer may, and also promote, roll back and override.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from inspectloop.domain import Role, User, UserRecord
from inspectloop.errors import AuthError
from inspectloop.store.people import DEFAULT_TOKEN_DAYS
from inspectloop.workspace import Workspace

__all__ = ["DEFAULT_TOKEN_DAYS", "MAX_TOKEN_DAYS", "SESSION_IDLE_SECONDS", "SESSION_SECONDS", "add_user",
           "authenticate", "disable_user", "end_session", "list_users", "require", "revoke_token", "rotate_token",
           "session_user", "start_session", "token_digest", "usable", "user_events"]

log = logging.getLogger(__name__)
USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MAX_TOKEN_DAYS = 3650
SESSION_SECONDS = 12 * 3600  # one shift and then some; the reviewer logs in again next shift
SESSION_IDLE_SECONDS = 2 * 3600  # a browser left open on the line stops working after two idle hours
TOUCH_SECONDS = 60  # last-seen is written at most once a minute: page loads must not queue behind the log writer
ASK_ADMIN = "ask an admin for a new token: inspectloop users token-rotate NAME"


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def add_user(workspace: Workspace, name: str, role: Role | str, *, expires_days: int = DEFAULT_TOKEN_DAYS,
             actor: str = "cli") -> str:
    """Add a user; return their new token (shown once, stored only as a hash), valid ``expires_days`` days."""
    if not USER_NAME.match(name or ""):
        raise AuthError(f"invalid user name {name!r}",
                        "use 1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit")
    role = _role(role)
    token, expires = secrets.token_urlsafe(24), _expiry(expires_days)
    if not workspace.db.people.add(name, role, token_digest(token), expires):
        raise AuthError(f"user {name!r} already exists", "choose another name, or rotate their token")
    _audit(workspace, name, "add", actor, detail=f"role {role.value}, token expires {expires}")
    return token


def rotate_token(workspace: Workspace, name: str, *, expires_days: int = DEFAULT_TOKEN_DAYS,
                 actor: str = "cli") -> str:
    """Give a user a new token and return it. The old token and the user's browser sessions end at once;
    a disabled user is enabled again (a rotation is how an admin restores access)."""
    record = _user(workspace, name)
    token, expires = secrets.token_urlsafe(24), _expiry(expires_days)
    workspace.db.people.update(name, token_sha256=token_digest(token), token_expires_at=expires,
                               token_revoked_at=None, disabled=False)
    workspace.db.people.delete_sessions(user_name=name)
    _audit(workspace, name, "token-rotate", actor, token_sha256=record.token_sha256,
           detail=f"new token expires {expires}")
    return token


def revoke_token(workspace: Workspace, name: str, *, actor: str = "cli") -> None:
    """End a user's token and their browser sessions now; they have none until it is rotated."""
    record = _user(workspace, name)
    workspace.db.people.update(name, token_revoked_at=_iso(_now()))
    workspace.db.people.delete_sessions(user_name=name)
    _audit(workspace, name, "token-revoke", actor, token_sha256=record.token_sha256)


def disable_user(workspace: Workspace, name: str, *, actor: str = "cli") -> None:
    """Disable a user: their token and sessions stop working at once."""
    _user(workspace, name)
    workspace.db.people.update(name, disabled=True)
    workspace.db.people.delete_sessions(user_name=name)
    _audit(workspace, name, "disable", actor)


def list_users(workspace: Workspace) -> list[UserRecord]:
    """Every user (role, disabled flag, token expiry and revocation), by name."""
    return workspace.db.people.list()


def user_events(workspace: Workspace, name: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """The account audit trail (of one user, when named), newest first."""
    return workspace.db.people.events(name, limit)


def authenticate(workspace: Workspace, token: str | None) -> User:
    """The user holding ``token``; AuthError saying why not when it is missing, unknown, rotated, revoked,
    expired or its user disabled."""
    if not token:
        raise AuthError("no credentials given", "send 'Authorization: Bearer <token>' (tokens come from "
                        "'inspectloop users add')")
    digest = token_digest(token)
    record = workspace.db.people.by_token(digest)
    if record is None:
        ended = workspace.db.people.event_ending(digest)
        if ended is not None:
            how = "replaced by a new one" if ended["action"] == "token-rotate" else "revoked"
            raise AuthError(f"this token of {ended['user_name']} was {how} at {ended['at']}",
                            "use the new token, or " + ASK_ADMIN.replace("NAME", ended["user_name"]))
        raise AuthError("unknown token", "check it was copied whole, or ask an admin for a token: "
                        "inspectloop users add NAME")
    return usable(record)


def usable(record: UserRecord, now: datetime | None = None) -> User:
    """``record``'s user when their token still works (not disabled, revoked or expired); AuthError otherwise."""
    name = record.user.name
    if record.disabled:
        raise AuthError(f"user {name} is disabled", ASK_ADMIN.replace("NAME", name))
    if record.token_revoked_at:
        raise AuthError(f"the token of {name} was revoked at {record.token_revoked_at}",
                        ASK_ADMIN.replace("NAME", name))
    if record.token_expires_at and _parse(record.token_expires_at) <= (now or _now()):
        raise AuthError(f"the token of {name} expired at {record.token_expires_at}", ASK_ADMIN.replace("NAME", name))
    return record.user


def require(user: User, role: Role | str) -> User:
    """``user`` when they hold ``role``; AuthError saying who may, otherwise."""
    role = _role(role)
    if not user.can(role):
        raise AuthError(f"{user.name} is a {user.role.value}; this needs the {role.value} role",
                        "ask an admin to do it")
    return user


# -- browser sessions -------------------------------------------------------------------------------

def start_session(workspace: Workspace, token: str | None) -> tuple[str, User]:
    """Log in with an API token: a new random session id (for the cookie) and its user. The session ends
    after ``SESSION_SECONDS``, ``SESSION_IDLE_SECONDS`` idle, at logout, or when the token ends."""
    user = authenticate(workspace, token)
    now = _now()
    workspace.db.people.delete_sessions(expired_before=_iso(now))  # old logins never pile up
    session_id = secrets.token_urlsafe(32)
    workspace.db.people.add_session(token_digest(session_id), user.name, _iso(now + timedelta(seconds=SESSION_SECONDS)))
    return session_id, user


def session_user(workspace: Workspace, session_id: str | None) -> User:
    """The user of a live session; AuthError when it is unknown, ended, expired or idle too long, or when
    their token no longer works."""
    hint = "log in again at /login"
    if not session_id:
        raise AuthError("not logged in", hint)
    digest, now = token_digest(session_id), _now()
    session = workspace.db.people.session(digest)
    if session is None:
        raise AuthError("your session has ended", hint)
    idle_until = _parse(session["last_seen_at"]) + timedelta(seconds=SESSION_IDLE_SECONDS)
    if _parse(session["expires_at"]) <= now or idle_until <= now:
        workspace.db.people.delete_sessions(id_sha256=digest)
        raise AuthError("your session has expired", hint)
    record = workspace.db.people.get(session["user_name"])
    if record is None:
        raise AuthError("your session has ended", hint)
    user = usable(record, now)
    if (now - _parse(session["last_seen_at"])).total_seconds() >= TOUCH_SECONDS:
        workspace.db.people.touch_session(digest, _iso(now))
    return user


def end_session(workspace: Workspace, session_id: str | None) -> None:
    """Log out: the session is deleted, so its cookie no longer works anywhere."""
    if session_id:
        workspace.db.people.delete_sessions(id_sha256=token_digest(session_id))


# -- helpers ----------------------------------------------------------------------------------------

def _user(workspace: Workspace, name: str) -> UserRecord:
    record = workspace.db.people.get(name)
    if record is None:
        raise AuthError(f"no user named {name!r}", "list users with: inspectloop users list")
    return record


def _audit(workspace: Workspace, name: str, action: str, actor: str, *, token_sha256: str | None = None,
           detail: str | None = None) -> None:
    workspace.db.people.add_event(name, action, actor, token_sha256=token_sha256, detail=detail)
    log.info("user %s: %s by %s%s", name, action, actor, f" ({detail})" if detail else "")


def _expiry(days: int) -> str:
    if not 1 <= days <= MAX_TOKEN_DAYS:
        raise AuthError(f"token lifetime {days} days is not between 1 and {MAX_TOKEN_DAYS}",
                        f"e.g. --expires-days {DEFAULT_TOKEN_DAYS}")
    return _iso(_now() + timedelta(days=days))


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")  # the store's format (base.now_iso): text order is time order


def _parse(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _role(role: Role | str) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise AuthError(f"unknown role {role!r}", "use 'reviewer' or 'admin'") from None
