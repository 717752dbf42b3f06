"""The cloud API end to end against the real dev cloud: spec, plan, apply in the background, a second apply that
changes nothing, status with quota use and networks, a real server in the agency's project that the inventory
lists and that answers SSH at its inventory address, capacity and the gauges. Everything created in OpenStack is
deleted afterwards, also when a step fails."""

from __future__ import annotations

import ipaddress
import random
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openstack.config
import openstack.connection
import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select
from typer.testing import CliRunner

from controlplane.app import create_app
from controlplane.cli import app as cli_app
from controlplane.cloud import domain, service
from controlplane.cloud.gateway import CloudGateway
from controlplane.cloud.models import CloudTenancy
from controlplane.config import Settings
from controlplane.db import transaction
from controlplane.migrations import upgrade
from controlplane.secrets import SecretBox

pytestmark = pytest.mark.devcloud

API = "/api/v1/cloud"
PASSWORD = "cloud-admin-password-9"
OPERATION_TIMEOUT = 600


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite database for this module: the cloud is the subject here, not the backend."""
    url = f"sqlite:///{tmp_path_factory.mktemp('cloud-db') / 'controlplane.db'}"
    upgrade(url)
    return url


@pytest.fixture(scope="module")
def agency_code() -> str:
    return f"T{uuid.uuid4().hex[:7].upper()}"


@pytest.fixture(scope="module")
def cidr() -> str:
    # Away from the dev cloud's own 10.78.0.0/24 and the default agency range 10.81.N.0/24.
    return f"10.86.{random.randint(1, 254)}.0/24"


def _conn(devcloud: Any) -> Any:
    config = openstack.config.OpenStackConfig(config_files=[str(devcloud.clouds_yaml)])
    return openstack.connection.Connection(config=config.get_one(cloud=devcloud.cloud_name))


def _delete_everything_of(conn: Any, spec_names: dict[str, str]) -> None:
    """Delete the agency's servers, router, network, groups, keypair, user and project (each step best effort)."""
    project = conn.identity.find_project(spec_names["project"], ignore_missing=True)
    user = conn.identity.find_user(spec_names["user"], ignore_missing=True)
    steps: list[Callable[[], Any]] = []
    if project is not None:
        for server in conn.compute.servers(all_projects=True, project_id=project.id):
            steps.append(lambda s=server: (conn.compute.delete_server(s, ignore_missing=True),
                                           conn.compute.wait_for_delete(s, wait=180)))
        for router in conn.network.routers(project_id=project.id):
            for port in conn.network.ports(device_id=router.id, device_owner="network:router_interface"):
                for ip in port.fixed_ips:
                    steps.append(lambda r=router, sid=ip["subnet_id"]: conn.network.remove_interface_from_router(
                        r, subnet=sid))
            steps.append(lambda r=router: conn.network.delete_router(r, ignore_missing=True))
        for port in conn.network.ports(project_id=project.id):
            steps.append(lambda p=port: conn.network.delete_port(p, ignore_missing=True))
        for network in conn.network.networks(project_id=project.id):
            steps.append(lambda n=network: conn.network.delete_network(n, ignore_missing=True))
        for group in conn.network.security_groups(project_id=project.id):
            steps.append(lambda g=group: conn.network.delete_security_group(g, ignore_missing=True))
        steps.append(lambda: conn.network.delete_quota(project.id, ignore_missing=True))
        steps.append(lambda: conn.compute.revert_quota_set(project.id))
    for owner in [u for u in (user, conn.current_user_id) if u is not None]:
        user_id = owner if isinstance(owner, str) else owner.id
        steps.append(lambda uid=user_id: conn.compute.delete_keypair(spec_names["keypair"], ignore_missing=True,
                                                                     user_id=uid))
    if user is not None:
        steps.append(lambda: conn.identity.delete_user(user, ignore_missing=True))
    if project is not None:
        steps.append(lambda: conn.identity.delete_project(project, ignore_missing=True))
    problems = []
    for step in steps:
        try:
            step()
        except Exception as exc:  # keep cleaning; report at the end
            problems.append(repr(exc))
    assert not problems, problems


@pytest.fixture(scope="module")
def client(devcloud: Any, database_url: str, agency_code: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    data = tmp_path_factory.mktemp("data")
    settings = Settings(env="test", database_url=database_url, data_dir=data, cloud=devcloud.cloud_name,
                        clouds_yaml=devcloud.clouds_yaml, metrics_refresh_seconds=3600, workflows=True,
                        workflows_database_url=f"sqlite:///{data / 'workflows.db'}")
    names = {"project": f"agency-{agency_code.lower()}", "user": f"agency-{agency_code.lower()}-svc",
             "keypair": f"agency-{agency_code.lower()}-key"}
    conn = _conn(devcloud)
    try:
        with TestClient(create_app(settings)) as test_client:
            yield test_client
    finally:
        try:
            _delete_everything_of(conn, names)
        finally:
            conn.close()


@pytest.fixture(scope="module")
def admin(client: TestClient) -> dict[str, str]:
    from controlplane.auth import service as auth_service
    from controlplane.auth.roles import Role
    from controlplane.auth.schemas import UserCreate
    from controlplane.clock import Clock

    with transaction(client.app.state.ctx.sessions) as session:
        auth_service.create_user(session, clock=Clock(), actor="test", data=UserCreate(
            username="cloud-admin", password=PASSWORD, role=Role.ADMIN))
    token = client.post("/api/v1/auth/token", json={"username": "cloud-admin", "password": PASSWORD})
    assert token.status_code == 200, token.text
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


def _ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def _apply(client: TestClient, admin: dict[str, str], code: str) -> dict[str, Any]:
    accepted = _ok(client.post(f"{API}/agencies/{code}/onboarding/apply", headers=admin), 202)
    assert client.app.state.ctx.workflows.wait_idle(timeout=OPERATION_TIMEOUT), "the apply did not finish"
    return _ok(client.get(accepted["url"], headers=admin))


def test_onboard_an_agency_on_the_real_cloud(client: TestClient, admin: dict[str, str], agency_code: str, cidr: str,
                                             devcloud: Any, ssh_key: Any) -> None:
    code = agency_code
    _ok(client.post("/api/v1/agencies", headers=admin, json={
        "code": code, "name_ko": "클라우드 시험 기관", "name_en": "Cloud test agency", "kind": "agency"}), 201)
    spec = _ok(client.put(f"{API}/agencies/{code}/onboarding", headers=admin, json={
        "quotas": {"instances": 3, "cores": 4, "ram_mb": 4096, "volumes": 2}, "cidr": cidr,
        "ingress": [{"protocol": "tcp", "port_min": 22, "port_max": 22, "remote_cidr": "10.0.0.0/8"},
                    {"protocol": "icmp", "remote_cidr": "10.0.0.0/8"}],
        "public_key": ssh_key.public}), 201)
    names = spec["names"]

    plan = _ok(client.get(f"{API}/agencies/{code}/onboarding/plan", headers=admin))
    assert not plan["is_noop"]
    created = {c["resource"]: c["name"] for c in plan["changes"] if c["action"] == "create"}
    assert {"project", "user", "role_assignment", "network", "subnet", "router", "router_interface", "security_group",
            "security_group_rule", "keypair"} <= set(created)
    assert (created["project"], created["network"], created["router"]) == \
        (names["project"], names["network"], names["router"])
    assert created["subnet"].startswith(names["subnet"])
    # The dev cloud has no Cinder: the volume quota is named as skipped, with the reason.
    assert plan["skipped"] == [f"quota {names['project']} volumes: the cloud has no block-storage service"]

    op = _apply(client, admin, code)
    assert op["status"] == "succeeded", op
    assert op["result"]["summary"] == plan["summary"] and op["result"]["password_set"] is True
    project_id, network_id = op["result"]["project_id"], op["result"]["network_id"]

    again = _apply(client, admin, code)
    assert again["status"] == "succeeded", again
    assert again["result"]["is_noop"] is True, again["result"]["changes"]
    assert _ok(client.get(f"{API}/agencies/{code}/onboarding/plan", headers=admin))["is_noop"] is True

    detail = _ok(client.get(f"{API}/agencies/{code}", headers=admin))
    assert detail["status"] == "applied" and detail["project_id"] == project_id
    assert [(n["name"], n["network_id"], n["cidr"]) for n in detail["networks"]] == \
        [(names["network"], network_id, cidr)]
    quota = {q["resource"]: q for q in detail["quota"]}
    assert (quota["instances"]["limit"], quota["cores"]["limit"], quota["ram_mb"]["limit"]) == (3, 4, 4096)
    assert quota["instances"]["in_use"] == 0 and detail["servers"] == []

    # A real server in the agency's project, booted as the agency's own user with the sealed credential.
    with transaction(client.app.state.ctx.sessions) as session:
        tenancy = session.scalars(select(CloudTenancy).where(CloudTenancy.project_id == project_id)).one()
        credential = service.agency_credential(tenancy, box=SecretBox(client.app.state.ctx.settings.secret_key))
    assert credential is not None and credential.project_id == project_id
    owner = f"test:{uuid.uuid4().hex[:8]}"
    with CloudGateway.connect(devcloud.cloud_name, config_file=devcloud.clouds_yaml) as gateway, \
            gateway.for_agency(credential) as agency_gateway:
        server = agency_gateway.create_server(domain.ServerSpec(
            owner=owner, name=f"{code.lower()}-web-1", flavor="small", image="debian-12", network=names["network"],
            key_name=names["keypair"]), timeout=300)
    assert server.project_id == project_id and server.status == "ACTIVE"
    address = server.addresses[0]
    assert ipaddress.ip_address(address) in ipaddress.ip_network(cidr)

    detail = _ok(client.get(f"{API}/agencies/{code}", headers=admin))
    assert [(s["name"], s["owner"], s["addresses"]) for s in detail["servers"]] == [(server.name, owner, [address])]
    assert {q["resource"]: q["in_use"] for q in detail["quota"]}["instances"] == 1

    inventory = _ok(client.get(f"{API}/agencies/{code}/inventory", headers=admin, params={"format": "json"}))
    group = "agency_" + code.lower()
    assert inventory["all"]["children"][group]["hosts"] == {
        server.name: {"ansible_host": address, "ansible_user": "root", "openstack_id": server.id}}
    as_yaml = client.get(f"{API}/agencies/{code}/inventory", headers=admin, params={"format": "yaml"})
    assert yaml.safe_load(as_yaml.text) == inventory
    as_ini = client.get(f"{API}/agencies/{code}/inventory", headers=admin, params={"format": "ini"}).text
    assert f"{server.name} ansible_host={address} " in as_ini
    # The inventory's address is the host itself, with the spec's key for root.
    deadline = time.monotonic() + 120
    while (result := ssh_key.run(address, "hostname")).returncode != 0 and time.monotonic() < deadline:
        time.sleep(3)
    assert result.stdout.strip() == server.name, result.stderr

    capacity = _ok(client.get(f"{API}/capacity", headers=admin))
    assert "devcloud" in [h["name"] for h in capacity["hypervisors"]]
    assert capacity["totals"]["running_vms"] >= 1
    ours = next(a for a in capacity["agencies"] if a["agency"] == code)
    assert {q["resource"]: q["in_use"] for q in ours["quota"]}["instances"] == 1
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(client.get("/metrics").text) for s in family.samples}
    assert samples[("controlplane_cloud_up", ())] == 1
    assert samples[("controlplane_cloud_quota_limit", (("agency", code), ("resource", "instances")))] == 3
    assert samples[("controlplane_cloud_quota_used", (("agency", code), ("resource", "instances")))] == 1
    assert samples[("controlplane_cloud_hypervisor_vcpus", (("hypervisor", "devcloud"),))] >= 1

    listed = {r["agency"]: r for r in _ok(client.get(f"{API}/agencies", headers=admin))}
    assert listed[code]["status"] == "applied"
    assert {q["resource"]: q["in_use"] for q in listed[code]["quota"]}["instances"] == 1

    # The CLI reads the same database and cloud.
    env = {"CP_ENV": "test", "CP_DATABASE_URL": client.app.state.ctx.settings.effective_database_url,
           "CP_CLOUD": devcloud.cloud_name, "CP_CLOUDS_YAML": str(devcloud.clouds_yaml),
           "CP_DATA_DIR": str(client.app.state.ctx.settings.data_dir), "COLUMNS": "200"}
    status = CliRunner().invoke(cli_app, ["cloud", "status", code], env=env)
    assert status.exit_code == 0, status.output
    assert server.name in status.output and cidr in status.output
    assert "nothing to change" in CliRunner().invoke(cli_app, ["cloud", "plan", code], env=env).output

    with CloudGateway.connect(devcloud.cloud_name, config_file=devcloud.clouds_yaml) as gateway:
        gateway.delete_server(server.id)
    assert _ok(client.get(f"{API}/agencies/{code}", headers=admin))["servers"] == []


def test_the_inventory_plugin_config_points_at_the_dev_cloud(devcloud: Any) -> None:
    config = yaml.safe_load((Path(__file__).resolve().parents[2] / "inventory" / "openstack.yml").read_text())
    assert config["plugin"] == "openstack.cloud.openstack"
    assert config["only_clouds"] == [devcloud.cloud_name]
    assert "var/devcloud/clouds.yaml" in config["clouds_yaml_path"]
