"""Pure rules of the component catalogue: version ranges, the versioned catalogue (`catalogue_from_data` validates
it; `Catalogue.match` finds a component's entry by kind, vendor, product and version range), matching a system's
components (a component with no entry is flagged, never guessed: such a system cannot be planned) and open-source
adoption. Standard library only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from controlplane.inventory.domain import (
    DATA_FORMATS,
    ROLES,
    CatalogueError,
    Component,
    ComponentKind,
    Finding,
    Grade,
    Report,
    System,
    SystemStatus,
    check_module,
    enum_member,
    name_key,
)

CATALOGUE_SCHEMA = 1
_ENTRY_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_VERSION_NUMBER = re.compile(r"\d+(?:\.\d+)*")
_ENTRY_FIELDS = ("id", "kind", "vendors", "products", "versions", "open_source", "target", "role", "check", "grade",
                 "data_move", "notes")


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
        return (component.kind == self.kind and name_key(component.vendor) in {name_key(v) for v in self.vendors}
                and name_key(component.product) in {name_key(p) for p in self.products})

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
            if (first.kind == second.kind
                    and {name_key(v) for v in first.vendors} & {name_key(v) for v in second.vendors}
                    and {name_key(p) for p in first.products} & {name_key(p) for p in second.products}
                    and first.versions.overlaps(second.versions)):
                bad(f"entries[{j}]", f"{second.id} ({second.versions}) matches components that entries[{i}] "
                                     f"{first.id} ({first.versions}) matches too", "overlap")
    if findings:
        raise CatalogueError.of(findings)
    assert isinstance(version, str)
    return Catalogue(version.strip(), tuple(entry for _, entry in entries))


def _catalogue_entry(raw: Any, where: str, bad: Report) -> CatalogueEntry | None:
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
    kind = enum_member(ComponentKind, raw.get("kind"))
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
    grade = enum_member(Grade, raw.get("grade"))
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
                findings.append(unknown_component(system, match, catalogue))
    return tuple(findings)


def unknown_component(system: System, match: ComponentMatch, catalogue: Catalogue) -> Finding:
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


