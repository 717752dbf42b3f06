"""Pages of the waves domain: the waves (/waves) and one wave with its migrations' progress, their step runs (each
linking to its playbook jobs), its events followed live, and the cutover approvals (/waves/{id})."""

from __future__ import annotations

from fastapi import Form, Query, Request, Response
from fastapi.responses import RedirectResponse

from controlplane.auth.deps import Ctx, DbSession
from controlplane.auth.roles import Permission
from controlplane.db import transaction
from controlplane.waves import flows, service
from controlplane.waves.domain import Control, State
from controlplane.waves.router import wave_event_stream
from controlplane.web import kit

EVENTS_SHOWN = 50

router = kit.page_router()


@router.get("/waves")
def waves(*, request: Request, principal: kit.PagePrincipal, session: DbSession) -> Response:
    """The waves the viewer may see, newest first, with their migrations' states."""
    kit.require(principal, Permission.MIGRATION_READ)
    rows = [service.wave_read(session, w, viewer=principal, detail=False)
            for w in service.list_waves(session, viewer=principal)]
    return kit.render(request, "waves.html", {"waves": rows})


@router.get("/waves/{wave_id}")
def wave_page(*, request: Request, wave_id: int, principal: kit.PagePrincipal, session: DbSession) -> Response:
    """One wave: a progress bar per system, its step runs with their timings, jobs and errors, approval buttons for
    the systems at the gate; while anything runs, a script reloads the page on each of the wave's events."""
    kit.require(principal, Permission.MIGRATION_READ)
    row = service.get_wave(session, viewer=principal, wave_id=wave_id)
    wave = service.wave_read(session, row, viewer=principal)
    active = wave.state in (State.PENDING.value, State.RUNNING.value)
    nonce = kit.new_nonce()
    events = service.events(session, viewer=principal, wave=row)
    response = kit.render(request, "wave_detail.html", {
        "wave": wave, "events": events[-EVENTS_SHOWN:], "last_event": events[-1].id if events else 0,
        "may_approve": principal.has(Permission.MIGRATION_APPROVE),
        "may_read_jobs": principal.has(Permission.JOBS_READ), "live": active, "nonce": nonce})
    return kit.allow_script(response, nonce) if active else response


@router.get("/waves/{wave_id}/events/stream")
def wave_events_stream(*, wave_id: int, after: int = Query(0, ge=0), principal: kit.PagePrincipal,
                       session: DbSession, ctx: Ctx) -> Response:
    """The wave's events as Server-Sent Events for its page (cookie login)."""
    kit.require(principal, Permission.MIGRATION_READ)
    service.get_wave(session, viewer=principal, wave_id=wave_id)
    return wave_event_stream(ctx, principal, wave_id, after)


@router.post("/waves/{wave_id}/approve")
def wave_approve(*, request: Request, wave_id: int, migration: str = Form(..., max_length=64),
                 force_window: str = Form("", max_length=300), csrf: str = Form("", max_length=200),
                 ctx: Ctx) -> Response:
    """Approve one system's cutover (with a reason: outside its maintenance window), or its retire before the soak
    ends, from the wave page."""
    kit.form_page(request, f"/waves/{wave_id}")
    with transaction(ctx.sessions) as session:
        principal = kit.authenticate_page(request, session, ctx)
        kit.check_csrf(request, csrf)
        kit.require(principal, Permission.MIGRATION_APPROVE)
        target = service.get_migration(session, viewer=principal, migration_id=migration)
        service.request_control(session, clock=ctx.clock, actor=principal, migration=target,
                                control=Control.APPROVE, force_window=force_window.strip() or None)
        attempt = (target.id, str(target.workflow_id), target.agency.code)
    flows.submit(ctx, [attempt])
    return RedirectResponse(f"/waves/{wave_id}", status_code=303)
