"""Pure rules of migration plans: waves (`plan_waves` groups systems so that each migrates after what it depends
on; `check_waves` checks a hand-made grouping), flavors and capacity, the per-system steps (`next_step`,
`rollback_steps` over precheck -> ... -> retire) and the plan itself: `plan_migration` lists the servers, roles,
data moves and checks of every system, wave by wave, and checks them against the agencies' quotas and the cloud's
free capacity; `MigrationPlan.render` prints it like `terraform plan`, `MigrationPlan.to_dict` gives it as data.

The wave rule: a system migrates in a later wave than every system it depends on. Two exceptions:
- a dependency already migrated (status `migrated`) constrains nothing;
- a dependency that is open source already (every component matched to an open-source entry) may migrate in the
  same wave, before its dependent: it is only re-hosted, its interfaces do not change.
A dependency that is neither migrated nor in the plan is a finding (`dependency_not_planned`): the dependent
would be cut over before what it needs. Within a wave systems run dependencies first, then by code.
Standard library only.
"""


from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from heapq import heappop, heappush
from typing import Any

from controlplane.cloud.domain import Flavor
from controlplane.inventory.domain import (
    DEFAULT_IMAGE,
    ROLES,
    UNLIMITED,
    Component,
    Criticality,
    DependencyCycleError,
    Finding,
    Grade,
    MigrationError,
    PlanningError,
    StepError,
    System,
    SystemStatus,
    Tier,
    agency_network,
    check_module,
    dependency_graph,
    find_cycles,
    name_key,
)
from controlplane.inventory.matching import Catalogue, is_open_now, match_system, unknown_component

_MAX_SERVERS_PER_TIER = 16


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
    graph = dependency_graph(systems)
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


# The dev cloud's flavors (see README): what plans size with until the configured cloud's flavors have been read.
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
            arrow = "=" if name_key(r.source.product) == name_key(r.target.product) else "~"
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
    findings = [unknown_component(system, m, catalogue) for m in matches if m.entry is None]
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
