"""Fresh hosts for the role tests: servers booted on the dev cloud with openstacksdk directly. The test module
imports the fixtures (`from fleet import cloud, fleet`); not a conftest.py, which would shadow the root one for
`from conftest import ...`.

The root `devcloud` fixture brings the cloud up; the root `ssh_key` fixture's key becomes the servers' keypair.
Every server carries owner metadata cp_owner=tests-roles-<uuid>; servers and keypair are deleted at the end of the
module, also when a test fails, and the cleanup checks that none of them is left.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import openstack
import openstack.config
import pytest

from controlplane.devcloud.cloud import DevCloud

# Hosts -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Host:
    name: str
    address: str
    server_id: str


class Fleet:
    """Servers of one test module on the dev cloud, all owned by cp_owner=tests-roles-<uuid>."""

    def __init__(self, conn: openstack.connection.Connection, public_key: str, gateway: str) -> None:
        self.conn = conn
        self.tag = uuid.uuid4().hex[:8]
        self.owner = f"tests-roles-{self.tag}"
        self.keypair = f"tests-roles-{self.tag}"
        self.gateway = gateway
        self.hosts: list[Host] = []
        self._server_ids: list[str] = []
        conn.compute.create_keypair(name=self.keypair, public_key=public_key)

    def boot(self, names: Sequence[str], *, ssh_timeout: float = 180) -> list[Host]:
        image = self.conn.image.find_image("debian-12", ignore_missing=False)
        flavor = self.conn.compute.find_flavor("small", ignore_missing=False)
        network = self.conn.network.find_network("devcloud-net", ignore_missing=False)
        servers = []
        for name in names:
            server = self.conn.compute.create_server(
                name=f"{name}-{self.tag}", image_id=image.id, flavor_id=flavor.id, networks=[{"uuid": network.id}],
                key_name=self.keypair, metadata={"cp_owner": self.owner})
            self._server_ids.append(server.id)
            servers.append(server)
        booted = []
        for server in servers:
            server = self.conn.compute.wait_for_server(server, wait=240)
            address = next(a["addr"] for addrs in server.addresses.values() for a in addrs if a["version"] == 4)
            booted.append(Host(server.name, address, server.id))
        deadline = time.monotonic() + ssh_timeout
        for host in booted:
            while not _ssh_answers(host.address):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{host.name} ({host.address}) does not answer SSH after {ssh_timeout:.0f} s")
                time.sleep(0.5)
        self.hosts.extend(booted)
        return booted

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


def _ssh_answers(address: str) -> bool:
    try:
        with socket.create_connection((address, 22), timeout=1) as sock:
            sock.settimeout(2)
            return sock.recv(4).startswith(b"SSH-")
    except OSError:
        return False


@pytest.fixture(scope="session")
def cloud(devcloud: DevCloud) -> Iterator[openstack.connection.Connection]:
    config = openstack.config.OpenStackConfig(config_files=[str(devcloud.clouds_yaml)]).get_one(
        cloud=devcloud.cloud_name)
    conn = openstack.connection.Connection(config=config)
    yield conn
    conn.close()


@pytest.fixture(scope="module")
def fleet(cloud: openstack.connection.Connection, ssh_key: Any) -> Iterator[Fleet]:
    network = cloud.network.find_network("devcloud-net", ignore_missing=False)
    gateway = next(s.gateway_ip for s in cloud.network.subnets(network_id=network.id) if s.ip_version == 4)
    fleet = Fleet(cloud, ssh_key.public, gateway)
    try:
        yield fleet
    finally:
        fleet.close()
