"""Pages of the migration inventory (/systems, /systems/{code}, /adoption) and of waves (/waves, /waves/{id}).

Registered by controlplane.web.router.mount_web; the same cookie login, error pages and headers as the other pages.
"""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Depends, Form, Query, Request, Response
from fastapi.responses import RedirectResponse

from controlplane.auth.deps import Ctx, DbSession
from controlplane.auth.roles import Permission, Principal
from controlplane.db import transaction
from controlplane.errors import InvalidInput
from controlplane.migration import flows as migration_flows
from controlplane.migration import inventory
from controlplane.migration import service as migration_service
from controlplane.migration.domain import SystemStatus
from controlplane.migration.execution import Control, State
from controlplane.migration.router import wave_event_stream
from controlplane.web.router import (
    SECURITY_HEADERS,
    PageRoute,
    _check_csrf,
    _render,
    _require,
    authenticate_page,
    page_principal,
)

router = APIRouter(route_class=PageRoute, include_in_schema=False)


def _system_status(text: str) -> SystemStatus | None:
    text = text.strip()
    if not text:
        return None
    try:
        return SystemStatus(text)
    except ValueError:
        raise InvalidInput(f"unknown system status '{text}'; one of {', '.join(SystemStatus)}",
                           field="status") from None


@router.get("/systems")
def systems(
    *,
    request: Request,
    agency: str = Query("", max_length=16),
    status: str = Query("", max_length=16),
    principal: Principal = Depends(page_principal),
    session: DbSession,
) -> Response:
    """The systems the viewer may see (a ministry: its own agency's), with their unknown components."""
    _require(principal, Permission.MIGRATION_READ)
    chosen = _system_status(status)
    rows = [inventory.system_read(row) for row in inventory.list_systems(
        session, viewer=principal, agency=agency.strip() or None, status=chosen)]
    agencies = sorted({row.agency.code for row in inventory.list_systems(session, viewer=principal)})
    return _render(request, "systems.html", {
        "systems": rows, "agencies": agencies, "agency": agency.strip(), "status": chosen.value if chosen else "",
        "statuses": [s.value for s in SystemStatus]})


@router.get("/systems/{code}")
def system_page(
    *, request: Request, code: str, principal: Principal = Depends(page_principal), session: DbSession
) -> Response:
    """One system: its facts and each component's catalogue entry and open-source target, or its flag."""
    _require(principal, Permission.MIGRATION_READ)
    detail = inventory.system_detail(inventory.get_system(session, viewer=principal, code=code))
    return _render(request, "system_detail.html", {"system": detail})


@router.get("/adoption")
def adoption(*, request: Request, principal: Principal = Depends(page_principal), session: DbSession) -> Response:
    """The open-source share of each agency's components, now and after its legacy systems migrate."""
    _require(principal, Permission.MIGRATION_READ)
    return _render(request, "adoption.html", {"report": inventory.adoption_report(session, viewer=principal)})


# --- waves: their migrations' progress, followed live; approvals ----------------------------------------------


@router.get("/waves")
def waves(*, request: Request, principal: Principal = Depends(page_principal), session: DbSession) -> Response:
    """The waves the viewer may see, newest first, with their migrations' states."""
    _require(principal, Permission.MIGRATION_READ)
    rows = [migration_service.wave_read(session, w, viewer=principal, detail=False)
            for w in migration_service.list_waves(session, viewer=principal)]
    return _render(request, "waves.html", {"waves": rows})


@router.get("/waves/{wave_id}")
def wave_page(*, request: Request, wave_id: int, principal: Principal = Depends(page_principal),
              session: DbSession) -> Response:
    """One wave: a progress bar per system, its step runs with their timings and errors, approval buttons for
    the systems at the gate; while anything runs, a script reloads the page on each of the wave's events."""
    _require(principal, Permission.MIGRATION_READ)
    wave = migration_service.wave_read(session, migration_service.get_wave(session, viewer=principal,
                                                                           wave_id=wave_id), viewer=principal)
    active = wave.state in (State.PENDING.value, State.RUNNING.value)
    nonce = secrets.token_urlsafe(16)
    events = migration_service.events(session, viewer=principal,
                                      wave=migration_service.get_wave(session, viewer=principal, wave_id=wave_id))
    response = _render(request, "wave_detail.html", {
        "wave": wave, "events": events[-50:], "last_event": events[-1].id if events else 0,
        "may_approve": principal.has(Permission.MIGRATION_APPROVE), "live": active, "nonce": nonce})
    if active:
        response.headers["Content-Security-Policy"] = SECURITY_HEADERS["Content-Security-Policy"].replace(
            "script-src 'none'", f"script-src 'nonce-{nonce}'")
    return response


@router.get("/waves/{wave_id}/events/stream")
def wave_events_stream(*, request: Request, wave_id: int, after: int = Query(0, ge=0),
                       principal: Principal = Depends(page_principal), session: DbSession, ctx: Ctx) -> Response:
    """The wave's events as Server-Sent Events for its page (cookie login)."""
    _require(principal, Permission.MIGRATION_READ)
    migration_service.get_wave(session, viewer=principal, wave_id=wave_id)
    return wave_event_stream(ctx, request, principal, wave_id, after)


@router.post("/waves/{wave_id}/approve")
def wave_approve(*, request: Request, wave_id: int, migration: str = Form(..., max_length=64),
                 csrf: str = Form("", max_length=200), ctx: Ctx) -> Response:
    """Approve one system's cutover from the wave page."""
    request.state.page_path = f"/waves/{wave_id}"
    with transaction(ctx.sessions) as session:
        principal = authenticate_page(request, session, ctx)
        _check_csrf(request, csrf)
        _require(principal, Permission.MIGRATION_APPROVE)
        target = migration_service.get_migration(session, viewer=principal, migration_id=migration)
        migration_service.request_control(session, clock=ctx.clock, actor=principal, migration=target,
                                          control=Control.APPROVE)
        attempt = (target.id, str(target.workflow_id), target.agency.code)
    migration_flows.submit(ctx, [attempt])
    return RedirectResponse(f"/waves/{wave_id}", status_code=303)
