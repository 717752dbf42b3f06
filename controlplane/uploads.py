"""Request bodies bounded before they are read.

An ASGI middleware refuses a body over its limit with 413 `too_large`: before a byte of it is read when its
Content-Length says so, else as soon as the bytes received so far pass the limit (a chunked body is counted as it
streams), so no route, form parser or spool file ever holds more than the limit. Routes that take a file (an
UploadFile parameter) get the upload limit, with room for the multipart framing around the file; every other request
the general one. (FastAPI's own `max_body_size` refuses too, but with no field, and not before routing.)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, UploadFile, params
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from controlplane.config import Settings
from controlplane.errors import AppError, error_body

MiB = 1024 * 1024
# Multipart framing around an uploaded file (boundaries, part headers, the file name): a file of exactly the upload
# limit still passes, and the route's own check on the file (TooLarge) says how large it may be.
MULTIPART_SLACK = 64 * 1024


class TooLarge(AppError):
    status_code = 413
    code = "too_large"


class BodyTooLarge(HTTPException):
    """Raised from receive() once a body passes its limit. An HTTPException, so FastAPI's body parsing lets it
    through unchanged (it turns other exceptions into 400) and no handler logs it as an error."""

    def __init__(self) -> None:
        super().__init__(status_code=413, detail="request body too large")


def size_text(size: int) -> str:
    """1 MiB, 10 MiB, 1.5 MiB, 512 KiB, 100 bytes."""
    if size >= MiB:
        return f"{size // MiB} MiB" if size % MiB == 0 else f"{size / MiB:.1f} MiB"
    return f"{size // 1024} KiB" if size % 1024 == 0 else f"{size} bytes"


def takes_file(route: object) -> bool:
    """Whether the route's body is multipart with a file in it (FastAPI gives such a body a File field)."""
    body = route.body_field if isinstance(route, APIRoute) else None
    return body is not None and isinstance(body.field_info, params.File)


def declared_length(scope: Scope) -> int | None:
    """The request's Content-Length, when it has a valid one."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


class BodyLimit:
    """ASGI middleware: at most `limit` bytes of body per request, `upload_limit` (plus MULTIPART_SLACK) for a route
    that takes a file.

    The limit is chosen when the app first asks for the body: routing is done by then and the route is in the scope
    (FastAPI reads a body only once it knows the endpoint), so no route table is walked here.
    """

    def __init__(self, app: ASGIApp, *, limit: int, upload_limit: int) -> None:
        self.app, self.limit, self.upload_limit = app, limit, upload_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit: int | None = None  # chosen at the first read of the body
        received = 0
        upload = exceeded = replaced = started = False

        async def counting_receive() -> Message:
            nonlocal limit, upload, received, exceeded
            if limit is None:
                upload = takes_file(scope.get("route"))
                limit = self.upload_limit + MULTIPART_SLACK if upload else self.limit
                declared = declared_length(scope)
                exceeded = declared is not None and declared > limit  # refused before a byte is read
            if exceeded:
                raise BodyTooLarge()
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise BodyTooLarge()
            return message

        async def guarded_send(message: Message) -> None:
            # Whatever the app answers once the body went over (its error handler's 413, a form parser's 400,
            # anything) becomes the one refusal, as long as nothing was sent yet.
            nonlocal replaced, started
            if exceeded and not started:
                if not replaced:
                    replaced = True
                    await self._refusal(upload)(scope, receive, send)
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not exceeded:
                raise
            # Over the limit, whatever failed failed for want of the rest of the body: the refusal says so.
        if exceeded and not started and not replaced:
            await self._refusal(upload)(scope, receive, send)

    def _refusal(self, upload: bool) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
        if upload:
            body = error_body(TooLarge.code, f"the file is larger than {size_text(self.upload_limit)}", "file")
        else:
            body = error_body(TooLarge.code, f"the request body is larger than {size_text(self.limit)}")
        # Connection: close, so that the server stops reading the rest of the body instead of draining it.
        return JSONResponse(body, status_code=TooLarge.status_code, headers={"Connection": "close"})


async def read_upload(file: UploadFile, limit: int) -> bytes:
    """The uploaded file's bytes; TooLarge (413, field `file`) beyond `limit`. The body limit has already bounded
    what was received; this is the exact limit on the file itself, without its multipart framing."""
    content = await file.read(limit + 1)
    if len(content) > limit:
        raise TooLarge(f"the file is larger than {size_text(limit)}", field="file")
    return content


def install_body_limits(app: FastAPI, settings: Settings) -> None:
    """Bound every request body of the app: CP_MAX_UPLOAD_BYTES for routes that take a file, CP_MAX_REQUEST_BYTES
    for the others."""
    app.add_middleware(BodyLimit, limit=settings.max_request_bytes, upload_limit=settings.max_upload_bytes)
