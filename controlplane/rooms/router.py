"""HTTP routes of the VC network: rooms with their live state, their history, sites and smart-work centres,
bridges, the catalogue's sync and taking rooms out of service. Everyone reads; operators write."""

from __future__ import annotations

import time
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Response
from fastapi.responses import StreamingResponse

from controlplane.auth.deps import Ctx, DbSession, require
from controlplane.auth.roles import Permission, Principal
from controlplane.context import AppContext
from controlplane.db import transaction
from controlplane.event_stream import BATCH, event_stream
from controlplane.http_api import MAX_ID, After, errors
from controlplane.rooms import deploy, reconcile, service
from controlplane.rooms.domain import REGIONS, SITE_KINDS
from controlplane.rooms.models import Bridge, Reconcile, Room, RoomEvent, Site
from controlplane.rooms.schemas import (
    BridgeEndpointIn,
    BridgeRead,
    DeployAccepted,
    DeployIn,
    OutOfService,
    ReconcileRead,
    RoomChange,
    RoomDetail,
    RoomEventRead,
    RoomRead,
    ServiceIn,
    SiteRead,
    SyncResult,
)
from controlplane.secrets import secret_box

RoomsReader = Annotated[Principal, Depends(require(Permission.ROOMS_READ))]
RoomsWriter = Annotated[Principal, Depends(require(Permission.ROOMS_WRITE))]
Code = Annotated[str, Query(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")]
Region = Literal[REGIONS]  # type: ignore[valid-type]
SiteKind = Literal[SITE_KINDS]  # type: ignore[valid-type]
RoomState = Literal["up", "down", "unknown", "out_of_service"]

router = APIRouter(prefix="/api/v1/vc", tags=["video-conference network"])


def room_read(room: Room) -> RoomRead:
    return RoomRead(
        code=room.code, name=room.name, site=room.site.code, site_name=room.site.name, region=room.site.region,
        agency=room.agency.code, building=room.building, floor=room.floor, capacity=room.capacity,
        equipment=list(room.equipment), sip_uri=room.sip_uri, address=room.address, port=room.port,
        protocol=room.protocol, owner=room.owner, needs_bridge_room=room.needs_bridge_room,
        state=service.room_state(room), probe_state=room.state, state_since=room.state_since,
        last_probe_at=room.last_probe_at, last_rtt_ms=None if room.last_rtt is None else round(room.last_rtt * 1000, 3),
        last_result=room.last_result, retired_at=room.retired_at,
        out_of_service=None if room.out_of_service is None else OutOfService(
            reason=room.out_of_service, by=room.out_of_service_by, since=room.out_of_service_at))


def event_read(event: RoomEvent) -> RoomEventRead:
    return RoomEventRead(at=event.at, kind=event.kind, before=event.before, after=event.after, detail=event.detail,
                         actor=event.actor)


def site_read(site: Site, counts: dict[str, int]) -> SiteRead:
    return SiteRead(code=site.code, name=site.name, kind=site.kind, region=site.region, address=site.address,
                    seats=site.seats, opening_hours=site.opening_hours, opening_days=list(site.opening_days),
                    rooms=counts)


def bridge_read(bridge: Bridge) -> BridgeRead:
    return BridgeRead(code=bridge.code, site=bridge.site.code, server=bridge.server, address=bridge.address,
                      state=bridge.state, state_since=bridge.state_since, rooms_in_use=bridge.rooms_in_use,
                      rooms_capacity=bridge.rooms_capacity, participants=bridge.participants,
                      participants_capacity=bridge.participants_capacity, last_seen_at=bridge.last_seen_at,
                      last_error=bridge.last_error, admin_secret_set=bridge.admin_secret_sealed is not None)


@router.get("/rooms", response_model=list[RoomRead])
def list_rooms(*, _: RoomsReader, session: DbSession, site: Code | None = None,
               agency: Annotated[str | None, Query(pattern=r"^[A-Z][A-Z0-9_]{1,15}$")] = None,
               region: Region | None = None, state: RoomState | None = None, retired: bool = False) -> list[RoomRead]:
    """The rooms in service (or, `retired=true`, those that left the catalogue) with their live state."""
    return [room_read(r) for r in service.list_rooms(session, site=site, agency=agency, region=region, state=state,
                                                     retired=retired)]


@router.get("/rooms/changes/stream", response_class=StreamingResponse,
            summary="Rooms' state and service changes as Server-Sent Events (`room-change`), as they happen",
            responses={200: {"content": {"text/event-stream": {}}}})
def stream_room_changes(*, _: RoomsReader, ctx: Ctx, after: After | None = None,
                        last_event_id: Annotated[int | None, Header(ge=0, le=MAX_ID)] = None) -> Response:
    """From `after` (an event id; default: from now on), or from Last-Event-ID when a client reconnects."""
    start = last_event_id if last_event_id is not None else after
    return room_change_stream(ctx, start)


def room_change_stream(ctx: AppContext, after: int | None) -> Response:
    """SSE of the rooms' state and service changes after the event id `after` (None: from now on). It ends after
    CP_ROOMS_STREAM_SECONDS with an `end` event; a client (EventSource does by itself) reconnects with
    Last-Event-ID and misses nothing."""
    if after is None:
        with transaction(ctx.sessions) as session:
            after = service.last_event_id(session)
    deadline = time.monotonic() + ctx.settings.rooms_stream_seconds

    def read(last: int) -> tuple[list[RoomChange], bool]:
        with transaction(ctx.sessions) as session:
            return [RoomChange(id=event.id, at=event.at, room=room.code, site=room.site.code, kind=event.kind,
                               before=event.before, after=event.after, state=service.room_state(room),
                               detail=event.detail)
                    for event, room in service.state_changes(session, after=last, limit=BATCH)], \
                time.monotonic() > deadline

    return event_stream(read, after=after, event="room-change", cursor=lambda change: change.id,
                        finished=lambda expired: expired, end=lambda _expired: {"reconnect": True})


@router.get("/rooms/{code}", response_model=RoomDetail)
def get_room(*, code: str, _: RoomsReader, session: DbSession,
             events: Annotated[int, Query(ge=0, le=1000, description="how many of its latest events")] = 50,
             ) -> RoomDetail:
    """One room with its latest events (probed state changes, service, catalogue changes), newest first."""
    room = service.get_room(session, code=code)
    return RoomDetail(**room_read(room).model_dump(),
                      events=[event_read(e) for e in service.room_events(session, room=room, limit=events)])


@router.post("/rooms/{code}/out-of-service", response_model=RoomRead,
             responses=errors(409, s409="the room is retired or already out of service"))
def take_out_of_service(*, code: str, data: ServiceIn, principal: RoomsWriter, session: DbSession,
                        ctx: Ctx) -> RoomRead:
    """Take a room out of service (audited): it shows as such, and its probes no longer count as down."""
    return room_read(service.set_service(session, clock=ctx.clock, actor=principal, code=code,
                                         reason=data.reason.strip()))


@router.post("/rooms/{code}/in-service", response_model=RoomRead,
             responses=errors(409, s409="the room is retired or already in service"))
def put_in_service(*, code: str, principal: RoomsWriter, session: DbSession, ctx: Ctx) -> RoomRead:
    """Put a room back into service (audited)."""
    return room_read(service.set_service(session, clock=ctx.clock, actor=principal, code=code, reason=None))


@router.get("/sites", response_model=list[SiteRead])
def list_sites(*, _: RoomsReader, session: DbSession, kind: SiteKind | None = None,
               region: Region | None = None) -> list[SiteRead]:
    """Sites by region, each with its rooms counted by state."""
    return [site_read(s, counts) for s, counts in service.list_sites(session, kind=kind, region=region)]


@router.get("/centres", response_model=list[SiteRead])
def list_centres(*, _: RoomsReader, session: DbSession, region: Region | None = None) -> list[SiteRead]:
    """The smart-work centres: seats, opening hours, and their VC rooms by state."""
    return [site_read(s, counts) for s, counts in service.list_sites(session, kind="smart_work_centre",
                                                                     region=region)]


@router.get("/bridges", response_model=list[BridgeRead])
def list_bridges(*, _: RoomsReader, session: DbSession) -> list[BridgeRead]:
    """The bridges in service with their state and load against capacity (never their secrets)."""
    return [bridge_read(b) for b in service.list_bridges(session)]


@router.post("/catalogue/sync", response_model=SyncResult)
def sync_catalogue(*, principal: RoomsWriter, session: DbSession, ctx: Ctx,
                   dry_run: Annotated[bool, Query(description="only say what would change")] = False) -> SyncResult:
    """Apply the server's catalogue directory (CP_ROOMS_CATALOGUE_DIR; never a path from the caller): all of it or
    nothing, a 422 with every finding (file, line, field, reason) when it is refused."""
    catalogue, digest = service.read_files(session, settings=ctx.settings)
    if dry_run:
        changes = service.plan_sync(session, catalogue=catalogue)
    else:
        changes = service.apply_sync(session, clock=ctx.clock, actor=principal, catalogue=catalogue, digest=digest)
    return SyncResult(digest=digest, applied=not dry_run, sites=len(catalogue.sites), rooms=len(catalogue.rooms),
                      bridges=len(catalogue.bridges), changes=[str(c) for c in changes],
                      summary=service.summary(changes))


@router.put("/bridges/{code}/endpoint", response_model=BridgeRead,
            responses=errors(409, s409="the bridge is retired"))
def register_bridge(*, code: str, data: BridgeEndpointIn, principal: RoomsWriter, session: DbSession,
                    ctx: Ctx) -> BridgeRead:
    """Say where a catalogue bridge answers (an address inside the allowed networks) and its admin secret, which is
    sealed and never returned (`controlplane bridges deploy` does this for the bridges it makes). Audited."""
    bridge = service.register_bridge(session, clock=ctx.clock, actor=principal, box=secret_box(ctx.settings),
                                     settings=ctx.settings, code=code, address=data.address,
                                     http_port=data.http_port, admin_port=data.admin_port,
                                     admin_secret=data.admin_secret)
    return bridge_read(bridge)


@router.post("/bridges/deploy", response_model=DeployAccepted, status_code=202,
             responses=errors(409, 503, s409="too few bridges to deploy, or the operations agency has no project",
                              s503="the durable engine is not running in this server"))
def deploy_bridges(*, data: DeployIn, principal: RoomsWriter, ctx: Ctx) -> DeployAccepted:
    """Deploy `count` bridges of the catalogue on the cloud (servers in the VC operations agency's project,
    configured by the janus_bridge role, registered, then reconciled): durable work, followed at GET /bridges."""
    return DeployAccepted(bridges=deploy.request(ctx, actor=principal, count=data.count, credential=data.credential))


def reconcile_read(row: Reconcile) -> ReconcileRead:
    return ReconcileRead(id=row.id, trigger=row.trigger, actor=row.actor, state=row.state,
                         requested_at=row.requested_at, finished_at=row.finished_at, report=row.report)


@router.post("/reconcile", response_model=ReconcileRead, status_code=202,
             responses=errors(503, s503="the durable engine is not running in this server"))
def request_reconcile(*, principal: RoomsWriter, session: DbSession, ctx: Ctx) -> ReconcileRead:
    """Reconcile the bridges and their rooms now (durable work; follow it at `GET /reconcile/{id}`)."""
    reconcile_id = reconcile.request(ctx, actor=principal)
    return reconcile_read(service.get_reconcile(session, reconcile_id=reconcile_id))


@router.get("/reconcile", response_model=list[ReconcileRead])
def list_reconciles(*, _: RoomsReader, session: DbSession) -> list[ReconcileRead]:
    """The latest reconciles, newest first, with their reports."""
    return [reconcile_read(r) for r in service.list_reconciles(session)]


@router.get("/reconcile/{reconcile_id}", response_model=ReconcileRead)
def get_reconcile(*, reconcile_id: Annotated[str, Path(max_length=64)], _: RoomsReader,
                  session: DbSession) -> ReconcileRead:
    return reconcile_read(service.get_reconcile(session, reconcile_id=reconcile_id))
