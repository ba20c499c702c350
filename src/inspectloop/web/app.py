"""The inspection service as a FastAPI app: ``create_app(workspace_root, ...)``.

``app.state.workspace`` holds the open workspace (``web.auth`` reads it), ``app.state.service`` the
inspection service. Errors from the library become ``{"error": ..., "fix": ...}`` with a 4xx status.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from inspectloop.errors import AuthError, InspectloopError, RegistryError, RequestError, ServiceError
from inspectloop.serve.service import InspectionService, ServiceConfig
from inspectloop.web import api, browse, pages, sync
from inspectloop.workspace import open_workspace

STATUS_OF_KIND = {"missing": 422, "empty": 422, "corrupt": 422, "unsupported": 415, "too_large": 413,
                  "unknown_camera": 422, "unknown_class": 422, "bad_field": 422, "not_found": 404,
                  "conflict": 409}
FIX_OF_STATUS = {401: "send 'Authorization: Bearer <token>' (tokens come from 'inspectloop users add')",
                 403: "ask an admin to do it", 404: "check the address: the API lives under /v1"}
_SECRET = re.compile(r"(?i)(bearer\s+|token=|authorization:\s*)[^\s\"'&,;]+")


class RedactSecrets(logging.Filter):
    """Blank anything that looks like a bearer token or token parameter in a log record.

    The message and each argument are redacted in place, keeping the record's shape: uvicorn's access
    formatter unpacks ``record.args`` as a tuple, so collapsing them into the message broke its log line.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(arg) if isinstance(arg, str) else arg for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: redact(arg) if isinstance(arg, str) else arg for key, arg in record.args.items()}
        return True


def redact(text: str) -> str:
    """``text`` with bearer tokens, ``token=`` values and Authorization headers blanked."""
    return _SECRET.sub(r"\1[redacted]", text)


def create_app(workspace_root: Path, *, config: ServiceConfig | None = None, watch: Path | None = None,
               watch_seconds: float = 0.5) -> FastAPI:
    """The service app for the workspace at ``workspace_root``; models load now (ServiceError if none)."""
    workspace = open_workspace(Path(workspace_root))
    try:
        service = InspectionService(workspace, config)
    except BaseException:
        workspace.close()
        raise
    app = FastAPI(title="inspectloop inspection service", lifespan=_lifespan)
    app.state.workspace, app.state.service = workspace, service
    app.state.watch = (watch, watch_seconds)
    app.include_router(api.router)
    app.include_router(pages.router)
    app.include_router(browse.router)
    app.include_router(sync.router)
    _add_error_handlers(app)
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    service: InspectionService = app.state.service
    service.start()
    watcher = None
    folder, seconds = app.state.watch
    if folder is not None:
        from inspectloop.serve.watch import FolderWatcher

        watcher = FolderWatcher(service, folder, poll_seconds=seconds)
        watcher.start()
    try:
        yield
    finally:
        if watcher is not None:
            watcher.stop()
        service.stop()
        app.state.workspace.close()


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(InspectloopError)
    async def library_error(_request: Request, exc: InspectloopError) -> JSONResponse:
        return error_response(_status(exc), exc.message, exc.hint)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Any:
        if not request.url.path.startswith("/v1/"):
            return await request_validation_exception_handler(request, exc)
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        if first.get("type") == "json_invalid":  # its location is a character offset, not a field
            return error_response(422, "the request body is not valid JSON",
                                  "send a JSON object, e.g. {\"label\": \"scratch\", \"prediction_id\": 12}")
        where = ".".join(str(part) for part in first["loc"] if part != "body") or "body"
        return error_response(422, f"{where}: {first['msg']}", "see the API fields in the README ('On the line')")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Any:
        if not request.url.path.startswith("/v1/"):
            return await http_exception_handler(request, exc)
        message, _, hint = str(exc.detail).partition(" (")
        return error_response(exc.status_code, message, hint.removesuffix(")") or FIX_OF_STATUS.get(exc.status_code),
                              headers=exc.headers)


def error_response(status: int, message: str, fix: str | None, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "fix": fix}, status_code=status, headers=headers)


def _status(exc: InspectloopError) -> int:
    if isinstance(exc, RequestError):
        return STATUS_OF_KIND.get(exc.kind, 422)
    if isinstance(exc, AuthError):
        return 403
    if isinstance(exc, RegistryError):
        return 409
    if isinstance(exc, ServiceError):
        return 503
    return 400
