"""Pure rules of the system inventory: what a system is (its stack, size, dependencies, window), the inventory rows
read into systems all or nothing (`parse_inventory` raises `InventoryError` with one `Finding` per problem;
`inventory_rows` writes them back), dependency cycles, and the findings and errors the other rules share.

Standard library only (no web, database, cloud or YAML here): every function takes and returns plain data
(frozen dataclasses, enums, tuples, dicts), so the models, the API and the workflows can call it as it is.
The catalogue and matching rules are in `matching`, maintenance windows in `windows`, waves, sizing, steps and
plans in `planning`.
"""


from __future__ import annotations

import re
import unicodedata
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from controlplane.inventory.windows import MaintenanceWindow, parse_window

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
DEFAULT_IMAGE = "debian-12"
UNLIMITED = -1  # a quota or free-capacity figure without a limit, as OpenStack reports it
MAX_COUNT = 2**31 - 1  # sizes are stored in INTEGER columns

# System codes name the servers (`<code>-<tier>-<n>`), so they must make valid host names; they also satisfy
# migrate_system.yml's migration_system pattern.
_SYSTEM_CODE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$")
# How parsers report a problem: (field, message[, finding code]).
Report = Callable[..., None]


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



# --------------------------------------------------------------------------- components and catalogue


def name_key(name: str) -> str:
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
    criticality = enum_member(Criticality, str(row.get("criticality")).lower())
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
        parsed_status = enum_member(SystemStatus, str(row.get("status")).lower())
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


def _count(value: Any, name: str, minimum: int, *, required: bool, bad: Report) -> int | None:
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


def _components(value: Any, bad: Report) -> tuple[Component, ...]:
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
        kind = enum_member(ComponentKind, fields["kind"].lower())
        if kind is None:
            bad(f"{where}.kind", f"{fields['kind']!r} must be one of {', '.join(ComponentKind)}")
            continue
        components.append(Component(kind, fields["vendor"], fields["product"], fields["version"]))
    return tuple(components)


def _codes(value: Any, bad: Report) -> tuple[str, ...]:
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
    graph = dependency_graph(systems)
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


def dependency_graph(systems: Iterable[System]) -> dict[str, tuple[str, ...]]:
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


def enum_member(enum: Any, value: Any) -> Any:
    try:
        return enum(str(value).strip()) if value is not None else None
    except ValueError:
        return None
