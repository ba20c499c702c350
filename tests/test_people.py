from pathlib import Path

import pytest

from inspectloop.domain import Role
from inspectloop.errors import AuthError
from inspectloop.people import add_user, authenticate, disable_user, list_users, require, reset_token
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


def test_reset_and_disable_stop_the_old_token(tmp_path: Path) -> None:
    with init_workspace(tmp_path / "ws") as ws:
        old = add_user(ws, "bo", "reviewer")
        new = reset_token(ws, "bo")
        with pytest.raises(AuthError):
            authenticate(ws, old)
        assert authenticate(ws, new).name == "bo"
        disable_user(ws, "bo")
        with pytest.raises(AuthError, match="disabled"):
            authenticate(ws, new)
        assert list_users(ws)[0][1] is True


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
