"""Pure rules of the migration engine: the system inventory, the component catalogue, waves, plans and steps.

Standard library only (no web, database, cloud or YAML here): every function takes and returns plain data
(frozen dataclasses, enums, tuples, dicts), so the models, the API and the workflows can call it as it is.

- Inventory: `parse_inventory` turns already-read rows (CSV or YAML, as dicts) into `System`s, all or nothing:
  it raises `InventoryError` carrying one `Finding` per problem (row, field, system, message); `inventory_rows`
  writes them back.
- Catalogue: `catalogue_from_data` validates the versioned catalogue; `Catalogue.match` finds the entry of a
  component by kind, vendor, product and version range. A component with no entry is flagged (a `Finding`),
  never guessed: a system with one cannot be planned.
- Waves: `plan_waves` groups systems so that each migrates after what it depends on (rule below);
  `check_waves` checks a hand-made grouping; a dependency cycle raises `DependencyCycleError` naming it.
- Plan: `plan_migration` lists the servers, roles, data moves and checks of every system, wave by wave, and
  checks them against the agencies' quotas and the cloud's free capacity; `MigrationPlan.render` prints it like
  `terraform plan`, `MigrationPlan.to_dict` gives it as JSON-ready data.
- Steps: `next_step` and `rollback_steps` over the per-system sequence precheck -> ... -> retire.

The wave rule: a system migrates in a later wave than every system it depends on. Two exceptions:
- a dependency already migrated (status `migrated`) constrains nothing;
- a dependency that is open source already (every component matched to an open-source entry) may migrate in the
  same wave, before its dependent: it is only re-hosted, its interfaces do not change.
A dependency that is neither migrated nor in the plan is a finding (`dependency_not_planned`): the dependent
would be cut over before what it needs. Within a wave systems run dependencies first, then by code.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, time, timedelta
from enum import StrEnum
from heapq import heappop, heappush
from typing import Any

# --------------------------------------------------------------------------- enums and constants


class ComponentKind(StrEnum):
    """What a component is in a system's stack."""

    OS = "os"
    DB = "db"
    WAS = "was"  # web application server (WebLogic, JEUS, Tomcat)
    WEB = "web"  # web server (WebtoB, IIS, nginx)
    MIDDLEWARE = "middleware"  # TP monitors, message queues
    FRAMEWORK = "framework"  # application or UI frameworks (eGovFrame, MiPlatform)
    APP = "app"  # packaged application products


class Criticality(StrEnum):
    """How much the system's users depend on it; a critical one needs a maintenance window."""

    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class SystemStatus(StrEnum):
    """Where the system runs: only legacy systems are planned."""

    LEGACY = "legacy"  # still in the old data centre: to migrate
    MIGRATED = "migrated"  # already on the cloud


class Grade(StrEnum):
    """Migration effort of a component, like ora2pg's migration levels."""

    A = "A"
    B = "B"
    C = "C"

    @property
    def meaning(self) -> str:
        return {"A": "automatic", "B": "some manual work", "C": "complex"}[self.value]


class Tier(StrEnum):
    """The kind of server a system gets on the cloud; each has its own server(s)."""

    DB = "db"
    APP = "app"
    WEB = "web"


# The project's roles, in the order migrate_system.yml applies them: data is in before the application starts.
ROLES = ("base", "postgresql", "data_migration", "tomcat", "nginx", "app_deploy")
DATA_FORMATS = ("sql", "csv")  # what the data_migration role loads
CATALOGUE_SCHEMA = 1
DEFAULT_IMAGE = "debian-12"
UNLIMITED = -1  # a quota or free-capacity figure without a limit, as OpenStack reports it
MAX_COUNT = 2**31 - 1  # sizes are stored in INTEGER columns

# System codes name the servers (`<code>-<tier>-<n>`), so they must make valid host names; they also satisfy
# migrate_system.yml's migration_system pattern.
_SYSTEM_CODE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$")
_ENTRY_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_VERSION_NUMBER = re.compile(r"\d+(?:\.\d+)*")
_MAX_SERVERS_PER_TIER = 16
_ENTRY_FIELDS = ("id", "kind", "vendors", "products", "versions", "open_source", "target", "role", "check", "grade",
                 "data_move", "notes")
# How parsers report a problem: (field, message[, finding code]).
_Report = Callable[..., None]


def check_module(role: str) -> str:
    """The testinfra module that proves a role (playbooks/checks/test_<role>.py)."""
    return f"playbooks/checks/test_{role}.py"


def agency_network(agency: str) -> str:
    """The agency's network on the cloud: the name cloud onboarding gives it (OnboardingSpec.network_name)."""
    return f"agency-{agency.lower()}-net"


# --------------------------------------------------------------------------- findings and errors


@dataclass(frozen=True)
class Finding:
    """One problem, reported with everything needed to fix it; several are reported at once."""

    code: str  # e.g. required, invalid, unknown_component, dependency_cycle, over_quota
    message: str
    field: str = ""  # the row field, or e.g. quota.cores
    system: str | None = None
    row: int | None = None
    agency: str | None = None
    wave: int | None = None

    def describe(self) -> str:
        where = " ".join(p for p in (f"row {self.row}" if self.row is not None else "", self.system or "",
                                     self.field) if p)
        return f"{where}: {self.message}" if where else self.message

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class MigrationError(ValueError):
    """Bad input for a migration rule: the message, and where (field, system, row); `findings` lists them all."""

    def __init__(self, message: str, *, field: str = "", system: str | None = None, row: int | None = None,
                 findings: Iterable[Finding] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.system = system
        self.row = row
        self.findings = tuple(findings)

    @classmethod
    def of(cls, findings: Sequence[Finding]) -> MigrationError:
        """The error for a non-empty list of findings: the first one's place, a count of the others."""
        first = findings[0]
        more = f" (and {len(findings) - 1} more)" if len(findings) > 1 else ""
        return cls(first.describe() + more, field=first.field, system=first.system, row=first.row,
                   findings=findings)


class InventoryError(MigrationError):
    """An inventory refused as a whole: `findings` has every bad row."""


class CatalogueError(MigrationError):
    """A catalogue file that cannot be used: `findings` has every bad entry."""


class PlanningError(MigrationError):
    """A system that cannot be planned (unknown component, no flavor large enough)."""


class StepError(MigrationError):
    """Steps reported done out of order, or a rollback that is no longer possible."""


class DependencyCycleError(MigrationError):
    """Systems that depend on each other in a circle: none can migrate first."""

    def __init__(self, cycle: Sequence[str]) -> None:
        self.cycle = tuple(cycle)
        super().__init__(describe_cycle(cycle), field="depends_on", system=cycle[0])


def describe_cycle(cycle: Sequence[str]) -> str:
    """'dependency cycle: a -> b -> c -> a' (the cycle lists its first member again at the end)."""
    return "dependency cycle: " + " -> ".join(cycle)


# --------------------------------------------------------------------------- versions


def version_key(version: str) -> tuple[int, ...] | None:
    """The first dotted number of a version text: 11gR2 -> (11,), B.11.31 -> (11, 31), 2008 R2 -> (2008,).

    Vendors' marketing names (8i, 11g, 12c, 11i v3) carry the release number first; None when there is no number.
    """
    found = _VERSION_NUMBER.search(version)
    return tuple(int(part) for part in found.group().split(".")) if found else None


def _cut(key: tuple[int, ...], length: int) -> tuple[int, ...]:
    return (key + (0,) * length)[:length]


@dataclass(frozen=True)
class VersionRange:
    """Inclusive bounds compared on as many numbers as the bound has: maximum "11" takes 11.31, minimum "9.2"
    refuses 9.0. None: no bound."""

    minimum: str | None = None
    maximum: str | None = None

    def contains(self, version: str) -> bool:
        if self.minimum is None and self.maximum is None:
            return True
        key = version_key(version)
        if key is None:
            return False
        low = version_key(self.minimum) if self.minimum is not None else None
        high = version_key(self.maximum) if self.maximum is not None else None
        return (low is None or _cut(key, len(low)) >= low) and (high is None or _cut(key, len(high)) <= high)

    def overlaps(self, other: VersionRange) -> bool:
        return not (_entirely_below(self.maximum, other.minimum) or _entirely_below(other.maximum, self.minimum))

    def __str__(self) -> str:
        if self.minimum and self.maximum:
            return f"{self.minimum} to {self.maximum}"
        if self.minimum:
            return f"{self.minimum} or later"
        return f"up to {self.maximum}" if self.maximum else "any version"


def _entirely_below(high: str | None, low: str | None) -> bool:
    """Every version up to `high` is under `low` (no version satisfies both)."""
    if high is None or low is None:
        return False
    high_key, low_key = version_key(high) or (), version_key(low) or ()
    common = min(len(high_key), len(low_key))
    return high_key[:common] < low_key[:common]


# --------------------------------------------------------------------------- components and catalogue


def _norm(name: str) -> str:
    """Names compare without case, spaces or punctuation: HP-UX = hpux, 'Oracle DB' = oracledb."""
    return "".join(ch for ch in name.casefold() if ch.isalnum())


@dataclass(frozen=True)
class Component:
    """One piece of a system's stack, as the inventory names it (e.g. db Oracle / Oracle Database / 11g)."""

    kind: ComponentKind
    vendor: str
    product: str
    version: str

    @property
    def label(self) -> str:
        return f"{self.product} {self.version}"

    def compact(self) -> str:
        """The one-cell form used in CSV files: kind:vendor:product:version."""
        return f"{self.kind}:{self.vendor}:{self.product}:{self.version}"


@dataclass(frozen=True)
class DataMoveSpec:
    """How a database's data reaches PostgreSQL: the format data_migration loads, and the export tool."""

    format: str  # sql | csv
    tool: str


@dataclass(frozen=True)
class CatalogueEntry:
    """A (usually proprietary) component line and the open-source target that replaces it."""

    id: str
    kind: ComponentKind
    vendors: tuple[str, ...]  # the first is the canonical name, the others aliases
    products: tuple[str, ...]
    versions: VersionRange
    open_source: bool  # is the source component itself open source (counts for adoption now)
    target: Component
    role: str  # the project role that installs the target
    check: str  # the testinfra module that proves it
    grade: Grade
    data_move: DataMoveSpec | None = None
    notes: str = ""

    def names_match(self, component: Component) -> bool:
        return (component.kind == self.kind and _norm(component.vendor) in {_norm(v) for v in self.vendors}
                and _norm(component.product) in {_norm(p) for p in self.products})

    def matches(self, component: Component) -> bool:
        return self.names_match(component) and self.versions.contains(component.version)


@dataclass(frozen=True)
class Catalogue:
    """The versioned list of entries; a plan records the version it was matched against."""

    version: str
    entries: tuple[CatalogueEntry, ...]

    def match(self, component: Component) -> CatalogueEntry | None:
        """The one entry for the component (the catalogue is checked to have no overlaps), or None."""
        return next((entry for entry in self.entries if entry.matches(component)), None)

    def entry(self, entry_id: str) -> CatalogueEntry:
        for entry in self.entries:
            if entry.id == entry_id:
                return entry
        raise KeyError(entry_id)


def catalogue_from_data(data: Mapping[str, Any]) -> Catalogue:
    """The catalogue from its file's parsed content; raises CatalogueError listing every bad entry."""
    findings: list[Finding] = []

    def bad(where: str, message: str, code: str = "invalid") -> None:
        findings.append(Finding(code, message, field=where))

    if not isinstance(data, Mapping):
        raise CatalogueError.of([Finding("invalid", "the catalogue must be a mapping with schema, version, entries",
                                         field="file")])
    if data.get("schema") != CATALOGUE_SCHEMA:
        bad("schema", f"must be {CATALOGUE_SCHEMA} (got {data.get('schema')!r})")
    version = data.get("version")
    if not isinstance(version, str) or not version.strip():
        bad("version", "must be a non-empty text such as '2025.1' (quote it in YAML)")
    raw_entries = data.get("entries")
    if not isinstance(raw_entries, list) or not raw_entries:
        bad("entries", "must be a non-empty list")
        raw_entries = []
    entries: list[tuple[int, CatalogueEntry]] = []  # with their place in the file, for the messages
    for index, raw in enumerate(raw_entries):
        entry = _catalogue_entry(raw, f"entries[{index}]", bad)
        if entry is not None:
            entries.append((index, entry))
    seen: dict[str, int] = {}
    for index, entry in entries:
        if entry.id in seen:
            bad(f"entries[{index}].id", f"{entry.id} is already the id of entries[{seen[entry.id]}]", "duplicate")
        seen.setdefault(entry.id, index)
    # Overlapping entries would make a match depend on the file's order: refused, so matching never guesses.
    for position, (i, first) in enumerate(entries):
        for j, second in entries[position + 1:]:
            if (first.kind == second.kind and {_norm(v) for v in first.vendors} & {_norm(v) for v in second.vendors}
                    and {_norm(p) for p in first.products} & {_norm(p) for p in second.products}
                    and first.versions.overlaps(second.versions)):
                bad(f"entries[{j}]", f"{second.id} ({second.versions}) matches components that entries[{i}] "
                                     f"{first.id} ({first.versions}) matches too", "overlap")
    if findings:
        raise CatalogueError.of(findings)
    assert isinstance(version, str)
    return Catalogue(version.strip(), tuple(entry for _, entry in entries))


def _catalogue_entry(raw: Any, where: str, bad: _Report) -> CatalogueEntry | None:
    if not isinstance(raw, Mapping):
        bad(where, "must be a mapping")
        return None
    problems: list[str] = []

    def fail(name: str, message: str) -> None:
        problems.append(name)
        bad(f"{where}.{name}", message)

    for name in sorted(set(map(str, raw)) - set(_ENTRY_FIELDS)):
        fail(name, f"unknown field (an entry has {', '.join(_ENTRY_FIELDS)})")

    entry_id = raw.get("id")
    if not isinstance(entry_id, str) or not _ENTRY_ID.match(entry_id):
        fail("id", "must be a lower-case slug such as oracle-database")
    kind = _enum(ComponentKind, raw.get("kind"))
    if kind is None:
        fail("kind", f"must be one of {', '.join(ComponentKind)}")
    names: dict[str, tuple[str, ...]] = {}
    for name in ("vendors", "products"):
        value = raw.get(name)
        value = [value] if isinstance(value, str) else value
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
            fail(name, "must be a non-empty list of names (the first is the canonical one)")
        else:
            names[name] = tuple(v.strip() for v in value)
    versions = VersionRange()
    raw_versions = raw.get("versions")
    if raw_versions is not None:
        if not isinstance(raw_versions, Mapping) or set(raw_versions) - {"min", "max"}:
            fail("versions", "must be a mapping with min and/or max")
        else:
            bounds = {k: raw_versions.get(k) for k in ("min", "max")}
            for key, value in bounds.items():
                if value is not None and (not isinstance(value, str) or version_key(value) is None):
                    fail(f"versions.{key}", "must be a quoted version with a number, such as '11' or '10.3'")
            if "versions.min" not in problems and "versions.max" not in problems:
                versions = VersionRange(bounds["min"], bounds["max"])
                if _entirely_below(bounds["max"], bounds["min"]):
                    fail("versions", f"min {bounds['min']} is above max {bounds['max']}")
    open_source = raw.get("open_source")
    if not isinstance(open_source, bool):
        fail("open_source", "must be true or false")
    target = raw.get("target")
    target_component: Component | None = None
    if not isinstance(target, Mapping) or not all(isinstance(target.get(k), str) and target[k].strip()
                                                  for k in ("vendor", "product", "version")):
        fail("target", "must have vendor, product and version (quoted text)")
    elif kind is not None:
        target_component = Component(kind, target["vendor"].strip(), target["product"].strip(),
                                     target["version"].strip())
    role = raw.get("role")
    if role not in ROLES:
        fail("role", f"must be one of the project's roles: {', '.join(ROLES)}")
    check = raw.get("check")
    if role in ROLES and check != check_module(str(role)):
        fail("check", f"must be {check_module(str(role))}, the checks of role {role}")
    grade = _enum(Grade, raw.get("grade"))
    if grade is None:
        fail("grade", "must be A (automatic), B (some manual work) or C (complex)")
    data_move: DataMoveSpec | None = None
    raw_move = raw.get("data_move")
    if raw_move is not None:
        if (not isinstance(raw_move, Mapping) or raw_move.get("format") not in DATA_FORMATS
                or not isinstance(raw_move.get("tool"), str) or not raw_move["tool"].strip()):
            fail("data_move", f"must have format ({' or '.join(DATA_FORMATS)}) and tool")
        elif role != "postgresql":
            fail("data_move", "only a database replaced by postgresql moves data")
        else:
            data_move = DataMoveSpec(raw_move["format"], raw_move["tool"].strip())
    notes = raw.get("notes") or ""
    if not isinstance(notes, str):
        fail("notes", "must be text")
    if problems or target_component is None or kind is None or grade is None:
        return None
    return CatalogueEntry(
        id=str(entry_id), kind=kind, vendors=names["vendors"], products=names["products"], versions=versions,
        open_source=bool(open_source), target=target_component, role=str(role), check=str(check), grade=grade,
        data_move=data_move, notes=" ".join(notes.split()))


def _enum(enum: Any, value: Any) -> Any:
    try:
        return enum(str(value).strip()) if value is not None else None
    except ValueError:
        return None


# --------------------------------------------------------------------------- maintenance windows

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # datetime.weekday() order
_WINDOW = re.compile(r"^\s*(?P<days>[A-Za-z,\- ]+?)\s+(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})\s*$")


@dataclass(frozen=True)
class MaintenanceWindow:
    """When a system may be cut over, in local time (Asia/Seoul); an end before the start runs past midnight."""

    days: tuple[int, ...]  # 0 = Monday, as datetime.weekday(); the day the window starts
    start: time
    end: time

    def __str__(self) -> str:
        days = "daily" if len(self.days) == 7 else ",".join(_DAYS[d].capitalize() for d in self.days)
        return f"{days} {self.start:%H:%M}-{self.end:%H:%M}"

    @property
    def minutes(self) -> int:
        start = self.start.hour * 60 + self.start.minute
        end = self.end.hour * 60 + self.end.minute
        return (end - start) % (24 * 60)

    def contains(self, moment: datetime) -> bool:
        """Whether a local time falls inside the window (a window past midnight belongs to its start day)."""
        for day_offset in (0, 1):
            start_day = moment - timedelta(days=day_offset)
            if start_day.weekday() not in self.days:
                continue
            opens = datetime.combine(start_day.date(), self.start, tzinfo=moment.tzinfo)
            if opens <= moment < opens + timedelta(minutes=self.minutes):
                return True
        return False


def parse_window(text: str) -> MaintenanceWindow:
    """'Sun 02:00-06:00', 'Sat,Sun 22:00-04:00', 'Mon-Fri 23:00-05:00', 'daily 01:00-04:00'; ValueError if not."""
    found = _WINDOW.match(text)
    if not found:
        raise ValueError(f"{text!r} is not a window such as 'Sun 02:00-06:00' or 'Mon-Fri 23:00-05:00'")
    days: set[int] = set()
    for part in found["days"].replace(" ", "").lower().split(","):
        if part == "daily":
            days.update(range(7))
        elif "-" in part:
            first, _, last = part.partition("-")
            if first not in _DAYS or last not in _DAYS:
                raise ValueError(f"{part!r}: days are Mon, Tue, Wed, Thu, Fri, Sat, Sun")
            i, j = _DAYS.index(first), _DAYS.index(last)
            days.update(range(i, j + 1) if i <= j else [*range(i, 7), *range(0, j + 1)])
        elif part in _DAYS:
            days.add(_DAYS.index(part))
        else:
            raise ValueError(f"{part!r}: days are Mon, Tue, Wed, Thu, Fri, Sat, Sun or daily")
    try:
        start, end = time.fromisoformat(found["start"].zfill(5)), time.fromisoformat(found["end"].zfill(5))
    except ValueError:
        raise ValueError(f"{text!r}: times are HH:MM, 00:00 to 23:59") from None
    if start == end:
        raise ValueError(f"{text!r}: the window must not start and end at the same time")
    return MaintenanceWindow(tuple(sorted(days)), start, end)


# --------------------------------------------------------------------------- systems and the inventory


@dataclass(frozen=True)
class Sizing:
    """The legacy system's total size: the cloud servers of its tiers share it."""

    vcpus: int
    ram_mb: int
    disk_gb: int
    data_gb: int = 0  # the data to move (part of the disk)


@dataclass(frozen=True)
class System:
    """An agency system of the inventory; `depends_on` lists the codes of the systems it calls."""

    code: str
    agency: str
    name_ko: str
    name_en: str
    criticality: Criticality
    sizing: Sizing
    components: tuple[Component, ...]
    depends_on: tuple[str, ...] = ()
    maintenance_window: MaintenanceWindow | None = None
    status: SystemStatus = SystemStatus.LEGACY
    notes: str = ""

    @property
    def name(self) -> str:
        return " / ".join(n for n in (self.name_ko, self.name_en) if n)


INVENTORY_FIELDS = ("code", "agency", "name_ko", "name_en", "criticality", "maintenance_window", "vcpus", "ram_mb",
                    "disk_gb", "data_gb", "components", "depends_on", "status", "notes")
_COMPONENT_FIELDS = ("kind", "vendor", "product", "version")


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or value == []


def parse_inventory(rows: Iterable[Mapping[str, Any]], *, first_row: int = 1) -> tuple[System, ...]:
    """Systems from rows (dicts with INVENTORY_FIELDS), in their order; all or nothing.

    Row numbers start at `first_row` (2 for a CSV file whose header is row 1); rows whose values are all empty are
    skipped but counted. `components` is a list of {kind, vendor, product, version} or, in CSV, one text
    'kind:vendor:product:version; ...'; `depends_on` a list or a text of codes separated by ',' or ';'.
    Raises InventoryError with every problem: bad fields, duplicate codes, unknown or self dependencies, cycles.
    """
    findings: list[Finding] = []
    systems: list[System] = []
    rows_of: dict[str, int] = {}  # the valid systems' rows
    first_seen: dict[str, int] = {}  # every code's first row, even a bad row's: for duplicates and dependencies
    for number, row in enumerate(rows, start=first_row):
        if not isinstance(row, Mapping):
            findings.append(Finding("invalid", "must be a mapping of field to value", row=number))
            continue
        row = {str(k).strip().lower(): v for k, v in row.items()}
        if all(_blank(v) for v in row.values()):
            continue
        system, problems = _parse_row(row, number)
        raw_code = row.get("code")
        code = raw_code.strip() if isinstance(raw_code, str) else None
        if code and code in first_seen:
            problems.insert(0, Finding("duplicate", f"code {code} is already on row {first_seen[code]}",
                                       field="code", system=code, row=number))
        elif code:
            first_seen[code] = number
        findings.extend(problems)
        if system is not None and not problems:
            rows_of[system.code] = number
            systems.append(system)
    for system in systems:
        for dep in system.depends_on:
            if dep == system.code:
                findings.append(Finding("self_dependency", "a system cannot depend on itself", field="depends_on",
                                        system=system.code, row=rows_of[system.code]))
            elif dep not in first_seen:
                findings.append(Finding("unknown_dependency", f"depends on {dep}, which is not in the inventory",
                                        field="depends_on", system=system.code, row=rows_of[system.code]))
    for cycle in find_cycles(systems):
        if len(cycle) == 2:
            continue  # a system depending on itself: reported above as self_dependency
        findings.append(Finding("dependency_cycle", describe_cycle(cycle), field="depends_on", system=cycle[0],
                                row=rows_of[cycle[0]]))
    if findings:
        raise InventoryError.of(sorted(findings, key=lambda f: f.row if f.row is not None else 0))
    return tuple(systems)


def _parse_row(row: Mapping[str, Any], number: int) -> tuple[System | None, list[Finding]]:
    problems: list[Finding] = []
    raw_code = row.get("code")
    code = raw_code.strip() if isinstance(raw_code, str) else None

    def bad(name: str, message: str, kind: str = "invalid") -> None:
        problems.append(Finding(kind, message, field=name, system=code, row=number))

    for name in sorted(set(row) - set(INVENTORY_FIELDS)):
        bad(name, f"unknown field (the fields are {', '.join(INVENTORY_FIELDS)})", "unknown_field")
    for name in INVENTORY_FIELDS:
        if (char := _control_character(row.get(name))) is not None:
            bad(name, f"control character {char} not allowed (text may hold tabs and line breaks only)")
    if _blank(raw_code):
        bad("code", "required", "required")
    elif code is None or not _SYSTEM_CODE.match(code):
        bad("code", f"{raw_code!r} must be 1-40 lower-case letters, digits or hyphens, such as mois-edms "
                    "(it names the system's servers)")
    agency = _text(row.get("agency"))
    if not agency:
        bad("agency", "required", "required")
    elif " " in agency:
        bad("agency", f"{agency!r} must be one agency code without spaces, such as MOIS or SEOUL")
    name_ko, name_en = _text(row.get("name_ko")), _text(row.get("name_en"))
    if not name_ko and not name_en:
        bad("name_ko", "a system needs a name (name_ko or name_en)", "required")
    criticality = _enum(Criticality, str(row.get("criticality")).lower())
    if _blank(row.get("criticality")):
        bad("criticality", "required", "required")
    elif criticality is None:
        bad("criticality", f"{row.get('criticality')!r} must be one of {', '.join(Criticality)}")
    sizes = {name: _count(row.get(name), name, 1 if name in ("vcpus", "ram_mb") else 0,
                          required=name != "data_gb", bad=bad)
             for name in ("vcpus", "ram_mb", "disk_gb", "data_gb")}
    if sizes["data_gb"] is not None and sizes["disk_gb"] is not None and sizes["data_gb"] > sizes["disk_gb"]:
        bad("data_gb", f"{sizes['data_gb']} GB of data do not fit on {sizes['disk_gb']} GB of disk")
    window: MaintenanceWindow | None = None
    raw_window = row.get("maintenance_window")
    if not _blank(raw_window):
        try:
            window = parse_window(str(raw_window))
        except ValueError as exc:
            bad("maintenance_window", str(exc))
    elif criticality is Criticality.CRITICAL:
        bad("maintenance_window", "a critical system needs a maintenance window for its cutover", "required")
    status = SystemStatus.LEGACY
    if not _blank(row.get("status")):
        parsed_status = _enum(SystemStatus, str(row.get("status")).lower())
        if parsed_status is None:
            bad("status", f"{row.get('status')!r} must be one of {', '.join(SystemStatus)}")
        else:
            status = parsed_status
    components = _components(row.get("components"), bad)
    depends_on = _codes(row.get("depends_on"), bad)
    notes = row.get("notes")
    if not _blank(notes) and not isinstance(notes, str):
        bad("notes", "must be text")
    if problems:
        return None, problems
    assert code is not None and criticality is not None
    sizing = Sizing(**{k: v or 0 for k, v in sizes.items()})
    return System(code=code, agency=agency, name_ko=name_ko, name_en=name_en, criticality=criticality,
                  sizing=sizing, components=components, depends_on=depends_on, maintenance_window=window,
                  status=status, notes=_text(notes)), problems


def _control_character(value: Any) -> str | None:
    """The first control character (but tab and line breaks) in a text or the texts inside `value`, as its code
    point ("U+0000"). The same rule as controlplane.inputs, which this module (standard library only) cannot import."""
    if isinstance(value, str):
        return next((f"U+{ord(c):04X}" for c in value if c not in "\t\n\r" and unicodedata.category(c) == "Cc"),
                    None)
    inner = value.values() if isinstance(value, Mapping) else value if isinstance(value, list | tuple) else ()
    return next((found for item in inner if (found := _control_character(item)) is not None), None)


def _text(value: Any) -> str:
    return " ".join(str(value).split()) if not _blank(value) else ""


def _count(value: Any, name: str, minimum: int, *, required: bool, bad: _Report) -> int | None:
    if _blank(value):
        if required:
            bad(name, "required", "required")
        return None
    number: int | None = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    if number is None or not minimum <= number <= MAX_COUNT:
        bad(name, f"{value!r} must be a whole number from {minimum} to {MAX_COUNT}")
        return None
    return number


def _components(value: Any, bad: _Report) -> tuple[Component, ...]:
    if _blank(value):
        bad("components", "a system needs at least one component (its operating system at least)", "required")
        return ()
    items = [part for part in value.split(";") if part.strip()] if isinstance(value, str) else value
    if not isinstance(items, list):
        bad("components", "must be a list of {kind, vendor, product, version} or 'kind:vendor:product:version; ...'")
        return ()
    components: list[Component] = []
    for index, item in enumerate(items):
        where = f"components[{index}]"
        if isinstance(item, str):
            parts = [p.strip() for p in item.split(":")]
            if len(parts) != 4:
                bad(where, f"{item.strip()!r} must be kind:vendor:product:version")
                continue
            item = dict(zip(_COMPONENT_FIELDS, parts, strict=True))
        if not isinstance(item, Mapping):
            bad(where, "must be a mapping with kind, vendor, product and version")
            continue
        fields: dict[str, str] = {}
        for name in _COMPONENT_FIELDS:
            raw = item.get(name)
            if isinstance(raw, float):
                # YAML reads 12.10 as the number 12.1: a version must be quoted to mean what it says.
                bad(f"{where}.{name}", f"{raw!r} must be quoted text (YAML reads 12.10 as 12.1)")
            elif _blank(raw) or isinstance(raw, bool) or not isinstance(raw, str | int):
                bad(f"{where}.{name}", "required", "required")
            else:
                fields[name] = " ".join(str(raw).split())
        extra = sorted(set(item) - set(_COMPONENT_FIELDS))
        if extra:
            bad(where, f"unknown fields {', '.join(map(str, extra))} (a component has {', '.join(_COMPONENT_FIELDS)})",
                "unknown_field")
        if len(fields) < len(_COMPONENT_FIELDS) or extra:
            continue
        kind = _enum(ComponentKind, fields["kind"].lower())
        if kind is None:
            bad(f"{where}.kind", f"{fields['kind']!r} must be one of {', '.join(ComponentKind)}")
            continue
        components.append(Component(kind, fields["vendor"], fields["product"], fields["version"]))
    return tuple(components)


def _codes(value: Any, bad: _Report) -> tuple[str, ...]:
    if _blank(value):
        return ()
    items = re.split(r"[,;\s]+", value) if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        bad("depends_on", "must be a list of system codes (or, in CSV, codes separated by ',' or ';')")
        return ()
    codes: list[str] = []
    for item in (i.strip() for i in items):
        if item and item not in codes:
            codes.append(item)
    return tuple(codes)


def inventory_rows(systems: Iterable[System], *, flat: bool = False) -> list[dict[str, Any]]:
    """Rows that parse_inventory reads back to the same systems; flat=True makes every value one CSV cell."""
    rows: list[dict[str, Any]] = []
    for s in systems:
        components: Any = ([{"kind": str(c.kind), "vendor": c.vendor, "product": c.product, "version": c.version}
                            for c in s.components])
        depends: Any = list(s.depends_on)
        if flat:
            components = "; ".join(c.compact() for c in s.components)
            depends = "; ".join(s.depends_on)
        rows.append({
            "code": s.code, "agency": s.agency, "name_ko": s.name_ko, "name_en": s.name_en,
            "criticality": str(s.criticality),
            "maintenance_window": str(s.maintenance_window) if s.maintenance_window else ("" if flat else None),
            "vcpus": s.sizing.vcpus, "ram_mb": s.sizing.ram_mb, "disk_gb": s.sizing.disk_gb,
            "data_gb": s.sizing.data_gb, "components": components, "depends_on": depends, "status": str(s.status),
            "notes": s.notes,
        })
    return rows


def find_cycles(systems: Iterable[System]) -> tuple[tuple[str, ...], ...]:
    """Every dependency cycle (dependencies outside `systems` ignored), each once, starting at its smallest code
    and repeating it at the end: ('a', 'b', 'c', 'a') means a depends on b, b on c, c on a."""
    graph = _graph(systems)
    # Strip what depends (transitively) only on systems outside any cycle; what is left is in or leads to one.
    remaining = set(graph)
    changed = True
    while changed:
        changed = False
        for code in sorted(remaining):
            if not any(dep in remaining for dep in graph[code]):
                remaining.discard(code)
                changed = True
    cycles: list[tuple[str, ...]] = []
    covered: set[str] = set()
    for start in sorted(remaining):
        if start in covered:
            continue
        path = _shortest_path_back(start, graph, remaining)
        if path is None:
            continue
        smallest = path.index(min(path[:-1]))
        cycle = (*path[smallest:-1], *path[:smallest], path[smallest])
        covered.update(cycle)
        if cycle not in cycles:
            cycles.append(cycle)
    return tuple(sorted(cycles))


def _graph(systems: Iterable[System]) -> dict[str, tuple[str, ...]]:
    systems = list(systems)
    codes = {s.code for s in systems}
    return {s.code: tuple(sorted(d for d in s.depends_on if d in codes)) for s in systems}


def _shortest_path_back(start: str, graph: Mapping[str, Sequence[str]], within: set[str]) -> list[str] | None:
    parents: dict[str, str] = {}
    queue = deque([start])
    seen = {start}
    while queue:
        code = queue.popleft()
        for dep in graph[code]:
            if dep == start:
                path = [start, code]
                while path[-1] != start:
                    path.append(parents[path[-1]])
                return path[::-1]
            if dep in within and dep not in seen:
                seen.add(dep)
                parents[dep] = code
                queue.append(dep)
    return None


# --------------------------------------------------------------------------- matching and adoption


@dataclass(frozen=True)
class ComponentMatch:
    """A system's component and its catalogue entry (None: unknown, flagged)."""

    system: str
    index: int  # the component's place in the system (components[index])
    component: Component
    entry: CatalogueEntry | None

    @property
    def open_now(self) -> bool:
        return self.entry is not None and self.entry.open_source


def match_system(system: System, catalogue: Catalogue) -> tuple[ComponentMatch, ...]:
    """Each component of the system with its entry, in the system's order."""
    return tuple(ComponentMatch(system.code, i, c, catalogue.match(c)) for i, c in enumerate(system.components))


def unknown_components(systems: Iterable[System], catalogue: Catalogue) -> tuple[Finding, ...]:
    """One finding per component without a catalogue entry, in inventory order: flagged, never guessed."""
    findings: list[Finding] = []
    for system in systems:
        for match in match_system(system, catalogue):
            if match.entry is None:
                findings.append(_unknown(system, match, catalogue))
    return tuple(findings)


def _unknown(system: System, match: ComponentMatch, catalogue: Catalogue) -> Finding:
    c = match.component
    where = f"components[{match.index}]"
    near = [e for e in catalogue.entries if e.names_match(c)]
    if near:
        covered = "; ".join(f"{e.id}: {e.versions}" for e in near)
        return Finding("unknown_version", f"{c.label} ({c.vendor}) is outside the versions the catalogue covers "
                                          f"for it ({covered}); add an entry before the system can be planned",
                       field=where, system=system.code, agency=system.agency)
    return Finding("unknown_component", f"no catalogue entry for {c.kind} {c.vendor} {c.label}; add one before the "
                                        "system can be planned", field=where, system=system.code,
                   agency=system.agency)


def is_open_now(system: System, catalogue: Catalogue) -> bool:
    """Every component of the system is matched to an entry whose source is open source."""
    return all(m.open_now for m in match_system(system, catalogue))


@dataclass(frozen=True)
class Adoption:
    """Open-source components of an agency, now and after the planned migrations."""

    agency: str
    components: int
    open_now: int
    open_after: int
    unknown: int  # components without a catalogue entry (counted as not open source)

    @property
    def share_now(self) -> float:
        return self.open_now / self.components if self.components else 0.0

    @property
    def share_after(self) -> float:
        return self.open_after / self.components if self.components else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "share_now": round(self.share_now, 4), "share_after": round(self.share_after, 4)}


def adoption(systems: Iterable[System], catalogue: Catalogue, *,
             planned: Iterable[str] | None = None) -> tuple[Adoption, ...]:
    """Per agency (by code), the share of components that are open source now and after migrating `planned`
    (default: every legacy system).

    A migrated system's matched components become their open-source targets. A component without an entry counts
    as not open source (the share never claims what the catalogue cannot show), and a system with one stays as it
    is: it cannot be planned.
    """
    systems = list(systems)
    plan = {s.code for s in systems if s.status is SystemStatus.LEGACY} if planned is None else set(planned)
    totals: dict[str, list[int]] = {}
    for system in systems:
        matches = match_system(system, catalogue)
        migrates = system.code in plan and all(m.entry is not None for m in matches)
        counts = totals.setdefault(system.agency, [0, 0, 0, 0])
        counts[0] += len(matches)
        counts[1] += sum(m.open_now for m in matches)
        counts[2] += len(matches) if migrates else sum(m.open_now for m in matches)
        counts[3] += sum(m.entry is None for m in matches)
    return tuple(Adoption(agency, *counts) for agency, counts in sorted(totals.items()))


def total_adoption(rows: Iterable[Adoption], agency: str = "ALL") -> Adoption:
    """The sum of several agencies' figures (government-wide by default)."""
    rows = list(rows)
    return Adoption(agency, sum(r.components for r in rows), sum(r.open_now for r in rows),
                    sum(r.open_after for r in rows), sum(r.unknown for r in rows))


# --------------------------------------------------------------------------- waves


@dataclass(frozen=True)
class WaveAssignment:
    """Waves from plan_waves, and what the operator should know about them."""

    waves: tuple[tuple[str, ...], ...]  # system codes, wave 1 first, each in the order it runs
    findings: tuple[Finding, ...] = ()


def plan_waves(systems: Iterable[System], catalogue: Catalogue, *, planned: Iterable[str] | None = None,
               max_per_wave: int | None = None) -> WaveAssignment:
    """The earliest wave of every planned system (default: every legacy one) under the wave rule (module doc).

    `max_per_wave` moves systems to later waves when a wave is full. Raises DependencyCycleError for a cycle among
    the planned systems; other problems (unknown or migrated codes, dependencies neither planned nor migrated) are
    findings, and a system with one is still placed.
    """
    if max_per_wave is not None and max_per_wave < 1:
        raise MigrationError("max_per_wave must be 1 or more", field="max_per_wave")
    by_code = {s.code: s for s in systems}
    findings: list[Finding] = []
    if planned is None:
        chosen = [c for c, s in by_code.items() if s.status is SystemStatus.LEGACY]
    else:
        chosen = []
        for code in planned:
            if _plannable(code, by_code, findings, wave=None) and code not in chosen:
                chosen.append(code)
    selected = [by_code[c] for c in chosen]
    findings += _unplanned_dependencies(selected, by_code, set(chosen))
    open_now = {s.code: is_open_now(s, catalogue) for s in selected}
    wave_of: dict[str, int] = {}
    members: dict[int, list[str]] = {}
    for code in _topological(selected):
        deps = [d for d in by_code[code].depends_on if d in wave_of]
        wave = max([1, *(wave_of[d] + (0 if open_now[d] else 1) for d in deps)])
        while max_per_wave is not None and len(members.get(wave, ())) >= max_per_wave:
            wave += 1
        wave_of[code] = wave
        members.setdefault(wave, []).append(code)
    by_wave = {n: [by_code[c] for c in codes] for n, codes in members.items()}
    waves = tuple(tuple(_topological(by_wave[n])) for n in sorted(by_wave))
    return WaveAssignment(waves, tuple(findings))


def check_waves(waves: Sequence[Sequence[str]], systems: Iterable[System],
                catalogue: Catalogue) -> tuple[Finding, ...]:
    """Every way a hand-made grouping (wave 1 first) breaks the wave rule; empty when it is sound.

    The order inside a wave does not matter: the plan runs each wave dependencies first.
    """
    by_code = {s.code: s for s in systems}
    findings: list[Finding] = []
    wave_of: dict[str, int] = {}
    for number, codes in enumerate(waves, start=1):
        for code in codes:
            if code in wave_of:
                findings.append(Finding("duplicate", f"is already in wave {wave_of[code]}", field="wave", system=code,
                                        wave=number))
            elif _plannable(code, by_code, findings, wave=number):
                wave_of[code] = number
    planned = [by_code[c] for c in wave_of]
    findings += _unplanned_dependencies(planned, by_code, set(wave_of))
    for system in planned:
        wave = wave_of[system.code]
        for dep in system.depends_on:
            if dep not in wave_of:
                continue
            if wave_of[dep] > wave or (wave_of[dep] == wave and not is_open_now(by_code[dep], catalogue)):
                why = "" if wave_of[dep] > wave else f" (the same wave only when {dep} is open source already)"
                findings.append(Finding(
                    "dependency_order", f"in wave {wave}, it depends on {dep} in wave {wave_of[dep]}: it must "
                                        f"migrate in a later wave than {dep}{why}",
                    field="wave", system=system.code, agency=system.agency, wave=wave))
    return tuple(findings)


def _plannable(code: str, by_code: Mapping[str, System], findings: list[Finding], *, wave: int | None) -> bool:
    system = by_code.get(code)
    if system is None:
        findings.append(Finding("unknown_system", f"{code} is not in the inventory", field="wave", system=code,
                                wave=wave))
        return False
    if system.status is SystemStatus.MIGRATED:
        findings.append(Finding("system_migrated", "is already migrated", field="status", system=code,
                                agency=system.agency, wave=wave))
        return False
    return True


def _unplanned_dependencies(planned: Iterable[System], by_code: Mapping[str, System],
                            codes: set[str]) -> list[Finding]:
    findings: list[Finding] = []
    for system in planned:
        for dep in system.depends_on:
            target = by_code.get(dep)
            if dep not in codes and (target is None or target.status is not SystemStatus.MIGRATED):
                findings.append(Finding(
                    "dependency_not_planned", f"depends on {dep}, which is neither migrated nor in the plan",
                    field="depends_on", system=system.code, agency=system.agency))
    return findings


def _topological(systems: Sequence[System]) -> list[str]:
    """Codes with dependencies first, ties by code; raises DependencyCycleError."""
    graph = _graph(systems)
    waiting = {code: len(deps) for code, deps in graph.items()}
    dependents: dict[str, list[str]] = {code: [] for code in graph}
    for code, deps in graph.items():
        for dep in deps:
            dependents[dep].append(code)
    ready = [code for code, count in waiting.items() if count == 0]
    ready.sort()
    order: list[str] = []
    while ready:
        code = heappop(ready)
        order.append(code)
        for dependent in dependents[code]:
            waiting[dependent] -= 1
            if waiting[dependent] == 0:
                heappush(ready, dependent)
    if len(order) < len(graph):
        raise DependencyCycleError(find_cycles(systems)[0])
    return order


# --------------------------------------------------------------------------- capacity and flavors


@dataclass(frozen=True)
class Flavor:
    """A server size the cloud offers."""

    name: str
    vcpus: int
    ram_mb: int
    disk_gb: int = 0  # 0: the flavor does not limit the disk (the dev cloud's)

    def fits(self, vcpus: int, ram_mb: int, disk_gb: int = 0) -> bool:
        return self.vcpus >= vcpus and self.ram_mb >= ram_mb and (self.disk_gb == 0 or self.disk_gb >= disk_gb)


# The dev cloud's flavors (see README); a real cloud passes its own list.
DEVCLOUD_FLAVORS = (Flavor("small", 1, 1024), Flavor("medium", 2, 2048), Flavor("large", 4, 4096))


def choose_flavor(vcpus: int, ram_mb: int, flavors: Iterable[Flavor], *, disk_gb: int = 0) -> Flavor | None:
    """The smallest flavor (fewest vCPUs, then least RAM, then name) that fits, or None."""
    fitting = [f for f in flavors if f.fits(vcpus, ram_mb, disk_gb)]
    return min(fitting, key=lambda f: (f.vcpus, f.ram_mb, f.disk_gb, f.name)) if fitting else None


@dataclass(frozen=True)
class Resources:
    """Instances, cores and RAM: what servers take, a quota allows or the cloud has free (UNLIMITED: no limit)."""

    instances: int = 0
    cores: int = 0
    ram_mb: int = 0

    def __add__(self, other: Resources) -> Resources:
        return Resources(self.instances + other.instances, self.cores + other.cores, self.ram_mb + other.ram_mb)


RESOURCE_FIELDS = ("instances", "cores", "ram_mb")
_RESOURCE_LABELS = {"instances": "instances", "cores": "cores", "ram_mb": "MB of RAM"}


@dataclass(frozen=True)
class Quota:
    """An agency's project quota on the cloud and what it already uses."""

    limit: Resources
    in_use: Resources = field(default_factory=Resources)


# --------------------------------------------------------------------------- steps


class Step(StrEnum):
    """The steps of one system's migration, in order."""

    PRECHECK = "precheck"
    PROVISION = "provision"
    CONFIGURE = "configure"
    MOVE_DATA = "move_data"
    VERIFY = "verify"
    CUTOVER = "cutover"
    RETIRE = "retire"

    @property
    def needs_approval(self) -> bool:
        """An operator approves the cutover: it is the step users notice."""
        return self is Step.CUTOVER

    @property
    def undo(self) -> str | None:
        """What a rollback does for this step once done; None when there is nothing to undo."""
        return _UNDO.get(self)


STEPS = tuple(Step)
_UNDO = {
    Step.PROVISION: "delete the system's servers (found by their tag), which removes their configuration too",
    Step.MOVE_DATA: "drop the migrated database: a copy of the data must not outlive the migration",
    Step.CUTOVER: "point the front back at the legacy backends (nginx_upstreams), then reconcile writes made since",
}


def _steps(done: Iterable[Step | str], steps: Sequence[Step]) -> list[Step]:
    try:
        given = {Step(s) for s in done}
    except ValueError as exc:
        raise StepError(f"{exc}; the steps are {', '.join(STEPS)}", field="steps") from None
    stray = sorted(given - set(steps), key=STEPS.index)
    if stray:
        raise StepError(f"{stray[0]} is not a step of this migration ({', '.join(steps)})", field="steps")
    prefix = list(steps[:len(given)])
    if set(prefix) != given:
        missing = next(s for s in prefix if s not in given)
        late = next(s for s in steps[len(given):] if s in given)
        raise StepError(f"{late} is done but {missing} is not: steps run in order ({' -> '.join(steps)})",
                        field="steps")
    return prefix


def next_step(done: Iterable[Step | str], *, steps: Sequence[Step] = STEPS) -> Step | None:
    """The step to run after `done` (None when all are done); check `Step.needs_approval` before running it.

    `steps` is the system's sequence (SystemPlan.steps leaves move_data out when there is no data). Raises
    StepError when `done` is not a prefix of it.
    """
    prefix = _steps(done, steps)
    return steps[len(prefix)] if len(prefix) < len(steps) else None


def rollback_steps(done: Iterable[Step | str], *, failed: Step | str | None = None,
                   steps: Sequence[Step] = STEPS) -> tuple[Step, ...]:
    """The steps a rollback undoes, last first: the done ones and the one that failed midway (it may have done part
    of its work; every undo is safe to repeat), leaving out those with nothing to undo (precheck, configure,
    verify). Refused (StepError) once retire has started: the legacy system is then gone.
    """
    prefix = _steps(done, steps)
    touched = list(prefix)
    if failed is not None:
        failed_step = Step(failed)
        expected = next_step(prefix, steps=steps)
        if failed_step != expected:
            after = f"the next step is {expected}" if expected else "every step is done"
            raise StepError(f"{failed_step} cannot have failed: {after}", field="failed")
        touched.append(failed_step)
    if Step.RETIRE in touched:
        raise StepError("retire has started: the legacy system is gone, so there is nothing to roll back to",
                        field="steps")
    return tuple(step for step in reversed(touched) if step.undo is not None)


# --------------------------------------------------------------------------- plans


@dataclass(frozen=True)
class Replacement:
    """A component of the system and the open-source target the plan installs instead."""

    index: int  # components[index]
    source: Component
    entry: str  # the catalogue entry's id
    target: Component
    grade: Grade
    open_source_before: bool


@dataclass(frozen=True)
class ServerPlan:
    """A server to create, with the roles its host gets (the Ansible groups it joins)."""

    name: str
    tier: Tier
    flavor: Flavor
    image: str
    network: str
    disk_gb: int  # the share of the system's disk this server needs
    roles: tuple[str, ...]

    @property
    def resources(self) -> Resources:
        return Resources(1, self.flavor.vcpus, self.flavor.ram_mb)


@dataclass(frozen=True)
class RoleRun:
    """A role applied to some of the system's servers, and the checks that prove it there."""

    role: str
    servers: tuple[str, ...]
    check: str  # the testinfra module run on the same servers afterwards


@dataclass(frozen=True)
class DataMove:
    """A database's data moved into PostgreSQL on the db server (role data_migration)."""

    source: Component
    entry: str
    database: str  # the PostgreSQL database it lands in
    server: str
    format: str
    tool: str


@dataclass(frozen=True)
class SystemPlan:
    """Everything one system's migration creates and runs."""

    system: str
    agency: str
    name: str
    criticality: Criticality
    maintenance_window: str | None
    wave: int
    network: str
    grade: Grade  # the hardest of its components
    data_gb: int
    replacements: tuple[Replacement, ...]
    servers: tuple[ServerPlan, ...]
    roles: tuple[RoleRun, ...]
    data_moves: tuple[DataMove, ...]

    @property
    def steps(self) -> tuple[Step, ...]:
        return tuple(s for s in STEPS if s is not Step.MOVE_DATA or self.data_moves)

    @property
    def resources(self) -> Resources:
        total = Resources()
        for server in self.servers:
            total += server.resources
        return total

    @property
    def role_applications(self) -> int:
        return sum(len(run.servers) for run in self.roles)

    def lines(self) -> list[str]:
        window = f", window {self.maintenance_window}" if self.maintenance_window else ""
        out = [f"  {self.system}  {self.name}  [{self.agency}, {self.criticality}, grade {self.grade}{window}]"]
        for r in self.replacements:
            arrow = "=" if _norm(r.source.product) == _norm(r.target.product) else "~"
            out.append(f"    {arrow} {r.source.kind} {r.source.label} -> {r.target.label} (grade {r.grade}, {r.entry})")
        for s in self.servers:
            out.append(f"    + server {s.name} ({s.flavor.name}: {s.flavor.vcpus} vCPU, {s.flavor.ram_mb} MB, "
                       f"{s.disk_gb} GB disk) image {s.image}, network {s.network}")
        for run in self.roles:
            out.append(f"    * role {run.role} on {', '.join(run.servers)}")
        for move in self.data_moves:
            out.append(f"    > data {move.source.label} -> database {move.database} on {move.server} "
                       f"({move.format} via {move.tool}, {self.data_gb} GB)")
        for run in self.roles:
            out.append(f"    ? check {run.check} on {', '.join(run.servers)}")
        out.append("    steps: " + " -> ".join(f"{s} (approval)" if s.needs_approval else str(s) for s in self.steps))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "steps": [str(s) for s in self.steps], "resources": asdict(self.resources)}


@dataclass(frozen=True)
class WavePlan:
    """The systems of one wave, in the order they run (dependencies first)."""

    number: int
    systems: tuple[SystemPlan, ...]


@dataclass(frozen=True)
class MigrationPlan:
    """Every wave's system plans and every finding; only a plan without findings may be applied. Warnings (traffic
    the agency's declared ingress would drop: controlplane.migration.ingress) do not stop it: the operator decides."""

    catalogue_version: str
    waves: tuple[WavePlan, ...]
    findings: tuple[Finding, ...]
    warnings: tuple[Finding, ...] = ()

    @property
    def ok(self) -> bool:
        """Nothing stops the plan: only then may it be applied."""
        return not self.findings

    @property
    def systems(self) -> tuple[SystemPlan, ...]:
        return tuple(s for wave in self.waves for s in wave.systems)

    @property
    def counts(self) -> dict[str, int]:
        return {"servers": sum(len(s.servers) for s in self.systems),
                "role_applications": sum(s.role_applications for s in self.systems),
                "data_moves": sum(len(s.data_moves) for s in self.systems),
                "systems": len(self.systems), "waves": len(self.waves), "findings": len(self.findings)}

    def summary(self) -> str:
        """'N to create, M roles to apply, K data moves' (one per server, per role and server, per database)."""
        c = self.counts
        return (f"{c['servers']} to create, {c['role_applications']} role{'s' * (c['role_applications'] != 1)} to "
                f"apply, {c['data_moves']} data move{'s' * (c['data_moves'] != 1)}")

    def render(self) -> str:
        """The plan as text, like `terraform plan`."""
        c = self.counts
        out = [f"Migration plan (catalogue {self.catalogue_version}): {c['systems']} systems in {c['waves']} waves", ""]
        for wave in self.waves:
            out.append(f"Wave {wave.number} ({len(wave.systems)} system{'s' * (len(wave.systems) != 1)})")
            for system in wave.systems:
                out += system.lines()
            out.append("")
        if self.findings:
            out.append(f"Findings ({len(self.findings)}): the plan cannot be applied until they are resolved")
            out += [f"  ! {f.describe()}" for f in self.findings]
            out.append("")
        if self.warnings:
            out.append(f"Warnings ({len(self.warnings)}): the plan can be applied, but this traffic would be dropped")
            out += [f"  ~ {f.describe()}" for f in self.warnings]
            out.append("")
        out.append(f"Plan: {self.summary()}.")
        return "\n".join(out)

    def to_dict(self) -> dict[str, Any]:
        return {"catalogue_version": self.catalogue_version, "ok": self.ok, "summary": self.summary(),
                "counts": self.counts,
                "waves": [{"number": w.number, "systems": [s.to_dict() for s in w.systems]} for w in self.waves],
                "findings": [f.to_dict() for f in self.findings], "warnings": [f.to_dict() for f in self.warnings]}


def plan_system(system: System, catalogue: Catalogue, flavors: Sequence[Flavor], *, wave: int = 1,
                image: str = DEFAULT_IMAGE, network: str | None = None) -> SystemPlan:
    """The servers, roles, data moves and checks of one system; raises PlanningError with all its findings.

    Servers: one tier per target (db for postgresql, app for tomcat, web for nginx; a system with none of them
    gets one app server). The system's size is split evenly across its tiers; each tier gets the smallest flavor
    that fits its share, and the app and web tiers scale out to several servers when no single flavor does
    (a database is never split). Every server gets base; data_migration goes with postgresql when data moves;
    app_deploy (the WAR or static site) goes to the app servers, else to the web servers.
    """
    matches = match_system(system, catalogue)
    findings = [_unknown(system, m, catalogue) for m in matches if m.entry is None]
    if findings:
        raise PlanningError.of(findings)
    entries = [m.entry for m in matches if m.entry is not None]
    network = network or agency_network(system.agency)
    roles = {e.role for e in entries}
    tiers = [t for t, role in ((Tier.DB, "postgresql"), (Tier.APP, "tomcat"), (Tier.WEB, "nginx")) if role in roles]
    tiers = tiers or [Tier.APP]
    deploys = bool(roles & {"tomcat", "nginx", "app_deploy"})
    moves = [m for m in matches if m.entry is not None and m.entry.data_move is not None]
    share = [math.ceil(n / len(tiers)) for n in (system.sizing.vcpus, system.sizing.ram_mb, system.sizing.disk_gb)]
    servers: list[ServerPlan] = []
    for tier in tiers:
        tier_roles = {"base"} | {Tier.DB: {"postgresql"} | ({"data_migration"} if moves else set()),
                                 Tier.APP: {"tomcat"} & roles, Tier.WEB: {"nginx"} & roles}[tier]
        if deploys and (tier is Tier.APP or (tier is Tier.WEB and Tier.APP not in tiers)):
            tier_roles.add("app_deploy")
        sized = _size_tier(system, tier, share, flavors, len(tiers))
        if isinstance(sized, Finding):
            findings.append(sized)
            continue
        count, flavor = sized
        servers += [ServerPlan(f"{system.code}-{tier}-{n}", tier, flavor, image, network,
                               math.ceil(share[2] / count), tuple(r for r in ROLES if r in tier_roles))
                    for n in range(1, count + 1)]
    if findings:
        raise PlanningError.of(findings)
    runs = tuple(RoleRun(role, tuple(s.name for s in servers if role in s.roles), check_module(role))
                 for role in ROLES if any(role in s.roles for s in servers))
    db_server = next((s.name for s in servers if s.tier is Tier.DB), "")
    base_db = system.code.replace("-", "_")
    data_moves = tuple(
        DataMove(m.component, m.entry.id, base_db if i == 0 else f"{base_db}_{i + 1}", db_server,
                 m.entry.data_move.format, m.entry.data_move.tool)
        for i, m in enumerate(moves) if m.entry is not None and m.entry.data_move is not None)
    replacements = tuple(Replacement(m.index, m.component, m.entry.id, m.entry.target, m.entry.grade,
                                     m.entry.open_source) for m in matches if m.entry is not None)
    return SystemPlan(
        system=system.code, agency=system.agency, name=system.name, criticality=system.criticality,
        maintenance_window=str(system.maintenance_window) if system.maintenance_window else None, wave=wave,
        network=network, grade=max((e.grade for e in entries), default=Grade.A), data_gb=system.sizing.data_gb,
        replacements=replacements, servers=tuple(servers), roles=runs, data_moves=data_moves)


def _size_tier(system: System, tier: Tier, share: Sequence[int], flavors: Sequence[Flavor],
               tiers: int) -> tuple[int, Flavor] | Finding:
    vcpus, ram_mb, disk_gb = share
    limit = 1 if tier is Tier.DB else _MAX_SERVERS_PER_TIER
    for count in range(1, limit + 1):
        flavor = choose_flavor(math.ceil(vcpus / count), math.ceil(ram_mb / count), flavors,
                               disk_gb=math.ceil(disk_gb / count))
        if flavor is not None:
            return count, flavor
    largest = max(flavors, key=lambda f: (f.vcpus, f.ram_mb), default=None)
    offered = f"the largest flavor is {largest.name} ({largest.vcpus} vCPU, {largest.ram_mb} MB)" if largest else \
        "no flavors were given"
    name = ("vcpus" if largest is None or largest.vcpus < vcpus else
            "ram_mb" if largest.ram_mb < ram_mb else "disk_gb")
    part = f"1/{tiers} of the system's size" if tiers > 1 else "the system's size"
    why = "a database is not split across servers" if tier is Tier.DB else f"not even on {limit} servers"
    return Finding("no_flavor", f"the {tier} tier needs {vcpus} vCPU, {ram_mb} MB and {disk_gb} GB ({part}) and no "
                                f"flavor fits: {offered}; {why}", field=name, system=system.code,
                   agency=system.agency)


def check_capacity(waves: Sequence[WavePlan], quotas: Mapping[str, Quota],
                   cloud_free: Resources) -> tuple[Finding, ...]:
    """Where the plan's servers, wave after wave (they stay), exceed an agency's quota or the cloud's free capacity:
    one finding per agency and resource (and per resource for the cloud), at the system that first crosses it."""
    findings: list[Finding] = []
    planned: dict[str, Resources] = {}
    cloud = Resources()
    reported: set[tuple[str, str]] = set()
    for wave in waves:
        for plan in wave.systems:
            quota = quotas.get(plan.agency)
            planned[plan.agency] = planned.get(plan.agency, Resources()) + plan.resources
            cloud += plan.resources
            if quota is None:
                if (plan.agency, "") not in reported:
                    reported.add((plan.agency, ""))
                    findings.append(Finding("no_quota", f"{plan.agency} has no quota on the cloud (is it onboarded?)",
                                            field="agency", system=plan.system, agency=plan.agency,
                                            wave=wave.number))
            else:
                for name in RESOURCE_FIELDS:
                    limit, used = getattr(quota.limit, name), getattr(quota.in_use, name)
                    wanted = getattr(planned[plan.agency], name)
                    if limit != UNLIMITED and used + wanted > limit and (plan.agency, name) not in reported:
                        reported.add((plan.agency, name))
                        findings.append(Finding(
                            "over_quota", f"wave {wave.number}: {plan.system} takes {plan.agency} over its quota of "
                                          f"{limit} {_RESOURCE_LABELS[name]}: {used} in use + {wanted} planned = "
                                          f"{used + wanted}",
                            field=f"quota.{name}", system=plan.system, agency=plan.agency, wave=wave.number))
            for name in RESOURCE_FIELDS:
                free, wanted = getattr(cloud_free, name), getattr(cloud, name)
                if free != UNLIMITED and wanted > free and ("", name) not in reported:
                    reported.add(("", name))
                    findings.append(Finding(
                        "over_cloud_capacity", f"wave {wave.number}: {plan.system} takes the plan over the cloud's "
                                               f"free {_RESOURCE_LABELS[name]}: {wanted} planned, {free} free",
                        field=f"cloud.{name}", system=plan.system, agency=plan.agency, wave=wave.number))
    return tuple(findings)


def plan_migration(systems: Sequence[System], catalogue: Catalogue, flavors: Sequence[Flavor], *,
                   quotas: Mapping[str, Quota], cloud_free: Resources,
                   waves: Sequence[Sequence[str]] | None = None, image: str = DEFAULT_IMAGE) -> MigrationPlan:
    """The whole plan: `waves` (system codes, wave 1 first; default: plan_waves over every legacy system), each
    system planned, then the capacity checked. Every problem is a finding; the plan is `ok` only without any.

    Raises DependencyCycleError for a cycle among the planned systems.
    """
    by_code = {s.code: s for s in systems}
    if waves is None:
        assignment = plan_waves(systems, catalogue)
        findings = list(assignment.findings)
        waves = assignment.waves
    else:
        findings = list(check_waves(waves, systems, catalogue))
    wave_plans: list[WavePlan] = []
    for number, codes in enumerate(waves, start=1):
        members = [by_code[c] for c in dict.fromkeys(codes)
                   if c in by_code and by_code[c].status is SystemStatus.LEGACY]
        plans: list[SystemPlan] = []
        for code in _topological(members):
            try:
                plans.append(plan_system(by_code[code], catalogue, flavors, wave=number, image=image))
            except PlanningError as exc:
                findings += [Finding(f.code, f.message, f.field, f.system, f.row, f.agency, number)
                             for f in exc.findings]
        wave_plans.append(WavePlan(number, tuple(plans)))
    findings += check_capacity(wave_plans, quotas, cloud_free)
    return MigrationPlan(catalogue.version, tuple(wave_plans), tuple(findings))
