"""The system inventory in the database: import (all or nothing) and export, reads within the caller's agency
scope, open-source adoption, and migration plans over the stored systems. Keyword-only; no HTTP, no cloud calls:
plans see the agencies' quotas and the cloud's free capacity as the control plane last read them."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane.auth import audit
from controlplane.auth.models import Agency
from controlplane.auth.roles import Principal
from controlplane.auth.service import agency_by_code
from controlplane.clock import Clock
from controlplane.cloud.domain import Flavor
from controlplane.cloud.metrics import CloudSnapshot
from controlplane.cloud.models import CloudTenancy
from controlplane.errors import Conflict, Forbidden, InvalidInput, NotFound
from controlplane.inventory import domain, files, ingress, matching, planning, windows
from controlplane.inventory.domain import DEFAULT_IMAGE, UNLIMITED, Finding
from controlplane.inventory.models import AgencySystem
from controlplane.inventory.planning import Quota, Resources
from controlplane.inventory.schemas import (
    AdoptionRead,
    AdoptionRow,
    CatalogueEntryRead,
    CatalogueRead,
    ComponentMatchRead,
    ComponentRead,
    DataMoveRead,
    ExportFormat,
    FindingRead,
    ImportCounts,
    ImportMode,
    ImportReport,
    PlanRead,
    SystemDetail,
    SystemRead,
    VersionsRead,
)
from controlplane.waves.models import Migration


class ImportRefused(InvalidInput):
    code = "import_failed"


@cache
def shipped_catalogue() -> matching.Catalogue:
    """The component catalogue the control plane ships (controlplane/inventory/data/catalogue.yaml)."""
    return files.load_catalogue()


# --- stored systems as the domain's ----------------------------------------------------------------

def domain_system(row: AgencySystem) -> domain.System:
    """The stored system as the domain's System."""
    return domain.System(
        code=row.code, agency=row.agency.code, name_ko=row.name_ko, name_en=row.name_en,
        criticality=domain.Criticality(row.criticality),
        sizing=domain.Sizing(row.vcpus, row.ram_mb, row.disk_gb, row.data_gb),
        components=tuple(domain.Component(domain.ComponentKind(c["kind"]), c["vendor"], c["product"], c["version"])
                         for c in row.components),
        depends_on=tuple(row.depends_on),
        maintenance_window=windows.parse_window(row.maintenance_window) if row.maintenance_window else None,
        status=domain.SystemStatus(row.status), notes=row.notes,
    )


def domain_systems(session: Session, *, codes: Iterable[str] | None = None) -> tuple[domain.System, ...]:
    """Every stored system, or those of `codes` (codes not stored are left out), by code."""
    query = select(AgencySystem).order_by(AgencySystem.code)
    if codes is not None:
        query = query.where(AgencySystem.code.in_(list(codes)))
    return tuple(domain_system(row) for row in session.scalars(query))


def _columns(system: domain.System, agencies: Mapping[str, Agency]) -> dict[str, Any]:
    """The AgencySystem column values of a system (its agency as the Agency)."""
    values = domain.inventory_rows([system])[0]
    values["agency"] = agencies[values["agency"]]
    return values


# --- reads -----------------------------------------------------------------------------------------

def list_systems(session: Session, *, viewer: audit.Actor, agency: str | None = None,
                 status: domain.SystemStatus | None = None) -> Sequence[AgencySystem]:
    """The systems the viewer may see (a ministry: its own agency's), by agency and code."""
    query = select(AgencySystem).join(Agency, AgencySystem.agency_id == Agency.id).order_by(Agency.code,
                                                                                             AgencySystem.code)
    if isinstance(viewer, Principal) and viewer.scoped:
        query = query.where(AgencySystem.agency_id == viewer.agency_id)
    if agency is not None:
        query = query.where(AgencySystem.agency_id == agency_by_code(session, code=agency, field="agency").id)
    if status is not None:
        query = query.where(AgencySystem.status == status.value)
    return session.scalars(query).all()


def get_system(session: Session, *, viewer: audit.Actor, code: str) -> AgencySystem:
    row = session.scalar(select(AgencySystem).where(AgencySystem.code == code))
    if row is None or (isinstance(viewer, Principal) and not viewer.can_reach(row.agency_id)):
        raise NotFound(f"unknown system '{code}'", field="code")
    return row


def _unknown(system: domain.System) -> dict[str, Finding]:
    """The flags of the system's components without a catalogue entry, by field (components[i])."""
    return {f.field: f for f in matching.unknown_components([system], shipped_catalogue())}


def system_read(row: AgencySystem) -> SystemRead:
    system = domain_system(row)
    return SystemRead(**domain.inventory_rows([system])[0], unknown_components=len(_unknown(system)),
                      created_at=row.created_at, updated_at=row.updated_at)


def system_detail(row: AgencySystem) -> SystemDetail:
    """The system with each component's catalogue entry and target, or its flag."""
    system = domain_system(row)
    flags = _unknown(system)
    matches = []
    for m in matching.match_system(system, shipped_catalogue()):
        entry, flag = m.entry, flags.get(f"components[{m.index}]")
        matches.append(ComponentMatchRead(
            kind=m.component.kind, vendor=m.component.vendor, product=m.component.product,
            version=m.component.version, index=m.index, entry=entry.id if entry else None,
            target=entry.target.label if entry else None, role=entry.role if entry else None,
            grade=entry.grade if entry else None, open_source=m.open_now, flag=flag.code if flag else None,
            message=flag.message if flag else None))
    return SystemDetail(**system_read(row).model_dump(), matches=matches)


def finding_read(finding: Finding) -> FindingRead:
    return FindingRead(**finding.to_dict())


def catalogue_read() -> CatalogueRead:
    catalogue = shipped_catalogue()
    return CatalogueRead(version=catalogue.version, entries=[
        CatalogueEntryRead(
            id=e.id, kind=e.kind, vendors=list(e.vendors), products=list(e.products),
            versions=VersionsRead(min=e.versions.minimum, max=e.versions.maximum), open_source=e.open_source,
            target=ComponentRead(kind=e.target.kind, vendor=e.target.vendor, product=e.target.product,
                                 version=e.target.version),
            role=e.role, check=e.check, grade=e.grade,
            data_move=DataMoveRead(format=e.data_move.format, tool=e.data_move.tool) if e.data_move else None,
            notes=e.notes)
        for e in catalogue.entries])


def adoption_report(session: Session, *, viewer: audit.Actor) -> AdoptionRead:
    """Per agency the viewer may see, the open-source share of its systems' components now and after its legacy
    systems migrate (components the catalogue does not know count as not open source), and their total."""
    rows = list_systems(session, viewer=viewer)
    agencies = {row.agency.code: row.agency for row in rows}
    figures = matching.adoption([domain_system(row) for row in rows], shipped_catalogue())

    def read(figure: matching.Adoption, name_ko: str, name_en: str) -> AdoptionRow:
        return AdoptionRow(**figure.to_dict(), name_ko=name_ko, name_en=name_en)

    return AdoptionRead(
        catalogue_version=shipped_catalogue().version,
        agencies=[read(f, agencies[f.agency].name_ko, agencies[f.agency].name_en) for f in figures],
        total=read(matching.total_adoption(figures), "전체", "All agencies"))


# --- import and export -----------------------------------------------------------------------------

def _cell(row: Any, name: str) -> str:
    """A raw row's value of a field as parse_inventory reads it (keys without case, spaces collapsed)."""
    if not isinstance(row, Mapping):
        return ""
    value = {str(k).strip().lower(): v for k, v in row.items()}.get(name)
    return " ".join(str(value).split()) if value is not None else ""


def _unknown_agencies(rows: Sequence[Any], first_row: int, agencies: Mapping[str, Agency]) -> list[Finding]:
    findings = []
    for number, row in enumerate(rows, start=first_row):
        code = _cell(row, "agency")
        if code and " " not in code and code not in agencies:  # a blank or spaced code is parse_inventory's
            findings.append(Finding("unknown_agency", f"unknown agency '{code}': not in the agency catalogue "
                                                      "(controlplane seed loads it)",
                                    field="agency", system=_cell(row, "code") or None, row=number, agency=code))
    return findings


def _refused(findings: Sequence[Finding]) -> ImportRefused:
    details = [{"row": f.row, "field": f.field, "reason": f.message, "code": f.code, "system": f.system,
                "agency": f.agency} for f in findings]
    return ImportRefused(f"{len(findings)} problem(s); nothing was imported. First: {findings[0].describe()}",
                         field="file", details=details)


def import_systems(session: Session, *, clock: Clock, actor: audit.Actor, filename: str, content: bytes,
                   mode: ImportMode = ImportMode.MERGE, dry_run: bool = False) -> ImportReport:
    """Create or update the systems of a CSV or YAML file by code, all or nothing; `replace` also deletes the stored
    systems the file leaves out (refused for one that has migrations). `dry_run` reports and writes nothing.

    Every bad row is refused at once (ImportRefused, 422, one detail per problem: row, field, reason): bad fields,
    unknown agencies, unknown dependencies, dependency cycles (named). In merge mode the file's systems may depend
    on stored ones and are checked with them, cycles included. Components the catalogue does not know are stored
    (they are facts about the legacy system) and flagged in `findings`; a plan refuses such a system.
    """
    try:
        rows, first_row = files.inventory_file_rows(filename, content)
    except domain.InventoryError as exc:
        raise _refused(exc.findings) from None
    stored = {row.code: row for row in session.scalars(select(AgencySystem))}
    agencies = {agency.code: agency for agency in session.scalars(select(Agency))}
    in_file = {_cell(row, "code") for row in rows}
    kept = [] if mode is ImportMode.REPLACE else [domain_system(r) for c, r in stored.items() if c not in in_file]
    last_row = first_row + len(rows) - 1
    findings = _unknown_agencies(rows, first_row, agencies)
    systems: tuple[domain.System, ...] = ()
    try:  # the kept systems are rows after the file's: a finding there is about the file, but has no row of it
        systems = domain.parse_inventory([*rows, *domain.inventory_rows(kept)], first_row=first_row)
    except domain.InventoryError as exc:
        findings += [f if f.row is None or f.row <= last_row else dataclasses.replace(f, row=None)
                     for f in exc.findings]
    if findings:
        raise _refused(sorted(findings, key=lambda f: f.row if f.row is not None else 0))
    kept_codes = {s.code for s in kept}
    values = {s.code: _columns(s, agencies) for s in systems if s.code not in kept_codes}
    if not values:
        raise InvalidInput("the file has no systems", field="file")

    created = [code for code in values if code not in stored]
    updated = [code for code in values if code in stored
               and any(getattr(stored[code], name) != value for name, value in values[code].items())]
    unchanged = [code for code in values if code in stored and code not in updated]
    deleted = sorted(set(stored) - set(values)) if mode is ImportMode.REPLACE else []
    migrating = session.scalars(select(AgencySystem.code).where(
        AgencySystem.code.in_(deleted), AgencySystem.id.in_(select(Migration.system_id))).order_by(AgencySystem.code)
    ).all() if deleted else []
    if migrating:
        raise Conflict(f"replace would delete {', '.join(migrating)}, which have migrations: keep them in the file",
                       field="mode", details=[{"system": code} for code in migrating])
    flagged = matching.unknown_components([s for s in systems if s.code in values], shipped_catalogue())
    report = ImportReport(
        source=filename, mode=mode, dry_run=dry_run, catalogue_version=shipped_catalogue().version,
        systems=len(values), counts=ImportCounts(created=len(created), updated=len(updated),
                                                 unchanged=len(unchanged), deleted=len(deleted)),
        created=created, updated=updated, unchanged=unchanged, deleted=deleted,
        findings=[finding_read(f) for f in flagged])
    if dry_run:
        return report
    now = clock.now()
    session.add_all(AgencySystem(**values[code], created_at=now, updated_at=now) for code in created)
    for code in updated:
        for name, value in values[code].items():
            setattr(stored[code], name, value)
        stored[code].updated_at = now
    for code in deleted:
        session.delete(stored[code])
    session.flush()
    audit.record(session, clock=clock, actor=actor, action="import", entity_type="migration_system",
                 after={"source": filename, "mode": mode.value, **report.counts.model_dump(),
                        "flagged": len(flagged), "deleted_systems": deleted})
    return report


def export_systems(session: Session, *, viewer: audit.Actor, fmt: ExportFormat, agency: str | None = None) -> str:
    """The systems the viewer may see (of one agency) as CSV or YAML that imports back to the same systems."""
    systems = [domain_system(row) for row in list_systems(session, viewer=viewer, agency=agency)]
    return files.inventory_to_csv(systems) if fmt is ExportFormat.CSV else files.inventory_to_yaml(systems)


# --- plans -----------------------------------------------------------------------------------------

def capacity_inputs(session: Session, *, cloud: str,
                    cached: CloudSnapshot | None = None) -> tuple[dict[str, Quota], Resources]:
    """Each onboarded agency's quota and the cloud's free capacity, from what the control plane keeps: no cloud call.

    An agency has a quota when it has a tenancy on `cloud` (none: the plan reports `no_quota`). The cloud's figures
    live in the app's cache (`cached`: the CloudCollector's snapshot, filled by the periodic refresh and after every
    apply), not in the database: limits and use come from there when it holds the agency, else the limits are the
    tenancy's spec (what an apply sets) with nothing in use. Free capacity is the cached hypervisors' vCPUs and
    memory not given to servers (instances unlimited: hypervisors do not count them); unlimited when no hypervisor
    figures are cached.
    """
    snapshot = cached or CloudSnapshot()
    quotas: dict[str, Quota] = {}
    for tenancy in session.scalars(select(CloudTenancy).where(CloudTenancy.cloud == cloud)):
        figures = {f.resource: f for f in snapshot.quotas.get(tenancy.agency.code, ())}
        spec = {"instances": tenancy.quota_instances, "cores": tenancy.quota_cores, "ram_mb": tenancy.quota_ram_mb}
        limit = {name: figures[name].limit if name in figures else spec[name] for name in planning.RESOURCE_FIELDS}
        in_use = {name: figures[name].in_use if name in figures else 0 for name in planning.RESOURCE_FIELDS}
        quotas[tenancy.agency.code] = Quota(Resources(**limit), Resources(**in_use))
    hypervisors = snapshot.hypervisors
    if not hypervisors:
        return quotas, Resources(UNLIMITED, UNLIMITED, UNLIMITED)
    return quotas, Resources(UNLIMITED, sum(h.vcpus - h.vcpus_used for h in hypervisors),
                             sum(h.memory_mb - h.memory_mb_used for h in hypervisors))


def flavors_of(cached: CloudSnapshot | None) -> tuple[Flavor, ...]:
    """The flavors plans size servers with: the configured cloud's as last read, else the dev cloud's."""
    return cached.flavors if cached is not None and cached.flavors else planning.DEVCLOUD_FLAVORS


def network_inputs(session: Session, *, cloud: str) -> dict[str, ingress.AgencyNetwork]:
    """Each onboarded agency's network range and declared ingress, as its tenancy's spec holds them."""
    return {tenancy.agency.code: ingress.AgencyNetwork(tenancy.cidr, tuple(
        ingress.Opening(rule["protocol"], rule.get("port_min"), rule.get("port_max"), rule["remote_cidr"])
        for rule in tenancy.ingress))
        for tenancy in session.scalars(select(CloudTenancy).where(CloudTenancy.cloud == cloud))}


def build_plan(session: Session, *, codes: Sequence[str] | None = None, waves: Sequence[Sequence[str]] | None = None,
               quotas: Mapping[str, Quota], cloud_free: Resources,
               networks: Mapping[str, ingress.AgencyNetwork] | None = None,
               flavors: Sequence[Flavor] = planning.DEVCLOUD_FLAVORS,
               image: str = DEFAULT_IMAGE) -> planning.MigrationPlan:
    """The plan of `codes` (in waves by dependency), of the grouping `waves` (checked), or of every legacy system,
    over every stored system (dependencies and their status) and the shipped catalogue. Problems are findings;
    with the agencies' `networks`, traffic their declared ingress would drop is a warning.

    Servers are sized with `flavors` (the configured cloud's, as last read) and boot from `image`
    (CP_MIGRATION_IMAGE); the defaults are the dev cloud's.
    """
    if codes is not None and waves is not None:
        raise InvalidInput("give the systems or the waves to plan, not both", field="waves")
    systems = domain_systems(session)
    catalogue = shipped_catalogue()
    chosen: tuple[Finding, ...] = ()
    if codes is not None:
        assignment = planning.plan_waves(systems, catalogue, planned=codes)
        waves, chosen = assignment.waves, assignment.findings
    plan = planning.plan_migration(systems, catalogue, flavors, quotas=quotas, cloud_free=cloud_free, waves=waves,
                                   image=image)
    # plan_waves leaves out the codes it cannot plan (unknown, migrated): their findings are only in `chosen`.
    extra = tuple(f for f in chosen if f not in plan.findings)
    if extra:
        plan = dataclasses.replace(plan, findings=extra + plan.findings)
    return ingress.with_warnings(plan, networks) if networks else plan


def plan_systems(session: Session, *, viewer: audit.Actor, cloud: str, cached: CloudSnapshot | None,
                 codes: Sequence[str] | None = None, waves: Sequence[Sequence[str]] | None = None,
                 image: str = DEFAULT_IMAGE) -> PlanRead:
    """build_plan with the capacity and flavors the control plane last saw; not for a ministry (plans span agencies
    and show the cloud's free capacity)."""
    if isinstance(viewer, Principal) and viewer.scoped:
        raise Forbidden("migration plans span agencies and the cloud's capacity: they are for operators and "
                        "auditors; see your agency's systems at /api/v1/systems", field="role")
    quotas, free = capacity_inputs(session, cloud=cloud, cached=cached)
    plan = build_plan(session, codes=codes, waves=waves, quotas=quotas, cloud_free=free,
                      networks=network_inputs(session, cloud=cloud), flavors=flavors_of(cached), image=image)
    return PlanRead(**plan.to_dict(), text=plan.render())
