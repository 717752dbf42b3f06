"""The cloud layer around the gateway: API, CLI, pages, permissions, audit, background operations, metrics.

The cloud itself is a FakeCloud injected into the app context: an in-memory object with the gateway's methods,
so the code around the gateway (validation, transactions, operations, secrets, rendering) is tested here on
both databases. The same flow against the real dev cloud is in tests/cloud/test_cloud_api_devcloud.py.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import socket
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import error_body
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from controlplane.app import create_app
from controlplane.auth.models import AuditEntry
from controlplane.clock import FixedClock
from controlplane.cloud import domain, flows, service
from controlplane.cloud.errors import CloudUnavailable, QuotaExceeded
from controlplane.cloud.metrics import CloudCollector
from controlplane.cloud.models import CloudOperation, CloudTenancy
from controlplane.cloud.schemas import OnboardingSpecIn
from controlplane.config import Settings
from controlplane.db import Base, transaction
from controlplane.inventory.planning import DEVCLOUD_FLAVORS
from controlplane.processes import process_identity, runner_alive
from controlplane.secrets import SecretBox
from tests.engine import engine_settings

API = "/api/v1/cloud"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl ops@example"
SPEC = {
    "quotas": {"instances": 5, "cores": 10, "ram_mb": 20480, "volumes": 4},
    "ingress": [{"protocol": "tcp", "port_min": 22, "port_max": 22, "remote_cidr": "10.0.0.0/8"},
                {"protocol": "icmp", "remote_cidr": "10.0.0.0/8"}],
    "public_key": KEY,
}


# --- a fake cloud behind the gateway port -----------------------------------------------------------

class FakeCloud:
    """The gateway's methods over an in-memory cloud. Only for testing the code around the gateway."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.projects: dict[str, dict[str, Any]] = {}
        self.servers: list[domain.ServerInfo] = []
        self.hypervisor_list = [domain.HypervisorCapacity(name="hv-1", vcpus=16, vcpus_used=4, memory_mb=32768,
                                                          memory_mb_used=8192, running_vms=2)]
        self.flavor_list = list(DEVCLOUD_FLAVORS)
        self.unavailable = False
        self.fail_apply: Exception | None = None
        self.plan_error: Exception | None = None
        self.gate: threading.Event | None = None
        self.started = threading.Event()
        self.passwords: list[str] = []
        self.applied: list[str] = []
        self.closed = 0

    def _reach(self) -> None:
        if self.unavailable:
            raise CloudUnavailable("cloud 'fake' cannot be reached: connection refused")

    def _project(self, project_id: str) -> dict[str, Any]:
        return next(p for p in self.projects.values() if p["id"] == project_id)

    def observe(self, spec: domain.OnboardingSpec) -> domain.ObservedState:
        self._reach()
        p = self.projects.get(spec.project_name)
        if p is None:
            return domain.ObservedState()
        return domain.ObservedState(project_id=p["id"], user_exists=True, user_has_role=True, quotas=p["quotas"],
                                    volumes_supported=True, network_id=p["network_id"], subnet_id=p["subnet_id"],
                                    subnet_cidr=p["cidr"], router_id=p["router_id"], router_has_interface=True,
                                    security_group_id=p["group_id"], ingress=frozenset(p["ingress"]),
                                    keypair_public_key=p["key"])

    def _diff(self, spec: domain.OnboardingSpec) -> domain.Plan:
        p = self.projects.get(spec.project_name)
        changes: list[domain.Change] = []
        quota_fields = [(name, None if p is None else getattr(p["quotas"], name), getattr(spec.quotas, name))
                        for name in ("instances", "cores", "ram_mb", "volumes")]
        if p is None:
            changes += [domain.Change("create", "project", spec.project_name),
                        domain.Change("create", "user", spec.user_name),
                        domain.Change("create", "role_assignment", f"{spec.user_name}:member"),
                        domain.Change("create", "network", spec.network_name),
                        domain.Change("create", "subnet", spec.subnet_name, (("cidr", None, spec.cidr),)),
                        domain.Change("create", "router", spec.router_name),
                        domain.Change("create", "router_interface", spec.router_name),
                        domain.Change("create", "security_group", spec.security_group_name)]
        changed = tuple(f for f in quota_fields if f[1] != f[2])
        if changed:
            changes.append(domain.Change("update", "quota", spec.project_name, changed))
        for rule in sorted(set(spec.ingress) - (p["ingress"] if p else set()), key=repr):
            changes.append(domain.Change("create", "security_group_rule",
                                         f"{rule.protocol}:{rule.port_min}-{rule.port_max}:{rule.remote_cidr}"))
        if spec.public_key and (p is None or p["key"] != spec.public_key):
            changes.append(domain.Change("create", "keypair", spec.keypair_name))
        return domain.Plan(spec.agency_code, tuple(changes))

    def plan(self, spec: domain.OnboardingSpec) -> domain.Plan:
        self._reach()
        if self.plan_error is not None:
            raise self.plan_error
        return self._diff(spec)

    def apply(self, spec: domain.OnboardingSpec) -> domain.ApplyResult:
        self._reach()
        self.started.set()
        if self.gate is not None:
            assert self.gate.wait(10)
        if self.fail_apply is not None:
            raise self.fail_apply
        with self.lock:
            plan = self._diff(spec)
            credential = None
            p = self.projects.get(spec.project_name)
            if p is None:
                password = "fake-pw-" + secrets.token_hex(12)
                self.passwords.append(password)
                p = self.projects[spec.project_name] = {
                    "id": uuid.uuid4().hex, "network_id": str(uuid.uuid4()), "subnet_id": str(uuid.uuid4()),
                    "router_id": str(uuid.uuid4()), "group_id": str(uuid.uuid4()), "cidr": spec.cidr,
                }
                credential = domain.AgencyCredential(user_name=spec.user_name, password=password, project_id=p["id"])
            p.update(quotas=spec.quotas, ingress=set(spec.ingress), key=spec.public_key)
            self.applied.append(spec.agency_code)
        return domain.ApplyResult(plan=plan, project_id=p["id"], network_id=p["network_id"], credential=credential)

    def add_server(self, code: str, name: str, address: str) -> domain.ServerInfo:
        project = self.projects[f"agency-{code.lower()}"]
        server = domain.ServerInfo(id=str(uuid.uuid4()), name=name, status="ACTIVE", owner="test:1",
                                   project_id=project["id"], addresses=(address,), flavor="small")
        self.servers.append(server)
        return server

    def list_servers(self, *, project_id: str | None = None) -> list[domain.ServerInfo]:
        self._reach()
        return [s for s in self.servers if project_id is None or s.project_id == project_id]

    def quota_usage(self, project_id: str) -> domain.QuotaUsage:
        self._reach()
        quotas = self._project(project_id)["quotas"]
        used = len(self.list_servers(project_id=project_id))
        return domain.QuotaUsage(project_id=project_id, resources=(
            domain.ResourceUsage(resource="instances", limit=quotas.instances, in_use=used),
            domain.ResourceUsage(resource="cores", limit=quotas.cores, in_use=used),
            domain.ResourceUsage(resource="ram_mb", limit=quotas.ram_mb, in_use=1024 * used),
            domain.ResourceUsage(resource="volumes", limit=-1, in_use=0),
        ))

    def hypervisors(self) -> list[domain.HypervisorCapacity]:
        self._reach()
        return list(self.hypervisor_list)

    def flavors(self) -> list[domain.Flavor]:
        self._reach()
        return list(self.flavor_list)

    def close(self) -> None:
        self.closed += 1


# --- fixtures and helpers ---------------------------------------------------------------------------

@pytest.fixture
def client(settings: Settings, clock: FixedClock, sessions: sessionmaker[Session], tmp_path: Path,
           engine_on: bool) -> Iterator[TestClient]:
    """The app with its durable engine (applies run on it), on an emptied database."""
    with engine_settings(settings, tmp_path, on=engine_on) as with_engine, \
            TestClient(create_app(with_engine, clock=clock)) as test_client:
        yield test_client


@pytest.fixture
def fake(client: TestClient) -> FakeCloud:
    cloud = FakeCloud()
    client.app.state.ctx.cloud.inject(cloud)
    return cloud


@pytest.fixture
def admin(client, catalogue, login, fake) -> dict[str, str]:
    return login("admin1", "admin")


@pytest.fixture
def operator(client, catalogue, login, fake) -> dict[str, str]:
    return login("ops1", "operator")


def _put(client, headers, code: str = "MOIS", spec: dict | None = None, status: int | None = None) -> dict:
    response = client.put(f"{API}/agencies/{code}/onboarding", headers=headers, json=SPEC if spec is None else spec)
    if status is not None:
        assert response.status_code == status, response.text
    else:
        assert response.status_code in (200, 201), response.text
    return response.json()


def _wait(client: TestClient) -> None:
    assert client.app.state.ctx.workflows.wait_idle(timeout=15), "cloud operations did not finish"


def _apply(client, headers, code: str = "MOIS") -> dict:
    response = client.post(f"{API}/agencies/{code}/onboarding/apply", headers=headers)
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert response.headers["location"] == accepted["url"] == f"{API}/operations/{accepted['operation_id']}"
    _wait(client)
    op = client.get(accepted["url"], headers=headers)
    assert op.status_code == 200, op.text
    return op.json()


def _audit(sessions: sessionmaker[Session], entity_type: str = "cloud_tenancy") -> list[AuditEntry]:
    with transaction(sessions) as s:
        return list(s.scalars(select(AuditEntry).where(AuditEntry.entity_type == entity_type)
                              .order_by(AuditEntry.id)))


def _samples(client) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(client.get("/metrics").text)
        for s in family.samples
    }


# --- the spec ---------------------------------------------------------------------------------------

def test_put_spec_creates_then_updates_and_audits_only_real_changes(client, admin, sessions):
    created = _put(client, admin, status=201)
    assert created["agency"] == "MOIS" and created["cloud"] == "devcloud"
    assert created["cidr"] == "10.81.1.0/24"  # none given: the first free default network
    assert created["quotas"] == SPEC["quotas"]
    assert created["names"] == {"project": "agency-mois", "network": "agency-mois-net", "subnet": "agency-mois-subnet",
                                "router": "agency-mois-router", "security_group": "agency-mois-ingress",
                                "keypair": "agency-mois-key", "user": "agency-mois-svc"}
    assert created["ingress"][1] == {"protocol": "icmp", "port_min": None, "port_max": None,
                                     "remote_cidr": "10.0.0.0/8"}
    assert client.get(f"{API}/agencies/MOIS/onboarding", headers=admin).json() == created

    assert _put(client, admin, status=200) == created
    assert [e.action for e in _audit(sessions)] == ["create"]

    bigger = {**SPEC, "quotas": {**SPEC["quotas"], "cores": 16}}
    assert _put(client, admin, spec=bigger, status=200)["quotas"]["cores"] == 16
    entries = _audit(sessions)
    assert [e.action for e in entries] == ["create", "update"]
    assert entries[1].before == {"quotas": SPEC["quotas"]}
    assert entries[1].after == {"quotas": bigger["quotas"]}
    assert entries[1].actor == "admin1" and entries[1].entity_id == "devcloud/MOIS"
    # The audit shows the key's fingerprint, not the key.
    assert entries[0].after["public_key"].startswith("SHA256:") and KEY not in json.dumps(entries[0].after)

    # The next agency gets the next free network; an explicit one is kept.
    assert _put(client, admin, code="MOEF", status=201)["cidr"] == "10.81.2.0/24"
    assert _put(client, admin, code="MSIT", spec={**SPEC, "cidr": "172.16.8.0/24"}, status=201)["cidr"] == \
        "172.16.8.0/24"


@pytest.mark.parametrize("engine_on", [False])  # refused before any work is handed over
@pytest.mark.parametrize("spec,field", [
    ({"cidr": "not-a-network"}, "cidr"),
    ({"cidr": "8.8.8.0/24"}, "cidr"),
    ({"cidr": "10.0.0.0/8"}, "cidr"),
    ({"ingress": [{"protocol": "gre", "port_min": 1, "port_max": 2, "remote_cidr": "10.0.0.0/8"}]}, "ingress"),
    ({"ingress": [{"protocol": "tcp", "port_min": 80, "port_max": 22, "remote_cidr": "10.0.0.0/8"}]}, "ingress"),
    ({"ingress": [{"protocol": "tcp", "port_min": 0, "port_max": 70000, "remote_cidr": "10.0.0.0/8"}]}, "ingress"),
    ({"ingress": [{"protocol": "tcp", "port_min": 22, "port_max": 22, "remote_cidr": "somewhere"}]}, "ingress"),
    ({"public_key": "not a key"}, "public_key"),
    ({"quotas": {"instances": -1}}, "quotas"),
    ({"quotas": {"cores": "many"}}, "quotas.cores"),
    ({"quotas": {"gpus": 1}}, "quotas.gpus"),
    ({"colour": "blue"}, "colour"),
    ({"ingress": [{"protocol": "tcp", "port_min": 22, "port_max": 22}]}, "ingress.0.remote_cidr"),
])
def test_bad_spec_is_refused_with_the_field(client, admin, sessions, spec, field):
    body = error_body(client.put(f"{API}/agencies/MOIS/onboarding", headers=admin, json=spec), 422, code="invalid")
    assert body["field"] == field or body["field"].startswith(field + "."), body  # ingress.0.protocol
    assert body["message"]
    error_body(client.get(f"{API}/agencies/MOIS/onboarding", headers=admin), 404, field="code")
    assert _audit(sessions) == []


def test_unknown_agency_and_missing_spec_are_404_naming_the_code(client, admin):
    error_body(client.put(f"{API}/agencies/NOPE/onboarding", headers=admin, json=SPEC), 404, field="code")
    body = error_body(client.get(f"{API}/agencies/MOIS/onboarding/plan", headers=admin), 404, field="code")
    assert "PUT" in body["message"]
    error_body(client.post(f"{API}/agencies/MOIS/onboarding/apply", headers=admin), 404, field="code")
    error_body(client.get(f"{API}/operations/{uuid.uuid4()}", headers=admin), 404, field="operation_id")


def test_a_spec_the_cloud_cannot_reach_is_a_409_naming_the_field(client, admin, fake):
    _put(client, admin)
    fake.plan_error = domain.SpecError("cidr", "the subnet exists with 10.81.9.0/24")
    body = error_body(client.get(f"{API}/agencies/MOIS/onboarding/plan", headers=admin), 409, field="cidr",
                      code="spec_conflict")
    assert "10.81.9.0/24" in body["message"]
    fake.fail_apply = domain.SpecError("ingress[1].port_max", "too low")
    op = _apply(client, admin)
    assert op["error"] == {"code": "spec_conflict", "message": "ingress.1.port_max: too low"}


def test_networks_of_two_agencies_may_not_overlap(client, admin):
    _put(client, admin, spec={**SPEC, "cidr": "10.90.0.0/16"})
    overlapping = {**SPEC, "cidr": "10.90.4.0/24"}
    body = error_body(client.put(f"{API}/agencies/MOEF/onboarding", headers=admin, json=overlapping), 409,
                      field="cidr")
    assert "10.90.0.0/16" in body["message"]


def test_an_applied_network_cannot_be_renumbered(client, admin):
    _put(client, admin)
    assert _apply(client, admin)["status"] == "succeeded"
    error_body(client.put(f"{API}/agencies/MOIS/onboarding", headers=admin, json={**SPEC, "cidr": "10.81.77.0/24"}),
               409, field="cidr")
    # Leaving the cidr out keeps the current one.
    assert _put(client, admin, spec={**SPEC, "quotas": {**SPEC["quotas"], "instances": 6}})["cidr"] == "10.81.1.0/24"


# --- plan, apply, status ---------------------------------------------------------------------------

def test_plan_apply_status_and_a_second_apply_that_changes_nothing(client, admin, fake, sessions):
    _put(client, admin)
    plan = client.get(f"{API}/agencies/MOIS/onboarding/plan", headers=admin)
    assert plan.status_code == 200, plan.text
    plan = plan.json()
    assert not plan["is_noop"] and plan["summary"].startswith("11 to create")
    assert {"action": "create", "resource": "project", "name": "agency-mois", "fields": []} in plan["changes"]
    assert fake.applied == []  # a plan changes nothing

    listed = client.get(f"{API}/agencies", headers=admin).json()
    assert [(r["agency"], r["status"], r["last_plan"]["summary"]) for r in listed] == \
        [("MOIS", "not_applied", plan["summary"])]

    op = _apply(client, admin)
    assert op["status"] == "succeeded", op
    assert op["kind"] == "onboarding_apply" and op["agency"] == "MOIS" and op["requested_by"] == "admin1"
    assert op["error"] is None and op["started_at"] and op["finished_at"]
    result = op["result"]
    assert result["summary"] == plan["summary"] and result["changes"] == plan["changes"]
    assert result["project_id"] == fake.projects["agency-mois"]["id"]
    assert result["service_user"] == "agency-mois-svc" and result["password_set"] is True

    fake.add_server("MOIS", "web-1", "10.81.1.10")
    detail = client.get(f"{API}/agencies/MOIS", headers=admin)
    assert detail.status_code == 200, detail.text
    detail = detail.json()
    assert detail["status"] == "applied" and detail["project_id"] == result["project_id"]
    project = fake.projects["agency-mois"]
    assert detail["networks"] == [{"name": "agency-mois-net", "network_id": result["network_id"],
                                   "subnet": "agency-mois-subnet", "subnet_id": project["subnet_id"],
                                   "cidr": "10.81.1.0/24", "router": "agency-mois-router",
                                   "router_id": project["router_id"]}]
    assert [(s["name"], s["addresses"], s["status"]) for s in detail["servers"]] == \
        [("web-1", ["10.81.1.10"], "ACTIVE")]
    assert {q["resource"]: (q["in_use"], q["limit"]) for q in detail["quota"]} == \
        {"instances": (1, 5), "cores": (1, 10), "ram_mb": (1024, 20480), "volumes": (0, -1)}
    assert [q["ratio"] for q in detail["quota"]] == [0.2, 0.1, 0.05, None]
    assert detail["last_operation"]["id"] == op["id"] and detail["plan"]["summary"] == plan["summary"]
    assert detail["spec"]["cidr"] == "10.81.1.0/24"

    second = _apply(client, admin)
    assert second["status"] == "succeeded"
    assert second["result"]["is_noop"] is True and second["result"]["changes"] == []
    assert second["result"]["password_set"] is False
    assert client.get(f"{API}/agencies/MOIS/onboarding/plan", headers=admin).json()["is_noop"] is True

    actions = [(e.action, e.actor) for e in _audit(sessions)]
    assert actions == [("create", "admin1"), ("apply", "admin1"), ("applied", "admin1"), ("apply", "admin1"),
                       ("applied", "admin1")]
    listed = client.get(f"{API}/agencies", headers=admin).json()
    assert listed[0]["status"] == "applied" and listed[0]["last_operation_id"] == second["id"]
    assert {q["resource"]: q["in_use"] for q in listed[0]["quota"]}["instances"] == 1  # cached by the apply


def test_a_spec_changed_after_an_apply_is_pending_until_applied(client, admin, clock):
    from datetime import timedelta

    _put(client, admin)
    _apply(client, admin)
    clock.advance(timedelta(minutes=5))
    _put(client, admin, spec={**SPEC, "quotas": {**SPEC["quotas"], "instances": 8}})
    assert client.get(f"{API}/agencies", headers=admin).json()[0]["status"] == "pending_changes"
    plan = client.get(f"{API}/agencies/MOIS/onboarding/plan", headers=admin).json()
    assert plan["changes"] == [{"action": "update", "resource": "quota", "name": "agency-mois",
                                "fields": [{"field": "instances", "old": 5, "new": 8}]}]
    clock.advance(timedelta(minutes=5))
    assert _apply(client, admin)["result"]["summary"] == "0 to create, 1 to update, 0 to delete"
    assert client.get(f"{API}/agencies", headers=admin).json()[0]["status"] == "applied"


def test_only_one_apply_per_agency_at_a_time_and_no_spec_change_meanwhile(client, admin, fake):
    _put(client, admin)
    _put(client, admin, code="MOEF")
    fake.gate = threading.Event()
    first = client.post(f"{API}/agencies/MOIS/onboarding/apply", headers=admin)
    assert first.status_code == 202
    op_id = first.json()["operation_id"]
    assert fake.started.wait(10)
    assert client.get(f"{API}/operations/{op_id}", headers=admin).json()["status"] == "running"
    statuses = {r["agency"]: r["status"] for r in client.get(f"{API}/agencies", headers=admin).json()}
    assert statuses == {"MOEF": "not_applied", "MOIS": "running"}

    body = error_body(client.post(f"{API}/agencies/MOIS/onboarding/apply", headers=admin), 409,
                      code="operation_in_progress")
    assert body["details"] == [{"operation_id": op_id}]
    error_body(client.put(f"{API}/agencies/MOIS/onboarding", headers=admin, json=SPEC), 409,
               code="operation_in_progress")
    # Another agency is independent.
    other = client.post(f"{API}/agencies/MOEF/onboarding/apply", headers=admin)
    assert other.status_code == 202

    fake.gate.set()
    _wait(client)
    assert client.get(f"{API}/operations/{op_id}", headers=admin).json()["status"] == "succeeded"
    assert client.get(f"{API}/operations/{other.json()['operation_id']}", headers=admin).json()["status"] == \
        "succeeded"
    assert _apply(client, admin)["status"] == "succeeded"


def test_a_failed_apply_keeps_the_gateway_error_and_is_audited(client, admin, fake, sessions):
    _put(client, admin)
    fake.fail_apply = QuotaExceeded("quota exceeded for cores in project agency-mois")
    op = _apply(client, admin)
    assert op["status"] == "failed" and op["result"] is None
    assert op["error"] == {"code": "quota_exceeded", "message": "quota exceeded for cores in project agency-mois"}
    assert client.get(f"{API}/agencies", headers=admin).json()[0]["status"] == "failed"
    assert [e.action for e in _audit(sessions)][-2:] == ["apply", "apply_failed"]
    assert _audit(sessions)[-1].after == {"operation_id": op["id"], "error_code": "quota_exceeded"}

    fake.fail_apply = RuntimeError("boom with details that stay in the log")
    op = _apply(client, admin)
    assert op["error"]["code"] == "internal" and "RuntimeError" in op["error"]["message"]
    assert "details" not in op["error"]["message"]

    fake.fail_apply = None
    assert _apply(client, admin)["status"] == "succeeded"
    assert client.get(f"{API}/agencies", headers=admin).json()[0]["status"] == "applied"


def test_an_unreachable_cloud_is_503_cloud_unavailable_but_cached_views_work(client, admin, fake):
    _put(client, admin)
    _apply(client, admin)
    fake.unavailable = True
    for path in (f"{API}/agencies/MOIS", f"{API}/agencies/MOIS/onboarding/plan", f"{API}/capacity",
                 f"{API}/agencies/MOIS/inventory"):
        body = error_body(client.get(path, headers=admin), 503, code="cloud_unavailable")
        assert "cannot be reached" in body["message"], path
    assert client.get(f"{API}/agencies", headers=admin).status_code == 200
    op = _apply(client, admin)
    assert op["status"] == "failed" and op["error"]["code"] == "cloud_unavailable"


def test_without_the_durable_engine_an_apply_is_refused_with_503_and_nothing_is_recorded(
        settings, clock, sessions, catalogue, login):
    with TestClient(create_app(settings.model_copy(update={"workflows": False}), clock=clock)) as plain:
        plain.app.state.ctx.cloud.inject(FakeCloud())
        admin = login("admin1", "admin")
        _put(plain, admin)
        body = error_body(plain.post(f"{API}/agencies/MOIS/onboarding/apply", headers=admin), 503, code="busy")
        assert "durable engine is not running" in body["message"]
    with transaction(sessions) as s:
        assert s.scalars(select(CloudOperation)).all() == []


# --- operations left behind ------------------------------------------------------------------------

def test_an_apply_a_stop_cut_short_runs_again_and_one_never_queued_is_queued_at_start(
        settings, clock, sessions, catalogue, tmp_path):
    with transaction(sessions) as s:
        tenancy, _ = service.put_spec(s, clock=clock, actor="test", cloud="devcloud", code="MOIS",
                                      data=OnboardingSpecIn.model_validate(SPEC))
        for name, status in (("cut-short", "running"), ("never-queued", "queued")):
            s.add(CloudOperation(id=name, kind="onboarding_apply", agency_id=tenancy.agency_id, cloud="devcloud",
                                 status=status, requested_by="test", runner="gone:1:1", created_at=clock.now()))
    fake = FakeCloud()
    with engine_settings(settings, tmp_path) as with_engine, \
            TestClient(create_app(with_engine, clock=clock, cloud_gateway=fake)) as restarted:
        ctx = restarted.app.state.ctx
        # The engine recovers workflows it ran itself; here the row of a run cut short is handed to it as the
        # recovered workflow would be: the step finds it running and takes it again.
        ctx.workflows.enqueue(flows.APPLY_QUEUE, flows.APPLY_WORKFLOW, "cut-short",
                              workflow_id="cloud-apply-cut-short", partition="MOIS")
        assert ctx.workflows.wait_idle(timeout=20)
    with transaction(sessions) as s:
        ops = {op.id: op for op in s.scalars(select(CloudOperation))}
        assert ops["never-queued"].status == "succeeded", ops["never-queued"].error
        assert ops["cut-short"].status == "succeeded", ops["cut-short"].error


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_runner_liveness():
    assert runner_alive(process_identity())
    assert not runner_alive(None) and not runner_alive("")
    assert not runner_alive(f"{socket.gethostname()}:{_dead_pid()}:1")
    pid = process_identity().split(":")[1]
    assert not runner_alive(f"{socket.gethostname()}:{pid}:999999999")  # same pid, another process
    assert runner_alive("other-host:1:1")


# --- secrets ---------------------------------------------------------------------------------------

def _all_rows(engine) -> str:
    with engine.connect() as connection:
        return "\n".join(str(row) for table in Base.metadata.sorted_tables
                         for row in connection.execute(text(f'SELECT * FROM "{table.name}"')))


def test_the_agency_password_is_sealed_and_never_returned_logged_or_audited(client, admin, fake, sessions, settings,
                                                                              caplog):
    caplog.set_level(logging.DEBUG)
    _put(client, admin)
    op = _apply(client, admin)
    fake.add_server("MOIS", "db-1", "10.81.1.11")
    [password] = fake.passwords

    responses = [client.get(path, headers=admin).text for path in (
        f"{API}/agencies", f"{API}/agencies/MOIS", f"{API}/agencies/MOIS/onboarding",
        f"{API}/agencies/MOIS/onboarding/plan", f"{API}/operations/{op['id']}", f"{API}/capacity",
        f"{API}/agencies/MOIS/inventory?format=yaml", "/api/v1/audit?limit=1000")]
    assert all(password not in body for body in responses)
    assert password not in caplog.text
    assert password not in _all_rows(client.app.state.ctx.engine)

    applied = next(e for e in _audit(sessions) if e.action == "applied")
    assert applied.after["password"] == "***" and applied.before["password"] == "***"

    with transaction(sessions) as s:
        tenancy = s.scalars(select(CloudTenancy)).one()
        assert tenancy.service_password_sealed and password not in tenancy.service_password_sealed
        credential = service.agency_credential(tenancy, box=SecretBox(settings.secret_key))
    assert credential is not None
    assert (credential.user_name, credential.password, credential.project_id) == \
        ("agency-mois-svc", password, op["result"]["project_id"])
    assert password not in repr(credential)


# --- permissions -----------------------------------------------------------------------------------

def test_who_may_read_and_write_the_cloud(client, admin, operator, login, fake, sessions):
    ministry = login("mois-1", "ministry", "MOIS")
    auditor = login("aud-1", "auditor")
    secretariat = login("sec-1", "secretariat")

    assert _put(client, operator, status=201)["agency"] == "MOIS"  # operators onboard
    _put(client, admin, code="MOEF", status=201)
    assert _apply(client, operator, "MOIS")["status"] == "succeeded"
    assert _apply(client, admin, "MOEF")["status"] == "succeeded"
    moef_op = client.get(f"{API}/agencies/MOEF", headers=admin).json()["last_operation_id"]

    # Auditors read everything and write nothing.
    assert [r["agency"] for r in client.get(f"{API}/agencies", headers=auditor).json()] == ["MOEF", "MOIS"]
    assert client.get(f"{API}/capacity", headers=auditor).status_code == 200
    assert client.get(f"{API}/agencies/MOEF", headers=auditor).status_code == 200
    # A ministry reads its own agency only.
    assert [r["agency"] for r in client.get(f"{API}/agencies", headers=ministry).json()] == ["MOIS"]
    assert client.get(f"{API}/agencies/MOIS", headers=ministry).status_code == 200
    assert client.get(f"{API}/agencies/MOIS/onboarding/plan", headers=ministry).status_code == 200
    assert client.get(f"{API}/agencies/MOIS/inventory", headers=ministry).status_code == 200
    for path in (f"{API}/agencies/MOEF", f"{API}/agencies/MOEF/onboarding", f"{API}/agencies/MOEF/onboarding/plan",
                 f"{API}/agencies/MOEF/inventory"):
        error_body(client.get(path, headers=ministry), 403, code="forbidden", field="code")
    error_body(client.get(f"{API}/operations/{moef_op}", headers=ministry), 404)
    error_body(client.get(f"{API}/capacity", headers=ministry), 403, code="forbidden")
    # Secretariats have no cloud access; nobody anonymous.
    for path in (f"{API}/agencies", f"{API}/agencies/MOIS", f"{API}/capacity"):
        error_body(client.get(path, headers=secretariat), 403, code="forbidden")
        error_body(client.get(path), 401, code="not_authenticated")

    audit_before = len(_audit(sessions))
    for headers in (ministry, auditor, secretariat):
        error_body(client.put(f"{API}/agencies/MOIS/onboarding", headers=headers, json=SPEC), 403, code="forbidden")
        error_body(client.post(f"{API}/agencies/MOIS/onboarding/apply", headers=headers), 403, code="forbidden")
    assert len(_audit(sessions)) == audit_before


# --- capacity, inventory, metrics -------------------------------------------------------------------

def test_capacity_reads_hypervisors_and_quota_and_feeds_the_gauges(client, admin, fake):
    _put(client, admin)
    _put(client, admin, code="MOEF")
    _apply(client, admin)
    fake.add_server("MOIS", "web-1", "10.81.1.10")
    capacity = client.get(f"{API}/capacity", headers=admin)
    assert capacity.status_code == 200, capacity.text
    body = capacity.json()
    assert body["cloud"] == "devcloud"
    assert body["hypervisors"] == [{"name": "hv-1", "vcpus": 16, "vcpus_used": 4, "memory_mb": 32768,
                                    "memory_mb_used": 8192, "running_vms": 2}]
    assert body["totals"] == {"vcpus": 16, "vcpus_used": 4, "memory_mb": 32768, "memory_mb_used": 8192,
                              "running_vms": 2}
    assert [a["agency"] for a in body["agencies"]] == ["MOIS"]  # MOEF has no project yet

    samples = _samples(client)
    assert samples[("controlplane_cloud_up", ())] == 1
    assert samples[("controlplane_cloud_quota_limit", (("agency", "MOIS"), ("resource", "instances")))] == 5
    assert samples[("controlplane_cloud_quota_used", (("agency", "MOIS"), ("resource", "instances")))] == 1
    assert samples[("controlplane_cloud_quota_limit", (("agency", "MOIS"), ("resource", "volumes")))] == -1
    assert samples[("controlplane_cloud_hypervisor_vcpus", (("hypervisor", "hv-1"),))] == 16
    assert samples[("controlplane_cloud_hypervisor_vcpus_used", (("hypervisor", "hv-1"),))] == 4
    assert samples[("controlplane_cloud_hypervisor_memory_bytes", (("hypervisor", "hv-1"),))] == 32768 * 1024 ** 2
    assert samples[("controlplane_cloud_operations_total", (("kind", "onboarding_apply"), ("status", "succeeded")))] \
        == 1
    metrics_text = client.get("/metrics").text
    assert fake.projects["agency-mois"]["id"] not in metrics_text  # labels are bounded: never ids


def test_periodic_refresh_fills_the_cache_and_survives_an_unreachable_cloud(client, admin, fake, caplog):
    ctx = client.app.state.ctx
    _put(client, admin)
    _apply(client, admin)
    fake.add_server("MOIS", "web-1", "10.81.1.10")
    assert flows.refresh_cloud(ctx) is True
    snapshot = ctx.metrics.of(CloudCollector).snapshot
    assert snapshot.up is True and [h.name for h in snapshot.hypervisors] == ["hv-1"]
    assert {q.resource: q.in_use for q in snapshot.quotas["MOIS"]}["instances"] == 1

    fake.unavailable = True
    with caplog.at_level(logging.WARNING):
        assert flows.refresh_cloud(ctx) is False
    assert "cloud_unavailable" in caplog.text
    samples = _samples(client)
    assert samples[("controlplane_cloud_up", ())] == 0
    # The last figures stay, marked stale by controlplane_cloud_up 0.
    assert samples[("controlplane_cloud_quota_used", (("agency", "MOIS"), ("resource", "instances")))] == 1


def test_no_cloud_configured_means_no_refresh(client, catalogue):
    # The test settings name the default cloud but no clouds.yaml exists under their data directory.
    ctx = client.app.state.ctx
    assert ctx.cloud.configured is False
    assert flows.refresh_cloud(ctx) is False
    assert ctx.metrics.of(CloudCollector).snapshot.up is None
    assert "controlplane_cloud_up" not in client.get("/metrics").text


def test_inventory_in_three_formats(client, admin, fake):
    _put(client, admin)
    empty = client.get(f"{API}/agencies/MOIS/inventory", headers=admin)
    assert empty.status_code == 200 and empty.json() == {"all": {"children": {"agency_mois": {"hosts": {}}}}}
    _apply(client, admin)
    web = fake.add_server("MOIS", "web-1", "10.81.1.10")
    db = fake.add_server("MOIS", "db-1", "10.81.1.11")
    fake.servers.append(domain.ServerInfo(id="x", name="other", status="ACTIVE", owner=None, project_id="elsewhere",
                                          addresses=("10.9.9.9",), flavor="small"))

    as_json = client.get(f"{API}/agencies/MOIS/inventory", headers=admin, params={"format": "json"})
    assert as_json.headers["content-type"].startswith("application/json")
    hosts = as_json.json()["all"]["children"]["agency_mois"]["hosts"]
    assert hosts == {"db-1": {"ansible_host": "10.81.1.11", "ansible_user": "root", "openstack_id": db.id},
                     "web-1": {"ansible_host": "10.81.1.10", "ansible_user": "root", "openstack_id": web.id}}

    as_yaml = client.get(f"{API}/agencies/MOIS/inventory", headers=admin, params={"format": "yaml"})
    assert as_yaml.headers["content-type"].startswith("application/yaml")
    assert yaml.safe_load(as_yaml.text) == as_json.json()

    as_ini = client.get(f"{API}/agencies/MOIS/inventory", headers=admin, params={"format": "ini"})
    assert as_ini.headers["content-type"].startswith("text/plain")
    assert as_ini.text.splitlines() == [
        "[agency_mois]",
        f"db-1 ansible_host=10.81.1.11 ansible_user=root openstack_id={db.id}",
        f"web-1 ansible_host=10.81.1.10 ansible_user=root openstack_id={web.id}",
    ]
    assert as_ini.text.endswith("\n")
    error_body(client.get(f"{API}/agencies/MOIS/inventory", headers=admin, params={"format": "toml"}), 422,
               field="format")


def test_openstack_inventory_plugin_config_names_the_cloud_and_fails_loudly():
    from pathlib import Path

    config = yaml.safe_load((Path(__file__).resolve().parents[2] / "inventory" / "openstack.yml").read_text())
    assert config["plugin"] == "openstack.cloud.openstack"
    assert config["only_clouds"] == ["devcloud"]
    assert config["expand_hostvars"] is False and config["fail_on_errors"] is True
    assert config["private"] is True
    assert any(group["key"] == "openstack.project_id" for group in config["keyed_groups"])


# --- CLI -------------------------------------------------------------------------------------------

@pytest.fixture
def cli(settings, monkeypatch, fake, catalogue) -> Callable[..., Any]:
    monkeypatch.setenv("CP_ENV", "test")
    monkeypatch.setenv("CP_DATABASE_URL", settings.effective_database_url)
    monkeypatch.setenv("CP_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("COLUMNS", "200")
    from controlplane.cli import app
    from controlplane.composition import build_context, close_context

    @contextmanager
    def opened(settings: Any, *, clock: Any = None) -> Iterator[Any]:  # the commands' context, on the fake cloud
        ctx = build_context(settings, clock=clock, cloud_gateway=fake)
        try:
            yield ctx
        finally:
            close_context(ctx)

    monkeypatch.setattr("controlplane.clikit.opened_context", opened)

    def run(*args: str, input: str | None = None, code: int = 0) -> str:
        result = CliRunner().invoke(app, ["cloud", *args], input=input)
        assert result.exit_code == code, result.output
        return " ".join(result.output.split())  # the console may wrap long lines

    return run


def test_cli_plan_apply_status_capacity_inventory(cli, client, admin, fake, sessions):
    _put(client, admin)
    planned = cli("plan", "MOIS")
    assert "11 to create" in planned and "agency-mois-net" in planned

    declined = cli("apply", "MOIS", input="n\n", code=1)
    assert "apply these changes?" in declined and fake.applied == []

    applied = cli("apply", "MOIS", "--yes")
    assert "succeeded" in applied and "agency-mois-router" in applied and "new password stored sealed" in applied
    assert fake.passwords[0] not in applied
    assert fake.applied == ["MOIS"]
    assert "nothing to change" in cli("apply", "MOIS")
    assert [(e.action, e.actor.startswith("cli:")) for e in _audit(sessions)][-2:] == \
        [("apply", True), ("applied", True)]

    fake.add_server("MOIS", "web-1", "10.81.1.10")
    status = cli("status")
    assert re.search(r"MOIS .*applied", status) and "instances 1/5" in status
    one = cli("status", "MOIS")
    assert "web-1" in one and "10.81.1.0/24" in one and "agency-mois-net" in one
    assert "hv-1" in cli("capacity")
    assert "[agency_mois] web-1 ansible_host=10.81.1.10" in cli("inventory", "MOIS", "--format", "ini")
    assert "web-1: ansible_host: 10.81.1.10" in cli("inventory", "MOIS")

    assert "unknown agency" in cli("plan", "NOPE", code=2)
    fake.unavailable = True
    assert "cannot be reached" in cli("plan", "MOIS", code=1)
    assert "not reached" in cli("status")


# --- pages -----------------------------------------------------------------------------------------

CSRF_RE = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


def _form_login(client: TestClient, username: str) -> None:
    from conftest import PASSWORD

    client.cookies.clear()
    response = client.post("/login", data={"username": username, "password": PASSWORD, "next": "/cloud"},
                           follow_redirects=False)
    assert response.status_code == 303, response.text


def test_cloud_pages_list_detail_plan_and_apply(client, admin, fake, make_user):
    _put(client, admin)
    _put(client, admin, code="MOEF")
    _apply(client, admin, "MOEF")
    make_user("ops-page", "operator")
    _form_login(client, "ops-page")

    listing = client.get("/cloud")
    assert listing.status_code == 200
    assert 'href="/cloud"' in listing.text.split('class="main-nav"', 1)[1]
    assert re.search(r'data-agency="MOIS".*?data-status="not_applied"', listing.text, re.S)
    assert re.search(r'data-agency="MOEF".*?data-status="applied"', listing.text, re.S)
    assert '<meter' in listing.text and 'data-resource="instances"' in listing.text
    assert "기관별 클라우드 현황" in listing.text
    assert "Agencies on the cloud" in client.get("/cloud?lang=en").text

    page = client.get("/cloud/MOIS")
    assert page.status_code == 200
    assert "ca.no_networks" not in page.text and 'id="networks"' not in page.text  # nothing applied yet
    planned = client.get("/cloud/MOIS?plan=1")
    assert planned.status_code == 200 and "11 to create" in planned.text and 'id="plan-changes"' in planned.text

    token = CSRF_RE.search(page.text).group(1)
    refused = client.post("/cloud/MOIS/apply", data={"csrf": "0" * 64}, follow_redirects=False)
    assert refused.status_code == 403 and fake.applied == ["MOEF"]
    applied = client.post("/cloud/MOIS/apply", data={"csrf": token}, follow_redirects=False)
    assert applied.status_code == 303 and applied.headers["location"].startswith("/cloud/MOIS?queued=")
    _wait(client)
    after = client.get(applied.headers["location"])
    assert 'id="apply-queued"' in after.text and 'data-status="applied"' in after.text
    assert 'id="networks"' in after.text and "10.81.1.0/24" in after.text and 'id="quota-use"' in after.text
    assert fake.applied == ["MOEF", "MOIS"]

    fake.unavailable = True
    down = client.get("/cloud/MOIS")
    assert down.status_code == 200 and 'id="cloud-error"' in down.text and "cannot be reached" in down.text


def test_cloud_pages_for_a_ministry_and_a_secretariat(client, admin, fake, make_user):
    _put(client, admin)
    _put(client, admin, code="MOEF")
    make_user("mois-page", "ministry", "MOIS")
    _form_login(client, "mois-page")
    listing = client.get("/cloud")
    assert 'data-agency="MOIS"' in listing.text and 'data-agency="MOEF"' not in listing.text
    assert 'id="cloud-capacity"' not in listing.text and "cloud.capacity" not in listing.text
    page = client.get("/cloud/MOIS")
    assert page.status_code == 200 and 'id="apply-form"' not in page.text
    assert client.get("/cloud/MOEF").status_code == 403
    csrf = CSRF_RE.search(page.text).group(1)
    assert client.post("/cloud/MOIS/apply", data={"csrf": csrf}, follow_redirects=False).status_code == 403
    assert fake.applied == []

    make_user("sec-page", "secretariat")
    _form_login(client, "sec-page")
    assert client.get("/cloud").status_code == 403
    assert 'href="/cloud"' not in client.get("/dashboard").text


def test_every_string_of_the_cloud_pages_is_in_korean_and_english():
    from pathlib import Path

    from controlplane.cloud.schemas import OperationStatus, TenancyStatus
    from controlplane.web.i18n import STRINGS

    templates = Path(__file__).resolve().parents[2] / "controlplane" / "web" / "templates"
    keys = {key for name in ("cloud.html", "cloud_agency.html", "_cloud.html")
            for key in re.findall(r"t\('([a-z_.0-9]+)'\s*[,)]", (templates / name).read_text(encoding="utf-8"))}
    keys |= {f"cstatus.{s.value}" for s in [*TenancyStatus, *OperationStatus]}
    keys |= {f"quota.{r}" for r in ("instances", "cores", "ram_mb", "volumes")}
    keys |= {f"action.{a}" for a in ("create", "update", "delete")} | {"nav.cloud"}
    missing = sorted(k for k in keys if set(STRINGS.get(k, {})) != {"ko", "en"})
    assert missing == []


# --- the onboarding spec form on the agency's cloud page ----------------------------------------------

def _spec_form(client: TestClient, code: str = "MOIS") -> dict[str, Any]:
    """The spec form as the page fills it (what a browser would send back unchanged), with the page's CSRF token."""
    from html import unescape

    page = client.get(f"/cloud/{code}")
    assert page.status_code == 200 and 'id="spec-form"' in page.text, page.text
    form = page.text.split('id="spec-form"', 1)[1].split("</form>", 1)[0]
    fields: dict[str, Any] = {name: [] for name in ("protocol", "port_min", "port_max", "remote_cidr")}
    for name, value in re.findall(r'<input type="[a-z]+" [^>]*?name="([a-z_]+)" value="([^"]*)"', form):
        if name in fields:
            fields[name].append(unescape(value))
        else:
            fields[name] = unescape(value)
    fields["public_key"] = unescape(re.search(r'name="public_key"[^>]*>([^<]*)</textarea>', form).group(1))
    fields["csrf"] = CSRF_RE.search(page.text).group(1)
    return fields


def _spec_errors(html: str) -> dict[str, str]:
    return dict(re.findall(r'<span class="field-error" id="[^"]+" data-field="([^"]+)">([^<]*)</span>', html))


def test_an_operator_saves_the_spec_on_the_agency_page_and_it_is_audited(client, admin, fake, make_user, sessions):
    _put(client, admin)
    make_user("ops-spec", "operator")
    _form_login(client, "ops-spec")
    form = _spec_form(client)
    assert (form["instances"], form["cores"], form["cidr"]) == ("5", "10", "10.81.1.0/24")
    assert form["protocol"] == ["tcp", "icmp", "", ""] and form["remote_cidr"][:2] == ["10.0.0.0/8", "10.0.0.0/8"]
    assert form["public_key"] == KEY

    # More cores, the icmp rule dropped (its row emptied), a new https rule in a blank row.
    form.update(cores="12", protocol=["tcp", "", "tcp", ""], port_min=["22", "", "443", ""],
                port_max=["22", "", "443", ""], remote_cidr=["10.0.0.0/8", "", "192.168.0.0/16", ""])
    saved = client.post("/cloud/MOIS/spec", data=form, follow_redirects=False)
    assert saved.status_code == 303 and saved.headers["location"] == "/cloud/MOIS?saved=1#spec-heading"
    page = client.get(saved.headers["location"])
    assert 'id="spec-saved"' in page.text and "입주 명세를 저장했습니다" in page.text
    figures = page.text.split('<dl class="figures" id="spec">', 1)[1].split("</dl>", 1)[0]
    assert re.findall(r'<dd class="big">(\d+)</dd>', figures) == ["5", "12", "20480", "4"]

    spec = client.get(f"{API}/agencies/MOIS/onboarding", headers=admin).json()
    assert spec["quotas"] == {**SPEC["quotas"], "cores": 12}
    assert spec["ingress"] == [{"protocol": "tcp", "port_min": 22, "port_max": 22, "remote_cidr": "10.0.0.0/8"},
                               {"protocol": "tcp", "port_min": 443, "port_max": 443,
                                "remote_cidr": "192.168.0.0/16"}]
    assert spec["public_key"] == KEY and spec["cidr"] == "10.81.1.0/24"
    entries = _audit(sessions)
    assert [(e.action, e.actor) for e in entries] == [("create", "admin1"), ("update", "ops-spec")]
    assert entries[1].before["quotas"]["cores"] == 10 and entries[1].after["quotas"]["cores"] == 12
    assert set(entries[1].after) == {"quotas", "ingress"}
    # The same form sent again changes nothing, so nothing more is audited.
    again = client.post("/cloud/MOIS/spec", data=_spec_form(client), follow_redirects=False)
    assert again.status_code == 303 and len(_audit(sessions)) == 2


@pytest.mark.parametrize("engine_on", [False])  # refused before any work is handed over
@pytest.mark.parametrize("change,field,status", [
    ({"cores": "-1"}, "quotas.cores", 422),
    ({"instances": "many"}, "quotas.instances", 422),
    ({"cidr": "8.8.8.0/24"}, "cidr", 422),
    ({"port_min": ["80", "", "", ""], "port_max": ["22", "", "", ""]}, "ingress.0.port_max", 422),
    ({"protocol": ["tcp", "gre", "", ""]}, "ingress.1.protocol", 422),
    ({"public_key": "not a key"}, "public_key", 422),
])
def test_a_bad_spec_value_is_shown_on_its_field_and_nothing_changes(client, admin, fake, make_user, sessions,
                                                                     change, field, status):
    before = _put(client, admin)
    _put(client, admin, code="MOEF")
    make_user("ops-spec", "operator")
    _form_login(client, "ops-spec")
    audit_before = len(_audit(sessions))
    form = {**_spec_form(client), **change}
    refused = client.post("/cloud/MOIS/spec", data=form, follow_redirects=False)
    assert refused.status_code == status, refused.text
    assert refused.headers["content-type"].startswith("text/html") and "Traceback" not in refused.text
    assert 'id="spec-refused"' in refused.text and 'id="spec-error"' in refused.text
    errors = _spec_errors(refused.text)
    assert list(errors) == [field], errors
    element_id = "spec-" + field.replace(".", "-")
    assert re.search(rf'id="{element_id}"[^>]*aria-invalid="true"', refused.text)
    # What was sent is shown again, to be corrected.
    value = change.get(field.split(".")[-1]) if field.startswith(("quotas", "cidr", "public")) else None
    if isinstance(value, str):
        assert f">{value}<" in refused.text or f'value="{value}"' in refused.text
    # The language links lead back to the page, not to the form's target.
    assert 'href="/cloud/MOIS?lang=en"' in refused.text
    assert client.get(f"{API}/agencies/MOIS/onboarding", headers=admin).json() == before
    assert len(_audit(sessions)) == audit_before


def test_a_network_of_another_agency_is_a_409_on_the_cidr_field(client, admin, fake, make_user, sessions):
    before = _put(client, admin)
    _put(client, admin, code="MOEF")
    make_user("ops-spec", "operator")
    _form_login(client, "ops-spec")
    refused = client.post("/cloud/MOIS/spec", data={**_spec_form(client), "cidr": "10.81.2.0/25"},
                          follow_redirects=False)
    assert refused.status_code == 409 and "overlaps 10.81.2.0/24" in _spec_errors(refused.text)["cidr"]
    assert client.get(f"{API}/agencies/MOIS/onboarding", headers=admin).json() == before


def test_only_operators_and_admins_post_the_spec_form_and_only_with_its_token(client, admin, fake, make_user,
                                                                               sessions):
    before = _put(client, admin)
    make_user("ops-spec", "operator")
    _form_login(client, "ops-spec")
    form = _spec_form(client)
    changed = {**form, "cores": "16"}
    for csrf in (None, "", "0" * 64):
        data = {k: v for k, v in changed.items() if k != "csrf"} | ({} if csrf is None else {"csrf": csrf})
        refused = client.post("/cloud/MOIS/spec", data=data, follow_redirects=False)
        assert refused.status_code == 403 and refused.headers["content-type"].startswith("text/html")

    for username, role, agency in (("aud-spec", "auditor", None), ("mois-spec", "ministry", "MOIS")):
        make_user(username, role, agency)
        _form_login(client, username)
        page = client.get("/cloud/MOIS")
        assert page.status_code == 200 and 'id="spec-form"' not in page.text and 'id="spec"' in page.text
        token = CSRF_RE.search(page.text).group(1)  # the logout form's: a valid token of this user
        denied = client.post("/cloud/MOIS/spec", data={**changed, "csrf": token}, follow_redirects=False)
        assert denied.status_code == 403 and "권한이 없습니다" in denied.text

    client.cookies.clear()
    anonymous = client.post("/cloud/MOIS/spec", data=changed, follow_redirects=False)
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/login?next=%2Fcloud%2FMOIS"
    assert client.get(f"{API}/agencies/MOIS/onboarding", headers=admin).json() == before
    assert [e.action for e in _audit(sessions)] == ["create"]


def test_the_agency_page_marks_the_server_a_jobs_host_is(client, admin, fake, make_user):
    _put(client, admin)
    _apply(client, admin)
    fake.add_server("MOIS", "web-1", "10.81.1.10")
    fake.add_server("MOIS", "web-2", "10.81.1.11")
    make_user("aud-host", "auditor")
    _form_login(client, "aud-host")
    by_address = client.get("/cloud/MOIS?host=other-name&address=10.81.1.11")
    row = re.search(r'<tr data-server="web-2"([^>]*)>', by_address.text).group(1)
    assert 'id="host-match"' in row and 'class="matched"' in row
    assert 'id="host-note"' in by_address.text and "web-2" in by_address.text
    by_name = client.get("/cloud/MOIS?host=web-1")
    assert 'id="host-match" class="matched"' in by_name.text.split('data-server="web-1"', 1)[1].split(">", 1)[0]
    unknown = client.get("/cloud/MOIS?host=front-1&address=10.9.9.9")
    assert 'class="matched"' not in unknown.text and '<p class="alert alert-info" role="status" id="host-match">' \
        in unknown.text
    # Server states are badges that never wrap.
    assert '<span class="badge status-on_track" data-status="ACTIVE">ACTIVE</span>' in by_name.text
