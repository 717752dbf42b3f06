"""Security headers on every HTTP response: the API, its docs (/docs, /openapi.json), static files, 404s.

The server-rendered pages set their own (a CSP with a nonce where a page has a script, Referrer-Policy
same-origin ...): a header already on a response is never replaced, so this only fills in what is missing.
Plain ASGI rather than BaseHTTPMiddleware, so streamed responses (Server-Sent Events) pass through untouched.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADERS = {
    "X-Content-Type-Options": "nosniff",
    # No page of this server is to be framed by another site (clickjacking): the old header and the CSP one.
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}
# Static files are the same for everyone and may be cached; everything else may hold a token or personal data.
CACHEABLE_PREFIXES = ("/static/",)
# OAuth2 (RFC 6749, 5.1) asks token responses for Pragma: no-cache as well, for HTTP/1.0 caches.
AUTH_PREFIX = "/api/v1/auth/"


class SecurityHeaders:
    """ASGI middleware adding HEADERS, and Cache-Control: no-store, to responses that lack them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers.setdefault(name, value)
                if not path.startswith(CACHEABLE_PREFIXES):
                    headers.setdefault("Cache-Control", "no-store")
                if path.startswith(AUTH_PREFIX):
                    headers.setdefault("Pragma", "no-cache")
            await send(message)

        await self.app(scope, receive, send_with_headers)
