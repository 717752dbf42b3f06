"""The VC network's data: the catalogue's sync (a diff, then all of it or nothing), rooms and their history, sites,
smart-work centres and bridges, and taking a room out of service. Keyword-only, one session per call."""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from controlplane.auth import audit
from controlplane.auth import service as auth_service
from controlplane.auth.models import Agency
from controlplane.clock import Clock
from controlplane.config import Settings
from controlplane.errors import Conflict, InvalidInput, NotFound
from controlplane.rooms import domain
from controlplane.rooms.catalogue import catalogue_files, read_catalogue
from controlplane.rooms.models import Bridge, BridgeRoom, CatalogueSync, Reconcile, Room, RoomEvent, Site
from controlplane.secrets import SecretBox

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
        query = query.join(Room.agency).where(Agency.code == agency)
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


def state_changes(session: Session, *, after: int, limit: int) -> list[tuple[RoomEvent, Room]]:
    """The rooms' state and service changes after the event id `after`, oldest first: what a live page follows."""
    return [(event, room) for event, room in session.execute(
        select(RoomEvent, Room).join(Room, Room.id == RoomEvent.room_id)
        .where(RoomEvent.id > after, RoomEvent.kind.in_(("state", "service"))).order_by(RoomEvent.id).limit(limit))
        .unique().all()]


def last_event_id(session: Session) -> int:
    return session.scalar(select(func.max(RoomEvent.id))) or 0


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


def probe_targets(session: Session) -> list[tuple[str, str, int, str]]:
    """(code, address, port, SIP URI) of every room in the catalogue, out of service or not (its state is still
    shown), in a stable order."""
    return [tuple(row) for row in session.execute(  # type: ignore[misc]
        select(Room.code, Room.address, Room.port, Room.sip_uri).where(Room.retired_at.is_(None))
        .order_by(Room.id))]


def room_sites(session: Session) -> dict[str, str]:
    """Room code -> its site's code, for the rooms in service."""
    return dict(session.execute(select(Room.code, Site.code).join(Room.site).where(
        Room.retired_at.is_(None))).all())


def record_probes(session: Session, *, clock: Clock, outcomes: Mapping[str, domain.ProbeOutcome]) -> list[
        tuple[str, str, str]]:
    """Write what changed: a room whose probe implies another state gets it (with the probe's figures) and a room
    event; the rest is not written at all. Returns (room, before, after) of each change."""
    changing = {code: o for code, o in outcomes.items() if o.state is not None}
    if not changing:
        return []
    now = clock.now()
    changes = []
    rooms = session.scalars(select(Room).where(Room.code.in_(changing), Room.retired_at.is_(None))).unique()
    for room in rooms:
        outcome = changing[room.code]
        if outcome.state == room.state:
            continue
        changes.append((room.code, room.state, str(outcome.state)))
        session.add(RoomEvent(room_id=room.id, at=now, kind="state", before=room.state, after=str(outcome.state),
                              detail=outcome.text[:500], actor="prober"))
        room.state, room.state_since, room.last_probe_at = str(outcome.state), now, now
        room.last_rtt, room.last_result = outcome.rtt, outcome.text[:200]
    return changes


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


def unplaced_rooms(session: Session) -> int:
    """Rooms in service that need a bridge room and have none."""
    placed = select(BridgeRoom.room_id)
    return session.scalar(select(func.count()).select_from(Room).where(
        Room.retired_at.is_(None), Room.needs_bridge_room.is_(True), Room.id.not_in(placed))) or 0


def room_counts(session: Session) -> list[tuple[str, str, str, int]]:
    """(site, agency, state, rooms) for the rooms in service: the metrics' cache."""
    rows = session.execute(
        select(Site.code, Room.agency_id, Room.state, Room.out_of_service.is_not(None), func.count())
        .join(Room.site).where(Room.retired_at.is_(None))
        .group_by(Site.code, Room.agency_id, Room.state, Room.out_of_service.is_not(None))).all()
    codes = {a.id: a.code for a in auth_service.list_agencies(session)}
    return [(site, codes[agency_id], "out_of_service" if out else state, count)
            for site, agency_id, state, out, count in rows]



# --- bridges: their endpoints, health and rooms ------------------------------------------------------------------


def register_bridge(session: Session, *, clock: Clock, actor: audit.Actor, box: SecretBox, settings: Settings,
                    code: str, address: str, http_port: int, admin_port: int, admin_secret: str) -> Bridge:
    """Say where a catalogue bridge answers and its admin secret (sealed; never returned). Audited, without the
    secret."""
    bridge = get_bridge(session, code=code)
    if bridge.retired_at is not None:
        raise Conflict(f"bridge '{code}' is retired (it left the catalogue)", field="bridge")
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise InvalidInput(f"'{address[:64]}' is not an IP address", field="address") from None
    if not any(ip in network for network in settings.rooms_networks):
        raise InvalidInput(f"{ip} is outside the allowed networks (CP_ROOMS_ALLOWED_NETWORKS)", field="address")
    before = {"address": bridge.address, "http_port": bridge.http_port, "admin_port": bridge.admin_port}
    bridge.address, bridge.http_port, bridge.admin_port = str(ip), http_port, admin_port
    bridge.admin_secret_sealed = box.seal(admin_secret)
    bridge.state, bridge.state_since, bridge.updated_at = "unknown", clock.now(), clock.now()
    audit.record(session, clock=clock, actor=actor, action="register", entity_type="bridge", entity_id=code,
                 before=before, after={"address": bridge.address, "http_port": http_port, "admin_port": admin_port,
                                       "admin_secret": "(set)"})
    return bridge


def mark_deploying(session: Session, *, clock: Clock, code: str) -> None:
    bridge = get_bridge(session, code=code)
    bridge.state, bridge.state_since, bridge.last_error, bridge.updated_at = "deploying", clock.now(), "", clock.now()


def deploy_failed(session: Session, *, clock: Clock, code: str, error: str) -> None:
    bridge = get_bridge(session, code=code)
    bridge.state, bridge.state_since, bridge.updated_at = "failed", clock.now(), clock.now()
    bridge.last_error = f"deployment failed: {error}"[:300]


def deploy_secret(session: Session, *, code: str, box: SecretBox, new: str) -> str:
    """The sealed admin secret a deployment configures the bridge with: the one kept from an earlier attempt (a
    retry configures the same), else `new`, sealed and kept."""
    bridge = get_bridge(session, code=code)
    if bridge.admin_secret_sealed is None:
        bridge.admin_secret_sealed = box.seal(new)
    return bridge.admin_secret_sealed


def bridge_address(bridge: Bridge, box: SecretBox) -> domain.BridgeAddress | None:
    """Where the bridge answers (None until it is deployed or registered)."""
    if bridge.address is None or bridge.admin_secret_sealed is None:
        return None
    return domain.BridgeAddress(bridge.code, bridge.address, bridge.http_port, bridge.admin_port,
                                box.open(bridge.admin_secret_sealed))


def record_bridge_health(session: Session, *, clock: Clock, code: str, load: domain.BridgeLoad | None,
                         error: str = "") -> tuple[str, str] | None:
    """What the bridge answered (its load) or why it did not (`error`); (before, after) when its state changed."""
    bridge = get_bridge(session, code=code)
    now = clock.now()
    state = "up" if load is not None else "down"
    if load is not None:
        bridge.rooms_in_use, bridge.participants, bridge.last_seen_at = load.rooms, load.participants, now
    bridge.last_error = error[:300]
    if bridge.state == state:
        return None
    before, bridge.state, bridge.state_since, bridge.updated_at = bridge.state, state, now, now
    return before, state


def placement_inputs(session: Session) -> tuple[list[tuple[str, str | None]], list[domain.BridgeSlots]]:
    """The rooms that need a bridge room (code, the bridge it is on), and the bridges as placement sees them."""
    rooms = session.execute(select(Room.code, Bridge.code).outerjoin(BridgeRoom, BridgeRoom.room_id == Room.id)
                            .outerjoin(Bridge, Bridge.id == BridgeRoom.bridge_id)
                            .where(Room.retired_at.is_(None), Room.needs_bridge_room.is_(True))).all()
    assigned = dict(session.execute(select(BridgeRoom.bridge_id, func.count()).group_by(BridgeRoom.bridge_id)).all())
    bridges = [domain.BridgeSlots(b.code, b.state == "up" and b.retired_at is None, b.rooms_capacity,
                                  assigned.get(b.id, 0)) for b in session.scalars(select(Bridge)).unique()]
    return [(room, bridge) for room, bridge in rooms], bridges


def apply_placements(session: Session, *, clock: Clock, box: SecretBox,
                     moves: Sequence[domain.Placement]) -> None:
    """Give each moved room its bridge (a new bridge room gets a fresh secret and PIN, sealed); a room no bridge
    has room for loses its bridge room. A room event for each."""
    now = clock.now()
    rooms = {r.code: r for r in session.scalars(select(Room).where(Room.code.in_([m.room for m in moves])))
             .unique()}
    bridges = {b.code: b for b in session.scalars(select(Bridge)).unique()}
    for move in moves:
        room = rooms[move.room]
        current = session.scalar(select(BridgeRoom).where(BridgeRoom.room_id == room.id))
        if move.after is None:
            if current is not None:
                session.delete(current)
        elif current is None:
            session.add(BridgeRoom(room_id=room.id, bridge=bridges[move.after],
                                   number=domain.bridge_room_number(room.id),
                                   secret_sealed=box.seal(secrets.token_urlsafe(24)),
                                   pin_sealed=box.seal(f"{secrets.randbelow(10**6):06d}"), created_at=now,
                                   updated_at=now))
        else:
            current.bridge, current.updated_at = bridges[move.after], now
        where = f"on {move.after}" if move.after else "unplaced: no bridge has room for it"
        moved = f" (moved from {move.before})" if move.before else ""
        session.add(RoomEvent(room_id=room.id, at=now, kind="bridge_room", before=move.before or "",
                              after=move.after or "unplaced", actor="reconcile", detail=f"bridge room {where}{moved}"))


@dataclass(frozen=True)
class ExpectedRoom:
    number: int
    room: str
    description: str
    secret: str
    pin: str
    publishers: int


def expected_rooms(session: Session, *, bridge: str, box: SecretBox) -> list[ExpectedRoom]:
    """The bridge rooms that should be on the bridge: those of rooms in service assigned to it."""
    rows = session.execute(select(BridgeRoom, Room).join(Room, Room.id == BridgeRoom.room_id)
                           .join(Bridge, Bridge.id == BridgeRoom.bridge_id)
                           .where(Bridge.code == bridge, Room.retired_at.is_(None))).unique().all()
    return [ExpectedRoom(br.number, room.code, f"{room.code} {room.name}"[:120], box.open(br.secret_sealed),
                         box.open(br.pin_sealed), min(max(room.capacity, 2), 64)) for br, room in rows]


def known_secrets(session: Session, *, box: SecretBox) -> dict[int, str]:
    """Janus room number -> its secret, for every bridge room the control plane has made (to clean up ours)."""
    return {number: box.open(sealed) for number, sealed in session.execute(
        select(BridgeRoom.number, BridgeRoom.secret_sealed))}


def drop_retired_bridge_rooms(session: Session) -> list[tuple[str, str, int, str]]:
    """Forget the bridge rooms of retired rooms and of rooms that no longer need one: (room, bridge, number,
    sealed secret) of each, for the reconcile to destroy."""
    rows = session.execute(select(BridgeRoom, Room).join(Room, Room.id == BridgeRoom.room_id).where(
        (Room.retired_at.is_not(None)) | (Room.needs_bridge_room.is_(False)))).unique().all()
    dropped = []
    for bridge_room, room in rows:
        dropped.append((room.code, bridge_room.bridge.code, bridge_room.number, bridge_room.secret_sealed))
        session.delete(bridge_room)
    return dropped


# --- reconciles ----------------------------------------------------------------------------------------------


def queue_reconcile(session: Session, *, clock: Clock, actor: audit.Actor, reconcile_id: str,
                    audited: bool = True) -> Reconcile:
    existing = session.get(Reconcile, reconcile_id)
    if existing is not None:  # asked for again under the same id (a workflow replayed): one reconcile
        return existing
    name = actor.username if isinstance(actor, audit.Principal) else actor
    row = Reconcile(id=reconcile_id, trigger="operator", actor=name[:64], state="queued", requested_at=clock.now(),
                    report={})
    session.add(row)
    if audited:
        audit.record(session, clock=clock, actor=actor, action="reconcile", entity_type="bridges",
                     entity_id=reconcile_id)
    return row


def begin_reconcile(session: Session, *, clock: Clock, reconcile_id: str, trigger: str, actor: str) -> None:
    row = session.get(Reconcile, reconcile_id)
    if row is None:  # a scheduled one: recorded when it starts
        row = Reconcile(id=reconcile_id, trigger=trigger, actor=actor, requested_at=clock.now(), report={})
        session.add(row)
    row.state = "running"


def end_reconcile(session: Session, *, clock: Clock, reconcile_id: str, state: str, report: dict[str, Any]) -> None:
    row = session.get(Reconcile, reconcile_id)
    assert row is not None
    row.state, row.report, row.finished_at = state, report, clock.now()


def get_reconcile(session: Session, *, reconcile_id: str) -> Reconcile:
    row = session.get(Reconcile, reconcile_id)
    if row is None:
        raise NotFound(f"unknown reconcile '{reconcile_id}'", field="reconcile")
    return row


def list_reconciles(session: Session, *, limit: int = 20) -> list[Reconcile]:
    return list(session.scalars(select(Reconcile).order_by(Reconcile.requested_at.desc()).limit(limit)))
