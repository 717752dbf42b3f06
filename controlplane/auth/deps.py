"""FastAPI dependencies: the request's unit of work, the caller, and a permission check per route."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from controlplane.auth import domain, service
from controlplane.auth.roles import Permission, Principal
from controlplane.config import Settings
from controlplane.context import AppContext
from controlplane.db import transaction
from controlplane.errors import Forbidden, NotAuthenticated


def get_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


def get_session(ctx: AppContext = Depends(get_ctx)) -> Iterator[Session]:
    """One transaction per request: committed when the route returns, rolled back if it raises."""
    with transaction(ctx.sessions) as session:
        yield session


# Commit (or roll back) when the route function returns, before the response is sent: a client that
# reads right after a write, and work started after the response, always see the committed state.
DbSession = Annotated[Session, Depends(get_session, scope="function")]
Ctx = Annotated[AppContext, Depends(get_ctx)]


def client_address(request: Request, settings: Settings) -> str:
    """The address a login comes from: the socket peer, or the configured proxy header's right-most untrusted hop
    when the peer is one of CP_TRUSTED_PROXIES (a header from anyone else is ignored: it is the client's word)."""
    peer = request.client.host if request.client else None
    header = settings.trusted_proxy_header
    forwarded = ",".join(request.headers.getlist(header)) if header else None
    return domain.client_address(peer, forwarded, settings.trusted_proxy_networks)


def bearer_secret(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("x-api-key") or None


def current_principal(request: Request, session: DbSession, ctx: Ctx) -> Principal:
    secret = bearer_secret(request)
    if secret is None:
        raise NotAuthenticated("authentication required: send 'Authorization: Bearer <token or API key>'")
    principal = service.resolve_bearer(session, clock=ctx.clock, secret=secret)
    if principal is None:
        raise NotAuthenticated("the token or API key is invalid, expired or revoked")
    return principal


# What the OpenAPI document declares for the routes that depend on these (controlplane.http_api).
current_principal.openapi_statuses = (401,)  # type: ignore[attr-defined]


def require(permission: Permission) -> Callable[..., Principal]:
    """A dependency that lets the request through only if the caller's role grants `permission`."""

    def _check(principal: Principal = Depends(current_principal)) -> Principal:
        if not principal.has(permission):
            raise Forbidden(f"role '{principal.role}' lacks permission '{permission}'")
        return principal

    _check.__name__ = f"require_{permission.value.replace(':', '_')}"
    _check.openapi_statuses = (401, 403)  # type: ignore[attr-defined]
    return _check


Caller = Annotated[Principal, Depends(current_principal)]
