"""People who write through the service: reviewers and admins."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    REVIEWER = "reviewer"
    ADMIN = "admin"


@dataclass(frozen=True)
class User:
    name: str
    role: Role

    def can(self, role: Role) -> bool:
        """True when this user holds ``role`` or a higher one."""
        return self.role == Role.ADMIN or self.role == role


@dataclass(frozen=True)
class UserRecord:
    """A stored user: who, in which role, and whether their token still works."""

    user: User
    token_sha256: str
    created_at: str
    disabled: bool
    token_expires_at: str | None = None  # ISO time; None only before the workspace's schema version 5
    token_revoked_at: str | None = None
