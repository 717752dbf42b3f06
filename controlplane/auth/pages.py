"""Pages of the auth domain: login and logout (the `cp_token` cookie), the agencies and the audit log."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import Form, Query, Request, Response
from fastapi.responses import RedirectResponse

from controlplane.auth import service
from controlplane.auth.deps import Ctx, DbSession, client_address
from controlplane.auth.models import AuditEntry
from controlplane.auth.roles import Permission
from controlplane.db import transaction
from controlplane.errors import NotAuthenticated, TooManyAttempts
from controlplane.web import kit

AUDIT_SHOWN = 200

router = kit.page_router()


@router.get("/")
def home() -> Response:
    return RedirectResponse(kit.DEFAULT_PAGE, status_code=303)


@router.get("/login")
def login_form(request: Request, next_path: str = Query("", alias="next", max_length=2000)) -> Response:
    return kit.render(request, "login.html", {"next": kit.safe_next(next_path), "username": "", "failed": False})


@router.post("/login")
def login_submit(
    *,
    request: Request,
    username: str = Form("", max_length=200),
    password: str = Form("", max_length=1000),
    next_path: str = Form("", alias="next", max_length=2000),
    ctx: Ctx,
) -> Response:
    target = kit.safe_next(next_path)
    try:
        raw, _token = service.login(ctx.sessions, clock=ctx.clock, username=username.strip(), password=password,
                                    ttl=timedelta(minutes=ctx.settings.token_ttl_minutes),
                                    address=client_address(request, ctx.settings))
    except (NotAuthenticated, TooManyAttempts) as exc:
        kit.form_page(request, "/login?" + urlencode({"next": target}))
        failed = "login.locked" if isinstance(exc, TooManyAttempts) else "login.failed"
        page = kit.render(request, "login.html", {"next": target, "username": username, "failed": failed},
                          status_code=exc.status_code)
        page.headers.update(exc.headers)  # Retry-After of a throttled login
        return page
    response = RedirectResponse(target, status_code=303)
    kit.set_token_cookie(response, ctx, raw)
    return response


@router.post("/logout")
def logout(*, request: Request, csrf: str = Form(""), ctx: Ctx) -> Response:
    with transaction(ctx.sessions) as session:
        principal = kit.authenticate_page(request, session, ctx)
        kit.check_csrf(request, csrf)
        service.revoke_token(session, clock=ctx.clock, actor=principal)
    response = RedirectResponse("/login", status_code=303)
    kit.clear_token_cookie(response, ctx)
    return response


@router.get("/agencies")
def agencies(*, request: Request, principal: kit.PagePrincipal, session: DbSession) -> Response:
    kit.require(principal, Permission.AGENCIES_READ)
    return kit.render(request, "agencies.html", {"agencies": service.list_agencies(session)})


@dataclass(frozen=True)
class Change:
    field: str
    before: str
    after: str


def _changes(entry: AuditEntry) -> list[Change]:
    before, after = entry.before or {}, entry.after or {}

    def show(values: dict[str, Any], key: str) -> str:
        if key not in values:
            return ""
        value = values[key]
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)

    keys = list(dict.fromkeys([*before, *after]))
    return [Change(key, show(before, key), show(after, key)) for key in keys]


@router.get("/audit")
def audit(*, request: Request, principal: kit.PagePrincipal, session: DbSession) -> Response:
    kit.require(principal, Permission.AUDIT_READ)
    entries = [(entry, _changes(entry)) for entry in service.list_audit(session, limit=AUDIT_SHOWN)]
    return kit.render(request, "audit.html", {"entries": entries, "limit": AUDIT_SHOWN})
