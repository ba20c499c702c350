from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from inspectloop.domain import Role
from inspectloop.errors import AuthError
from inspectloop.people import (
    SESSION_IDLE_SECONDS, add_user, authenticate, disable_user, end_session, list_users, require, revoke_token,
    rotate_token, session_user, start_session, user_events,
)
from inspectloop.store import schema as s
from inspectloop.workspace import init_workspace


def test_tokens_authenticate_and_are_stored_only_as_hashes(tmp_path: Path) -> None:
    with init_workspace(tmp_path / "ws") as ws:
        token = add_user(ws, "ana", "admin")
        assert authenticate(ws, token).role is Role.ADMIN
        with ws.db.engine.connect() as conn:
            stored = conn.execute(s.users.select()).first()
        assert stored is not None and token not in str(tuple(stored))


@pytest.mark.parametrize("token", [None, "", "not-a-token"])
def test_missing_or_unknown_tokens_are_refused(tmp_path: Path, token: str | None) -> None:
    with init_workspace(tmp_path / "ws") as ws:
        add_user(ws, "ana", "reviewer")
        with pytest.raises(AuthError):
            authenticate(ws, token)


def test_rotate_and_disable_stop_the_old_token_and_say_why(tmp_path: Path) -> None:
    with init_workspace(tmp_path / "ws") as ws:
        old = add_user(ws, "bo", "reviewer")
        new = rotate_token(ws, "bo", actor="ana")
        with pytest.raises(AuthError, match="this token of bo was replaced by a new one at"):
            authenticate(ws, old)
        assert authenticate(ws, new).name == "bo"
        disable_user(ws, "bo", actor="ana")
        with pytest.raises(AuthError, match="disabled"):
            authenticate(ws, new)
        assert list_users(ws)[0].disabled is True


def test_revoked_tokens_are_refused_until_rotated_and_every_change_is_logged(tmp_path: Path) -> None:
    with init_workspace(tmp_path / "ws") as ws:
        token = add_user(ws, "bo", "reviewer", actor="ana")
        revoke_token(ws, "bo", actor="ana")
        with pytest.raises(AuthError, match="the token of bo was revoked at"):
            authenticate(ws, token)
        fresh = rotate_token(ws, "bo", actor="di")
        assert authenticate(ws, fresh).name == "bo"
        with pytest.raises(AuthError, match="revoked"):  # the revoked token stays refused, with its reason
            authenticate(ws, token)
        events = user_events(ws, "bo")
        assert [(e["action"], e["actor"]) for e in events] == [("token-rotate", "di"), ("token-revoke", "ana"),
                                                              ("add", "ana")]
        assert all(token not in str(e) and fresh not in str(e) for e in events)
        with pytest.raises(AuthError, match="no user named"):
            revoke_token(ws, "nobody")


def test_tokens_expire(tmp_path: Path) -> None:
    with init_workspace(tmp_path / "ws") as ws:
        token = add_user(ws, "bo", "reviewer", expires_days=1)
        expires = list_users(ws)[0].token_expires_at
        assert expires is not None and datetime.fromisoformat(expires) > datetime.now(UTC) + timedelta(hours=23)
        with ws.db.engine.begin() as conn:
            conn.execute(update(s.users).values(token_expires_at="2020-01-01T00:00:00+00:00"))
        with pytest.raises(AuthError, match="expired at 2020-01-01") as refused:
            authenticate(ws, token)
        assert "token-rotate bo" in str(refused.value.hint)
        with pytest.raises(AuthError, match="between 1 and 3650"):
            add_user(ws, "cy", "reviewer", expires_days=0)


def test_sessions_hold_no_token_and_end_at_logout_expiry_idleness_or_revocation(tmp_path: Path) -> None:
    with init_workspace(tmp_path / "ws") as ws:
        token = add_user(ws, "bo", "reviewer")
        session, user = start_session(ws, token)
        assert session != token and user.name == "bo" and session_user(ws, session).name == "bo"
        with ws.db.engine.connect() as conn:
            stored = conn.execute(s.sessions.select()).one()
        assert session not in str(tuple(stored)) and token not in str(tuple(stored))
        end_session(ws, session)
        with pytest.raises(AuthError, match="session has ended"):
            session_user(ws, session)

        idle, _ = start_session(ws, token)
        long_ago = (datetime.now(UTC) - timedelta(seconds=SESSION_IDLE_SECONDS + 5)).isoformat(timespec="seconds")
        with ws.db.engine.begin() as conn:
            conn.execute(update(s.sessions).values(last_seen_at=long_ago))
        with pytest.raises(AuthError, match="expired"):
            session_user(ws, idle)

        revoked, _ = start_session(ws, token)
        revoke_token(ws, "bo")
        with pytest.raises(AuthError, match="ended"):
            session_user(ws, revoked)
        with pytest.raises(AuthError, match="not logged in"):
            session_user(ws, None)


def test_roles_gate_admin_work(tmp_path: Path) -> None:
    with init_workspace(tmp_path / "ws") as ws:
        reviewer = authenticate(ws, add_user(ws, "cy", "reviewer"))
        admin = authenticate(ws, add_user(ws, "di", "admin"))
        assert require(admin, "reviewer") is admin and require(reviewer, "reviewer") is reviewer
        with pytest.raises(AuthError, match="needs the admin role"):
            require(reviewer, Role.ADMIN)


@pytest.mark.parametrize(("name", "role", "match"), [("ana", "boss", "unknown role"), ("a b", "admin", "invalid user"),
                                                      ("ana", "admin", "already exists")])
def test_bad_users_are_refused(tmp_path: Path, name: str, role: str, match: str) -> None:
    with init_workspace(tmp_path / "ws") as ws:
        add_user(ws, "ana", "reviewer")
        with pytest.raises(AuthError, match=match):
            add_user(ws, name, role)
