"""Security groups are enforced on the dev cloud's hosts: an agency server accepts only its declared ingress.

Two agencies are onboarded through the gateway, with SSH declared (tcp 22 from 10.0.0.0/8). Agency A's network is
shared with agency B (a Neutron RBAC policy, as for a common inter-agency network), so that B's server sits next to
A's server with nothing between them but A's security groups. A's server (the target) runs a web server on an
undeclared port; B's server (the client) and this machine (the network's gateway address) try to reach it while
rules, groups and group members change through the Neutron API. Every change is awaited by polling with a deadline;
a "still closed" is asserted only once a change made after it (a witness) is seen to have reached the host.
"""

from __future__ import annotations

import contextlib
import random
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import openstack.config
import openstack.connection
import pytest

from controlplane.cloud.domain import AgencyCredential, IngressRule, OnboardingSpec, Quotas, ServerInfo, ServerSpec
from controlplane.cloud.gateway import CloudGateway
from controlplane.devcloud.cloud import DevCloud
from controlplane.devcloud.hosts import NETNS_PREFIX, host_name_for

pytestmark = pytest.mark.devcloud

SSH = IngressRule("tcp", 22, 22, "10.0.0.0/8")
WEB = 8080  # the target's listener: declared nowhere
APT_PROXY = ("10.77.0.1", 3142)  # on this machine: what the hosts' egress reaches
# Run on a host: connect (a dropped SYN gives up after 1 s), send an HTTP request, print the start of the answer;
# exit 1 when it cannot connect.
PROBE = ("python3 -c 'import socket, sys; s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1); "
         "s.settimeout(10); s.sendall(b\"GET / HTTP/1.0\\r\\n\\r\\n\"); sys.stdout.write(s.recv(8).decode())' "
         "{address} {port}")


@dataclass(frozen=True)
class Agency:
    spec: OnboardingSpec
    credential: AgencyCredential
    gateway: CloudGateway
    group_id: str


@dataclass
class Estate:
    conn: Any  # openstacksdk, as the cloud's admin
    ssh: Any  # the root conftest's ssh_key
    a: Agency
    b: Agency
    target: ServerInfo  # agency A's server on A's network
    client: ServerInfo  # agency B's server on A's (shared) network
    target_port: Any
    client_port: Any

    @property
    def gateway(self) -> str:
        """This machine's address on A's network: where its connections to the hosts come from."""
        return self.a.spec.gateway_ip

    def rule(self, group_id: str, **fields: Any) -> Any:
        return self.conn.network.create_security_group_rule(security_group_id=group_id, ethertype="IPv4", **fields)

    def reaches(self, source: ServerInfo, destination: ServerInfo, port: int) -> bool:
        """Whether `source` (a server) gets an HTTP-ish answer from `destination` at `port`."""
        return _host_connects(self.ssh, source.addresses[0], destination.addresses[0], port)


def _host_answer(ssh: Any, source: str, address: str, port: int) -> str | None:
    """What `address:port` answers the host `source` first (8 bytes); None when it cannot connect."""
    done = ssh.run(source, PROBE.format(address=address, port=port))
    # 255 is ssh's own failure: a probe that did not run proves nothing either way.
    assert done.returncode != 255, f"ssh to {source} failed: {done.stderr}"
    return done.stdout if done.returncode == 0 else None


def _host_connects(ssh: Any, source: str, address: str, port: int) -> bool:
    return (_host_answer(ssh, source, address, port) or "").startswith("HTTP/")


def _connects_from_here(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1) as sock:
            sock.settimeout(10)
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
            return sock.recv(8).startswith(b"HTTP/")
    except OSError:
        return False


def _connects_from_here_ssh(address: str) -> bool:
    try:
        with socket.create_connection((address, 22), timeout=1) as sock:
            sock.settimeout(10)
            return sock.recv(4) == b"SSH-"
    except OSError:
        return False


def eventually(check: Callable[[], bool], what: str, timeout: float = 30) -> float:
    """Poll `check` until it holds; return how long that took."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, f"not within {timeout:.0f} s: {what}"
        time.sleep(0.2)
    return time.monotonic() - started


def _spec(prefix: str, octet: int, public_key: str) -> OnboardingSpec:
    code = f"{prefix}{uuid.uuid4().hex[:6].upper()}"
    return OnboardingSpec(agency_code=code, quotas=Quotas(instances=2, cores=2, ram_mb=2048, volumes=0),
                          cidr=f"10.85.{octet}.0/24", ingress=(SSH,), public_key=public_key)


def _onboard(devcloud: DevCloud, spec: OnboardingSpec) -> Agency:
    """Onboard through the gateway, on a connection of its own (agencies are onboarded in parallel)."""
    with CloudGateway.connect(devcloud.cloud_name, config_file=devcloud.clouds_yaml) as admin:
        result = admin.apply(spec)
        assert result.credential is not None
        group = admin._conn.network.find_security_group(
            spec.security_group_name, project_id=result.credential.project_id, ignore_missing=False)
        return Agency(spec, result.credential, admin.for_agency(result.credential), group.id)


@pytest.fixture(scope="module")
def conn(devcloud: DevCloud) -> Iterator[Any]:
    """openstacksdk as the cloud's admin."""
    config = openstack.config.OpenStackConfig(config_files=[str(devcloud.clouds_yaml)])
    connection = openstack.connection.Connection(config=config.get_one(cloud=devcloud.cloud_name))
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def estate(devcloud: DevCloud, conn: Any, ssh_key: Any, timings: list[str]) -> Iterator[Estate]:
    first, second = random.sample(range(1, 255), 2)
    specs = [_spec("SGA", first, ssh_key.public), _spec("SGB", second, ssh_key.public)]
    agencies: list[Agency] = []
    with CloudGateway.connect(devcloud.cloud_name, config_file=devcloud.clouds_yaml) as admin:
        try:
            started = time.monotonic()
            with ThreadPoolExecutor(2) as pool:
                onboarding = [pool.submit(_onboard, devcloud, spec) for spec in specs]
                for future in onboarding:  # every one that succeeded is offboarded, whatever the other did
                    with contextlib.suppress(Exception):
                        agencies.append(future.result())
            assert len(agencies) == 2, [str(f.exception()) for f in onboarding if f.exception()]
            a, b = agencies
            network = conn.network.find_network(a.spec.network_name, project_id=a.credential.project_id,
                                                ignore_missing=False)
            conn.network.create_rbac_policy(object_type="network", object_id=network.id, action="access_as_shared",
                                            target_project_id=b.credential.project_id)
            onboarded = time.monotonic()
            with ThreadPoolExecutor(2) as pool:  # both servers boot at once
                target = pool.submit(a.gateway.create_server, ServerSpec(
                    f"test:{uuid.uuid4().hex[:8]}", "sg-target", "small", "debian-12", a.spec.network_name,
                    a.spec.keypair_name))
                client = pool.submit(b.gateway.create_server, ServerSpec(
                    f"test:{uuid.uuid4().hex[:8]}", "sg-client", "small", "debian-12", a.spec.network_name,
                    b.spec.keypair_name))
                estate = Estate(conn, ssh_key, a, b, target.result(), client.result(), None, None)
            booted = time.monotonic()
            estate.target_port, estate.client_port = (
                next(iter(conn.network.ports(device_id=server.id))) for server in (estate.target, estate.client))
            assert estate.target.security_groups == (a.spec.security_group_name,)
            assert estate.client.security_groups == (b.spec.security_group_name,)
            listen = ssh_key.run(estate.target.addresses[0],
                                 f"systemd-run --unit=sg-web python3 -m http.server {WEB} --directory /srv")
            assert listen.returncode == 0, listen.stderr
            eventually(lambda: _host_connects(ssh_key, estate.target.addresses[0], "127.0.0.1", WEB),
                       "the target's web server listens")
            timings.append(f"security groups: 2 agencies onboarded in {onboarded - started:.1f} s, "
                           f"2 servers ACTIVE in {booted - onboarded:.1f} s")
            yield estate
        finally:
            for agency in agencies:
                agency.gateway.close()
            # B first: its server's port is on A's network, which cannot go while the port is there.
            failures = []
            for spec in reversed(specs):
                try:
                    admin.offboard(spec)
                except Exception as exc:
                    failures.append(f"{spec.agency_code}: {exc!r}")
            assert not failures, f"cleanup left things behind: {failures}"


def test_the_admin_projects_default_group_admits_ssh_http_and_icmp_from_anywhere(conn: Any) -> None:
    admin = conn.identity.find_project("admin", ignore_missing=False)
    group = conn.network.find_security_group("default", project_id=admin.id, ignore_missing=False)
    ingress = {(r["protocol"], r["port_range_min"], r["remote_ip_prefix"], r["remote_group_id"])
               for r in group.security_group_rules if r["direction"] == "ingress" and r["ethertype"] == "IPv4"}
    assert ingress == {("tcp", 22, "0.0.0.0/0", None), ("tcp", 80, "0.0.0.0/0", None),
                       ("icmp", None, "0.0.0.0/0", None), (None, None, None, group.id)}


def test_an_undeclared_port_is_unreachable_from_another_agency_and_from_here(estate: Estate) -> None:
    # The path is there (the declared SSH port answers the other agency's server) and the web server runs...
    ssh_port = _host_answer(estate.ssh, estate.client.addresses[0], estate.target.addresses[0], 22)
    assert (ssh_port or "").startswith("SSH-"), "the client's server cannot reach the target's declared SSH port"
    # ...but nothing that was not declared gets through.
    assert not estate.reaches(estate.client, estate.target, WEB)
    assert not _connects_from_here(estate.target.addresses[0], WEB)


def test_a_rule_added_through_the_api_opens_the_port_for_its_source_only_and_removed_closes_it(
        estate: Estate, timings: list[str]) -> None:
    rule = estate.rule(estate.a.group_id, direction="ingress", protocol="tcp", port_range_min=WEB,
                       port_range_max=WEB, remote_ip_prefix=f"{estate.client.addresses[0]}/32")
    try:
        # An answer comes back: replies of an accepted connection pass the target's egress and the client's ingress.
        opened = eventually(lambda: estate.reaches(estate.client, estate.target, WEB), "the rule opens the port")
        assert not _connects_from_here(estate.target.addresses[0], WEB)  # the rule names the client's address only
    finally:
        estate.conn.network.delete_security_group_rule(rule, ignore_missing=True)
    closed = eventually(lambda: not estate.reaches(estate.client, estate.target, WEB), "the removed rule closes it")
    timings.append(f"security groups: a rule added reached the host in {opened:.1f} s, removed in {closed:.1f} s")


def test_a_remote_group_rule_follows_the_groups_members(estate: Estate) -> None:
    peers = estate.conn.network.create_security_group(name=f"sg-peers-{uuid.uuid4().hex[:6]}",
                                                      project_id=estate.b.credential.project_id)
    by_group = estate.rule(estate.a.group_id, direction="ingress", protocol="tcp", port_range_min=WEB,
                           port_range_max=WEB, remote_group_id=peers.id)
    witness = estate.rule(estate.a.group_id, direction="ingress", protocol="tcp", port_range_min=WEB,
                          port_range_max=WEB, remote_ip_prefix=f"{estate.gateway}/32")
    port = estate.client_port
    try:
        # Once the witness (made after the group rule) works here, the host has the group rule too: no member yet.
        eventually(lambda: _connects_from_here(estate.target.addresses[0], WEB), "the witness rule opens the port")
        assert not estate.reaches(estate.client, estate.target, WEB)

        estate.conn.network.update_port(port, security_groups=[estate.b.group_id, peers.id])
        eventually(lambda: estate.reaches(estate.client, estate.target, WEB), "the new member gets in")
        estate.conn.network.update_port(port, security_groups=[estate.b.group_id])
        eventually(lambda: not estate.reaches(estate.client, estate.target, WEB), "the former member is kept out")
    finally:
        estate.conn.network.update_port(port, security_groups=[estate.b.group_id])
        for rule in (by_group, witness):
            estate.conn.network.delete_security_group_rule(rule, ignore_missing=True)
        estate.conn.network.delete_security_group(peers, ignore_missing=True)
    eventually(lambda: not _connects_from_here(estate.target.addresses[0], WEB), "the witness is gone")


def test_groups_of_the_port_and_port_security(estate: Estate) -> None:
    target, port = estate.target.addresses[0], estate.target_port
    extra = estate.conn.network.create_security_group(name=f"sg-web-{uuid.uuid4().hex[:6]}",
                                                      project_id=estate.a.credential.project_id)
    try:
        # New groups come with Neutron's allow-all egress rules.
        assert {(r["direction"], r["ethertype"], r["protocol"], r["remote_ip_prefix"])
                for r in extra.security_group_rules} == {("egress", "IPv4", None, None), ("egress", "IPv6", None, None)}
        estate.rule(extra.id, direction="ingress", protocol="tcp", port_range_min=WEB, port_range_max=WEB,
                    remote_ip_prefix="0.0.0.0/0")
        estate.conn.network.update_port(port, security_groups=[estate.a.group_id, extra.id])
        eventually(lambda: _connects_from_here(target, WEB), "a group added to the port opens its port")
        estate.conn.network.update_port(port, security_groups=[estate.a.group_id])
        eventually(lambda: not _connects_from_here(target, WEB), "the group taken off the port closes it")

        # Port security on and no group at all: everything is dropped, the declared SSH port too.
        estate.conn.network.update_port(port, security_groups=[])
        eventually(lambda: not _connects_from_here(target, 22), "a port without groups drops everything")
        # Port security off: nothing is filtered.
        estate.conn.network.update_port(port, port_security_enabled=False)
        eventually(lambda: _connects_from_here(target, WEB), "a port without port security is not filtered")
        assert estate.reaches(estate.client, estate.target, WEB)
    finally:
        estate.conn.network.update_port(port, port_security_enabled=True, security_groups=[estate.a.group_id])
        estate.conn.network.delete_security_group(extra, ignore_missing=True)
    eventually(lambda: not _connects_from_here(target, WEB) and _connects_from_here_ssh(target),
               "the agency's own group applies again")


def test_egress_follows_the_groups_and_replies_pass(estate: Estate) -> None:
    target = estate.target.addresses[0]
    group = estate.conn.network.get_security_group(estate.a.group_id)
    egress = [r for r in group.security_group_rules if r["direction"] == "egress"]
    assert {(r["ethertype"], r["protocol"], r["remote_ip_prefix"]) for r in egress} == {
        ("IPv4", None, None), ("IPv6", None, None)}, "the agency group lost Neutron's default egress rules"

    def out() -> bool:
        return _host_connects(estate.ssh, target, *APT_PROXY)

    # Egress works, and the proxy's answer comes back though no ingress rule admits it (a reply).
    assert out()
    for rule in egress:
        estate.conn.network.delete_security_group_rule(rule["id"])
    try:
        eventually(lambda: not out(), "without egress rules the server cannot connect out")
        # SSH from here still works: the replies of an accepted incoming connection are let out.
        assert estate.ssh.run(target, "true").returncode == 0
    finally:
        for ethertype in ("IPv4", "IPv6"):
            estate.conn.network.create_security_group_rule(security_group_id=estate.a.group_id, direction="egress",
                                                           ethertype=ethertype)
    eventually(out, "egress rules restored let the server connect out again")


def test_a_table_removed_behind_the_clouds_back_comes_back(estate: Estate) -> None:
    target = estate.target.addresses[0]
    netns = NETNS_PREFIX + host_name_for(estate.target.id)
    subprocess.run(["ip", "netns", "exec", netns, "nft", "delete", "table", "inet", "cp_secgroups"], check=True)
    assert _connects_from_here(target, WEB)  # unfiltered now
    eventually(lambda: not _connects_from_here(target, WEB), "the sync loads the table again")

