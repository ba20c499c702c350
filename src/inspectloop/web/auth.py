"""Who is calling: a bearer token (API clients) or the login cookie (browsers), checked against people.

The app keeps its open workspace in ``app.state.workspace``. Reads of public health endpoints need no
token; every write does. Tokens never reach a log: only the user's name does.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import HTTPException, Request

from inspectloop.domain import Role, User
from inspectloop.errors import AuthError
from inspectloop.people import authenticate, require
from inspectloop.workspace import Workspace

COOKIE = "inspectloop_token"


def workspace_of(request: Request) -> Workspace:
    workspace: Workspace = request.app.state.workspace
    return workspace


def token_of(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return request.cookies.get(COOKIE) or None


def current_user(request: Request) -> User:
    """FastAPI dependency: the authenticated user, or 401 with the reason and the fix."""
    try:
        return authenticate(workspace_of(request), token_of(request))
    except AuthError as exc:
        raise HTTPException(status_code=401, detail=str(exc), headers={"WWW-Authenticate": "Bearer"}) from exc


def requires(role: Role) -> Callable[[Request], User]:
    """FastAPI dependency factory: the user when they hold ``role``; 401 without credentials, 403 without the role."""

    def dependency(request: Request) -> User:
        user = current_user(request)
        try:
            return require(user, role)
        except AuthError as exc:
            raise HTTPException(status_code=403, detail=str(exc)) from exc

    return dependency
