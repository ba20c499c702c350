"""Users who write through the service (tokens stored as SHA-256 only)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from inspectloop.domain import Role, User, UserRecord
from inspectloop.store import schema as s
from inspectloop.store.base import Repository, now_iso


class PeopleRepository(Repository):
    """The ``users`` table."""

    def add(self, name: str, role: Role, token_sha256: str) -> bool:
        """Add a user; False when the name (or token) is taken."""
        try:
            with self._connect() as conn:
                conn.execute(insert(s.users).values(name=name, role=role.value, token_sha256=token_sha256,
                                                    created_at=now_iso(), disabled=False))
        except IntegrityError:
            return False
        return True

    def update(self, name: str, *, token_sha256: str | None = None, disabled: bool | None = None) -> bool:
        """Change a user's token and/or disabled flag; False when there is no such user."""
        values = {k: v for k, v in (("token_sha256", token_sha256), ("disabled", disabled)) if v is not None}
        with self._connect() as conn:
            return bool(conn.execute(update(s.users).where(s.users.c.name == name).values(**values)).rowcount)

    def list(self) -> list[UserRecord]:
        """Every user, by name."""
        with self._connect() as conn:
            return [_record(row) for row in conn.execute(select(s.users).order_by(s.users.c.name))]

    def by_token(self, token_sha256: str) -> UserRecord | None:
        with self._connect() as conn:
            row = conn.execute(select(s.users).where(s.users.c.token_sha256 == token_sha256)).first()
        return _record(row) if row else None


def _record(row: Any) -> UserRecord:
    return UserRecord(user=User(row.name, Role(row.role)), token_sha256=row.token_sha256,
                      created_at=row.created_at, disabled=bool(row.disabled))
