"""Pages of the VC network: the rooms with their live state (/vc/rooms: counts by state, filters, each row updated
over Server-Sent Events as the probes or operators change it), one room with its history and, for operators, taking
it out of service and back (/vc/rooms/{code}); the sites grouped by region (/vc/sites), the smart-work centres
(/vc/centres) and the bridges with their load (/vc/bridges). Everyone who reads the VC network sees them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Form, Header, Query, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import ValidationError
from sqlalchemy.orm import Session

from controlplane.auth import service as auth_service
from controlplane.auth.deps import Ctx, DbSession
from controlplane.auth.roles import Permission, Principal
from controlplane.context import AppContext
from controlplane.db import transaction
from controlplane.errors import AppError, InvalidInput
from controlplane.http_api import MAX_ID
from controlplane.rooms import reconcile, service
from controlplane.rooms.domain import REGIONS, SITE_KINDS
from controlplane.rooms.models import Room, Site
from controlplane.rooms.router import bridge_read, room_change_stream
from controlplane.rooms.schemas import ServiceIn
from controlplane.web import kit

EVENTS_SHOWN = 50
RECONCILES_SHOWN = 5
STATES = service.ROOM_STATES
CENTRE = "smart_work_centre"
SAVED = ("out", "in")

router = kit.page_router()


@dataclass(frozen=True)
class RoomRow:
    """A room as its row shows it: the state an operator sees (out of service wins over the probes')."""

    room: Room
    state: str


@dataclass(frozen=True)
class Region:
    code: str
    sites: list[tuple[Site, dict[str, int]]]
    counts: dict[str, int]


def _choice(value: str, choices: tuple[str, ...] | list[str] | set[str], field: str) -> str | None:
    """A filter's value: None for "all" (empty), the value when it is one of `choices`, else a 422 page."""
    value = value.strip()
    if not value:
        return None
    if value not in choices:
        raise kit.PageError("error.invalid_request", status_code=422, field=field)
    return value


def _region_order(region: str) -> int:
    return REGIONS.index(region) if region in REGIONS else len(REGIONS)


def _counts(states: list[str]) -> dict[str, int]:
    counts = dict.fromkeys(STATES, 0)
    for state in states:
        counts[state] = counts.get(state, 0) + 1
    return counts


@router.get("/vc/rooms")
def rooms(
    *,
    request: Request,
    site: str = Query("", max_length=63),
    agency: str = Query("", max_length=16),
    region: str = Query("", max_length=32),
    state: str = Query("", max_length=32),
    retired: bool = False,
    principal: kit.PagePrincipal,
    session: DbSession,
    ctx: Ctx,
) -> Response:
    """The rooms with their state and the counts by state; a script follows the changes from the last event the
    page saw (read first, so that nothing between the page and its stream is missed)."""
    kit.require(principal, Permission.ROOMS_READ)
    after = service.last_event_id(session)
    sites = [s for s, _counts in service.list_sites(session)]
    everyone = service.list_rooms(session, retired=retired)
    agencies = {a.code: a for a in auth_service.list_agencies(session)}
    chosen = {
        "site": _choice(site, {s.code for s in sites} | {r.site.code for r in everyone}, "site"),
        "agency": _choice(agency, set(agencies), "agency"),
        "region": _choice(region, REGIONS, "region"),
        "state": None if retired else _choice(state, STATES, "state"),
    }
    # In the regions' usual order (Seoul first), as everywhere on these pages.
    listed = sorted(service.list_rooms(session, retired=retired, **chosen), key=lambda r: (
        _region_order(r.site.region), r.site.code, r.code))
    rows = [RoomRow(r, "retired" if retired else service.room_state(r)) for r in listed]
    with_rooms = {r.agency.code for r in everyone} | ({chosen["agency"]} if chosen["agency"] else set())
    nonce = kit.new_nonce()
    t = kit.texts(request)
    response = kit.render(request, "vc_rooms.html", {
        "rows": rows, "counts": _counts([r.state for r in rows]), "states": STATES, "retired": retired,
        "chosen": {k: v or "" for k, v in chosen.items()},
        "sites": sorted(sites, key=lambda s: (_region_order(s.region), s.code)),
        "agencies": [agencies[c] for c in sorted(with_rooms) if c in agencies], "regions": REGIONS,
        "live": not retired, "after": after, "nonce": nonce, "timezone": ctx.settings.timezone,
        "labels": {s: t(f"rstate.{s}") for s in STATES},
    })
    return kit.allow_script(response, nonce) if not retired else response


@router.get("/vc/rooms/changes/stream")
def room_changes(
    *,
    after: int | None = Query(None, ge=0, le=MAX_ID),
    last_event_id: Annotated[int | None, Header(ge=0, le=MAX_ID)] = None,
    principal: kit.PagePrincipal,
    ctx: Ctx,
) -> Response:
    """The rooms' state and service changes as Server-Sent Events (`room-change`) for the rooms page (cookie login):
    after `after` (the last event the page saw), or Last-Event-ID when the browser reconnects."""
    kit.require(principal, Permission.ROOMS_READ)
    return room_change_stream(ctx, last_event_id if last_event_id is not None else after)


def _room_context(session: Session, principal: Principal, code: str) -> dict[str, Any]:
    room = service.get_room(session, code=code)
    return {
        "room": room, "state": "retired" if room.retired_at is not None else service.room_state(room),
        "events": service.room_events(session, room=room, limit=EVENTS_SHOWN), "events_shown": EVENTS_SHOWN,
        "may_write": principal.has(Permission.ROOMS_WRITE) and room.retired_at is None,
        "rtt_ms": None if room.last_rtt is None else round(room.last_rtt * 1000, 1),
        "form": {"reason": ""}, "form_error": None, "saved": "",
    }


@router.get("/vc/rooms/{code}")
def room_page(
    *,
    request: Request,
    code: str,
    saved: str = Query("", max_length=8),
    principal: kit.PagePrincipal,
    session: DbSession,
) -> Response:
    """One room: where it is, its endpoint and equipment, its state and last probe, why it is out of service, its
    history; the service form for operators."""
    kit.require(principal, Permission.ROOMS_READ)
    context = _room_context(session, principal, code)
    context["saved"] = saved if saved in SAVED else ""
    return kit.render(request, "vc_room.html", context)


def _reason(text: str) -> str:
    """The reason as the API takes it (ServiceIn: 1 to 300 characters, no control characters)."""
    try:
        return ServiceIn(reason=text.strip()).reason
    except ValidationError as exc:
        raise InvalidInput(f"reason: {exc.errors()[0]['msg']}", field="reason") from None


def _set_service(request: Request, ctx: AppContext, code: str, csrf: str, reason: str | None) -> Response:
    """Take the room out of service (a reason) or back (None) in one transaction (audited by the service); a refusal
    (409 retired or already so, 422 a bad reason) shows the room's page again with it."""
    page = f"/vc/rooms/{quote(code)}"
    kit.form_page(request, page)
    try:
        with transaction(ctx.sessions) as session:
            principal = kit.authenticate_page(request, session, ctx)
            kit.check_csrf(request, csrf)
            kit.require(principal, Permission.ROOMS_WRITE)
            try:
                service.set_service(session, clock=ctx.clock, actor=principal, code=code,
                                    reason=None if reason is None else _reason(reason))
            except AppError as exc:
                raise kit.FormRejected(exc) from exc
    except kit.FormRejected as rejected:
        # Rolled back: the page again, read afresh, with the reason and what was typed.
        with transaction(ctx.sessions) as session:
            context = _room_context(session, request.state.viewer.principal, code)
        context["form"] = {"reason": reason or ""}
        context["form_error"] = rejected.error
        return kit.render(request, "vc_room.html", context, status_code=rejected.error.status_code)
    return RedirectResponse(f"{page}?saved={'in' if reason is None else 'out'}", status_code=303)


@router.post("/vc/rooms/{code}/out-of-service")
def room_out_of_service(*, request: Request, code: str, reason: str = Form("", max_length=1000),
                        csrf: str = Form("", max_length=200), ctx: Ctx) -> Response:
    return _set_service(request, ctx, code, csrf, reason)


@router.post("/vc/rooms/{code}/in-service")
def room_in_service(*, request: Request, code: str, csrf: str = Form("", max_length=200), ctx: Ctx) -> Response:
    return _set_service(request, ctx, code, csrf, None)


@router.get("/vc/sites")
def sites(*, request: Request, kind: str = Query("", max_length=32), principal: kit.PagePrincipal,
          session: DbSession) -> Response:
    """The sites grouped by region (in the regions' order), each with its rooms counted by state."""
    kit.require(principal, Permission.ROOMS_READ)
    chosen = _choice(kind, SITE_KINDS, "kind")
    grouped: dict[str, list[tuple[Site, dict[str, int]]]] = {}
    for site, counts in service.list_sites(session, kind=chosen):
        grouped.setdefault(site.region, []).append((site, counts))
    regions = []
    for code in sorted(grouped, key=_region_order):
        totals = dict.fromkeys(STATES, 0)
        for _site, counts in grouped[code]:
            for state, n in counts.items():
                totals[state] = totals.get(state, 0) + n
        regions.append(Region(code, grouped[code], totals))
    return kit.render(request, "vc_sites.html", {"regions": regions, "kinds": SITE_KINDS, "kind": chosen or "",
                                                 "states": STATES, "total": sum(len(r.sites) for r in regions)})


@router.get("/vc/centres")
def centres(*, request: Request, principal: kit.PagePrincipal, session: DbSession) -> Response:
    """The smart-work centres: seats, opening hours and days, and their VC rooms with their state."""
    kit.require(principal, Permission.ROOMS_READ)
    rows = sorted(service.list_sites(session, kind=CENTRE), key=lambda row: (_region_order(row[0].region),
                                                                            row[0].code))
    codes = {site.code for site, _counts in rows}
    rooms_of: dict[str, list[RoomRow]] = {}
    for room in service.list_rooms(session):
        if room.site.code in codes:
            rooms_of.setdefault(room.site.code, []).append(RoomRow(room, service.room_state(room)))
    return kit.render(request, "vc_centres.html", {"centres": [site for site, _counts in rows],
                                                   "rooms_of": rooms_of})


@router.get("/vc/bridges")
def bridges(*, request: Request, queued: str = Query("", max_length=64), principal: kit.PagePrincipal,
            session: DbSession) -> Response:
    """The bridges in service: state, where, load against capacity, never a secret; the latest reconciles with what
    they did, and for operators a button to reconcile now."""
    kit.require(principal, Permission.ROOMS_READ)
    # The API's view of each bridge (which holds no secret, only whether one is set) and its site's name.
    rows = [(bridge_read(b), b.site.name) for b in service.list_bridges(session)]
    return kit.render(request, "vc_bridges.html", {
        "bridges": rows, "reconciles": service.list_reconciles(session, limit=RECONCILES_SHOWN),
        "may_write": principal.has(Permission.ROOMS_WRITE),
        "queued": queued if queued.startswith("vc-reconcile-") else ""})


@router.post("/vc/bridges/reconcile")
def bridges_reconcile(*, request: Request, csrf: str = Form("", max_length=200), ctx: Ctx) -> Response:
    """Reconcile the bridges and their rooms now (operators; durable work, its outcome on the page)."""
    kit.form_page(request, "/vc/bridges")
    with transaction(ctx.sessions) as session:
        principal = kit.authenticate_page(request, session, ctx)
        kit.check_csrf(request, csrf)
        kit.require(principal, Permission.ROOMS_WRITE)
    reconcile_id = reconcile.request(ctx, actor=principal)
    return RedirectResponse(f"/vc/bridges?queued={quote(reconcile_id)}", status_code=303)
