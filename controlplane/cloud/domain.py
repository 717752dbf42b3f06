"""Pure rules of agency onboarding on the cloud: the desired state, its validation, and the plan (a diff).

Standard library only. The gateway observes the cloud into an ObservedState; `diff` compares it with an
OnboardingSpec and lists the changes `apply` will make, like `terraform plan`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

PROTOCOLS = ("tcp", "udp", "icmp")
QUOTA_FIELDS = ("instances", "cores", "ram_mb", "volumes")
ACTIONS = ("create", "update", "delete")
_PUBLIC_KEY = re.compile(r"^(ssh-(ed25519|rsa)|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]+( [^\n]*)?$")
_AGENCY_CODE = re.compile(r"^[A-Z][A-Z0-9_]{1,31}$")
# Server metadata the control plane writes: the owner (found again on a retry) and the labels. The cp_ prefix
# keeps them apart from what others put on a server; lower-case keys make group keys in inventory/openstack.yml.
OWNER_KEY = "cp_owner"
_LABEL_KEY = re.compile(r"^cp_[a-z_]{1,30}$")
LABEL_VALUE_MAX = 255  # Nova's limit on a metadata value


class SpecError(ValueError):
    """An onboarding spec that cannot be applied: which field and why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class Quotas:
    instances: int
    cores: int
    ram_mb: int
    volumes: int


@dataclass(frozen=True)
class IngressRule:
    protocol: str
    port_min: int | None
    port_max: int | None
    remote_cidr: str

    def describe(self) -> str:
        ports = "" if self.port_min is None else (
            f" {self.port_min}" if self.port_min == self.port_max else f" {self.port_min}-{self.port_max}")
        return f"{self.protocol}{ports} from {self.remote_cidr}"


@dataclass(frozen=True)
class OnboardingSpec:
    agency_code: str
    quotas: Quotas
    cidr: str
    ingress: tuple[IngressRule, ...]
    public_key: str | None

    @property
    def project_name(self) -> str:
        return f"agency-{self.agency_code.lower()}"

    @property
    def network_name(self) -> str:
        return f"{self.project_name}-net"

    @property
    def subnet_name(self) -> str:
        return f"{self.project_name}-subnet"

    @property
    def router_name(self) -> str:
        return f"{self.project_name}-router"

    @property
    def security_group_name(self) -> str:
        return agency_group_name(self.project_name)

    @property
    def keypair_name(self) -> str:
        return f"{self.project_name}-key"

    @property
    def user_name(self) -> str:
        return f"{self.project_name}-svc"

    @property
    def gateway_ip(self) -> str:
        return str(next(ipaddress.ip_network(self.cidr).hosts()))


def agency_group_name(project_name: str) -> str:
    """The agency's ingress group in its project: the only group the gateway gives the project's servers."""
    return f"{project_name}-ingress"


def default_cidr(index: int) -> str:
    """The agency's subnet when the operator names none: one /24 per agency in 10.81.0.0/16."""
    if not 1 <= index <= 254:
        raise SpecError("cidr", f"no default subnet for agency number {index} (1..254)")
    return f"10.81.{index}.0/24"


def free_default_cidr(taken: Iterable[str]) -> str | None:
    """The first default subnet that overlaps none of `taken` (networks or addresses; what is not one is
    ignored); None when every one is taken."""
    others = []
    for cidr in taken:
        try:
            others.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError:
            continue
    for index in range(1, 255):
        candidate = ipaddress.ip_network(default_cidr(index))
        if not any(candidate.overlaps(other) for other in others if other.version == candidate.version):
            return str(candidate)
    return None


def validate_spec(spec: OnboardingSpec) -> None:
    if not _AGENCY_CODE.match(spec.agency_code):
        raise SpecError("agency_code", "must be 2-32 upper-case letters, digits or _ starting with a letter")
    for name in QUOTA_FIELDS:
        value = getattr(spec.quotas, name)
        if not isinstance(value, int) or value < 0:
            raise SpecError(f"quotas.{name}", "must be a whole number of 0 or more")
    try:
        network = ipaddress.ip_network(spec.cidr)
    except ValueError:
        raise SpecError("cidr", f"{spec.cidr!r} is not an IPv4 network such as 10.81.3.0/24") from None
    if network.version != 4 or not network.is_private:
        raise SpecError("cidr", f"{spec.cidr} must be a private IPv4 network (10/8, 172.16/12, 192.168/16)")
    if not 16 <= network.prefixlen <= 28:
        raise SpecError("cidr", f"{spec.cidr}: the prefix must be between /16 and /28")
    for index, rule in enumerate(spec.ingress):
        _validate_rule(rule, f"ingress[{index}]")
    if len(set(spec.ingress)) != len(spec.ingress):
        raise SpecError("ingress", "the same rule is listed twice")
    if spec.public_key is not None and not _PUBLIC_KEY.match(spec.public_key.strip()):
        raise SpecError("public_key", "must be one OpenSSH public key line (ssh-ed25519, ssh-rsa or ecdsa-sha2-*)")


def _validate_rule(rule: IngressRule, where: str) -> None:
    if rule.protocol not in PROTOCOLS:
        raise SpecError(f"{where}.protocol", f"must be one of {', '.join(PROTOCOLS)}")
    if rule.protocol == "icmp":
        if rule.port_min is not None or rule.port_max is not None:
            raise SpecError(f"{where}.port_min", "icmp rules have no ports")
    else:
        for name in ("port_min", "port_max"):
            port = getattr(rule, name)
            if not isinstance(port, int) or not 1 <= port <= 65535:
                raise SpecError(f"{where}.{name}", "must be a port between 1 and 65535")
        assert rule.port_min is not None and rule.port_max is not None
        if rule.port_min > rule.port_max:
            raise SpecError(f"{where}.port_max", "must not be lower than port_min")
    try:
        remote = ipaddress.ip_network(rule.remote_cidr)
    except ValueError:
        raise SpecError(f"{where}.remote_cidr", f"{rule.remote_cidr!r} is not an IPv4 network") from None
    if remote.version != 4:
        raise SpecError(f"{where}.remote_cidr", "must be an IPv4 network")


@dataclass(frozen=True)
class Change:
    action: str
    resource: str
    name: str
    fields: tuple[tuple[str, object, object], ...] = ()

    def describe(self) -> str:
        changed = ", ".join(f"{f}: {old} -> {new}" for f, old, new in self.fields)
        return f"{self.action} {self.resource} {self.name}" + (f" ({changed})" if changed else "")


@dataclass(frozen=True)
class Plan:
    agency_code: str
    changes: tuple[Change, ...]
    # What the spec asks for but this cloud cannot do, and why (e.g. volume quotas without a volume service).
    # Not changes: a skip never makes a plan non-empty, so a second apply stays a no-op.
    skipped: tuple[str, ...] = ()

    @property
    def is_noop(self) -> bool:
        return not self.changes

    def summary(self) -> str:
        counts = {action: sum(c.action == action for c in self.changes) for action in ACTIONS}
        text = f"{counts['create']} to create, {counts['update']} to update, {counts['delete']} to delete"
        return text + (f", {len(self.skipped)} skipped" if self.skipped else "")


@dataclass(frozen=True)
class ObservedState:
    """What exists on the cloud for one agency (None / empty: absent)."""

    project_id: str | None = None
    user_exists: bool = False
    user_has_role: bool = False
    quotas: Quotas | None = None
    # Volume quotas exist only where the cloud has a block-storage service.
    volumes_supported: bool = False
    network_id: str | None = None
    subnet_id: str | None = None
    subnet_cidr: str | None = None
    router_id: str | None = None
    router_has_interface: bool = False
    security_group_id: str | None = None
    ingress: frozenset[IngressRule] = field(default_factory=frozenset)
    keypair_public_key: str | None = None


def diff(spec: OnboardingSpec, observed: ObservedState) -> Plan:
    """The changes that bring the cloud to the spec. Never deletes what the spec does not name."""
    changes: list[Change] = []

    def need(exists: object, resource: str, name: str) -> None:
        if not exists:
            changes.append(Change("create", resource, name))

    need(observed.project_id, "project", spec.project_name)
    need(observed.user_exists, "user", spec.user_name)
    need(observed.user_has_role, "role_assignment", f"{spec.user_name} member of {spec.project_name}")
    skipped: list[str] = []
    wanted = [("instances", spec.quotas.instances), ("cores", spec.quotas.cores), ("ram_mb", spec.quotas.ram_mb)]
    if observed.volumes_supported:
        wanted.append(("volumes", spec.quotas.volumes))
    else:
        skipped.append(f"quota {spec.project_name} volumes: the cloud has no block-storage service")
    current = observed.quotas
    quota_fields = tuple((name, getattr(current, name) if current else None, value) for name, value in wanted
                         if current is None or getattr(current, name) != value)
    if quota_fields:
        changes.append(Change("update", "quota", spec.project_name, quota_fields))
    need(observed.network_id, "network", spec.network_name)
    if observed.subnet_cidr is not None and observed.subnet_cidr != spec.cidr:
        raise SpecError("cidr", f"the subnet {spec.subnet_name} exists with {observed.subnet_cidr}; a subnet's range "
                                "cannot change in place (move the agency's servers to a new network first)")
    need(observed.subnet_id, "subnet", f"{spec.subnet_name} {spec.cidr}")
    need(observed.router_id, "router", spec.router_name)
    need(observed.router_has_interface, "router_interface", f"{spec.router_name} -> {spec.subnet_name}")
    need(observed.security_group_id, "security_group", spec.security_group_name)
    wanted_rules = set(spec.ingress)
    changes += [Change("create", "security_group_rule", rule.describe())
                for rule in sorted(wanted_rules - observed.ingress, key=_rule_order)]
    changes += [Change("delete", "security_group_rule", rule.describe())
                for rule in sorted(observed.ingress - wanted_rules, key=_rule_order)]
    if spec.public_key is not None:
        if observed.keypair_public_key is None:
            changes.append(Change("create", "keypair", spec.keypair_name))
        elif _key_material(observed.keypair_public_key) != _key_material(spec.public_key):
            changes.append(Change("update", "keypair", spec.keypair_name, (("public_key", "(old key)", "(new key)"),)))
    return Plan(spec.agency_code, tuple(changes), tuple(skipped))


def _rule_order(rule: IngressRule) -> tuple[str, int, int, str]:
    return rule.protocol, rule.port_min or 0, rule.port_max or 0, rule.remote_cidr


def _key_material(public_key: str) -> str:
    """Type and key, without the comment (Nova keeps the comment, clouds may differ)."""
    return " ".join(public_key.split()[:2])


# --- servers, capacity, inventory ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Flavor:
    """A server size the cloud offers."""

    name: str
    vcpus: int
    ram_mb: int
    disk_gb: int = 0  # 0: the flavor does not limit the disk (the dev cloud's)

    def fits(self, vcpus: int, ram_mb: int, disk_gb: int = 0) -> bool:
        return self.vcpus >= vcpus and self.ram_mb >= ram_mb and (self.disk_gb == 0 or self.disk_gb >= disk_gb)


@dataclass(frozen=True)
class ServerSpec:
    """A server to create. `labels` become extra server metadata (e.g. cp_migration, cp_wave, cp_agency), which
    inventory/openstack.yml turns into groups."""

    owner: str
    name: str
    flavor: str
    image: str
    network: str
    key_name: str | None = None
    # Not hashed (a dict is not), still compared: a spec stays usable in sets and as a key.
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        validate_labels(self.labels)
        # A copy: the caller's dict changing later does not change the spec.
        object.__setattr__(self, "labels", dict(self.labels))


def validate_labels(labels: Mapping[str, str]) -> None:
    """Label keys are cp_ and 1-30 of a-z or _, values strings of at most 255 characters; cp_owner is the
    owner's alone (a label naming it would let a retry find the wrong server)."""
    for key, value in labels.items():
        if key == OWNER_KEY:
            raise SpecError(f"labels.{key}", "is set from the server's owner, not from a label")
        if not isinstance(key, str) or not _LABEL_KEY.match(key):
            raise SpecError(f"labels.{key}", "keys are cp_ followed by 1-30 lower-case letters or _")
        if not isinstance(value, str) or len(value) > LABEL_VALUE_MAX:
            raise SpecError(f"labels.{key}", f"must be a string of at most {LABEL_VALUE_MAX} characters")


@dataclass(frozen=True)
class ServerInfo:
    id: str
    name: str
    status: str
    owner: str | None
    project_id: str
    addresses: tuple[str, ...]
    flavor: str
    security_groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class ResourceUsage:
    resource: str
    limit: int  # -1: unlimited
    in_use: int


@dataclass(frozen=True)
class QuotaUsage:
    project_id: str
    resources: tuple[ResourceUsage, ...]


@dataclass(frozen=True)
class HypervisorCapacity:
    name: str
    vcpus: int
    vcpus_used: int
    memory_mb: int
    memory_mb_used: int
    running_vms: int


@dataclass(frozen=True)
class AgencyCredential:
    user_name: str
    password: str = field(repr=False)
    project_id: str


@dataclass(frozen=True)
class ApplyResult:
    plan: Plan
    project_id: str
    network_id: str
    credential: AgencyCredential | None


def static_inventory(servers: Iterable[ServerInfo], *, group: str) -> dict[str, Any]:
    """An Ansible inventory (YAML/JSON structure) of servers: one group, reached as root at the first address."""
    hosts = {server.name: {"ansible_host": server.addresses[0], "ansible_user": "root", "openstack_id": server.id}
             for server in sorted(servers, key=lambda s: s.name) if server.addresses}
    return {"all": {"children": {group: {"hosts": hosts}}}}
