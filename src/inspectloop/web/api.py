"""The inspection API (``/v1``): inspect, QC verdicts, health, promotion and rollback. Thin: parse, call, present.

Bearer tokens only (``web.auth``): a browser's session cookie is no credential here, so no other site's
page can write through a logged-in reviewer's browser."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import UploadFile

from inspectloop.domain import MAX_FIELD_CHARS, Role, User
from inspectloop.errors import RequestError
from inspectloop.serve.service import InspectionService
from inspectloop.web.auth import bearer_token, current_user, requires

router = APIRouter(prefix="/v1")
Reviewer = Annotated[User, Depends(requires(Role.REVIEWER))]
Admin = Annotated[User, Depends(requires(Role.ADMIN))]
MULTIPART_SLACK = 64 * 1024  # form fields and boundaries around the image
MAX_ROW_ID = 2**63 - 1  # the database's integer range: a larger id is a 422, not an overflow in the driver
MAX_REASON_CHARS = 2000


def service_of(request: Request) -> InspectionService:
    service: InspectionService = request.app.state.service
    return service


@router.get("/health")
def health(request: Request) -> dict[str, Any]:
    """Liveness for anyone; the models, classes and cameras served only with a valid bearer token."""
    details = bearer_token(request) is not None
    if details:
        current_user(request)  # a bad or expired token is a 401, not a quiet downgrade to the public answer
    return service_of(request).health(details=details)


@router.post("/inspect")
async def inspect(request: Request, user: Reviewer) -> dict[str, Any]:
    """Multipart: ``image`` file and optional metadata fields; the decision once it is logged."""
    service = service_of(request)
    _refuse_large_body(request, service.config.max_upload_bytes)
    form = await request.form(max_files=2, max_fields=64)
    upload = form.get("image")
    if not isinstance(upload, UploadFile):
        raise RequestError("no image in the request",
                           "send the image as a multipart file field named 'image'", kind="missing")
    data = await upload.read()
    fields = {name: _text(form.get(name)) for name in form if name not in ("image", "request_id")}
    request_id = request.headers.get("x-request-id") or _text(form.get("request_id"))
    future = await run_in_threadpool(service.submit, data, fields, request_id=request_id, source="http")
    logged = await asyncio.wrap_future(future)
    return logged.to_response()


class QcVerdict(BaseModel):
    """A QC inspector's verdict: the class they found on the part of a logged prediction."""

    model_config = ConfigDict(extra="forbid")
    label: str = Field(min_length=1, max_length=MAX_FIELD_CHARS)
    prediction_id: int | None = Field(default=None, ge=1, le=MAX_ROW_ID)
    request_id: str | None = Field(default=None, min_length=1, max_length=128)


@router.post("/qc")
def qc(request: Request, verdict: QcVerdict, user: Reviewer) -> dict[str, Any]:
    """Record a human QC verdict (inspector = the caller) for shadow-vs-human comparison."""
    result = service_of(request).record_qc(label=verdict.label, inspector=user.name,
                                           prediction_id=verdict.prediction_id, request_id=verdict.request_id)
    return {"qc_id": result.id, "prediction_id": result.prediction_id, "label": result.label,
            "production_agrees": result.production_agrees, "shadow_disagreements": result.shadow_disagreements,
            "review_items": result.review_items}


class Promotion(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: str = Field(min_length=1, max_length=MAX_FIELD_CHARS)
    stage: str = Field(default="production", max_length=32)
    reason: str | None = Field(default=None, max_length=MAX_REASON_CHARS)
    override: bool = False


class Rollback(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=MAX_REASON_CHARS)


@router.post("/models/promote")
def promote(request: Request, body: Promotion, user: Admin) -> dict[str, Any]:
    """Admins only: move a version to a stage (logged with the caller's name); the service swaps at once."""
    return service_of(request).promote(body.version, body.stage, actor=user.name, reason=body.reason,
                                       override=body.override)


@router.post("/models/rollback")
def rollback(request: Request, body: Rollback, user: Admin) -> dict[str, Any]:
    """Admins only: put the previous production version back; the service swaps at once."""
    return service_of(request).rollback(actor=user.name, reason=body.reason)


def _refuse_large_body(request: Request, limit: int) -> None:
    """413 from the header, before reading a body that is too large."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit + MULTIPART_SLACK:
        raise RequestError(f"upload is {int(length) / 1048576:.1f} MB, over the {limit / 1048576:.1f} MB limit",
                           "send a smaller image, or start the service with a larger --set max_upload_mb=MB",
                           kind="too_large")


def _text(value: object) -> str | None:
    return value.strip() or None if isinstance(value, str) else None

