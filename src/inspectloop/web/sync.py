"""Sync over HTTP (``/v1/sync``): sites upload their bundles and take their down bundle. Thin: the bundles are
kept in the workspace's ``sync-exchange`` folder and applied by ``inspectloop.sites`` as ``site receive`` does.

A bearer token gets a request in; a bundle is applied only when signed by the key the centre trusts for
that site (else 403, and the refusal is in the sync log)."""

from __future__ import annotations

import os
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool

from inspectloop.domain import Role, User
from inspectloop.fileio import temporary_beside
from inspectloop.sites.central import UP, apply_up_bundle, newest_down, publish_down
from inspectloop.sites.http import BUNDLE_HEADER, BUNDLE_NAME, HTTP_EXCHANGE
from inspectloop.sites.peers import check_name
from inspectloop.web.auth import requires, workspace_of

router = APIRouter(prefix="/v1/sync")
Reviewer = Annotated[User, Depends(requires(Role.REVIEWER))]
MAX_BUNDLE_BYTES = 4 * 1024**3  # a month of a busy line with its labelled images fits well below this


@router.post("/{site}/bundles")
async def upload(site: str, request: Request, _user: Reviewer) -> Response:
    """Take one up bundle from ``site``, apply it, and answer with the site's down bundle."""
    site = check_name(site)
    name = request.headers.get(BUNDLE_HEADER, "")
    if not BUNDLE_NAME.match(name):
        raise HTTPException(422, f"bundle name {name!r} is not one inspectloop writes (send the bundle file with "
                                 f"its name in the {BUNDLE_HEADER} header)")
    workspace = workspace_of(request)
    target = workspace.root / HTTP_EXCHANGE / UP / site / name
    descriptor, temporary = temporary_beside(target)
    size = 0
    try:
        with os.fdopen(descriptor, "wb") as handle:
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_BUNDLE_BYTES:
                    raise HTTPException(413, f"bundle larger than {MAX_BUNDLE_BYTES:,} bytes (sync more often, "
                                             "or carry it on a USB stick)")
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    applied = await run_in_threadpool(apply_up_bundle, workspace, target, site)
    if applied.status == "refused":
        target.unlink(missing_ok=True)
        raise HTTPException(403, f"{applied.message} (trust the site's key on the centre: inspectloop site trust "
                                 "NAME KEY_FILE)")
    return await down(site, request, _user)


@router.get("/{site}/down")
async def down(site: str, request: Request, _user: Reviewer) -> Response:
    """The site's newest down bundle (models, criteria, classes, what the centre has of it); 204 when none."""
    site = check_name(site)
    workspace = workspace_of(request)
    peer = workspace.db.sync.peer(name=site)
    if peer is None or peer.role != "site" or not peer.trusted:
        raise HTTPException(403, f"site {site!r} is not trusted here (trust it: inspectloop site trust NAME KEY_FILE)")
    exchange = workspace.root / HTTP_EXCHANGE
    exchange.mkdir(exist_ok=True)
    await run_in_threadpool(publish_down, workspace, exchange, site)
    path = newest_down(exchange, site)
    if path is None:
        return Response(status_code=204)
    return Response(content=path.read_bytes(), media_type="application/zip", headers={BUNDLE_HEADER: path.name})
