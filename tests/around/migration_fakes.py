"""An in-memory cloud behind the migration engine's cloud port, and the fixtures of an app running the engine (DBOS
on a system database of its own) with it and the fake playbook and check runners. For the code around the ports
only: the same waves on the real dev cloud and hosts are in tests/cloud/test_migration_devcloud.py.

    from migration_fakes import engine_app, ...  # noqa: F401  (fixtures)
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import PASSWORD
from fastapi.testclient import TestClient
from jobs_fakes import FakeChecks, FakeRunner
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from test_cloud_api_layer import SPEC, FakeCloud

from controlplane.app import create_app
from controlplane.auth.models import Agency
from controlplane.clock import FixedClock
from controlplane.cloud import domain as cloud
from controlplane.cloud import flows as cloud_flows
from controlplane.config import Settings
from controlplane.context import AppContext
from controlplane.db import transaction
from controlplane.inventory.models import AgencySystem
from tests.engine import engine_settings

API = "/api/v1"
ACTIVE = ("queued", "running", "rolling_back")


class MigrationCloud(FakeCloud):
    """FakeCloud with servers: an agency's view creates them (found again by owner), deletes them, lists them and
    the ports left bound to them (`keep_ports` leaves a deleted server's port behind, as a broken cloud would)."""

    def __init__(self) -> None:
        super().__init__()
        self.created: list[str] = []
        self.labels: dict[str, dict[str, str]] = {}  # each created server's labels, by name
        self.ports: list[dict[str, str]] = []
        self.keep_ports = False
        self.fail_create: Exception | None = None
        self.delay = 0.0

    def for_agency(self, credential: cloud.AgencyCredential) -> AgencyView:
        return AgencyView(self, credential.project_id)


class AgencyView:
    def __init__(self, cloud_: MigrationCloud, project_id: str) -> None:
        self.cloud, self.project_id = cloud_, project_id

    def close(self) -> None:
        pass

    def create_server(self, spec: cloud.ServerSpec, *, timeout: float = 300) -> cloud.ServerInfo:
        time.sleep(self.cloud.delay)
        found = self.find_server(spec.owner)
        if found is not None:
            return found
        if self.cloud.fail_create is not None:
            raise self.cloud.fail_create
        with self.cloud.lock:
            address = f"10.78.0.{20 + len(self.cloud.created)}"
            server = cloud.ServerInfo(id=str(uuid.uuid4()), name=spec.name, status="ACTIVE", owner=spec.owner,
                                      project_id=self.project_id, addresses=(address,), flavor=spec.flavor)
            self.cloud.servers.append(server)
            self.cloud.created.append(spec.name)
            self.cloud.labels[spec.name] = dict(spec.labels)
            self.cloud.ports.append({"id": str(uuid.uuid4()), "device_id": server.id, "network_id": spec.network})
        return server

    def find_server(self, owner: str) -> cloud.ServerInfo | None:
        return next((s for s in self.list_servers() if s.owner == owner), None)

    def delete_server(self, server_id: str, *, timeout: float = 120) -> None:
        with self.cloud.lock:
            self.cloud.servers = [s for s in self.cloud.servers if s.id != server_id]
            if not self.cloud.keep_ports:
                self.cloud.ports = [p for p in self.cloud.ports if p["device_id"] != server_id]

    def list_servers(self, *, project_id: str | None = None) -> list[cloud.ServerInfo]:
        return [s for s in self.cloud.servers if s.project_id == self.project_id]

    def list_ports(self, *, device_ids: list[str]) -> list[dict[str, str]]:
        return [p for p in self.cloud.ports if p["device_id"] in device_ids]


# --- three dependent systems: a database already open source, an app and a web site that use it ---------------

def system_rows(agency_id: int, now: Any) -> list[AgencySystem]:
    def row(code: str, components: list[dict[str, str]], depends_on: list[str], data_gb: int) -> AgencySystem:
        return AgencySystem(code=code, agency_id=agency_id, name_ko=code, name_en=code, criticality="medium",
                            vcpus=1, ram_mb=1024, disk_gb=10, data_gb=data_gb, components=components,
                            depends_on=depends_on, status="legacy", notes="", created_at=now, updated_at=now)

    return [
        row("t-db", [{"kind": "os", "vendor": "Red Hat", "product": "RHEL", "version": "7"},
                     {"kind": "db", "vendor": "PostgreSQL", "product": "PostgreSQL", "version": "9.6"}], [], 1),
        row("t-app", [{"kind": "os", "vendor": "HPE", "product": "HP-UX", "version": "11i v3"},
                      {"kind": "was", "vendor": "Oracle", "product": "WebLogic Server", "version": "12c"}],
            ["t-db"], 0),
        row("t-web", [{"kind": "os", "vendor": "Oracle", "product": "Solaris", "version": "10"},
                      {"kind": "web", "vendor": "TmaxSoft", "product": "WebtoB", "version": "5"}], ["t-db"], 0),
    ]


def wave_body(files: Path, **overrides: Any) -> dict[str, Any]:
    """POST /waves for the three systems, with their inputs (files under `files`, made here)."""
    files.mkdir(parents=True, exist_ok=True)
    (files / "app.war").write_bytes(b"war")
    (files / "site.tar.gz").write_bytes(b"site")
    (files / "db.sql").write_text("-- dump\n")
    (files / "manifest.json").write_text('{"method": "copy-text-md5/1", "tables": {}}')
    checksum = "sha256:" + "0" * 64
    body = {
        "name": "wave-1", "systems": ["t-db", "t-app", "t-web"], "credential": "hosts-root",
        "inputs": {
            "t-db": {"data": {"format": "sql", "dump_src": str(files / "db.sql"),
                              "manifest_src": str(files / "manifest.json")}},
            "t-app": {"front": {"name": "front-app", "address": "10.78.0.5"}, "legacy_upstreams": ["10.78.0.6:8080"],
                      "artifact": {"kind": "war", "name": "minwon", "src": str(files / "app.war"),
                                   "checksum": checksum}},
            "t-web": {"front": {"name": "front-web", "address": "10.78.0.7"}, "legacy_upstreams": ["10.78.0.8:80"],
                      "artifact": {"kind": "static", "name": "portal", "src": str(files / "site.tar.gz"),
                                   "checksum": checksum}},
        },
    }
    return body | overrides


@dataclass
class EngineApp:
    client: TestClient
    cloud: MigrationCloud
    runner: FakeRunner
    checks: FakeChecks
    sessions: sessionmaker[Session]
    ops: dict[str, str]
    files: Path
    login: Callable[..., dict[str, str]]
    ctx: AppContext

    @property
    def engine(self) -> Any:
        """The app's durable engine (workflow statuses)."""
        return self.ctx.workflows

    def wait(self, wave_id: int, *, timeout: float = 30) -> dict[str, Any]:
        """Until no migration of the wave is queued, running or rolling back."""
        deadline = time.monotonic() + timeout
        while True:
            wave = self.client.get(f"{API}/waves/{wave_id}", headers=self.ops).json()
            if not any(m["state"] in ACTIVE for m in wave["migrations"]):
                return dict(wave)
            assert time.monotonic() < deadline, [(m["system"], m["state"], m["step"]) for m in wave["migrations"]]
            time.sleep(0.1)

    def until(self, wave_id: int, states: dict[str, str], *, timeout: float = 30) -> dict[str, Any]:
        """Until the wave's migrations of those systems are in those states (held ones are taken on by the engine's
        waker, not by a request)."""
        deadline = time.monotonic() + timeout
        while True:
            wave = self.client.get(f"{API}/waves/{wave_id}", headers=self.ops).json()
            now = {m["system"]: m["state"] for m in wave["migrations"] if m["system"] in states}
            if now == states:
                return dict(wave)
            assert time.monotonic() < deadline, [(m["system"], m["state"], m["step"], m["waiting_for"])
                                                 for m in wave["migrations"]]
            time.sleep(0.05)

    def migration(self, wave: dict[str, Any], system: str) -> dict[str, Any]:
        return next(m for m in wave["migrations"] if m["system"] == system)

    def post(self, path: str, status: int = 202, **kwargs: Any) -> dict[str, Any]:
        response = self.client.post(f"{API}{path}", headers=self.ops, **kwargs)
        assert response.status_code == status, response.text
        return dict(response.json())


@pytest.fixture
def engine_app(settings: Settings, clock: FixedClock, sessions: sessionmaker[Session], catalogue: Any,
               make_user: Callable[..., str], ssh_private_key: str, tmp_path: Path,
               engine_on: bool) -> Iterator[EngineApp]:
    """The app with the engine on, MOIS onboarded on the fake cloud, the three systems, an operator and the
    credential `hosts-root`."""
    fake, runner, checks = MigrationCloud(), FakeRunner(), FakeChecks()
    with engine_settings(settings, tmp_path, on=engine_on) as with_engine:
        yield from _engine_app(with_engine, clock, sessions, make_user, ssh_private_key, tmp_path, fake, runner,
                               checks)


def _engine_app(engine_settings: Settings, clock: FixedClock, sessions: sessionmaker[Session],
                make_user: Callable[..., str], ssh_private_key: str, tmp_path: Path, fake: MigrationCloud,
                runner: FakeRunner, checks: FakeChecks) -> Iterator[EngineApp]:
    app = create_app(engine_settings, clock=clock, cloud_gateway=fake, playbook_runner=runner, check_runner=checks)
    with TestClient(app) as client:
        def login(username: str, role: str, agency: str | None = None) -> dict[str, str]:
            make_user(username, role, agency)
            token = client.post(f"{API}/auth/token", json={"username": username, "password": PASSWORD})
            assert token.status_code == 200, token.text
            return {"Authorization": f"Bearer {token.json()['access_token']}"}

        ops = login("ops1", "operator")
        assert client.put(f"{API}/credentials/hosts-root", headers=ops,
                          json={"private_key": ssh_private_key}).status_code == 201
        onboarded = client.put(f"{API}/cloud/agencies/MOIS/onboarding", headers=ops,
                               json=SPEC | {"quotas": {**SPEC["quotas"], "instances": 10}})
        assert onboarded.status_code in (200, 201), onboarded.text
        ctx = app.state.ctx
        # Applied in the foreground, as the CLI does (through the engine's queue it is tested elsewhere: here it
        # would only wait a second for the queue's first poll).
        with transaction(sessions) as session:
            operation_id = cloud_flows.request_apply(session, ctx=ctx, actor="test", code="MOIS", foreground=True).id
        assert cloud_flows.run_apply(ctx, operation_id=operation_id) is not None
        with transaction(sessions) as session:
            agency = session.scalar(select(Agency).where(Agency.code == "MOIS"))
            assert agency is not None
            session.add_all(system_rows(agency.id, clock.now()))
        yield EngineApp(client, fake, runner, checks, sessions, ops, engine_settings.effective_artifacts_dir, login,
                        ctx)
