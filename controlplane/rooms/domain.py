"""The VC network's catalogue as plain data, and its rules: what a valid catalogue is (every finding with its file,
line and reason), and what a sync changes. Standard library only."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import time
from typing import Any

CATALOGUE_VERSION = 1
SITE_KINDS = ("complex", "ministry", "local_government", "smart_work_centre")
# The 17 metropolitan and provincial regions, as the local governments' codes (lower case).
REGIONS = ("seoul", "busan", "daegu", "incheon", "gwangju", "daejeon", "ulsan", "sejong", "gyeonggi", "gangwon",
           "chungbuk", "chungnam", "jeonbuk", "jeonnam", "gyeongbuk", "gyeongnam", "jeju")
EQUIPMENT = ("codec", "camera", "display", "microphone", "speaker", "document_camera", "touch_panel", "recorder")
PROTOCOLS = ("sip",)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
CODE = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
SIP_URI = re.compile(r"^sips?:[A-Za-z0-9._~+-]{1,64}@[A-Za-z0-9.-]{1,190}$")
HOURS = re.compile(r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-4]):[0-5]\d$")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Finding:
    """Why a catalogue is refused: where (file, line, the entry's path) and the reason."""

    file: str
    line: int
    where: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.where}: {self.reason}"


class CatalogueRefused(ValueError):
    def __init__(self, findings: Sequence[Finding]) -> None:
        self.findings = tuple(findings)
        super().__init__("\n".join(str(f) for f in self.findings))


@dataclass(frozen=True)
class Entry:
    """One entry of a catalogue file as read: its fields, and the line of the entry and of each of its fields."""

    section: str
    file: str
    line: int
    index: int
    values: Mapping[str, Any]
    lines: Mapping[str, int] = field(default_factory=dict)

    def at(self, key: str) -> int:
        return self.lines.get(key.split(".")[0], self.line)

    def where(self, key: str = "") -> str:
        return f"{self.section}[{self.index}]" + (f".{key}" if key else "")


@dataclass(frozen=True)
class Site:
    code: str
    name: str
    kind: str
    region: str
    address: str
    seats: int | None = None  # smart-work centres only
    opening_hours: str | None = None
    opening_days: tuple[str, ...] = ()


@dataclass(frozen=True)
class Room:
    code: str
    name: str
    site: str
    agency: str
    building: str
    floor: int
    capacity: int
    equipment: tuple[str, ...]
    sip_uri: str
    address: str
    port: int
    protocol: str
    owner: str
    needs_bridge_room: bool


@dataclass(frozen=True)
class Bridge:
    code: str
    site: str
    server: str
    rooms_capacity: int
    participants_capacity: int


@dataclass(frozen=True)
class Catalogue:
    sites: tuple[Site, ...] = ()
    rooms: tuple[Room, ...] = ()
    bridges: tuple[Bridge, ...] = ()


class _Reader:
    """Reads the typed fields of one entry, collecting a finding per bad field instead of stopping at the first."""

    def __init__(self, entry: Entry, findings: list[Finding]) -> None:
        self.entry = entry
        self.findings = findings
        self.ok = True
        unknown = sorted(set(entry.values) - set(_FIELDS[entry.section]))
        for key in unknown:
            self.refuse(key, f"unknown field (known: {', '.join(_FIELDS[entry.section])})")

    def refuse(self, key: str, reason: str) -> None:
        self.ok = False
        self.findings.append(Finding(self.entry.file, self.entry.at(key), self.entry.where(key), reason))

    def get(self, key: str, check: Callable[[Any], str | None], *, default: Any = ..., source: Any = None,
            parent: str = "") -> Any:
        """The value of `key` (in `source`, a mapping field named `parent`, when given) if `check` finds no reason
        against it; else None and a finding."""
        values = self.entry.values if source is None else source
        name = f"{parent}.{key}" if parent else key
        if key not in values or values[key] is None:
            if default is ...:
                self.refuse(name, "is required")
            return None if default is ... else default
        value = values[key]
        reason = check(value)
        if reason:
            self.refuse(name, reason)
            return None
        return value

    def text(self, key: str, *, max_length: int = 200, default: Any = ...) -> Any:
        return self.get(key, lambda v: _text(v, max_length), default=default)

    def code(self, key: str = "code") -> Any:
        return self.get(key, lambda v: None if isinstance(v, str) and CODE.match(v) else
                        "must be 2-63 lower-case letters, digits or '-', starting with a letter or digit")

    def number(self, key: str, low: int, high: int, *, default: Any = ..., source: Any = None,
               parent: str = "") -> Any:
        return self.get(key, lambda v: None if isinstance(v, int) and not isinstance(v, bool) and low <= v <= high
                        else f"must be a whole number from {low} to {high}", default=default, source=source,
                        parent=parent)

    def choice(self, key: str, choices: Sequence[str], *, default: Any = ...) -> Any:
        return self.get(key, lambda v: None if v in choices else f"must be one of {', '.join(choices)}",
                        default=default)


def _text(value: Any, max_length: int) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return "must be a non-empty text"
    if len(value) > max_length:
        return f"must be at most {max_length} characters"
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return "must not contain control characters"
    return None


_FIELDS = {
    "sites": ("code", "name", "kind", "region", "address"),
    "centres": ("code", "name", "region", "address", "seats", "hours", "days"),
    "rooms": ("code", "name", "site", "agency", "building", "floor", "capacity", "equipment", "endpoint", "owner",
              "bridge_room"),
    "bridges": ("code", "site", "server", "capacity"),
}
SECTIONS = tuple(_FIELDS)


def _site(entry: Entry, findings: list[Finding]) -> Site | None:
    read = _Reader(entry, findings)
    values = {"code": read.code(), "name": read.text("name"), "region": read.choice("region", REGIONS),
              "address": read.text("address", max_length=300)}
    if entry.section == "sites":
        values["kind"] = read.get("kind", lambda v: None if v in SITE_KINDS[:3] else
                                  f"must be one of {', '.join(SITE_KINDS[:3])} (smart-work centres go in `centres`)")
    else:
        values["kind"] = "smart_work_centre"
        values["seats"] = read.number("seats", 1, 1000)
        values["opening_hours"] = read.get("hours", _hours, default="08:00-18:00")
        values["opening_days"] = tuple(read.get("days", _days, default=["mon", "tue", "wed", "thu", "fri"]) or ())
    return Site(**values) if read.ok else None


def _hours(value: Any) -> str | None:
    if not isinstance(value, str) or not HOURS.match(value):
        return "must be opening hours as HH:MM-HH:MM (e.g. 07:00-22:00)"
    start, end = value.split("-")
    if end != "24:00" and time.fromisoformat(end) <= time.fromisoformat(start):
        return "must end after it starts"
    return None


def _days(value: Any) -> str | None:
    if not isinstance(value, list) or not value or any(d not in WEEKDAYS for d in value) or len(set(value)) < len(
            value):
        return f"must be a list of distinct days among {', '.join(WEEKDAYS)}"
    return None


def _room(entry: Entry, findings: list[Finding], networks: Sequence[Network]) -> Room | None:
    read = _Reader(entry, findings)
    endpoint = read.get("endpoint", lambda v: None if isinstance(v, dict) else
                        "must be a mapping of uri, address, port and protocol")
    values: dict[str, Any] = {
        "code": read.code(), "name": read.text("name"), "site": read.code("site"), "agency": read.get(
            "agency", lambda v: None if isinstance(v, str) and re.match(r"^[A-Z][A-Z0-9_]{1,15}$", v) else
            "must be an agency code (upper case, e.g. MOIS)"),
        "building": read.text("building", max_length=100), "floor": read.number("floor", -10, 200),
        "capacity": read.number("capacity", 1, 1000),
        "equipment": tuple(read.get("equipment", lambda v: None if isinstance(v, list) and all(
            e in EQUIPMENT for e in v) and len(set(v)) == len(v) else
            f"must be a list of distinct items among {', '.join(EQUIPMENT)}", default=[]) or ()),
        "owner": read.text("owner", default=""),
        "needs_bridge_room": read.get("bridge_room", lambda v: None if isinstance(v, bool) else "must be true or false",
                                      default=True),
    }
    if endpoint is not None:
        unknown = sorted(set(endpoint) - {"uri", "address", "port", "protocol"})
        for key in unknown:
            read.refuse(f"endpoint.{key}", "unknown field (known: uri, address, port, protocol)")
        values["sip_uri"] = read.get("uri", lambda v: None if isinstance(v, str) and SIP_URI.match(v) else
                                     "must be a SIP URI such as sip:room@vc.example.kr", source=endpoint,
                                     parent="endpoint")
        values["address"] = read.get("address", lambda v: _address(v, networks), source=endpoint, parent="endpoint")
        values["port"] = read.number("port", 1, 65535, default=5060, source=endpoint, parent="endpoint")
        values["protocol"] = read.get("protocol", lambda v: None if v in PROTOCOLS else
                                      f"must be one of {', '.join(PROTOCOLS)}", default="sip", source=endpoint,
                                      parent="endpoint")
    return Room(**values) if read.ok else None


def _address(value: Any, networks: Sequence[Network]) -> str | None:
    try:
        address = ipaddress.ip_address(value if isinstance(value, str) else "")
    except ValueError:
        return f"{str(value)[:64]!r} is not an IP address (names are not probed)"
    if not any(address in network for network in networks):
        allowed = ", ".join(str(n) for n in networks) or "none configured"
        return f"{address} is outside the allowed networks ({allowed}; CP_ROOMS_ALLOWED_NETWORKS)"
    return None


def _bridge(entry: Entry, findings: list[Finding]) -> Bridge | None:
    read = _Reader(entry, findings)
    capacity = read.get("capacity", lambda v: None if isinstance(v, dict) and set(v) <= {"rooms", "participants"}
                        else "must be a mapping of rooms and participants")
    values = {"code": read.code(), "site": read.code("site"), "server": read.get(
        "server", lambda v: None if isinstance(v, str) and CODE.match(v) else "must be a server name (like a code)")}
    if capacity is not None:
        values["rooms_capacity"] = read.number("rooms", 1, 10000, source=capacity, parent="capacity")
        values["participants_capacity"] = read.number("participants", 2, 100000, source=capacity,
                                                      parent="capacity")
    return Bridge(**values) if read.ok else None


def build_catalogue(entries: Iterable[Entry], *, networks: Sequence[Network],
                    agencies: Iterable[str]) -> Catalogue:
    """The catalogue the entries describe, or CatalogueRefused with every finding (file, line, reason)."""
    findings: list[Finding] = []
    sites: list[tuple[Entry, Site]] = []
    rooms: list[tuple[Entry, Room]] = []
    bridges: list[tuple[Entry, Bridge]] = []
    for entry in entries:
        if entry.section in ("sites", "centres"):
            site = _site(entry, findings)
            if site:
                sites.append((entry, site))
        elif entry.section == "rooms":
            room = _room(entry, findings, networks)
            if room:
                rooms.append((entry, room))
        elif entry.section == "bridges":
            bridge = _bridge(entry, findings)
            if bridge:
                bridges.append((entry, bridge))
    known_agencies = set(agencies)
    site_codes = _unique(sites, findings)
    _unique(rooms, findings)
    _unique(bridges, findings)
    seen_uris: dict[str, Entry] = {}
    for entry, room in rooms:
        if room.site not in site_codes:
            findings.append(Finding(entry.file, entry.at("site"), entry.where("site"), f"unknown site {room.site!r}"))
        if room.agency not in known_agencies:
            findings.append(Finding(entry.file, entry.at("agency"), entry.where("agency"),
                                    f"unknown agency {room.agency!r}"))
        if room.sip_uri in seen_uris:
            first = seen_uris[room.sip_uri]
            findings.append(Finding(entry.file, entry.at("endpoint"), entry.where("endpoint.uri"),
                                    f"{room.sip_uri} is already the endpoint of {first.where()} ({first.file}:"
                                    f"{first.line})"))
        seen_uris.setdefault(room.sip_uri, entry)
    for entry, bridge in bridges:
        if bridge.site not in site_codes:
            findings.append(Finding(entry.file, entry.at("site"), entry.where("site"),
                                    f"unknown site {bridge.site!r}"))
    if findings:
        raise CatalogueRefused(sorted(findings, key=lambda f: (f.file, f.line)))
    return Catalogue(sites=tuple(s for _, s in sites), rooms=tuple(r for _, r in rooms),
                     bridges=tuple(b for _, b in bridges))


def _unique(items: Sequence[tuple[Entry, Any]], findings: list[Finding]) -> set[str]:
    """The codes of the items; a code given twice (sites and centres share theirs) is a finding at the second."""
    first: dict[str, Entry] = {}
    for entry, item in items:
        if item.code in first:
            earlier = first[item.code]
            findings.append(Finding(entry.file, entry.at("code"), entry.where("code"),
                                    f"duplicate code {item.code!r} (first at {earlier.file}:{earlier.line})"))
        else:
            first[item.code] = entry
    return set(first)


# What a sync changes ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    kind: str  # site, room, bridge
    code: str
    action: str  # add, change, retire, restore
    fields: tuple[str, ...] = ()

    def __str__(self) -> str:
        sign = {"add": "+", "change": "~", "retire": "-", "restore": "+"}[self.action]
        detail = f" ({', '.join(self.fields)})" if self.fields else ""
        return f"{sign} {self.kind} {self.code}: {self.action}{detail}"


def diff(kind: str, current: Mapping[str, Any], retired: Iterable[str], desired: Iterable[Any]) -> list[Change]:
    """The changes that make `current` (code -> item in service) and `retired` (codes) into `desired`: new codes
    are added, retired ones coming back restored, changed ones listed with their fields, missing ones retired."""
    retired_codes = set(retired)
    changes: list[Change] = []
    wanted = {item.code: item for item in desired}
    for code, item in sorted(wanted.items()):
        if code in current:
            before = current[code]
            changed = tuple(f.name for f in fields(item) if getattr(before, f.name) != getattr(item, f.name))
            if changed:
                changes.append(Change(kind, code, "change", changed))
        else:
            changes.append(Change(kind, code, "restore" if code in retired_codes else "add"))
    changes.extend(Change(kind, code, "retire") for code in sorted(set(current) - set(wanted)))
    return changes


# Probing -------------------------------------------------------------------------------------------------------

PROBE_RESULTS = ("ok", "down", "error")


@dataclass(frozen=True)
class ProbeOutcome:
    """What one probe of a room says: `result` ok (a 2xx), down (no answer, an ICMP error or a non-2xx answer: the
    room is not there) or error (the prober could not ask: a refused target, a send failure); `state` the room's
    state it implies (None: it says nothing about the room, which keeps its state)."""

    result: str
    state: str | None
    text: str
    rtt: float | None


def probe_outcome(ok: bool, status: int | None, rtt: float | None, error: str | None) -> ProbeOutcome:
    if ok:
        return ProbeOutcome("ok", "up", f"{status} in {rtt * 1000:.1f} ms" if rtt is not None else str(status), rtt)
    if status is not None:
        return ProbeOutcome("down", "down", f"answered {status}", rtt)
    if error == "timeout" or (error and "(ICMP)" in error):
        return ProbeOutcome("down", "down", error, None)
    return ProbeOutcome("error", None, f"not probed: {error}", None)


MAX_PROBE_WINDOW = 30.0  # 5,000 sends spread over 30 s: ~170 a second, never a burst


def probe_window(period: float, timeout: float) -> float:
    """The part of a probe period over which a cycle spreads its sends: what leaves time for the last answers and
    the writing before the next cycle (half the period, and MAX_PROBE_WINDOW, at most)."""
    return max(0.0, min(period / 2, period - 2 * timeout, MAX_PROBE_WINDOW))


# Bridge rooms: where each room's persistent video room goes ----------------------------------------------------

BRIDGE_ROOM_BASE = 100000  # Janus room numbers of catalogue rooms: base + the room's id (never Janus's 1234/5678)


@dataclass(frozen=True)
class BridgeSlots:
    """A bridge as placement sees it: whether it takes rooms (up, in service) and how many it holds and may hold."""

    code: str
    healthy: bool
    capacity: int
    assigned: int


@dataclass(frozen=True)
class Placement:
    room: str
    before: str | None  # the bridge it was on (None: none yet)
    after: str | None  # the bridge it goes to (None: no bridge has room for it)


def bridge_room_number(room_id: int) -> int:
    return BRIDGE_ROOM_BASE + room_id


def place(rooms: Sequence[tuple[str, str | None]], bridges: Sequence[BridgeSlots]) -> list[Placement]:
    """Where each room (code, its bridge or None) that needs moving goes: a room on a healthy bridge stays; a room
    with none, or on a bridge that is down or gone (drained), goes to the least-loaded healthy bridge with capacity
    (load: assigned / capacity; ties by code), one at a time so that loads even out. Rooms in code order, so the same
    input always gives the same plan."""
    slots = {b.code: [b.assigned, b.capacity] for b in bridges if b.healthy}
    moves = []
    for room, current in sorted(rooms):
        if current in slots:
            continue
        candidates = [(used / capacity, code) for code, (used, capacity) in slots.items() if used < capacity]
        target = min(candidates)[1] if candidates else None
        if target is not None:
            slots[target][0] += 1
        if target != current:
            moves.append(Placement(room, current, target))
    return moves


# The bridge port's plain types ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class BridgeInfo:
    version: str
    up: bool
    # Seconds an idle session lives (0: forever); below 31 the HTTP API's own long polls would not keep it alive.
    session_timeout: int = 0
    # Whether the videoroom plugin is loaded (without it the bridge has no rooms to give).
    videoroom: bool = False


@dataclass(frozen=True)
class BridgeRoom:
    room: int
    description: str
    max_publishers: int
    participants: int
    pin_required: bool


@dataclass(frozen=True)
class Participant:
    id: int | str
    display: str
    publisher: bool
    talking: bool


@dataclass(frozen=True)
class BridgeLoad:
    rooms: int
    participants: int


@dataclass(frozen=True)
class BridgeAddress:
    """Where a bridge answers, and its admin secret (never logged: not in repr)."""

    code: str
    address: str
    http_port: int
    admin_port: int
    admin_secret: str = ""

    def __repr__(self) -> str:
        return f"BridgeAddress({self.code!r}, {self.address!r}, {self.http_port}, {self.admin_port})"

    @property
    def url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.http_port}/janus"

    @property
    def admin_url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.admin_port}/admin"
