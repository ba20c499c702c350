"""Who is calling: API clients send a bearer token, browsers a session cookie; each checked against people.

The two never mix. The ``/v1`` API accepts bearer tokens only, so a page on another site cannot make
a browser write through it with its cookie; the pages accept the session cookie only, and every page
write also needs the session's CSRF token and a same-site Origin (``web/pages.py``). The cookie holds
a random session id, never the API token. The app keeps its open workspace in ``app.state.workspace``.
Tokens never reach a log: only the user's name does.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from fastapi import HTTPException, Request

from inspectloop.domain import Role, User
from inspectloop.errors import AuthError
from inspectloop.people import authenticate, require, session_user
from inspectloop.workspace import Workspace

COOKIE = "inspectloop_session"


def workspace_of(request: Request) -> Workspace:
    workspace: Workspace = request.app.state.workspace
    return workspace


def bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer`` header (cookies are not credentials for the API)."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return None


def session_id(request: Request) -> str | None:
    """The session id of the login cookie, if any."""
    return request.cookies.get(COOKIE) or None


def same_site(request: Request) -> bool:
    """False when the browser says the request comes from a page on another site (``Origin``)."""
    origin = request.headers.get("origin")
    return not origin or urlsplit(origin).netloc == request.headers.get("host")


def current_user(request: Request) -> User:
    """FastAPI dependency: the bearer token's user, or 401 with the reason and the fix."""
    try:
        return authenticate(workspace_of(request), bearer_token(request))
    except AuthError as exc:
        raise HTTPException(status_code=401, detail=str(exc), headers={"WWW-Authenticate": "Bearer"}) from exc


def requires(role: Role) -> Callable[[Request], User]:
    """FastAPI dependency factory for API writes: the user when they hold ``role``; 401 without a valid
    bearer token, 403 without the role or from another site's page."""

    def dependency(request: Request) -> User:
        if not same_site(request):
            raise HTTPException(status_code=403, detail="refused: the request came from a page on another site "
                                "(call the API from a client with a bearer token, not from a web page)")
        user = current_user(request)
        try:
            return require(user, role)
        except AuthError as exc:
            raise HTTPException(status_code=403, detail=str(exc)) from exc

    return dependency


def page_user(request: Request) -> User | None:
    """The user of the browser's session, or None (pages then send the browser to /login)."""
    try:
        return session_user(workspace_of(request), session_id(request))
    except AuthError:
        return None
