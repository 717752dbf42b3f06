"""The dev cloud's own smoke test: a real OpenStack on 127.0.0.1 whose servers are real Debian hosts.

Plain openstacksdk, as any user of the dev cloud would use it (the control plane's gateway is tested elsewhere).
"""

from __future__ import annotations

import socket
import stat
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import openstack
import openstack.config
import openstack.connection
import pytest
from typer.testing import CliRunner

from controlplane.cli import app
from controlplane.devcloud.cloud import DevCloud

pytestmark = pytest.mark.devcloud


@pytest.fixture(scope="module")
def conn(devcloud: DevCloud) -> Iterator[Any]:
    config = openstack.config.OpenStackConfig(config_files=[str(devcloud.clouds_yaml)])
    connection = openstack.connection.Connection(config=config.get_one(cloud=devcloud.cloud_name))
    yield connection
    connection.close()


def _listening(port: int) -> list[str]:
    output = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    return [line.split()[3] for line in output.splitlines()]


def test_every_service_runs_on_loopback_only(devcloud: DevCloud) -> None:
    services = devcloud.status()
    assert [s.name for s in services if not s.running] == []
    for service in services:
        if service.port is not None:
            addresses = _listening(service.port)
            assert addresses, service.name
            assert all(a.startswith(("127.0.0.1:", "[::1]:")) for a in addresses), (service.name, addresses)


def test_up_on_a_running_cloud_is_a_no_op(devcloud: DevCloud) -> None:
    before = {s.name: s.pid for s in devcloud.status()}
    devcloud.up()
    assert {s.name: s.pid for s in devcloud.status()} == before


def test_credentials_are_private_and_env_points_at_them(devcloud: DevCloud) -> None:
    for path in (devcloud.clouds_yaml, devcloud.state_dir / "secrets.json"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    result = CliRunner().invoke(app, ["devcloud", "env"], env={"CP_DEVCLOUD_STATE_DIR": str(devcloud.state_dir)})
    assert result.exit_code == 0
    assert f"export OS_CLIENT_CONFIG_FILE={devcloud.clouds_yaml}" in result.stdout
    assert "export OS_CLOUD=devcloud" in result.stdout


def test_cli_status_and_logs(devcloud: DevCloud) -> None:
    env = {"CP_DEVCLOUD_STATE_DIR": str(devcloud.state_dir)}
    status = CliRunner().invoke(app, ["devcloud", "status"], env=env)
    assert status.exit_code == 0, status.output
    assert "nova-compute" in status.stdout
    logs = CliRunner().invoke(app, ["devcloud", "logs", "no-such-service"], env=env)
    assert logs.exit_code == 2
    assert "unknown service" in logs.output


def test_admin_project_is_ready_to_boot(conn: Any) -> None:
    assert conn.image.find_image("debian-12") is not None
    flavors = {f.name: (f.vcpus, f.ram) for f in conn.compute.flavors()}
    assert {"small", "medium", "large"} <= flavors.keys()
    assert flavors["small"] < flavors["medium"] < flavors["large"]
    network = conn.network.find_network("devcloud-net")
    assert [s.cidr for s in conn.network.subnets(network_id=network.id)] == ["10.78.0.0/24"]
    assert [h.name for h in conn.compute.hypervisors()] == ["devcloud"]


def test_a_server_is_a_real_host_that_goes_away_with_it(conn: Any, ssh_key: Any) -> None:
    name = f"smoke-{uuid.uuid4().hex[:8]}"
    keypair = conn.compute.create_keypair(name=name, public_key=ssh_key.public)
    server = None
    try:
        server = conn.compute.create_server(
            name=name, image_id=conn.image.find_image("debian-12").id, flavor_id=conn.compute.find_flavor("small").id,
            networks=[{"uuid": conn.network.find_network("devcloud-net").id}], key_name=keypair.name,
        )
        server = conn.compute.wait_for_server(server, wait=180)
        address = server.addresses["devcloud-net"][0]["addr"]

        uname = ssh_key.run(address, "uname -a")
        assert uname.returncode == 0, uname.stderr
        assert "Linux" in uname.stdout
        state = ssh_key.run(address, "systemctl is-system-running --wait")
        assert state.stdout.strip() == "running", state.stdout + state.stderr
        hostname = ssh_key.run(address, "hostname")
        assert hostname.stdout.strip() == name

        conn.compute.delete_server(server)
        conn.compute.wait_for_delete(server, wait=120)
        server = None
        with pytest.raises(OSError), socket.create_connection((address, 22), timeout=2):
            pass
    finally:
        if server is not None:
            conn.compute.delete_server(server, ignore_missing=True)
        conn.compute.delete_keypair(keypair, ignore_missing=True)
