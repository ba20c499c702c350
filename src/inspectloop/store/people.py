"""Users who write through the service, their browser sessions and the account audit trail.

Tokens and session ids are stored as SHA-256 only.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from inspectloop.domain import Role, User, UserRecord
from inspectloop.store import schema as s
from inspectloop.store.base import Repository, now_iso

DEFAULT_TOKEN_DAYS = 90  # an API token's lifetime unless the admin chooses another (users add --expires-days)


class PeopleRepository(Repository):
    """The ``users``, ``sessions`` and ``user_events`` tables."""

    # -- users ---------------------------------------------------------------------------------------
    def add(self, name: str, role: Role, token_sha256: str, expires_at: str) -> bool:
        """Add a user; False when the name (or token) is taken."""
        try:
            with self._connect() as conn:
                conn.execute(insert(s.users).values(name=name, role=role.value, token_sha256=token_sha256,
                                                    created_at=now_iso(), disabled=False,
                                                    token_expires_at=expires_at))
        except IntegrityError:
            return False
        return True

    def update(self, name: str, **values: Any) -> bool:
        """Change a user's columns (token_sha256, disabled, token_expires_at, token_revoked_at); False when
        there is no such user."""
        with self._connect() as conn:
            return bool(conn.execute(update(s.users).where(s.users.c.name == name).values(**values)).rowcount)

    def get(self, name: str) -> UserRecord | None:
        with self._connect() as conn:
            row = conn.execute(select(s.users).where(s.users.c.name == name)).first()
        return _record(row) if row else None

    def list(self) -> list[UserRecord]:
        """Every user, by name."""
        with self._connect() as conn:
            return [_record(row) for row in conn.execute(select(s.users).order_by(s.users.c.name))]

    def by_token(self, token_sha256: str) -> UserRecord | None:
        with self._connect() as conn:
            row = conn.execute(select(s.users).where(s.users.c.token_sha256 == token_sha256)).first()
        return _record(row) if row else None

    # -- the audit trail -----------------------------------------------------------------------------
    def add_event(self, user_name: str, action: str, actor: str, *, token_sha256: str | None = None,
                  detail: str | None = None) -> int:
        """Record an account change; return its id."""
        with self._connect() as conn:
            result = conn.execute(insert(s.user_events).values(user_name=user_name, action=action, actor=actor,
                                                               token_sha256=token_sha256, detail=detail,
                                                               at=now_iso()))
            return int(result.inserted_primary_key[0])

    def events(self, user_name: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The latest account events (of one user, when named), newest first; token digests left out."""
        e = s.user_events
        query = select(e.c.id, e.c.user_name, e.c.action, e.c.actor, e.c.detail, e.c.at)
        if user_name is not None:
            query = query.where(e.c.user_name == user_name)
        with self._connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query.order_by(e.c.id.desc()).limit(limit))]

    def event_ending(self, token_sha256: str) -> dict[str, Any] | None:
        """The event that ended the token with this digest (a rotation or revocation), if any."""
        e = s.user_events
        with self._connect() as conn:
            row = conn.execute(select(e.c.user_name, e.c.action, e.c.at).where(e.c.token_sha256 == token_sha256)
                               .order_by(e.c.id)).first()  # the first: when it ended
        return dict(row._mapping) if row else None

    # -- browser sessions ----------------------------------------------------------------------------
    def add_session(self, id_sha256: str, user_name: str, expires_at: str) -> None:
        now = now_iso()
        with self._connect() as conn:
            conn.execute(insert(s.sessions).values(id_sha256=id_sha256, user_name=user_name, created_at=now,
                                                   expires_at=expires_at, last_seen_at=now))

    def session(self, id_sha256: str) -> dict[str, Any] | None:
        """A session row (user_name, created_at, expires_at, last_seen_at), or None."""
        with self._connect() as conn:
            row = conn.execute(select(s.sessions).where(s.sessions.c.id_sha256 == id_sha256)).first()
        return dict(row._mapping) if row else None

    def touch_session(self, id_sha256: str, at: str) -> None:
        with self._connect() as conn:
            conn.execute(update(s.sessions).where(s.sessions.c.id_sha256 == id_sha256).values(last_seen_at=at))

    def delete_sessions(self, *, id_sha256: str | None = None, user_name: str | None = None,
                        expired_before: str | None = None) -> int:
        """Delete one session, a user's sessions, or those expired before a time; return how many."""
        if id_sha256 is None and user_name is None and expired_before is None:
            raise ValueError("delete_sessions needs a session, a user or a time")
        query = delete(s.sessions)
        if id_sha256 is not None:
            query = query.where(s.sessions.c.id_sha256 == id_sha256)
        if user_name is not None:
            query = query.where(s.sessions.c.user_name == user_name)
        if expired_before is not None:
            query = query.where(s.sessions.c.expires_at < expired_before)
        with self._connect() as conn:
            return int(conn.execute(query).rowcount or 0)


def _record(row: Any) -> UserRecord:
    return UserRecord(user=User(row.name, Role(row.role)), token_sha256=row.token_sha256,
                      created_at=row.created_at, disabled=bool(row.disabled), token_expires_at=row.token_expires_at,
                      token_revoked_at=row.token_revoked_at)
