"""CloudGateway: the control plane's only way to OpenStack (the only module that imports openstacksdk).

- Onboarding is a reconcile: observe -> diff (domain.diff) -> make each change -> the next plan is empty.
- Servers carry `cp_owner` metadata naming the control-plane object that owns them; a retried create finds
  the server it may already have made instead of making a twin.
- SDK and keystoneauth exceptions become controlplane.cloud.errors in one place (`_translate`); transient
  ones (connection refused/reset, 502/503/504) are retried with backoff within a budget, nothing else is.
"""

from __future__ import annotations

import logging
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import openstack
import openstack.config
import openstack.connection
from keystoneauth1 import exceptions as ksa
from openstack import exceptions as sdk

from controlplane.cloud import domain
from controlplane.cloud.domain import (
    OWNER_KEY,
    AgencyCredential,
    ApplyResult,
    Flavor,
    HypervisorCapacity,
    IngressRule,
    ObservedState,
    OnboardingSpec,
    Plan,
    QuotaUsage,
    ResourceUsage,
    ServerInfo,
    ServerSpec,
)
from controlplane.cloud.errors import (
    CloudConflict,
    CloudError,
    CloudNotFound,
    CloudTimeout,
    CloudUnavailable,
    QuotaExceeded,
)
from controlplane.config import Settings
from controlplane.context import CloudPort
from controlplane.errors import AppError

log = logging.getLogger(__name__)
T = TypeVar("T")
MEMBER_ROLE = "member"
# Agencies' projects and users live in the cloud's default domain.
DOMAIN_ID = "default"
TRANSIENT_STATUS = (502, 503, 504)
# What an agency's connection keeps from the operator's cloud config (TLS trust, endpoint interface, region).
_CARRIED_SETTINGS = ("region_name", "interface", "verify", "cacert", "cert", "key", "api_timeout",
                     "identity_api_version")


@dataclass(frozen=True)
class RetryPolicy:
    budget_seconds: float = 60
    initial_delay: float = 0.5
    max_delay: float = 5


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, ksa.ConnectFailure | ksa.ConnectTimeout | ksa.RetriableConnectionFailure):
        return True
    status = getattr(exc, "status_code", None) or getattr(exc, "http_status", None)
    return isinstance(exc, sdk.HttpException | ksa.HttpError) and status in TRANSIENT_STATUS


def _translate(exc: BaseException, what: str) -> CloudError:
    """One place that turns an SDK failure into the control plane's error, with a message naming the call."""
    if isinstance(exc, CloudError):
        return exc
    detail = getattr(exc, "details", None) or getattr(exc, "message", None) or str(exc)
    detail = " ".join(str(detail).split())[:300]
    if isinstance(exc, ksa.ConnectFailure | ksa.ConnectTimeout | ksa.RetriableConnectionFailure):
        return CloudUnavailable(f"{what}: the cloud did not answer ({type(exc).__name__})")
    if isinstance(exc, sdk.ResourceTimeout):
        return CloudTimeout(f"{what}: {detail}")
    status = getattr(exc, "status_code", None) or getattr(exc, "http_status", None)
    lowered = detail.lower()
    # Nova says "Quota exceeded for cores" (403), Neutron "Quota exceeded for resources" (409), Cinder
    # "... exceeded for quota 'volumes'" (413); 413 is every service's "over limit".
    if status == 413 or ("quota" in lowered and "exceeded" in lowered):
        return QuotaExceeded(f"{what}: quota exceeded: {detail}")
    if isinstance(exc, sdk.NotFoundException | sdk.ResourceNotFound) or status == 404:
        return CloudNotFound(f"{what}: not found: {detail}")
    if isinstance(exc, sdk.ConflictException) or status == 409:
        return CloudConflict(f"{what}: conflict: {detail}")
    if status in (401, 403) or isinstance(exc, ksa.Unauthorized):
        return CloudError(f"{what}: the cloud refused the credentials or the action ({status}): {detail}")
    if isinstance(status, int) and status >= 500:
        return CloudUnavailable(f"{what}: the cloud failed ({status}): {detail}")
    return CloudError(f"{what}: {detail}")


class CloudGateway:
    def __init__(self, connection: Any, *, retry: RetryPolicy | None = None) -> None:
        self._conn = connection
        self.retry = retry or RetryPolicy()

    @classmethod
    def connect(cls, cloud: str, *, config_file: Path | None = None, retry: RetryPolicy | None = None
                ) -> CloudGateway:
        """A gateway to a cloud named in clouds.yaml (`config_file`, or openstacksdk's own search)."""
        try:
            config = openstack.config.OpenStackConfig(config_files=[str(config_file)] if config_file else None)
            region = config.get_one(cloud=cloud)
        except sdk.ConfigException as exc:
            raise CloudError(f"cloud {cloud!r}: {exc}") from None
        return cls(openstack.connection.Connection(config=region), retry=retry)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> CloudGateway:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def for_agency(self, credential: AgencyCredential) -> CloudGateway:
        """A gateway authenticated as the agency's own user, scoped to its project only."""
        config = self._conn.config.config
        settings = {name: config[name] for name in _CARRIED_SETTINGS if config.get(name) is not None}
        auth = {"auth_url": self._conn.config.get_auth_args()["auth_url"], "username": credential.user_name,
                "password": credential.password, "user_domain_id": DOMAIN_ID, "project_id": credential.project_id}
        connection = openstack.connection.Connection(auth_type="password", auth=auth, **settings)
        return CloudGateway(connection, retry=self.retry)

    def _access(self) -> Any:
        """Who this gateway is (user, project, roles), from its token (cached by keystoneauth)."""
        return self._conn.session.auth.get_access(self._conn.session)

    # -- the one retry loop ----------------------------------------------------------------------------------
    def _call(self, what: str, fn: Callable[[], T]) -> T:
        deadline = time.monotonic() + self.retry.budget_seconds
        delay = self.retry.initial_delay
        while True:
            try:
                return fn()
            except Exception as exc:
                if not _is_transient(exc) or time.monotonic() + delay > deadline:
                    raise _translate(exc, what) from exc
                log.warning("cloud: %s failed transiently (%s); retrying in %.1f s", what, type(exc).__name__, delay)
            # Jitter spreads the retries of many workers that failed together.
            time.sleep(delay * random.uniform(0.8, 1.0))  # noqa: S311 - jitter, not a secret
            delay = min(delay * 2, self.retry.max_delay)

    # -- onboarding --------------------------------------------------------------------------------------------
    def observe(self, spec: OnboardingSpec) -> ObservedState:
        return self._call(f"observe {spec.project_name}", lambda: self._observe(spec))

    def _observe(self, spec: OnboardingSpec) -> ObservedState:
        conn = self._conn
        project = conn.identity.find_project(spec.project_name, domain_id=DOMAIN_ID)
        user = conn.identity.find_user(spec.user_name, domain_id=DOMAIN_ID)
        if project is None:
            return ObservedState(user_exists=user is not None, volumes_supported=self._has_volumes())
        role = conn.identity.find_role(MEMBER_ROLE)
        has_role = bool(user and role and conn.identity.validate_user_has_project_role(project, user, role))
        quotas = self._quotas(project.id)
        network = conn.network.find_network(spec.network_name, project_id=project.id)
        subnet = conn.network.find_subnet(spec.subnet_name, network_id=network.id) if network else None
        router = conn.network.find_router(spec.router_name, project_id=project.id)
        has_interface = bool(router and network and next(iter(conn.network.ports(
            device_id=router.id, network_id=network.id)), None))
        group = conn.network.find_security_group(spec.security_group_name, project_id=project.id)
        ingress = frozenset(_ingress_rules(conn, group.id)) if group else frozenset()
        keypair = conn.compute.find_keypair(spec.keypair_name, user_id=user.id) if user else None
        return ObservedState(
            project_id=project.id, user_exists=user is not None, user_has_role=has_role, quotas=quotas,
            volumes_supported=self._has_volumes(), network_id=network.id if network else None,
            subnet_id=subnet.id if subnet else None, subnet_cidr=subnet.cidr if subnet else None,
            router_id=router.id if router else None, router_has_interface=has_interface,
            security_group_id=group.id if group else None, ingress=ingress,
            keypair_public_key=keypair.public_key if keypair else None,
        )

    def _has_volumes(self) -> bool:
        return bool(self._conn.has_service("block-storage"))

    def _quotas(self, project_id: str) -> domain.Quotas:
        compute = self._conn.compute.get_quota_set(project_id)
        volumes = self._conn.block_storage.get_quota_set(project_id).volumes if self._has_volumes() else 0
        return domain.Quotas(instances=compute.instances, cores=compute.cores, ram_mb=compute.ram, volumes=volumes)

    def plan(self, spec: OnboardingSpec) -> Plan:
        return domain.diff(spec, self.observe(spec))

    def apply(self, spec: OnboardingSpec, *, reset_password: bool = False) -> ApplyResult:
        """Make the cloud match the spec; returns the plan that was carried out (empty the second time).

        The agency user's password is returned (ApplyResult.credential) only when this apply set it: a new
        user, or `reset_password` (for a caller that no longer holds it; the user's old password stops working).
        """
        plan = self.plan(spec)
        user_existed = not any(c.resource == "user" and c.action == "create" for c in plan.changes)
        # Survives the retries of _apply: a retry after a transient failure finds the user it already made.
        issued: list[AgencyCredential] = []
        self._call(f"apply {spec.project_name}",
                   lambda: self._apply(spec, issued, reset_password=reset_password or not user_existed))
        observed = self.observe(spec)
        if observed.project_id is None or observed.network_id is None:
            raise CloudError(f"apply {spec.project_name}: the project or network is missing after apply")
        credential = issued[0] if issued else None
        if credential is not None and user_existed:
            plan = replace(plan, changes=(*plan.changes, domain.Change(
                "update", "user", spec.user_name, (("password", "(hidden)", "(new)"),))))
        return ApplyResult(plan=plan, project_id=observed.project_id, network_id=observed.network_id,
                           credential=credential)

    def _apply(self, spec: OnboardingSpec, issued: list[AgencyCredential], *, reset_password: bool) -> None:
        """Find-or-create each resource in dependency order (safe to repeat after a transient failure)."""
        conn = self._conn
        identity, network_api = conn.identity, conn.network
        project = identity.find_project(spec.project_name, domain_id=DOMAIN_ID) or identity.create_project(
            name=spec.project_name, domain_id=DOMAIN_ID,
            description=f"Agency {spec.agency_code} (managed by the control plane)")
        user = identity.find_user(spec.user_name, domain_id=DOMAIN_ID)
        if user is None or (reset_password and not issued):
            # A user this apply found missing but that exists now was made by an attempt whose answer was
            # lost: its password is unknown, so it is set again (reset_password is true then).
            password = secrets.token_urlsafe(24)
            if user is None:
                user = identity.create_user(name=spec.user_name, password=password, domain_id=DOMAIN_ID,
                                            default_project_id=project.id, description=f"Agency {spec.agency_code}")
            else:
                user = identity.update_user(user, password=password)
            issued.append(AgencyCredential(user_name=spec.user_name, password=password, project_id=project.id))
        role = identity.find_role(MEMBER_ROLE)
        if not identity.validate_user_has_project_role(project, user, role):
            identity.assign_project_role_to_user(project, user, role)

        conn.set_compute_quotas(project.id, instances=spec.quotas.instances, cores=spec.quotas.cores,
                                ram=spec.quotas.ram_mb)
        if self._has_volumes():
            conn.set_volume_quotas(project.id, volumes=spec.quotas.volumes)

        net = network_api.find_network(spec.network_name, project_id=project.id) or network_api.create_network(
            name=spec.network_name, project_id=project.id)
        subnet = network_api.find_subnet(spec.subnet_name, network_id=net.id) or network_api.create_subnet(
            name=spec.subnet_name, network_id=net.id, project_id=project.id, ip_version=4, cidr=spec.cidr,
            gateway_ip=spec.gateway_ip)
        router = network_api.find_router(spec.router_name, project_id=project.id) or network_api.create_router(
            name=spec.router_name, project_id=project.id)
        if next(iter(network_api.ports(device_id=router.id, network_id=net.id)), None) is None:
            network_api.add_interface_to_router(router, subnet.id)

        group = network_api.find_security_group(spec.security_group_name, project_id=project.id)
        if group is None:
            group = network_api.create_security_group(
                name=spec.security_group_name, project_id=project.id,
                description="Ingress the control plane allows; everything else is denied")
        # Every ingress rule the spec does not name goes: the group denies all but what is declared.
        present = _ingress_rules(conn, group.id)
        for rule, rule_id in present.items():
            if rule not in spec.ingress:
                network_api.delete_security_group_rule(rule_id, ignore_missing=True)
        for rule in spec.ingress:
            if rule not in present:
                network_api.create_security_group_rule(
                    security_group_id=group.id, project_id=project.id, direction="ingress", ethertype="IPv4",
                    protocol=rule.protocol, port_range_min=rule.port_min, port_range_max=rule.port_max,
                    remote_ip_prefix=rule.remote_cidr)

        if spec.public_key is not None:
            keypair = conn.compute.find_keypair(spec.keypair_name, user_id=user.id)
            wanted = " ".join(spec.public_key.split()[:2])
            if keypair is not None and " ".join(keypair.public_key.split()[:2]) != wanted:
                conn.compute.delete_keypair(keypair, user_id=user.id)
                keypair = None
            if keypair is None:
                # Keypairs belong to a user: the agency's user, so that its servers can use it.
                conn.compute.create_keypair(name=spec.keypair_name, public_key=spec.public_key.strip(),
                                            user_id=user.id)

    def offboard(self, spec: OnboardingSpec, *, timeout: float = 120) -> None:
        """Remove everything onboarding made for the agency, servers of its project first (idempotent)."""
        self._call(f"offboard {spec.project_name}", lambda: self._offboard(spec, timeout))

    def _offboard(self, spec: OnboardingSpec, timeout: float) -> None:
        conn = self._conn
        identity, network_api = conn.identity, conn.network
        project = identity.find_project(spec.project_name, domain_id=DOMAIN_ID)
        user = identity.find_user(spec.user_name, domain_id=DOMAIN_ID)
        if project is not None:
            for server in conn.compute.servers(all_projects=True, project_id=project.id):
                self.delete_server(server.id, timeout=timeout)
            router = network_api.find_router(spec.router_name, project_id=project.id)
            network = network_api.find_network(spec.network_name, project_id=project.id)
            if router is not None:
                for port in network_api.ports(device_id=router.id):
                    network_api.remove_interface_from_router(router, None, port.id)
                network_api.delete_router(router, ignore_missing=True)
            if network is not None:
                network_api.delete_network(network, ignore_missing=True)
            group = network_api.find_security_group(spec.security_group_name, project_id=project.id)
            if group is not None:
                network_api.delete_security_group(group, ignore_missing=True)
            for default_group in network_api.security_groups(project_id=project.id):
                network_api.delete_security_group(default_group, ignore_missing=True)
        if user is not None:
            conn.compute.delete_keypair(spec.keypair_name, ignore_missing=True, user_id=user.id)
            identity.delete_user(user, ignore_missing=True)
        if project is not None:
            identity.delete_project(project, ignore_missing=True)

    # -- servers -----------------------------------------------------------------------------------------------
    def create_server(self, spec: ServerSpec, *, timeout: float = 300) -> ServerInfo:
        """Create (or find, after a retry) the server owned by `spec.owner`, and wait until it is ACTIVE. One found
        in ERROR (Nova could not build it, or it broke) is deleted and made again under the same owner.

        The server goes into this gateway's project. Where that project has an agency ingress group (see
        domain.agency_group_name), the server gets that group only, not the project's `default` group.
        Its metadata is `spec.labels` plus cp_owner; a server found again keeps the metadata it was made with.
        """
        project = self._call("authenticate", lambda: self._access().project_name)
        what = f"create server {spec.name} for {spec.owner} in project {project}"

        def find_or_create() -> Any:
            # Look before every attempt: an attempt whose answer was lost may have created the server.
            existing = self._find_by_owner(spec.owner)
            if existing is not None and existing.status == "ERROR":
                fault = (getattr(existing, "fault", None) or {}).get("message", "no fault recorded")
                log.warning("server %s of %s is in ERROR (%s): deleting it to make it again", existing.id,
                            spec.owner, fault)
                self._conn.compute.delete_server(existing, ignore_missing=True)
                self._conn.compute.wait_for_delete(existing, wait=120)
                existing = None
            if existing is not None:
                return existing
            image = self._conn.image.find_image(spec.image, ignore_missing=False)
            flavor = self._conn.compute.find_flavor(spec.flavor, ignore_missing=False)
            network = self._conn.network.find_network(spec.network, ignore_missing=False)
            extra: dict[str, Any] = {"key_name": spec.key_name} if spec.key_name else {}  # Nova refuses null
            group = self._conn.network.find_security_group(domain.agency_group_name(project),
                                                           project_id=self._access().project_id)
            if group is not None:
                extra["security_groups"] = [{"name": group.id}]  # Nova takes a group's id in "name"
            return self._conn.compute.create_server(
                name=spec.name, image_id=image.id, flavor_id=flavor.id, networks=[{"uuid": network.id}],
                metadata={**spec.labels, OWNER_KEY: spec.owner}, **extra)

        server = self._call(what, find_or_create)
        return self.wait_for_server(server.id, timeout=timeout)

    def _find_by_owner(self, owner: str) -> Any | None:
        # Nova cannot filter on metadata: list this scope's servers and match (owners are unique by design).
        matches = [s for s in self._conn.compute.servers(details=True, all_projects=self._is_admin())
                   if (s.metadata or {}).get(OWNER_KEY) == owner]
        if len(matches) > 1:
            raise CloudConflict(f"{len(matches)} servers claim owner {owner!r}: "
                                f"{', '.join(s.id for s in matches)}; remove the extra ones")
        return matches[0] if matches else None

    def _is_admin(self) -> bool:
        """Admins list every project's servers (all_projects); an agency's user sees its own project only."""
        return "admin" in self._access().role_names

    def find_server(self, owner: str) -> ServerInfo | None:
        server = self._call(f"find server of {owner}", lambda: self._find_by_owner(owner))
        return _server_info(server) if server is not None else None

    def wait_for_server(self, server_id: str, *, status: str = "ACTIVE", timeout: float = 300) -> ServerInfo:
        deadline = time.monotonic() + timeout
        while True:
            server = self._call(f"get server {server_id}", lambda: self._conn.compute.get_server(server_id))
            if server.status == status:
                return _server_info(server)
            if server.status == "ERROR":
                fault = (server.fault or {}).get("message", "no reason given")
                raise CloudError(f"server {server.name} ({server_id}) went to ERROR: {fault} (delete it before "
                                 "creating it again: its owner still names it)")
            if time.monotonic() > deadline:
                raise CloudTimeout(f"server {server.name} ({server_id}) is {server.status}, not {status}, "
                                   f"after {timeout:.0f} s")
            time.sleep(1)

    def delete_server(self, server_id: str, *, timeout: float = 120) -> None:
        """Delete and wait until the server is gone; a server that is already gone is fine."""
        self._call(f"delete server {server_id}",
                   lambda: self._conn.compute.delete_server(server_id, ignore_missing=True))
        deadline = time.monotonic() + timeout
        while self._call(f"get server {server_id}",
                         lambda: self._conn.compute.find_server(server_id, ignore_missing=True)) is not None:
            if time.monotonic() > deadline:
                raise CloudTimeout(f"server {server_id} still exists {timeout:.0f} s after its deletion")
            time.sleep(1)

    def list_ports(self, *, device_ids: list[str]) -> list[dict[str, str]]:
        """The Neutron ports still bound to these servers (deleted ones included): what a deletion left."""
        def listing() -> list[dict[str, str]]:
            return [{"id": p.id, "device_id": p.device_id, "network_id": p.network_id}
                    for device in device_ids for p in self._conn.network.ports(device_id=device)]

        return self._call("list ports", listing)

    def list_servers(self, *, project_id: str | None = None) -> list[ServerInfo]:
        def listing() -> list[Any]:
            query: dict[str, Any] = {"all_projects": self._is_admin()}
            if project_id is not None:
                query["project_id"] = project_id
            return list(self._conn.compute.servers(details=True, **query))

        return [_server_info(s) for s in self._call("list servers", listing)]

    # -- capacity ----------------------------------------------------------------------------------------------
    def quota_usage(self, project_id: str) -> QuotaUsage:
        def usage() -> QuotaUsage:
            compute = self._conn.compute.get_quota_set(project_id, usage=True)
            used = compute.usage or {}
            resources = [ResourceUsage("instances", compute.instances, used.get("instances", 0)),
                         ResourceUsage("cores", compute.cores, used.get("cores", 0)),
                         ResourceUsage("ram_mb", compute.ram, used.get("ram", 0))]
            if self._has_volumes():
                volumes = self._conn.block_storage.get_quota_set(project_id, usage=True)
                resources.append(ResourceUsage("volumes", volumes.volumes, (volumes.usage or {}).get("volumes", 0)))
            return QuotaUsage(project_id, tuple(resources))

        return self._call(f"quota usage of {project_id}", usage)

    def flavors(self) -> list[Flavor]:
        """The flavors servers can be made with here (public and enabled)."""
        def listing() -> list[Flavor]:
            offered = [Flavor(f.name, f.vcpus, f.ram, f.disk or 0) for f in self._conn.compute.flavors(details=True)
                       if f.is_public is not False and not f.is_disabled]
            return sorted(offered, key=lambda f: (f.vcpus, f.ram_mb, f.name))

        return self._call("list flavors", listing)

    def hypervisors(self) -> list[HypervisorCapacity]:
        def listing() -> list[HypervisorCapacity]:
            # The base microversion: every Nova has it, and it still carries the vCPU and memory figures
            # (2.88 dropped them).
            response = self._conn.compute.get("/os-hypervisors/detail")
            sdk.raise_from_response(response)
            return [HypervisorCapacity(name=h["hypervisor_hostname"], vcpus=h["vcpus"], vcpus_used=h["vcpus_used"],
                                       memory_mb=h["memory_mb"], memory_mb_used=h["memory_mb_used"],
                                       running_vms=h["running_vms"])
                    for h in response.json()["hypervisors"]]

        return self._call("list hypervisors", listing)


def _ingress_rules(conn: Any, group_id: str) -> dict[IngressRule, str]:
    """A group's ingress rules as the domain sees them, with their ids. Neutron stores "any address" and "any
    protocol" as none; a rule allowing a group (not a range) never matches a declared rule, so apply removes it."""
    def remote(rule: Any) -> str:
        if rule.remote_ip_prefix:
            return str(rule.remote_ip_prefix)
        if rule.remote_group_id:
            return f"group {rule.remote_group_id}"
        return "::/0" if rule.ether_type == "IPv6" else "0.0.0.0/0"

    return {IngressRule(rule.protocol or "any", rule.port_range_min, rule.port_range_max, remote(rule)): rule.id
            for rule in conn.network.security_group_rules(security_group_id=group_id, direction="ingress")}


def _server_info(server: Any) -> ServerInfo:
    addresses = tuple(entry["addr"] for entries in (server.addresses or {}).values() for entry in entries)
    flavor = server.flavor
    flavor_name = (flavor.get("original_name") or flavor.get("name") or "") if isinstance(flavor, dict) else (
        getattr(flavor, "original_name", None) or getattr(flavor, "name", None) or "")
    groups = tuple(sorted({g["name"] for g in server.security_groups or () if g.get("name")}))
    return ServerInfo(id=server.id, name=server.name, status=server.status,
                      owner=(server.metadata or {}).get(OWNER_KEY), project_id=server.project_id,
                      addresses=addresses, flavor=flavor_name, security_groups=groups)


# Reads made inside a request give up quickly on an unreachable cloud (503 cloud_unavailable); background
# operations connect on their own with the gateway's default retry budget.
READ_RETRY_BUDGET_SECONDS = 5.0


def connect_cloud(settings: Settings, *, read_only: bool = False) -> CloudPort:
    """A gateway to the cloud named by the settings (CP_CLOUD in CP_CLOUDS_YAML or openstacksdk's search)."""
    if not settings.cloud:
        raise CloudUnavailable("no cloud is configured (CP_CLOUD is empty)")
    config = settings.effective_clouds_yaml
    if config is not None and not config.is_file():
        raise CloudUnavailable(f"cloud '{settings.cloud}': the clouds.yaml file {config} does not exist "
                               "(CP_CLOUDS_YAML)")
    retry = RetryPolicy(budget_seconds=READ_RETRY_BUDGET_SECONDS) if read_only else None
    try:
        return CloudGateway.connect(settings.cloud, config_file=config, retry=retry)
    except AppError:
        raise
    except Exception as exc:  # a configuration the SDK refuses: name it, never echo its content
        where = f" in {config}" if config else ""
        raise CloudUnavailable(f"cannot connect to cloud '{settings.cloud}'{where}: {type(exc).__name__}") from None
