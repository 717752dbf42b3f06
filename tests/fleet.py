"""The run's fleet: plain Debian servers on the dev cloud, booted together on the first test that asks for one, and
deleted at the end of the run (the cleanup checks that none is left). Each name is one test module's host: a module
configures its own and never sees what another did to theirs. The tests of server creation itself (the gateway, the
smoke test, security groups, migrations) make their own servers.

The root `devcloud` fixture brings the cloud up; the root `ssh_key` fixture's key is the servers' root key. Every
server carries owner metadata cp_owner=tests-fleet-<uuid>.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import openstack
import openstack.connection

from controlplane.devcloud.hosts import ssh_answers

# The hosts the run's tests configure: the jobs API's, the runner adapter's, the roles' three, and the VC roles' one.
HOSTS = ("jobs", "runner", "db", "app", "web", "vc")


@dataclass(frozen=True)
class Host:
    name: str
    address: str
    server_id: str


class Fleet:
    """Servers of one test run on the dev cloud, all owned by cp_owner=tests-fleet-<uuid>."""

    def __init__(self, conn: openstack.connection.Connection, public_key: str) -> None:
        self.conn = conn
        self.tag = uuid.uuid4().hex[:8]
        self.owner = f"tests-fleet-{self.tag}"
        self.keypair = f"tests-fleet-{self.tag}"
        network = conn.network.find_network("devcloud-net", ignore_missing=False)
        self.gateway = next(s.gateway_ip for s in conn.network.subnets(network_id=network.id) if s.ip_version == 4)
        self._hosts: dict[str, Host] = {}
        self._server_ids: list[str] = []
        conn.compute.create_keypair(name=self.keypair, public_key=public_key)

    def host(self, name: str) -> Host:
        """The host of that name (one of HOSTS), booted with the others."""
        return self._hosts[name]

    def boot(self, names: Sequence[str], *, ssh_timeout: float = 180) -> list[Host]:
        """Create every server first, then wait for them: Nova boots them side by side."""
        image = self.conn.image.find_image("debian-12", ignore_missing=False)
        flavor = self.conn.compute.find_flavor("small", ignore_missing=False)
        network = self.conn.network.find_network("devcloud-net", ignore_missing=False)
        servers = []
        for name in names:
            server = self.conn.compute.create_server(
                name=f"{name}-{self.tag}", image_id=image.id, flavor_id=flavor.id, networks=[{"uuid": network.id}],
                key_name=self.keypair, metadata={"cp_owner": self.owner})
            self._server_ids.append(server.id)
            servers.append((name, server))
        booted = []
        for name, server in servers:
            server = self.conn.compute.wait_for_server(server, wait=240)
            address = next(a["addr"] for addrs in server.addresses.values() for a in addrs if a["version"] == 4)
            booted.append((name, Host(server.name, address, server.id)))
        deadline = time.monotonic() + ssh_timeout
        for _, host in booted:
            while not ssh_answers(host.address):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{host.name} ({host.address}) does not answer SSH after {ssh_timeout:.0f} s")
                time.sleep(0.5)
        self._hosts.update(booted)
        return [host for _, host in booted]

    def close(self) -> None:
        errors = []
        for server_id in self._server_ids:
            try:
                self.conn.compute.delete_server(server_id, ignore_missing=True)
            except Exception as exc:  # keep deleting the others
                errors.append(f"{server_id}: {exc}")
        for server_id in self._server_ids:
            try:
                self.conn.compute.wait_for_delete(self.conn.compute.get_server(server_id), wait=120)
            except openstack.exceptions.NotFoundException:
                pass
            except Exception as exc:
                errors.append(f"{server_id}: {exc}")
        self.conn.compute.delete_keypair(self.keypair, ignore_missing=True)
        leftovers = [s.name for s in self.conn.compute.servers(all_projects=True)
                     if (s.metadata or {}).get("cp_owner") == self.owner]
        assert not errors and not leftovers, f"cleanup failed: {errors} {leftovers}"

