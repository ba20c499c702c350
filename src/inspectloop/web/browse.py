"""The dataset browser: a page that draws a dataset version's 2-D map, and the thin JSON behind it.

``GET /browse`` is the page; it reads ``GET /browse/points`` (every point with the fields fixed for the
map, served from a file kept beside it) and ``GET /browse/live`` (the label now, a run's predictions),
``GET /browse/images/{sha256}`` (one image's story) and ``GET /browse/thumbs/{sha256}`` (a small JPEG),
and sends a selection with ``POST /browse/send``. Same rules as the other pages (``web/pages.py``): the
browser's session cookie, and for the write the session's CSRF token in ``X-CSRF-Token`` and a same-site
Origin. Library errors become ``{"error", "fix"}`` with a 4xx status, never a 500. The map itself is
computed beforehand (``inspectloop dataset map``); the page only reads it.
"""

from __future__ import annotations

import hmac
import io
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from inspectloop.datamap import points as datamap
from inspectloop.domain import MAX_FIELD_CHARS
from inspectloop.errors import BrowseError, InspectloopError
from inspectloop.web.auth import page_user, same_site, session_id, workspace_of
from inspectloop.web.pages import SECURITY_HEADERS, SHA256, csrf_token, templates

router = APIRouter(include_in_schema=False)
STATUS_OF_KIND = {"not_found": 404, "no_map": 404, "empty": 422, "bad_field": 422}
THUMB_SIDE = 128


@router.get("/browse")
def browse_page(request: Request, version: str = "latest", run: str = "") -> Response:
    """The map page; its script fetches the points of ``version`` (with ``run``'s predictions)."""
    user = page_user(request)
    if user is None:
        return RedirectResponse("/login?next=/browse", status_code=303)
    workspace = workspace_of(request)
    versions = [v.name for v in workspace.db.datasets.list()]
    runs = [r.id for r in workspace.db.runs.list() if r.status == "finished"]
    chosen = versions[-1] if version == "latest" and versions else version
    context = {"user": user, "csrf": csrf_token(session_id(request) or ""), "versions": versions, "runs": runs,
               "version": chosen, "run": run}
    response = templates.TemplateResponse(request, "browse.html", context)
    response.headers.update(SECURITY_HEADERS)
    return response


@router.get("/browse/points")
async def browse_points(request: Request, version: str = "latest", features: str = "", method: str = "") -> Response:
    """The version's map: digests, coordinates and the fields fixed for it, column by column (a kept file)."""
    if page_user(request) is None:
        return _error(401, "log in again: your session has ended", "open /login")
    try:
        body = await run_in_threadpool(datamap.map_points_json, workspace_of(request), version,
                                       features=features or None, method=method or None)
    except InspectloopError as exc:
        return _library_error(exc)
    return Response(body, media_type="application/json", headers={"Cache-Control": "no-store"})


@router.get("/browse/live")
async def browse_live(request: Request, version: str = "latest", run: str = "", features: str = "",
                      method: str = "") -> Response:
    """The fields that change, in the same point order: the label now, and ``run``'s prediction and correctness."""
    if page_user(request) is None:
        return _error(401, "log in again: your session has ended", "open /login")
    try:
        columns = await run_in_threadpool(datamap.live_columns, workspace_of(request), version, run=run or None,
                                          features=features or None, method=method or None)
    except InspectloopError as exc:
        return _library_error(exc)
    return JSONResponse(columns, headers={"Cache-Control": "no-store"})


@router.get("/browse/images/{sha256}")
def browse_image(request: Request, sha256: str, version: str = "latest", run: str = "") -> Response:
    """One image's story: metadata, annotations, the label now, versions, predictions, review history."""
    if page_user(request) is None:
        return _error(401, "log in again: your session has ended", "open /login")
    try:
        return JSONResponse(datamap.image_detail(workspace_of(request), sha256, version, run=run or None))
    except InspectloopError as exc:
        return _library_error(exc)


@router.get("/browse/thumbs/{sha256}")
def browse_thumb(request: Request, sha256: str) -> Response:
    """A small JPEG of a stored image (at most 128 px a side), for logged-in users; the browser keeps it."""
    from PIL import Image

    from inspectloop.runtime.images import load_image

    if page_user(request) is None:
        return Response("log in to see images", status_code=401, media_type="text/plain")
    workspace = workspace_of(request)
    if not SHA256.match(sha256) or not workspace.blobs.exists(sha256) or workspace.db.images.get(sha256) is None:
        return Response("no such image in this workspace", status_code=404, media_type="text/plain")
    try:
        image = load_image(workspace.blobs.get(sha256), name=sha256[:12], draft=THUMB_SIDE)
    except InspectloopError as exc:
        return Response(f"cannot show this image: {exc}", status_code=422, media_type="text/plain")
    image.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.convert("RGB" if image.mode != "L" else "L").save(buffer, "JPEG", quality=80)
    return Response(buffer.getvalue(), media_type="image/jpeg",
                    headers={"Cache-Control": "private, max-age=31536000, immutable", "X-Content-Type-Options": "nosniff"})


class Selection(BaseModel):
    """Selected images of a version, and the queue to send them to."""

    model_config = ConfigDict(extra="forbid")
    version: str = Field(min_length=1, max_length=MAX_FIELD_CHARS)
    queue: Literal["settle", "review"]
    sha256: list[str] = Field(max_length=datamap.MAX_SELECTION)
    colour_by: str | None = Field(default=None, max_length=MAX_FIELD_CHARS)  # the map's colouring field
    colour_values: list[Annotated[str, Field(max_length=MAX_FIELD_CHARS)]] | None = Field(
        default=None, max_length=datamap.MAX_SELECTION)  # each selected image's value in it


@router.post("/browse/send")
def browse_send(request: Request, selection: Selection) -> Response:
    """Send a selection to the settle queue or the review queue; answer what was queued."""
    user = page_user(request)
    if user is None:
        return _error(401, "log in again: your session has ended", "open /login")
    if not _write_allowed(request):
        return _error(403, "refused: this request did not come from the browse page", "send it from /browse")
    try:
        if selection.queue == "settle":
            sent = datamap.send_to_settle(workspace_of(request), selection.version, selection.sha256, by=user.name,
                                          colour_by=selection.colour_by, colour_values=selection.colour_values)
        else:
            sent = datamap.send_to_review(workspace_of(request), selection.version, selection.sha256, by=user.name)
    except InspectloopError as exc:
        return _library_error(exc)
    return JSONResponse(sent.to_dict())


def _write_allowed(request: Request) -> bool:
    """Same origin (when the browser says) and the session's CSRF token in the header (as the other pages)."""
    session, supplied = session_id(request), request.headers.get("x-csrf-token")
    return bool(same_site(request) and session and supplied and hmac.compare_digest(csrf_token(session), supplied))


def _library_error(exc: InspectloopError) -> JSONResponse:
    status = STATUS_OF_KIND.get(exc.kind, 422) if isinstance(exc, BrowseError) else 422
    return _error(status, exc.message, exc.hint)


def _error(status: int, message: str, fix: str | None) -> JSONResponse:
    body: dict[str, Any] = {"error": message, "fix": fix}
    return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})
