"""Pure rules of the traffic a migrated system's tiers need, against what its agency declared may come in (its
security group on the cloud): what the declared ingress would drop is a warning of the plan, not a finding.
Pure: the standard library and the migration domain's types only.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from controlplane.inventory.domain import Finding, Tier
from controlplane.inventory.planning import MigrationPlan, SystemPlan, WavePlan


@dataclass(frozen=True)
class Opening:
    """One rule of an agency's declared ingress (its security group on the cloud admits only these)."""

    protocol: str  # tcp, udp, icmp or any
    port_min: int | None  # None: every port
    port_max: int | None
    remote_cidr: str

    def admits(self, port: int, source: str | None) -> bool:
        """Whether TCP to `port` from `source` (a CIDR; None: from somewhere the plan does not know) gets in."""
        if self.protocol not in ("tcp", "any"):
            return False
        if self.port_min is not None and not self.port_min <= port <= (self.port_max or self.port_min):
            return False
        if source is None:
            return True
        remote = ipaddress.ip_network(self.remote_cidr, strict=False)
        inside = ipaddress.ip_network(source, strict=False)
        return inside.version == remote.version and inside.subnet_of(remote)  # type: ignore[arg-type]


@dataclass(frozen=True)
class AgencyNetwork:
    """What the plan knows of an agency's network on the cloud: its range and its declared ingress."""

    cidr: str
    ingress: tuple[Opening, ...]


def traffic_needs(plan: SystemPlan, cidr: str | None) -> list[tuple[str, int, str | None]]:
    """(what, TCP port, source CIDR or None) of the traffic a migrated system's servers must accept: SSH from the
    control plane (every step's jobs), its users' front to the web tier (80) or else to Tomcat (8080), the web tier
    to Tomcat and the application to PostgreSQL from the agency's own network."""
    tiers = {s.tier for s in plan.servers}
    tomcat = any("tomcat" in s.roles for s in plan.servers)
    needs: list[tuple[str, int, str | None]] = [("the control plane to every server (SSH, for the jobs)", 22, None)]
    if Tier.WEB in tiers:
        needs.append(("the users' front to the web tier (nginx)", 80, None))
    elif tomcat:
        needs.append(("the users' front to the app tier (Tomcat)", 8080, None))
    if Tier.WEB in tiers and tomcat:
        needs.append(("the web tier to the app tier (Tomcat)", 8080, cidr))
    if Tier.DB in tiers and tiers & {Tier.APP, Tier.WEB}:
        needs.append(("the application to its database (PostgreSQL)", 5432, cidr))
    return needs


def ingress_warnings(waves: Sequence[WavePlan], networks: Mapping[str, AgencyNetwork]) -> tuple[Finding, ...]:
    """One warning per system and traffic its agency's declared ingress does not admit (agencies the plan knows no
    network of are left out: they have no tenancy, a finding of their own)."""
    warnings = []
    for wave in waves:
        for plan in wave.systems:
            network = networks.get(plan.agency)
            if network is None:
                continue
            for what, port, source in traffic_needs(plan, network.cidr or None):
                if not any(rule.admits(port, source) for rule in network.ingress):
                    origin = f" from {source}" if source else ""
                    warnings.append(Finding(
                        "ingress_not_declared", f"{what} needs tcp {port}{origin}, which {plan.agency}'s declared "
                                                "ingress does not admit: add it to the agency's onboarding spec",
                        field="ingress", system=plan.system, agency=plan.agency, wave=wave.number))
    return tuple(warnings)


def with_warnings(plan: MigrationPlan, networks: Mapping[str, AgencyNetwork]) -> MigrationPlan:
    """The plan with a warning for each traffic its agencies' declared ingress would drop."""
    return dataclasses.replace(plan, warnings=ingress_warnings(plan.waves, networks))
