"""The control plane's own errors and the uniform JSON body every 4xx carries.

Body: {"code": "...", "message": "...", "field": "..." | null, "details": [...]?}
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException

from controlplane.http_headers import HEADERS as SECURITY_HEADERS

log = logging.getLogger(__name__)


class AppError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(
        self, message: str, *, field: str | None = None, details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details
        self.headers = headers or {}  # e.g. Retry-After of a 429


class InvalidInput(AppError):
    status_code = 422
    code = "invalid"


class NotAuthenticated(AppError):
    status_code = 401
    code = "not_authenticated"


class Forbidden(AppError):
    status_code = 403
    code = "forbidden"


class TooManyAttempts(AppError):
    status_code = 429
    code = "too_many_attempts"


class Busy(AppError):
    """The server cannot take this work now (shutting down, or the durable engine is not running)."""

    status_code = 503
    code = "busy"


class NotFound(AppError):
    status_code = 404
    code = "not_found"


class Conflict(AppError):
    status_code = 409
    code = "conflict"


def error_body(code: str, message: str, field: str | None = None, details: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message, "field": field}
    if details is not None:
        body["details"] = details
    return body


_STATUS_CODES = {400: "bad_request", 401: "not_authenticated", 403: "forbidden", 404: "not_found",
                 405: "method_not_allowed", 409: "conflict", 413: "too_large", 415: "unsupported_media_type"}


def _field_of(loc: tuple[Any, ...]) -> str:
    # ("body", "meeting", "code") -> "meeting.code"; the first element only says where it came from.
    parts = [str(p) for p in loc[1:]] if len(loc) > 1 else [str(p) for p in loc]
    return ".".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app_error(_request: Request, exc: AppError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else {}
        return JSONResponse(
            error_body(exc.code, exc.message, exc.field, exc.details), status_code=exc.status_code,
            headers=headers | exc.headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {"field": _field_of(tuple(err.get("loc", ()))), "reason": err.get("msg", "invalid")}
            for err in exc.errors()
        ]
        first = details[0] if details else {"field": None, "reason": "invalid request"}
        message = f"{first['field']}: {first['reason']}" if first["field"] else str(first["reason"])
        return JSONResponse(error_body("invalid", message, first["field"], details), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # Starlette names the methods of the first route of the path only
            headers["Allow"] = ", ".join(_methods_of(request))
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code, headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        # Starlette answers this outside every middleware: the security headers are set here.
        return JSONResponse(error_body("internal", "internal server error"), status_code=500,
                            headers={**SECURITY_HEADERS, "Cache-Control": "no-store"})


def _methods_of(request: Request) -> list[str]:
    """Every method some route of the app answers on this request's path (included routers' routes too)."""
    path = request.url.path
    return sorted({method for context in iter_route_contexts(request.app.routes)
                   if getattr(context, "path_regex", None) is not None and context.path_regex.match(path)
                   for method in context.methods or ()})
