"""`controlplane bridges deploy` on the real dev cloud, through the command line (in-process, the durable engine
here): two bridges of the catalogue become servers in the VC operations agency's project, configured by the
janus_bridge role, registered and reconciled (the rooms spread over both, made through the bridges' real Janus);
then one bridge's server is stopped through the cloud, and the next reconcile drains it onto the other."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openstack.config
import openstack.connection
import pytest
from test_cloud_api_devcloud import _delete_everything_of
from typer.testing import CliRunner

from controlplane.auth import service as auth_service
from controlplane.automation import service as job_service
from controlplane.automation.schemas import CredentialIn
from controlplane.cli import app as cli_app
from controlplane.cloud import flows as cloud_flows
from controlplane.cloud import service as cloud_service
from controlplane.cloud.schemas import OnboardingSpecIn
from controlplane.composition import opened_context
from controlplane.config import Settings
from controlplane.db import transaction
from controlplane.devcloud import samples
from controlplane.devcloud.estate import Estate
from controlplane.migrations import upgrade
from controlplane.rooms import service
from controlplane.rooms.janus import JanusBridge
from controlplane.secrets import secret_box

pytestmark = pytest.mark.devcloud
ROOMS = 4
# What the control plane reaches a bridge on (its HTTP and admin APIs) and what rooms send (SIP, media).
INGRESS = [{"protocol": "tcp", "port_min": 22, "port_max": 22, "remote_cidr": samples.INGRESS_FROM},
           {"protocol": "tcp", "port_min": 7088, "port_max": 7088, "remote_cidr": samples.INGRESS_FROM},
           {"protocol": "tcp", "port_min": 8088, "port_max": 8088, "remote_cidr": samples.INGRESS_FROM},
           {"protocol": "udp", "port_min": 20000, "port_max": 40000, "remote_cidr": samples.INGRESS_FROM},
           {"protocol": "icmp", "remote_cidr": samples.INGRESS_FROM}]


@dataclass
class Network:
    agency: str
    tag: str
    env: dict[str, str]
    settings: Settings
    conn: Any

    def cli(self, *args: str, code: int = 0) -> str:
        result = CliRunner().invoke(cli_app, list(args), env=self.env)
        assert result.exit_code == code, result.output
        return str(result.output)

    def bridges(self) -> dict[str, Any]:
        with opened_context(self.settings) as ctx, transaction(ctx.sessions) as session:
            box = secret_box(self.settings)
            return {b.code: (b.state, service.bridge_address(b, box)) for b in service.list_bridges(session)}


def _catalogue(directory: Path, tag: str) -> Path:
    directory.mkdir(parents=True)
    rooms = "".join(f"""- {{code: vc-room-{i}, name: room {i}, site: vc-site, agency: MOIS, building: "1", floor: 1,
   capacity: 6, endpoint: {{uri: "sip:vc-room-{i}@vc.test", address: 10.250.0.{i + 2}}}}}
""" for i in range(ROOMS))
    (directory / "catalogue.yml").write_text(f"""version: 1
sites:
- {{code: vc-site, name: VC test site, kind: complex, region: sejong, address: here}}
bridges:
- {{code: vc-a, site: vc-site, server: vc-bridge-a-{tag}, capacity: {{rooms: 10, participants: 40}}}}
- {{code: vc-b, site: vc-site, server: vc-bridge-b-{tag}, capacity: {{rooms: 10, participants: 40}}}}
rooms:
{rooms}""")
    return directory


@pytest.fixture(scope="module")
def network(devcloud: Any, tmp_path_factory: pytest.TempPathFactory, timings: list[str]) -> Iterator[Network]:
    work = tmp_path_factory.mktemp("vc-deploy")
    url = f"sqlite:///{work / 'controlplane.db'}"
    upgrade(url)
    tag = uuid.uuid4().hex[:6]
    agency = f"VC{tag.upper()}"
    env = {"CP_ENV": "test", "CP_DATABASE_URL": url, "CP_DATA_DIR": str(work), "CP_CLOUD": devcloud.cloud_name,
           "CP_CLOUDS_YAML": str(devcloud.clouds_yaml), "CP_WORKFLOWS_DATABASE_URL": f"sqlite:///{work / 'wf.db'}",
           "CP_ROOMS_OPERATIONS_AGENCY": agency, "CP_ROOMS_CATALOGUE_DIR": str(_catalogue(work / "rooms", tag)),
           "CP_ROOMS_ALLOWED_NETWORKS": "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16",
           "CP_ROOMS_PROBE_SECONDS": "3600", "CP_ROOMS_RECONCILE_SECONDS": "3600", "CP_METRICS_REFRESH_SECONDS": "3600"}
    settings = Settings(env="test", database_url=url, data_dir=work, cloud=devcloud.cloud_name,
                        clouds_yaml=devcloud.clouds_yaml, rooms_operations_agency=agency,
                        rooms_catalogue_dir=work / "rooms", rooms_allowed_networks=env["CP_ROOMS_ALLOWED_NETWORKS"])
    config = openstack.config.OpenStackConfig(config_files=[str(devcloud.clouds_yaml)])
    conn = openstack.connection.Connection(config=config.get_one(cloud=devcloud.cloud_name))
    started = time.monotonic()
    try:
        with opened_context(settings) as ctx:
            with transaction(ctx.sessions) as session:
                auth_service.seed_agencies(session, clock=ctx.clock, actor="test")
            estate = Estate(ctx, agency=agency, actor="test")
            estate.ensure_agency()
            public_key = estate.ensure_key()
            with transaction(ctx.sessions) as session:  # onboarded with the VC network's ports open
                others = [t.cidr for t in cloud_service.list_tenancies(session, viewer="test", cloud=settings.cloud)]
                cloud_service.put_spec(session, clock=ctx.clock, actor="test", cloud=settings.cloud, code=agency,
                                       data=OnboardingSpecIn.model_validate(
                                           {**samples.onboarding(public_key, samples.free_cidr(others)),
                                            "ingress": INGRESS}))
                operation = cloud_flows.request_apply(session, ctx=ctx, actor="test", code=agency, foreground=True)
                operation_id = operation.id
            cloud_flows.run_apply(ctx, operation_id=operation_id)
            with transaction(ctx.sessions) as session:
                job_service.put_credential(session, clock=ctx.clock, actor="test", box=secret_box(settings),
                                           name=f"vc-{tag}", data=CredentialIn(private_key=estate.key_file.read_text()))
        timings.append(f"vc deploy: agency onboarded in {time.monotonic() - started:.0f} s")
        yield Network(agency, tag, env, settings, conn)
    finally:
        try:
            _delete_everything_of(conn, {"project": f"agency-{agency.lower()}", "user": f"agency-{agency.lower()}-svc",
                                         "keypair": f"agency-{agency.lower()}-key"})
        finally:
            conn.close()


def _rooms_on(address: Any) -> set[int]:
    with JanusBridge(address.url, address.admin_url, address.admin_secret, timeout=10) as client:
        return {room.room for room in client.list_rooms()}


def test_bridges_are_deployed_on_the_cloud_and_a_stopped_one_is_drained(network: Network,
                                                                        timings: list[str]) -> None:
    assert "4 rooms, 2 bridges; applied" in network.cli("rooms", "sync")
    started = time.monotonic()
    output = network.cli("bridges", "deploy", "2", "--credential", f"vc-{network.tag}")
    timings.append(f"vc deploy: two bridges deployed in {time.monotonic() - started:.0f} s")
    assert "bridge vc-a: up at " in output or "bridge vc-a: unknown at " in output, output
    output = network.cli("bridges", "reconcile")
    assert "bridge vc-a: up" in output and "bridge vc-b: up" in output, output
    bridges = network.bridges()
    on_each = {code: _rooms_on(address) for code, (_state, address) in bridges.items()}
    # Every room is on a bridge, once (where depends on which bridge was registered first: rooms never move
    # between healthy bridges, that would cut their meetings).
    assert sum(len(rooms) for rooms in on_each.values()) == ROOMS and not set.intersection(*on_each.values())
    assert "admin_secret" not in network.cli("bridges", "list")

    # The busier bridge's server stops (through the cloud): the next reconcile finds it down and moves its rooms.
    busy = max(on_each, key=lambda code: len(on_each[code]))
    other = next(code for code in on_each if code != busy)
    server = network.conn.compute.find_server(f"vc-bridge-{busy[-1]}-{network.tag}", all_projects=True,
                                              ignore_missing=False)
    network.conn.compute.stop_server(server)
    network.conn.compute.wait_for_server(server, status="SHUTOFF", wait=120)
    output = network.cli("bridges", "reconcile")
    assert f"bridge {busy}: down: " in output and output.count("moved: ") == len(on_each[busy]), output
    assert len(_rooms_on(bridges[other][1])) == ROOMS
    assert network.bridges()[busy][0] == "down"
