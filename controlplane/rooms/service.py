"""The VC network's data: the catalogue's sync (a diff, then all of it or nothing), rooms and their history, sites,
smart-work centres and bridges, and taking a room out of service. Keyword-only, one session per call."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from controlplane.auth import audit
from controlplane.auth import service as auth_service
from controlplane.clock import Clock
from controlplane.config import Settings
from controlplane.errors import Conflict, InvalidInput, NotFound
from controlplane.rooms import domain
from controlplane.rooms.catalogue import catalogue_files, read_catalogue
from controlplane.rooms.models import Bridge, CatalogueSync, Room, RoomEvent, Site

# --- the catalogue ---------------------------------------------------------------------------------------------


def read_files(session: Session, *, settings: Settings, directory: Path | None = None) -> tuple[domain.Catalogue,
                                                                                                  str]:
    """The catalogue in the directory's files (CP_ROOMS_CATALOGUE_DIR by default) and their digest; InvalidInput
    with every finding (file, line, field, reason) as its details."""
    directory = directory or settings.rooms_catalogue_dir
    agencies = [a.code for a in auth_service.list_agencies(session)]
    try:
        catalogue = read_catalogue(directory, networks=settings.rooms_networks, agencies=agencies)
    except domain.CatalogueRefused as refused:
        count = len(refused.findings)
        raise InvalidInput(f"the catalogue is refused ({count} problem{'s' if count > 1 else ''}); nothing was "
                           f"changed: {refused.findings[0]}", field="catalogue",
                           details=[{"file": f.file, "line": f.line, "field": f.where, "reason": f.reason}
                                    for f in refused.findings]) from None
    digest = hashlib.sha256()
    for path in catalogue_files(directory):
        digest.update(str(path.relative_to(directory)).encode() + b"\0" + path.read_bytes() + b"\0")
    return catalogue, digest.hexdigest()


def _site_of(site: Site) -> domain.Site:
    return domain.Site(code=site.code, name=site.name, kind=site.kind, region=site.region, address=site.address,
                       seats=site.seats, opening_hours=site.opening_hours, opening_days=tuple(site.opening_days))


def _room_of(room: Room) -> domain.Room:
    return domain.Room(code=room.code, name=room.name, site=room.site.code, agency=room.agency.code,
                       building=room.building, floor=room.floor, capacity=room.capacity,
                       equipment=tuple(room.equipment), sip_uri=room.sip_uri, address=room.address, port=room.port,
                       protocol=room.protocol, owner=room.owner, needs_bridge_room=room.needs_bridge_room)


def _bridge_of(bridge: Bridge) -> domain.Bridge:
    return domain.Bridge(code=bridge.code, site=bridge.site.code, server=bridge.server,
                         rooms_capacity=bridge.rooms_capacity, participants_capacity=bridge.participants_capacity)


def plan_sync(session: Session, *, catalogue: domain.Catalogue) -> list[domain.Change]:
    """What applying the catalogue would change, nothing written."""
    sites = session.scalars(select(Site)).all()
    rooms = session.scalars(select(Room)).unique().all()
    bridges = session.scalars(select(Bridge)).unique().all()
    return [*domain.diff("site", {s.code: _site_of(s) for s in sites if s.retired_at is None},
                         [s.code for s in sites if s.retired_at is not None], catalogue.sites),
            *domain.diff("room", {r.code: _room_of(r) for r in rooms if r.retired_at is None},
                         [r.code for r in rooms if r.retired_at is not None], catalogue.rooms),
            *domain.diff("bridge", {b.code: _bridge_of(b) for b in bridges if b.retired_at is None},
                         [b.code for b in bridges if b.retired_at is not None], catalogue.bridges)]


def apply_sync(session: Session, *, clock: Clock, actor: audit.Actor, catalogue: domain.Catalogue,
               digest: str) -> list[domain.Change]:
    """Make the database what the catalogue says, in the caller's transaction: sites first (rooms and bridges
    refer to them), then rooms and bridges; what left the files is retired, never deleted. Recorded as a sync, an
    audit row and, for each room it touched, a room event."""
    changes = plan_sync(session, catalogue=catalogue)
    if not changes:
        return changes
    now = clock.now()
    name = actor.username if isinstance(actor, audit.Principal) else actor
    wanted_sites = {s.code: s for s in catalogue.sites}
    sites = {s.code: s for s in session.scalars(select(Site))}
    for change in (c for c in changes if c.kind == "site"):
        site = sites.get(change.code)
        if change.action == "retire":
            assert site is not None
            site.retired_at = site.updated_at = now
            continue
        if site is None:
            site = sites[change.code] = Site(code=change.code, created_at=now)
            session.add(site)
        values = asdict(wanted_sites[change.code])
        values["opening_days"] = list(values["opening_days"])
        for key, value in values.items():
            setattr(site, key, value)
        site.retired_at, site.updated_at = None, now
    session.flush()
    agencies = {a.code: a for a in auth_service.list_agencies(session)}
    wanted_rooms = {r.code: r for r in catalogue.rooms}
    rooms = {r.code: r for r in session.scalars(select(Room))}
    for change in (c for c in changes if c.kind == "room"):
        room = rooms.get(change.code)
        if change.action == "retire":
            assert room is not None
            room.retired_at = room.updated_at = now
        else:
            if room is None:
                room = rooms[change.code] = Room(code=change.code, created_at=now, state="unknown")
                session.add(room)
            values = asdict(wanted_rooms[change.code])
            room.site = sites[values.pop("site")]
            room.agency = agencies[values.pop("agency")]
            values["equipment"] = list(values["equipment"])
            for key, value in values.items():
                setattr(room, key, value)
            room.retired_at, room.updated_at = None, now
        session.flush()
        session.add(RoomEvent(room_id=room.id, at=now, kind="catalogue", after=change.action,
                              detail=str(change)[:500], actor=name[:64]))
    wanted_bridges = {b.code: b for b in catalogue.bridges}
    bridges = {b.code: b for b in session.scalars(select(Bridge))}
    for change in (c for c in changes if c.kind == "bridge"):
        bridge = bridges.get(change.code)
        if change.action == "retire":
            assert bridge is not None
            bridge.retired_at = bridge.updated_at = now
            continue
        if bridge is None:
            bridge = bridges[change.code] = Bridge(code=change.code, created_at=now, state="unknown")
            session.add(bridge)
        values = asdict(wanted_bridges[change.code])
        bridge.site = sites[values.pop("site")]
        for key, value in values.items():
            setattr(bridge, key, value)
        bridge.retired_at, bridge.updated_at = None, now
    session.add(CatalogueSync(at=now, actor=name[:64], digest=digest, changes=[str(c) for c in changes]))
    audit.record(session, clock=clock, actor=actor, action="sync", entity_type="room_catalogue", entity_id=digest[:16],
                 after=summary(changes))
    return changes


def summary(changes: Sequence[domain.Change]) -> dict[str, int]:
    """How many of each kind and action, e.g. {"room added": 273}."""
    counts: dict[str, int] = {}
    for change in changes:
        key = f"{change.kind} {'added' if change.action == 'add' else change.action + 'd'}"
        counts[key] = counts.get(key, 0) + 1
    return counts


def last_sync(session: Session) -> CatalogueSync | None:
    return session.scalars(select(CatalogueSync).order_by(CatalogueSync.id.desc()).limit(1)).first()


# --- rooms -----------------------------------------------------------------------------------------------------

ROOM_STATES = ("up", "down", "unknown", "out_of_service")


def room_state(room: Room) -> str:
    """What an operator sees: out of service while it is, else the probes' state."""
    return "out_of_service" if room.out_of_service is not None else room.state


def list_rooms(session: Session, *, site: str | None = None, agency: str | None = None, state: str | None = None,
               region: str | None = None, retired: bool = False) -> list[Room]:
    query = select(Room).join(Room.site).order_by(Site.region, Site.code, Room.code)
    query = query.where(Room.retired_at.is_not(None) if retired else Room.retired_at.is_(None))
    if site:
        query = query.where(Site.code == site)
    if region:
        query = query.where(Site.region == region)
    if agency:
        query = query.where(Room.agency_id == auth_service.agency_by_code(session, code=agency, field="agency").id)
    rooms = list(session.scalars(query).unique())
    if state:
        rooms = [r for r in rooms if room_state(r) == state]
    return rooms


def get_room(session: Session, *, code: str) -> Room:
    room = session.scalar(select(Room).where(Room.code == code))
    if room is None:
        raise NotFound(f"unknown room '{code}'", field="room")
    return room


def room_events(session: Session, *, room: Room, limit: int = 100) -> list[RoomEvent]:
    return list(session.scalars(select(RoomEvent).where(RoomEvent.room_id == room.id)
                                .order_by(RoomEvent.id.desc()).limit(limit)))


def set_service(session: Session, *, clock: Clock, actor: audit.Actor, code: str, reason: str | None) -> Room:
    """Take the room out of service for `reason`, or (None) back into service. Audited, and a room event."""
    room = get_room(session, code=code)
    if room.retired_at is not None:
        raise Conflict(f"room '{code}' is retired (it left the catalogue)", field="room")
    if (reason is None) == (room.out_of_service is None):
        raise Conflict(f"room '{code}' is already {'in' if reason is None else 'out of'} service", field="room")
    now = clock.now()
    name = actor.username if isinstance(actor, audit.Principal) else actor
    before = {"out_of_service": room.out_of_service}
    room.out_of_service, room.out_of_service_by = reason, (name[:64] if reason else None)
    room.out_of_service_at, room.updated_at = (now if reason else None), now
    session.add(RoomEvent(room_id=room.id, at=now, kind="service", before="in" if reason else "out",
                          after="out" if reason else "in", detail=(reason or "")[:500], actor=name[:64]))
    audit.record(session, clock=clock, actor=actor, action="out_of_service" if reason else "in_service",
                 entity_type="room", entity_id=room.code, before=before, after={"out_of_service": reason},
                 agency_id=room.agency_id)
    return room


# --- sites, centres, bridges -----------------------------------------------------------------------------------


def list_sites(session: Session, *, kind: str | None = None, region: str | None = None) -> list[tuple[Site, dict[
        str, int]]]:
    """The sites in service, each with its rooms counted by state."""
    query = select(Site).where(Site.retired_at.is_(None)).order_by(Site.region, Site.code)
    if kind:
        query = query.where(Site.kind == kind)
    if region:
        query = query.where(Site.region == region)
    sites = list(session.scalars(query))
    counts: dict[int, dict[str, int]] = {s.id: dict.fromkeys(ROOM_STATES, 0) for s in sites}
    for room in session.scalars(select(Room).where(Room.retired_at.is_(None))).unique():
        if room.site_id in counts:
            counts[room.site_id][room_state(room)] += 1
    return [(s, counts[s.id]) for s in sites]


def get_site(session: Session, *, code: str) -> Site:
    site = session.scalar(select(Site).where(Site.code == code))
    if site is None:
        raise NotFound(f"unknown site '{code}'", field="site")
    return site


def list_bridges(session: Session, *, retired: bool = False) -> list[Bridge]:
    query = select(Bridge).order_by(Bridge.code)
    query = query.where(Bridge.retired_at.is_not(None) if retired else Bridge.retired_at.is_(None))
    return list(session.scalars(query).unique())


def get_bridge(session: Session, *, code: str) -> Bridge:
    bridge = session.scalar(select(Bridge).where(Bridge.code == code))
    if bridge is None:
        raise NotFound(f"unknown bridge '{code}'", field="bridge")
    return bridge


def room_counts(session: Session) -> list[tuple[str, str, str, int]]:
    """(site, agency, state, rooms) for the rooms in service: the metrics' cache."""
    rows = session.execute(
        select(Site.code, Room.agency_id, Room.state, Room.out_of_service.is_not(None), func.count())
        .join(Room.site).where(Room.retired_at.is_(None))
        .group_by(Site.code, Room.agency_id, Room.state, Room.out_of_service.is_not(None))).all()
    codes = {a.id: a.code for a in auth_service.list_agencies(session)}
    return [(site, codes[agency_id], "out_of_service" if out else state, count)
            for site, agency_id, state, out, count in rows]

