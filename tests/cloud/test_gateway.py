"""The cloud gateway against the real dev cloud: onboarding reconcile, servers that are real hosts, isolation
between agencies, quota errors, and retries through a nova-api outage without twins."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import openstack.config
import openstack.connection
import pytest

from controlplane.cloud import domain
from controlplane.cloud.domain import AgencyCredential, IngressRule, OnboardingSpec, Quotas, ServerSpec
from controlplane.cloud.errors import CloudError, CloudNotFound, CloudUnavailable, QuotaExceeded
from controlplane.cloud.gateway import CloudGateway, RetryPolicy
from controlplane.devcloud.cloud import DevCloud

pytestmark = pytest.mark.devcloud

SSH_FROM_ANYWHERE_PRIVATE = IngressRule("tcp", 22, 22, "10.0.0.0/8")
HTTPS = IngressRule("tcp", 443, 443, "0.0.0.0/0")


@dataclass(frozen=True)
class Agency:
    spec: OnboardingSpec
    credential: AgencyCredential
    gateway: CloudGateway

    def server(self, owner: str, name: str) -> ServerSpec:
        return ServerSpec(owner=owner, name=name, flavor="small", image="debian-12", network=self.spec.network_name,
                          key_name=self.spec.keypair_name)


@pytest.fixture(scope="module")
def admin(devcloud: DevCloud) -> Iterator[CloudGateway]:
    with CloudGateway.connect(devcloud.cloud_name, config_file=devcloud.clouds_yaml) as gateway:
        yield gateway


def _spec(code: str, octet: int, public_key: str) -> OnboardingSpec:
    return OnboardingSpec(agency_code=code, quotas=Quotas(instances=4, cores=8, ram_mb=8192, volumes=4),
                          cidr=f"10.81.{octet}.0/24", ingress=(SSH_FROM_ANYWHERE_PRIVATE,), public_key=public_key)


def _offboard(admin: CloudGateway, *specs: OnboardingSpec) -> None:
    """Remove what the specs made (servers, router interfaces, routers, subnets, networks, groups, keypairs,
    users, projects), every spec even when one fails."""
    failures = []
    for spec in specs:
        try:
            admin.offboard(spec)
        except Exception as exc:
            failures.append(f"{spec.agency_code}: {exc!r}")
    assert not failures, f"cleanup left things behind: {failures}"


def _code(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:6].upper()}"


EVERY_CREATE = {("create", resource) for resource in (
    "project", "user", "role_assignment", "network", "subnet", "router", "router_interface", "security_group",
    "security_group_rule", "keypair")} | {("update", "quota")}


@pytest.fixture(scope="module")
def agencies(admin: CloudGateway, ssh_key: Any) -> Iterator[tuple[Agency, Agency]]:
    specs = [_spec(_code("TA"), 231, ssh_key.public), _spec(_code("TB"), 232, ssh_key.public)]
    onboarded = []
    try:
        for spec in specs:
            planned = admin.plan(spec)
            assert {(c.action, c.resource) for c in planned.changes} == EVERY_CREATE
            # The dev cloud has no Cinder: the volume quota is reported as skipped, never as a change.
            assert planned.skipped == (f"quota {spec.project_name} volumes: the cloud has no block-storage service",)
            result = admin.apply(spec)
            assert result.plan == planned
            assert result.credential is not None
            assert "password" not in repr(result.credential) and result.credential.password not in repr(result)
            # The agency group allows exactly the declared ingress (Neutron's default egress rules stay).
            assert admin.observe(spec).ingress == set(spec.ingress)
            onboarded.append(Agency(spec, result.credential, admin.for_agency(result.credential)))
        yield onboarded[0], onboarded[1]
    finally:
        for agency in onboarded:
            agency.gateway.close()
        _offboard(admin, *specs)


def test_second_apply_changes_nothing(admin: CloudGateway, agencies: tuple[Agency, Agency]) -> None:
    for agency in agencies:
        assert admin.plan(agency.spec).is_noop
        again = admin.apply(agency.spec)
        assert again.plan.is_noop
        assert again.credential is None  # the user exists: no new password


def test_a_spec_change_plans_exactly_that_change(admin: CloudGateway, agencies: tuple[Agency, Agency]) -> None:
    agency = agencies[1]
    changed = replace(agency.spec, quotas=replace(agency.spec.quotas, instances=1), ingress=(HTTPS,))
    plan = admin.plan(changed)
    assert sorted(c.describe() for c in plan.changes) == sorted([
        f"update quota {changed.project_name} (instances: 4 -> 1)",
        "create security_group_rule tcp 443 from 0.0.0.0/0",
        "delete security_group_rule tcp 22 from 10.0.0.0/8",
    ])
    assert admin.apply(changed).plan == plan
    assert admin.plan(changed).is_noop
    assert admin.observe(changed).ingress == {HTTPS}
    assert admin.apply(agency.spec).plan.changes  # back to the agency's own spec for the other tests


def test_ingress_added_behind_the_control_planes_back_is_removed(devcloud: DevCloud, admin: CloudGateway,
                                                                 agencies: tuple[Agency, Agency]) -> None:
    spec = agencies[1].spec
    # An operator opens the agency's group by hand: IPv6 from anywhere, and everything from the default group.
    config = openstack.config.OpenStackConfig(config_files=[str(devcloud.clouds_yaml)])
    with openstack.connection.Connection(config=config.get_one(cloud=devcloud.cloud_name)) as conn:
        project = conn.identity.find_project(spec.project_name, ignore_missing=False)
        group = conn.network.find_security_group(spec.security_group_name, project_id=project.id,
                                                 ignore_missing=False)
        default = conn.network.find_security_group("default", project_id=project.id, ignore_missing=False)
        conn.network.create_security_group_rule(security_group_id=group.id, direction="ingress", ethertype="IPv6",
                                                protocol="tcp", port_range_min=22, port_range_max=22)
        conn.network.create_security_group_rule(security_group_id=group.id, direction="ingress", ethertype="IPv4",
                                                remote_group_id=default.id)
    plan = admin.plan(spec)
    assert sorted(c.describe() for c in plan.changes) == [
        "delete security_group_rule any from group " + default.id,
        "delete security_group_rule tcp 22 from ::/0",
    ]
    assert admin.apply(spec).plan == plan
    assert admin.observe(spec).ingress == set(spec.ingress) and admin.plan(spec).is_noop


def test_a_lost_password_is_set_again(admin: CloudGateway, ssh_key: Any) -> None:
    spec = _spec(_code("TC"), 233, ssh_key.public)
    try:
        first = admin.apply(spec).credential
        assert first is not None
        again = admin.apply(spec, reset_password=True)
        assert again.credential is not None and again.credential.password != first.password
        assert [c.describe() for c in again.plan.changes] == [
            f"update user {spec.user_name} (password: (hidden) -> (new))"]
        with admin.for_agency(again.credential) as agency:
            assert agency.list_servers() == []
        with admin.for_agency(first) as stale, pytest.raises(CloudError) as refused:
            stale.list_servers()
        assert "refused the credentials" in refused.value.message and first.password not in refused.value.message
        assert admin.plan(spec).is_noop
    finally:
        _offboard(admin, spec)


def test_a_server_is_a_real_host_and_only_its_agency_sees_it(agencies: tuple[Agency, Agency], ssh_key: Any) -> None:
    a, b = agencies
    owner = f"test:{uuid.uuid4().hex[:8]}"
    server = a.gateway.create_server(a.server(owner, "web-1"))
    try:
        assert server.status == "ACTIVE" and server.owner == owner and server.flavor == "small"
        assert server.security_groups == (a.spec.security_group_name,)  # not the project's default group
        assert server.addresses[0].startswith("10.81.231.")
        uname = ssh_key.run(server.addresses[0], "uname -a && systemctl is-system-running --wait")
        assert uname.returncode == 0, uname.stderr
        assert "Linux web-1" in uname.stdout and uname.stdout.strip().endswith("running")

        # The same owner again finds the server instead of making a twin.
        assert a.gateway.create_server(a.server(owner, "web-1")).id == server.id
        assert [s.id for s in a.gateway.list_servers()] == [server.id]

        # Agency B's own credentials see none of A's servers, neither listed nor by id.
        assert b.gateway.list_servers() == []
        assert b.gateway.find_server(owner) is None
        with pytest.raises(CloudNotFound):
            b.gateway.wait_for_server(server.id, timeout=5)

        usage = {r.resource: (r.limit, r.in_use) for r in a.gateway.quota_usage(a.credential.project_id).resources}
        assert usage["instances"] == (4, 1) and usage["cores"] == (8, 1) and usage["ram_mb"] == (8192, 1024)
    finally:
        a.gateway.delete_server(server.id)
    assert a.gateway.find_server(owner) is None
    with pytest.raises(OSError), socket.create_connection((server.addresses[0], 22), timeout=2):
        pass


def test_a_server_in_error_is_made_again_under_its_owner(admin: CloudGateway,
                                                        agencies: tuple[Agency, Agency]) -> None:
    a = agencies[0]
    owner = f"test:{uuid.uuid4().hex[:8]}"
    broken = a.gateway.create_server(a.server(owner, "err-1"))
    replaced = None
    try:
        admin._conn.compute.reset_server_state(broken.id, "error")  # as Nova leaves a server it could not build
        assert a.gateway.find_server(owner).status == "ERROR"  # type: ignore[union-attr]
        replaced = a.gateway.create_server(a.server(owner, "err-1"))  # a retry of the step that made it
        assert replaced.id != broken.id and replaced.status == "ACTIVE" and replaced.owner == owner
        assert [s.id for s in a.gateway.list_servers()] == [replaced.id]  # the broken one is gone, no twin
    finally:
        for server in (replaced, broken):
            if server is not None:
                a.gateway.delete_server(server.id)


def test_quota_exceeded_is_clear_and_creates_nothing(admin: CloudGateway, agencies: tuple[Agency, Agency]) -> None:
    b = agencies[1]
    one_server = replace(b.spec, quotas=replace(b.spec.quotas, instances=1))
    admin.apply(one_server)
    first = b.gateway.create_server(b.server(f"test:{uuid.uuid4().hex[:8]}", "quota-1"))
    try:
        second_owner = f"test:{uuid.uuid4().hex[:8]}"
        with pytest.raises(QuotaExceeded) as raised:
            b.gateway.create_server(b.server(second_owner, "quota-2"))
        assert raised.value.code == "quota_exceeded" and "quota" in raised.value.message.lower()
        assert b.gateway.find_server(second_owner) is None
        assert [s.id for s in b.gateway.list_servers()] == [first.id]
    finally:
        b.gateway.delete_server(first.id)
        admin.apply(b.spec)


def _outage(devcloud: DevCloud, seconds: float) -> threading.Thread:
    def bring_back() -> None:
        time.sleep(seconds)
        devcloud.start_service("nova-api")

    devcloud.stop_service("nova-api")
    thread = threading.Thread(target=bring_back)
    thread.start()
    return thread


def test_a_create_rides_out_a_nova_api_outage_without_twins(devcloud: DevCloud,
                                                            agencies: tuple[Agency, Agency]) -> None:
    a = agencies[0]
    owner = f"test:{uuid.uuid4().hex[:8]}"
    a.gateway.list_servers()  # a used connection, as in a long-running control plane
    outage = _outage(devcloud, 20)
    started = time.monotonic()
    try:
        server = a.gateway.create_server(a.server(owner, "outage-1"))
    finally:
        outage.join()
    try:
        assert time.monotonic() - started >= 15  # it really waited for nova-api to come back
        assert server.status == "ACTIVE"
        assert [s.id for s in a.gateway.list_servers() if s.owner == owner] == [server.id]
    finally:
        a.gateway.delete_server(server.id)


def test_an_outage_longer_than_the_budget_fails_clearly_and_leaves_nothing(devcloud: DevCloud,
                                                                           agencies: tuple[Agency, Agency]) -> None:
    a = agencies[0]
    impatient = a.gateway.for_agency(a.credential)
    impatient.retry = RetryPolicy(budget_seconds=3)
    owner = f"test:{uuid.uuid4().hex[:8]}"
    outage = _outage(devcloud, 10)
    try:
        with pytest.raises(CloudUnavailable) as raised:
            impatient.create_server(a.server(owner, "outage-2"))
        assert raised.value.status_code == 503 and "did not answer" in raised.value.message
    finally:
        outage.join()
    assert a.gateway.find_server(owner) is None


def test_capacity_and_inventory(admin: CloudGateway, agencies: tuple[Agency, Agency]) -> None:
    hypervisors = admin.hypervisors()
    assert [h.name for h in hypervisors] == ["devcloud"]
    assert hypervisors[0].vcpus > 0 and hypervisors[0].memory_mb > 0
    a = agencies[0]
    server = a.gateway.create_server(a.server(f"test:{uuid.uuid4().hex[:8]}", "inv-1"))
    try:
        inventory = domain.static_inventory(a.gateway.list_servers(), group=a.spec.project_name)
        hosts = inventory["all"]["children"][a.spec.project_name]["hosts"]
        assert hosts == {"inv-1": {"ansible_host": server.addresses[0], "ansible_user": "root",
                                   "openstack_id": server.id}}
    finally:
        a.gateway.delete_server(server.id)
