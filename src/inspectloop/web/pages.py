"""The review and dashboard pages: server-rendered HTML for reviewers and quality engineers.

Browsers log in by pasting their API token once; the server exchanges it for a random session id
(``people.start_session``) kept in an HttpOnly, SameSite=Strict cookie (``Secure`` under TLS): the token
itself never sits in the browser. Logging out deletes the session, so the old cookie stops working.
Every write also needs the session's CSRF token (a form field or the ``X-CSRF-Token`` header), derived
from the session id, and a same-site Origin, so a page on another site can neither read it nor forge a
decision. GETs write nothing: ``GET /review`` shows the item the reviewer holds, ``POST /review/next``
claims one, and each verdict's POST answers with the next item it claimed (one request per decision). An item
with a detector's boxes is answered with the reviewer's boxes as JSON (``POST /review/items/ID/boxes``).
``web/app.py`` includes ``router`` beside the HTTP API; the app keeps its workspace in ``app.state.workspace``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader

from inspectloop import review, review_boxes
from inspectloop.domain import User
from inspectloop.errors import AuthError, InspectloopError, LabelError
from inspectloop.people import SESSION_SECONDS, end_session, start_session
from inspectloop.web.auth import COOKIE, page_user, same_site, session_id, workspace_of

HERE = Path(__file__).resolve().parent
STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}
IMAGE_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "BMP": "image/bmp", "TIFF": "image/tiff",
               "WEBP": "image/webp", "GIF": "image/gif"}
SHA256 = re.compile(r"^[0-9a-f]{64}$")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                               "script-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
REASON_TEXT = {
    "uncertain": "The model was not sure: its confidence fell inside the review band.",
    "shadow": "The shadow (candidate) model would treat this part differently from production: one passes it and "
              "the other does not, or they stop it as different classes.",
    "qc": "A human QC inspector disagreed with the model.",
    "recalibration": "Sampled from recent production to re-check the model's accuracy.",
    "drift": "Sampled because the camera's images drifted from the training data.",
    "selected": "Picked on the dataset browser for a second look.",
}

router = APIRouter(include_in_schema=False)


def _when(value: str | None) -> str:
    """An ISO timestamp as 'YYYY-MM-DD HH:MM' in UTC, for tables."""
    if not value:
        return ""
    try:
        return datetime.fromisoformat(value).astimezone(UTC).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return value


def _templates() -> Jinja2Templates:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True, trim_blocks=True,
                      lstrip_blocks=True)
    env.filters["when"] = _when
    env.filters["pct"] = lambda share: f"{100 * share:.1f}%"
    return Jinja2Templates(env=env)


templates = _templates()


def csrf_token(session: str) -> str:
    """The session's CSRF token: unguessable without the session id, stable for the session."""
    return hmac.new(session.encode("utf-8"), b"inspectloop-csrf-v1", hashlib.sha256).hexdigest()


def _render(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    response = templates.TemplateResponse(request, name, context, status_code=status_code)
    response.headers.update(SECURITY_HEADERS)
    return response


def _to_login(request: Request) -> RedirectResponse:
    return RedirectResponse(f"/login?next={request.url.path}", status_code=303)


def _write_allowed(request: Request, supplied: str | None) -> bool:
    """A write from our own pages: same origin (when the browser says) and the session's CSRF token."""
    session = session_id(request)
    supplied = request.headers.get("x-csrf-token") or supplied
    return bool(same_site(request) and session and supplied and hmac.compare_digest(csrf_token(session), supplied))


def _csrf(request: Request) -> str:
    return csrf_token(session_id(request) or "")


# -- login -------------------------------------------------------------------------------------------

@router.get("/login")
def login_page(request: Request, next: str = "/review") -> HTMLResponse:
    return _render(request, "login.html", {"next": _safe_next(next), "error": None})


@router.post("/login")
def login(request: Request, token: Annotated[str, Form()] = "",
          next: Annotated[str, Form()] = "/review") -> Response:
    """Check the pasted token; on success start a session (its id in the cookie, never the token) and go on."""
    if not same_site(request):
        return _render(request, "login.html", {"next": "/review", "error": "login from another site refused"}, 403)
    try:
        session, _user = start_session(workspace_of(request), token.strip())
    except AuthError as exc:
        return _render(request, "login.html", {"next": _safe_next(next), "error": str(exc)}, 401)
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(COOKIE, session, max_age=SESSION_SECONDS, path="/", httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")
    return response


@router.post("/logout")
def logout(request: Request, csrf: Annotated[str, Form()] = "") -> Response:
    """End the session (its cookie then fails everywhere) and give back the item this reviewer holds."""
    user = page_user(request)
    if user is None or not _write_allowed(request, csrf):
        return RedirectResponse("/login", status_code=303)
    held = review.held_item(workspace_of(request), user.name)
    if held is not None:
        review.release(workspace_of(request), held.id, user.name)
    end_session(workspace_of(request), session_id(request))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=request.url.scheme == "https")
    return response


def _safe_next(target: str) -> str:
    """Only paths on this site (no //host or scheme): the login form must not become an open redirect."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/review"


# -- review ------------------------------------------------------------------------------------------

@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/review", status_code=303)


@router.get("/review")
def review_page(request: Request) -> Response:
    """The reviewer's page: the item they hold (or a button to take the next), the classes, the keyboard help."""
    user = page_user(request)
    if user is None:
        return _to_login(request)
    held = review.held_item(workspace_of(request), user.name)
    context = {"user": user, "csrf": _csrf(request), "classes": _classes(request),
               **_item_context(request, held, user.name)}
    return _render(request, "review.html", context)


@router.post("/review/next")
def review_next(request: Request, csrf: Annotated[str, Form()] = "") -> Response:
    """Claim the next item for this reviewer (or keep the one they hold), then show it on the review page."""
    user = page_user(request)
    if user is None:
        return RedirectResponse("/login?next=/review", status_code=303)
    if not _write_allowed(request, csrf):
        return Response("refused: this request did not come from the review page", status_code=403,
                        media_type="text/plain")
    review.claim_next(workspace_of(request), user.name)
    return RedirectResponse("/review", status_code=303)


@router.post("/review/items/{item_id}/boxes")
async def review_boxes_submit(request: Request, item_id: int) -> Response:
    """Record the reviewer's boxes on a box-review item (JSON ``{"boxes": [...], "seen": ...}``) and answer with
    the next item's panel. A box that cannot be recorded is refused with 422 and a one-line reason, so the page
    keeps the reviewer's boxes to fix; a stale view (409) answers with the next item and the reason."""
    user = _review_writer(request, None)
    if isinstance(user, Response):
        return user
    try:
        boxes, seen, note = _box_submission(await request.body())
        review_boxes.record_boxes(workspace_of(request), item_id, user.name, boxes, seen=seen, note=note)
    except LabelError as exc:
        return Response(f"{exc.message}: {exc.hint}" if exc.hint else exc.message, status_code=422,
                        media_type="text/plain")
    except InspectloopError as exc:
        return _next_panel(request, user, str(exc), 409)
    return _next_panel(request, user, None, 200)


def _box_submission(body: bytes) -> tuple[list[review_boxes.ReviewedBox], str, str | None]:
    """The reviewer's boxes, view token and note from the page's JSON; LabelError when it is malformed."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise LabelError("the boxes did not arrive as JSON", "reload the page and submit again") from None
    if not isinstance(data, dict) or not isinstance(data.get("boxes"), list) or not isinstance(data.get("seen"), str):
        raise LabelError("the submission needs 'boxes' (a list) and 'seen'", "reload the page and submit again")
    boxes = [review_boxes.ReviewedBox.from_json(box, i) for i, box in enumerate(data["boxes"])]
    note = data.get("note")
    return boxes, data["seen"], note if isinstance(note, str) and note.strip() else None


def _review_writer(request: Request, csrf: str | None) -> User | Response:
    """The reviewer a write from the review page comes from, or the answer that refuses it (401: logged out,
    403: not from our page)."""
    user = page_user(request)
    if user is None:
        return Response("log in again: your session has ended", status_code=401, media_type="text/plain")
    if not _write_allowed(request, csrf):
        return Response("refused: this request did not come from the review page", status_code=403,
                        media_type="text/plain")
    return user


def _next_panel(request: Request, user: User, error: str | None, status: int) -> HTMLResponse:
    """The panel of the item this reviewer claims next (or holds), with ``error`` above it."""
    claimed = review.claim_next(workspace_of(request), user.name)
    context = {"user": user, "csrf": _csrf(request), "classes": _classes(request),
               "error": error, **_item_context(request, claimed, user.name)}
    return _render(request, "_item.html", context, status)


@router.post("/review/items/{item_id}/{action}")
def review_action(request: Request, item_id: int, action: str, label: Annotated[str, Form()] = "",
                  note: Annotated[str, Form()] = "", csrf: Annotated[str, Form()] = "") -> Response:
    """Decide or skip an item; answer with the next item's panel (one round trip per decision)."""
    user = _review_writer(request, csrf)
    if isinstance(user, Response):
        return user
    if action not in ("decision", "skip"):
        return Response(f"unknown action {action!r}", status_code=404, media_type="text/plain")
    error, status = None, 200
    try:
        if action == "decision":
            review.record_verdict(workspace_of(request), item_id, user.name, label, note=note or None)
        else:
            review.skip(workspace_of(request), item_id, user.name, note=note or None)
    except InspectloopError as exc:
        error, status = str(exc), 409
    return _next_panel(request, user, error, status)


@router.get("/images/{sha256}")
def image(request: Request, sha256: str) -> Response:
    """An image from the blob store, for logged-in users only; immutable, so the browser keeps it."""
    if page_user(request) is None:
        return Response("log in to see images", status_code=401, media_type="text/plain")
    workspace = workspace_of(request)
    records = workspace.db.images.get_many([sha256]) if SHA256.match(sha256) else {}
    if sha256 not in records or not workspace.blobs.exists(sha256):
        return Response("no such image in this workspace", status_code=404, media_type="text/plain")
    media_type = IMAGE_TYPES.get(records[sha256].format.upper(), "application/octet-stream")
    return FileResponse(workspace.blobs.path_for(sha256), media_type=media_type,
                        headers={"Cache-Control": "private, max-age=31536000, immutable",
                                 "X-Content-Type-Options": "nosniff"})


@router.get("/review/items/{item_id}/heatmap.png")
def heatmap(request: Request, item_id: int) -> Response:
    """A review item's drawn anomaly heatmap (a transparent PNG laid over its image), for logged-in users."""
    if page_user(request) is None:
        return Response("log in to see images", status_code=401, media_type="text/plain")
    workspace = workspace_of(request)
    item = workspace.db.review.get(item_id)
    digest = None if item is None else review.heatmap_digest(workspace, item)
    if digest is None:
        return Response("this review item has no heatmap", status_code=404, media_type="text/plain")
    return FileResponse(workspace.blobs.path_for(digest), media_type="image/png",
                        headers={"Cache-Control": "private, max-age=31536000, immutable",
                                 "X-Content-Type-Options": "nosniff"})


def _classes(request: Request) -> list[dict[str, Any]]:
    """Class definitions in keyboard order (the good class first), each with its reference images."""
    workspace = workspace_of(request)
    definitions = sorted(workspace.db.labels.classes().values(), key=lambda c: (not c.is_good, c.name))
    return [{"key": str(i) if i <= 9 else "", "name": c.name, "criterion": c.criterion,
             "severity": c.severity.value, "is_good": c.is_good, "references": workspace.db.labels.references(c.name)[:4]}
            for i, c in enumerate(definitions, start=1)]


def _item_context(request: Request, item: review.ReviewItem | None, reviewer: str) -> dict[str, Any]:
    """What the page shows about ``item`` (None: the queue's size, and a button to take the next item)."""
    workspace = workspace_of(request)
    queue = review.backlog(workspace)
    if item is None:
        return {"item": None, "backlog": queue}
    panels = review.score_panels(workspace, item)
    boxes = review_boxes.item_boxes(item)
    record = workspace.db.images.get(item.image_sha256) if boxes is not None else None
    box_view = None if record is None else {
        "boxes": boxes, "width": record.width, "height": record.height,
        "seen": review_boxes.view_token(workspace.db.regions, item, reviewer)}
    suggested_by = review.SUGGESTED_BY.get(item.reason, "production")
    return {"item": item, "backlog": queue, "meta": review.item_metadata(workspace, item), "panels": panels,
            "suggested_by": next((p for p in panels if p.role == suggested_by and p.label == item.suggestion), None),
            "why": REASON_TEXT.get(item.reason, item.reason),
            "confirmable": review.answerable_suggestion(workspace, item),
            "heatmap": review.heatmap_digest(workspace, item) is not None, "box_view": box_view,
            "suspect": review.suspect_camera(workspace, item),
            "details": {k: v for k, v in item.details.items()
                        if isinstance(v, str | int | float | bool) and k != review.HEATMAP_DETAIL}}


# -- settle queue ------------------------------------------------------------------------------------

SETTLE_SHOWN = 50  # cases on the page; the rest wait their turn (inspectloop labels queue lists all)


@router.get("/settle")
def settle_page(request: Request) -> Response:
    """The settle queue: disagreements and suspected errors, each image with every vote, beside the classes."""
    user = page_user(request)
    if user is None:
        return _to_login(request)
    return _render(request, "settle.html", _settle_context(request, user))


@router.post("/settle")
def settle_decision(request: Request, sha256: Annotated[str, Form()] = "", label: Annotated[str, Form()] = "",
                    seen: Annotated[str, Form()] = "", note: Annotated[str, Form()] = "",
                    csrf: Annotated[str, Form()] = "") -> Response:
    """Settle one image's label (admins and the policy's quality engineers); a stale view is refused (409)."""
    from inspectloop.labelquality.settle import may_settle, settle

    user = page_user(request)
    if user is None:
        return Response("log in again: your session has ended", status_code=401, media_type="text/plain")
    if not _write_allowed(request, csrf):
        return Response("refused: this request did not come from the settle page", status_code=403,
                        media_type="text/plain")
    if not may_settle(workspace_of(request), user):
        return Response(f"{user.name} may not settle labels: an admin, or a quality engineer named in the "
                        "workspace's labelling policy, may", status_code=403, media_type="text/plain")
    try:
        settle(workspace_of(request), sha256, label, by=user.name, seen=seen, note=note or None)
    except InspectloopError as exc:
        return _render(request, "settle.html", _settle_context(request, user, str(exc)), status_code=409)
    return RedirectResponse("/settle", status_code=303)


def _settle_context(request: Request, user: User, error: str | None = None) -> dict[str, Any]:
    from inspectloop.labelquality.settle import may_settle, settle_queue

    cases = settle_queue(workspace_of(request))
    return {"user": user, "csrf": _csrf(request), "classes": _classes(request), "cases": cases[:SETTLE_SHOWN],
            "waiting": len(cases), "error": error, "may_settle": may_settle(workspace_of(request), user)}


# -- dashboard ---------------------------------------------------------------------------------------

@router.get("/dashboard")
def dashboard(request: Request) -> Response:
    """Decision rates, the review backlog, shadow discrepancies, reviewer decisions and drift charts."""
    user = page_user(request)
    if user is None:
        return _to_login(request)
    workspace = workspace_of(request)
    context = {
        "user": user, "csrf": _csrf(request),
        "rates_day": review.decision_shares(workspace, since=datetime.now(UTC) - timedelta(hours=24)),
        "rates_all": review.decision_shares(workspace),
        "backlog": review.backlog(workspace), "reasons": review.REASONS,
        "discrepancies": review.recent_discrepancies(workspace, limit=15),
        "decisions": review.recent_decisions(workspace, limit=15),
        "drift_charts": _drift_charts(workspace),
        "camera_checks": _camera_checks(workspace),
        "stations": _stations(workspace),
    }
    return _render(request, "dashboard.html", context)


def _stations(workspace: Any) -> dict[str, Any]:
    """Each station's live counters: decisions, fail-safe answers, publishers, collection."""
    from inspectloop.line.status import station_statuses

    return station_statuses(workspace.root)


def _camera_checks(workspace: Any) -> list[Any]:
    """Each camera's latest health check: a failed one means its predictions are marked suspect."""
    from inspectloop.camera.run import latest_checks

    return latest_checks(workspace)


def _drift_charts(workspace: Any) -> list[Any]:
    """Drift effects per camera over the last 90 days, with alert markers (server-rendered SVG)."""
    from inspectloop.monitor import run as monitoring
    from inspectloop.web.charts import drift_charts

    since = (datetime.now(UTC) - timedelta(days=90)).isoformat()
    return drift_charts(monitoring.drift_history(workspace, since),
                        monitoring.recent_alerts(workspace, since=since, kind="drift", limit=1000))


# -- static files (served here, not from a CDN: plants are air-gapped) ------------------------------

@router.get("/static/{name}")
def static(name: str) -> Response:
    path = HERE / "static" / name
    if "/" in name or name.startswith(".") or path.suffix not in STATIC_TYPES or not path.is_file():
        return Response("not found", status_code=404, media_type="text/plain")
    return FileResponse(path, media_type=STATIC_TYPES[path.suffix], headers={"Cache-Control": "no-cache"})
