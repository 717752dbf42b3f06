"""The migration engine end to end on the real dev cloud, through `controlplane serve` (a process of its own, so
that it can be killed): real servers in an agency's project, real playbooks and testinfra checks on them.

Two waves run at the same time on one agency:
- wave 1, three dependent systems: m-db (PostgreSQL already: re-hosted, its data moved), m-app (WebLogic ->
  Tomcat with a WAR, behind the users' nginx front) and m-rpt (Oracle -> PostgreSQL, data moved), both calling
  m-db. They migrate to the approval gate; approved (with nova-api stopped), m-db is cut over first, the front is
  switched to m-app's new Tomcat, the data is proven by the checks' row counts and checksums; the three soak
  (cut_over), m-db and m-app are retired early, and m-rpt is rolled back during its soak, its new database
  dumped first;
- wave 2, c-app and c-db, whose configure breaks for c-app (its WAR on the control plane is not the one its
  checksum names); the server is SIGKILLed twice in the middle (during provision and during configure), and on
  each restart every migration goes on: no step done is run again, no server is made twice. Once the WAR is
  fixed, c-app is retried from provision while nova-api is still down (3 minutes in all): it waits for the cloud
  and goes on by itself once nova-api is back; then both are rolled back, leaving nothing in OpenStack.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openstack.config
import openstack.connection
import pytest
import yaml
from artifacts import sha256_of
from sqlalchemy import select
from test_cloud_api_devcloud import _delete_everything_of

from controlplane.auth import service as auth_service
from controlplane.auth.roles import Role
from controlplane.auth.schemas import UserCreate
from controlplane.clock import Clock
from controlplane.cloud import service as cloud_service
from controlplane.cloud.domain import ServerInfo
from controlplane.cloud.gateway import CloudGateway
from controlplane.cloud.models import CloudTenancy
from controlplane.composition import opened_context
from controlplane.config import Settings
from controlplane.db import make_engine, make_sessionmaker, transaction
from controlplane.devcloud import samples
from controlplane.devcloud.estate import Estate as RehearsalEstate
from controlplane.devcloud.estate import Host
from controlplane.migrations import upgrade
from controlplane.secrets import SecretBox

pytestmark = pytest.mark.devcloud
PASSWORD = "migration-operator-9"
NEW_APP = samples.NEW_APP  # "minwon on the new Tomcat"
LEGACY_APP = samples.LEGACY_APP  # "minwon on the legacy WebLogic"
REPO = Path(__file__).resolve().parents[2]
STEP_TIMEOUT = 900


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    """`controlplane serve` in a process of its own, on a port of its own; killed with SIGKILL when asked."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log, self.port = env, log, _free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.starts += 1
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "controlplane", "serve", "--port", str(self.port)], cwd=REPO, env=self.env,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.3)

    def kill(self) -> None:
        """SIGKILL the server and everything it started (its playbook runs too), as a crash would."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)


@dataclass
class Estate:
    server: Server
    headers: dict[str, str]
    agency: str
    files: Path
    front: Any  # ServerInfo
    credential: str  # the estate's SSH credential
    gateway: Callable[[], Any]  # the agency's own gateway (a context manager)
    admin: Callable[[], Any]  # the dev cloud admin's gateway
    waves: dict[str, int]
    kills: list[str]
    # Each migration's servers as the cloud listed them once all were made (before nova-api's outage began).
    owned: dict[str, list[Any]] = field(default_factory=dict)

    def get(self, path: str) -> Any:
        response = httpx.get(f"{self.server.url}/api/v1{path}", headers=self.headers, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    def post(self, path: str, status: int = 202, **kwargs: Any) -> Any:
        response = httpx.post(f"{self.server.url}/api/v1{path}", headers=self.headers, timeout=60, **kwargs)
        assert response.status_code == status, response.text
        return response.json()

    def wave(self, name: str) -> dict[str, Any]:
        return dict(self.get(f"/waves/{self.waves[name]}"))

    def migration(self, wave: str, system: str) -> dict[str, Any]:
        return next(m for m in self.wave(wave)["migrations"] if m["system"] == system)

    def wait(self, until: Callable[[], bool], what: str, timeout: float = STEP_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not until():
            assert self.server.process is not None and self.server.process.poll() is None, \
                self.server.log.read_text()[-4000:]
            assert time.monotonic() < deadline, f"{what}: {self._states()}"
            time.sleep(2)

    def _states(self) -> list[tuple[str, str, str | None, str]]:
        return [(m["system"], m["state"], m["step"], m["error"][:300]) for name in self.waves
                for m in self.wave(name)["migrations"]]

    def resting(self, name: str) -> bool:
        return not any(m["state"] in ("queued", "running", "rolling_back") for m in self.wave(name)["migrations"])


def _systems(agency: str) -> str:
    def system(code: str, components: list[tuple[str, str, str, str]], depends_on: list[str],
               data_gb: int) -> dict[str, Any]:
        return {"code": code, "agency": agency, "name_ko": code, "name_en": f"test system {code}",
                "criticality": "medium", "vcpus": 1, "ram_mb": 1024, "disk_gb": 10, "data_gb": data_gb,
                "components": [{"kind": k, "vendor": v, "product": p, "version": ver}
                               for k, v, p, ver in components], "depends_on": depends_on}

    rhel_pg = [("os", "Red Hat", "RHEL", "7"), ("db", "PostgreSQL", "PostgreSQL", "9.6")]
    weblogic = [("os", "HPE", "HP-UX", "11i v3"), ("was", "Oracle", "WebLogic Server", "12c")]
    oracle = [("os", "IBM", "AIX", "7.1"), ("db", "Oracle", "Oracle Database", "11g")]
    tibero = [("os", "Oracle", "Solaris", "10"), ("db", "TmaxSoft", "Tibero", "6")]
    return yaml.safe_dump({"systems": [
        system("m-db", rhel_pg, [], 1), system("m-app", weblogic, ["m-db"], 0), system("m-rpt", oracle, ["m-db"], 1),
        system("c-app", weblogic, [], 0), system("c-db", tibero, [], 1),
    ]}, allow_unicode=True)


def _front_page(address: str) -> str:
    with urllib.request.urlopen(f"http://{address}/minwon/", timeout=10) as response:
        return str(response.read().decode())


@pytest.fixture(scope="module")
def estate(devcloud: Any, tmp_path_factory: pytest.TempPathFactory, timings: list[str]) -> Iterator[Estate]:
    """The agency, its credential, the users' front and the wave inputs, from the product's rehearsal estate
    (controlplane.devcloud.estate, the steps `controlplane devcloud estate up` takes), run here before the server
    starts: the estate's onboarding (ingress 22, 80, 8080, 5432 from 10/8) and key, its front host with nginx
    pointing at the legacy application, its WAR, dataset dump and manifest. The legacy application is a small web
    site on the front itself (127.0.0.1:8080): the estate's legacy hosts are not needed here."""
    work = tmp_path_factory.mktemp("migration")
    url = f"sqlite:///{work / 'controlplane.db'}"
    upgrade(url)
    agency = f"M{uuid.uuid4().hex[:6].upper()}"
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    with transaction(sessions) as session:
        auth_service.create_user(session, clock=Clock(), actor="test", data=UserCreate(
            username="ops", password=PASSWORD, role=Role.OPERATOR))
    env = {**os.environ, "CP_ENV": "test", "CP_DATABASE_URL": url, "CP_DATA_DIR": str(work),
           "CP_CLOUD": devcloud.cloud_name, "CP_CLOUDS_YAML": str(devcloud.clouds_yaml), "CP_WORKFLOWS": "true",
           "CP_MIGRATION_AGENCY_CONCURRENCY": "6", "CP_METRICS_REFRESH_SECONDS": "3600"}
    settings = Settings(env="test", database_url=url, data_dir=work, cloud=devcloud.cloud_name,
                        clouds_yaml=devcloud.clouds_yaml, metrics_refresh_seconds=3600)
    server = Server(env, work / "serve.log")
    names = {"project": f"agency-{agency.lower()}", "user": f"agency-{agency.lower()}-svc",
             "keypair": f"agency-{agency.lower()}-key"}
    made: Estate | None = None
    try:
        with opened_context(settings) as ctx:
            rehearsal = RehearsalEstate(ctx, agency=agency, actor="test")
            rehearsal.ensure_agency()
            cidr = rehearsal.ensure_onboarded(rehearsal.ensure_key())
            rehearsal.ensure_credential()
            rehearsal.ensure_files()
            hosts = rehearsal.ensure_hosts(roles=("front",))
            _legacy_front(rehearsal, hosts["front"], cidr)
            with transaction(ctx.sessions) as session:
                tenancy = session.scalars(select(CloudTenancy).where(
                    CloudTenancy.cloud == devcloud.cloud_name, CloudTenancy.agency.has(code=agency))).one()
                credential = cloud_service.agency_credential(tenancy, box=SecretBox(settings.secret_key))
                project_id = tenancy.project_id or ""
        assert credential is not None
        host = hosts["front"]
        front = ServerInfo(host.id, host.name, host.status, rehearsal.names.owner("front"), project_id,
                           (host.address,), samples.FLAVOR)

        def admin() -> Any:
            return CloudGateway.connect(devcloud.cloud_name, config_file=devcloud.clouds_yaml)

        def agency_gateway() -> Any:
            return admin().for_agency(credential)

        server.start()
        token = httpx.post(f"{server.url}/api/v1/auth/token", json={"username": "ops", "password": PASSWORD})
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        made = Estate(server, headers, agency, rehearsal.files.directory, front, rehearsal.names.credential,
                      agency_gateway, admin, {}, [])
        yield made
    finally:
        server.stop()
        engine.dispose()
        conn = _conn(devcloud)
        try:
            _delete_everything_of(conn, names)
        finally:
            conn.close()
        timings.append(f"migration waves: server started {server.starts} times, killed during "
                       f"{', '.join(made.kills) if made else '-'}")


def _conn(devcloud: Any) -> Any:
    config = openstack.config.OpenStackConfig(config_files=[str(devcloud.clouds_yaml)])
    return openstack.connection.Connection(config=config.get_one(cloud=devcloud.cloud_name))


def _legacy_front(rehearsal: RehearsalEstate, front: Host, cidr: str) -> None:
    """The users' front: the estate's nginx job pointing it at the legacy site, a small web server on the front
    itself (127.0.0.1:8080) standing in for the estate's legacy application server."""
    rehearsal.ssh(front.address, "mkdir -p /srv/legacy/minwon && "
                                 f"echo '<p>{LEGACY_APP}</p>' > /srv/legacy/minwon/index.html && "
                                 "systemd-run --unit=legacy-site python3 -m http.server 8080 --bind 127.0.0.1 "
                                 "--directory /srv/legacy")
    rehearsal.configure({"front": front, "app": Host("app", "legacy-site", "127.0.0.1", "ACTIVE", "")}, ["front"],
                        cidr=cidr)
    assert LEGACY_APP in _front_page(front.address)


def _inputs(estate: Estate) -> dict[str, Any]:
    """The wave inputs from the estate's files: its new WAR, and its dataset's dump and manifest."""
    files = samples.Files(estate.files)
    front = {"name": estate.front.name, "address": estate.front.addresses[0]}
    data = {"format": "sql", "dump_src": str(files.seed_dump), "manifest_src": str(files.manifest)}
    artifact = {"kind": "war", "name": "minwon", "src": str(files.new_war), "checksum": sha256_of(files.new_war),
                "health_content": NEW_APP}
    return {"front": front, "legacy_upstreams": ["127.0.0.1:8080"], "data": data, "artifact": artifact}


OUTAGE_SECONDS = 180


@dataclass
class Outage:
    """nova-api stopped mid-wave for three minutes; started again however the tests end."""

    devcloud: Any
    began: float | None = None

    def begin(self) -> None:
        self.devcloud.stop_service("nova-api")
        self.began = time.monotonic()

    def end(self, *, after: float = 0) -> None:
        if self.began is not None:
            time.sleep(max(0.0, self.began + after - time.monotonic()))
            self.devcloud.start_service("nova-api")
            self.began = None


@pytest.fixture(scope="module")
def outage(devcloud: Any) -> Iterator[Outage]:
    stopped = Outage(devcloud)
    try:
        yield stopped
    finally:
        stopped.end()


@pytest.fixture(scope="module")
def waves(estate: Estate, outage: Outage, timings: list[str]) -> Estate:
    """Both waves made and run; the server killed during provision, then during configure, and restarted. Once
    every server is made, nova-api goes down (what is left, configure and verify, does not need it; wave 2's retry
    waits for it) and stays down until wave 2's test has seen that."""
    imported = httpx.post(f"{estate.server.url}/api/v1/systems/import", headers=estate.headers,
                          files={"file": ("systems.yaml", _systems(estate.agency).encode())})
    assert imported.status_code == 200, imported.text
    given = _inputs(estate)
    broken_war = estate.files / "c-app.war"
    broken_war.write_bytes(b"not the WAR its checksum names")
    wave1 = estate.post("/waves", 201, json={
        "name": f"{estate.agency}-wave-1", "systems": ["m-db", "m-app", "m-rpt"], "credential": estate.credential,
        "inputs": {"m-db": {"data": given["data"]}, "m-rpt": {"data": given["data"]},
                   "m-app": {k: given[k] for k in ("front", "legacy_upstreams", "artifact")}}})
    wave2 = estate.post("/waves", 201, json={
        "name": f"{estate.agency}-wave-2", "systems": ["c-app", "c-db"], "credential": estate.credential,
        "inputs": {"c-db": {"data": given["data"]},
                   "c-app": {"front": given["front"], "legacy_upstreams": given["legacy_upstreams"],
                             "artifact": {**given["artifact"], "src": str(broken_war)}}}})
    estate.waves.update({"wave-1": wave1["id"], "wave-2": wave2["id"]})
    started = time.monotonic()
    estate.post(f"/waves/{wave1['id']}/run")
    estate.post(f"/waves/{wave2['id']}/run")

    for step in ("provision", "configure"):
        def running(step: str = step) -> bool:
            return any(m["state"] == "running" and m["step"] == step for name in estate.waves
                       for m in estate.wave(name)["migrations"])

        estate.wait(running, f"a migration in {step}")
        time.sleep(3)  # well inside the step: servers being made, a playbook running
        estate.server.kill()
        estate.kills.append(step)
        estate.server.start()

    migrations = [m["id"] for name in estate.waves for m in estate.wave(name)["migrations"]]
    estate.wait(lambda: all(("provision", "succeeded") in _step_runs(m) for name in estate.waves
                            for m in estate.wave(name)["migrations"]), "every server made")
    estate.owned = {migration_id: _owned(estate, migration_id) for migration_id in migrations}
    outage.begin()
    estate.wait(lambda: all(estate.resting(name) for name in estate.waves), "both waves at rest")
    timings.append(f"migration waves: 5 systems to the approval gate (2 crashes) in {time.monotonic() - started:.0f} s")
    return estate


def _step_runs(migration: dict[str, Any]) -> list[tuple[str, str]]:
    return [(r["step"], r["state"]) for r in migration["step_runs"] if not r["rollback"]]


def _owned(estate: Estate, migration_id: str) -> list[Any]:
    with estate.gateway() as gateway:
        return [s for s in gateway.list_servers() if (s.owner or "").startswith(f"migration/{migration_id}/")]


def test_a_crash_in_the_middle_resumes_every_migration_without_repeating_or_twinning(waves: Estate) -> None:
    estate = waves
    assert estate.kills == ["provision", "configure"] and estate.server.starts == 3
    for name in estate.waves:
        for migration in estate.wave(name)["migrations"]:
            runs = _step_runs(migration)
            done = [step for step, state in runs if state == "succeeded"]
            assert len(done) == len(set(done)), (migration["system"], runs)  # no step done twice
            servers = estate.owned[migration["id"]]  # listed before nova-api's outage
            assert sorted(s.name for s in servers) == sorted(migration["servers"]), (migration["system"], servers)
            assert len(servers) == 1  # one per planned server: no twin
    interrupted = [(m["system"], step) for name in estate.waves for m in estate.wave(name)["migrations"]
                   for step, state in _step_runs(m) if state == "interrupted"]
    assert {step for _, step in interrupted} <= {"provision", "configure"} and interrupted, interrupted


def test_a_wave_of_three_dependent_systems_migrates_end_to_end(waves: Estate, outage: Outage,
                                                               timings: list[str]) -> None:
    estate = waves
    wave = estate.wave("wave-1")
    assert {m["system"]: m["state"] for m in wave["migrations"]} == \
        {"m-db": "awaiting_approval", "m-app": "awaiting_approval", "m-rpt": "awaiting_approval"}, \
        {m["system"]: (m["state"], m["step"], m["error"]) for m in wave["migrations"]}
    address = estate.front.addresses[0]
    assert LEGACY_APP in _front_page(address)  # nothing is switched before the approval
    # the data arrived whole: the verify step's testinfra evidence has the data checks passing on both db servers
    for system in ("m-db", "m-rpt"):
        migration = estate.migration("wave-1", system)
        verify = [r for r in migration["step_runs"] if r["step"] == "verify" and r["state"] == "succeeded"][-1]
        job = verify["detail"]["results"][0]["job"]
        checks = estate.get(f"/jobs/{job}/checks")
        data_checks = [c for c in checks if c["role"] == "data_migration"]
        assert data_checks and {c["outcome"] for c in data_checks} == {"passed"}, checks
        assert {c["role"] for c in checks} >= {"base", "postgresql", "data_migration"}
    assert outage.began is not None  # nova-api is down: cutover and retire do not need it
    started = time.monotonic()
    for system in ("m-app", "m-rpt", "m-db"):
        estate.post(f"/migrations/{estate.migration('wave-1', system)['id']}/approve")
    estate.wait(lambda: estate.resting("wave-1"), "wave 1 cut over")
    wave = estate.wave("wave-1")
    # cut over, the legacy side kept for the soak (24 h by default): not retired yet
    assert {m["system"]: m["state"] for m in wave["migrations"]} == dict.fromkeys(("m-db", "m-app", "m-rpt"),
                                                                                   "cut_over"), wave
    events = estate.get(f"/waves/{wave['id']}/events")
    cut = [e["system"] for e in events if e["step"] == "cutover" and e["state"] == "succeeded"]
    assert cut.index("m-db") < cut.index("m-app") and cut.index("m-db") < cut.index("m-rpt")
    assert NEW_APP in _front_page(address)  # the front now forwards to m-app's Tomcat
    assert "migrated" not in {s["status"] for s in estate.get("/systems") if s["code"] in ("m-db", "m-app")}
    for migration in wave["migrations"]:  # the operator retires two before the soak ends; m-rpt soaks on
        assert migration["soak_until"] and "then retired" in migration["waiting_for"], migration
        if migration["system"] != "m-rpt":
            estate.post(f"/migrations/{migration['id']}/approve")
    estate.wait(lambda: [m["state"] for m in estate.wave("wave-1")["migrations"]] == [
        "succeeded", "succeeded", "cut_over"], "m-db and m-app retired")
    systems = {s["code"]: s["status"] for s in estate.get("/systems")}
    assert systems["m-db"] == systems["m-app"] == "migrated" and systems["m-rpt"] != "migrated"
    metrics = httpx.get(f"{estate.server.url}/metrics").text
    assert 'controlplane_migrations{state="succeeded"} 2.0' in metrics
    timings.append(f"migration wave 1: approval to migrated in {time.monotonic() - started:.0f} s")


def test_a_configure_failure_stops_that_system_only_and_a_retry_finishes_it(waves: Estate, outage: Outage,
                                                                            timings: list[str]) -> None:
    estate = waves
    failed = estate.migration("wave-2", "c-app")
    assert failed["state"] == "failed" and failed["step"] == "configure", failed
    assert "c-app-app-1" in failed["error"], failed["error"]
    c_db = estate.migration("wave-2", "c-db")
    assert c_db["state"] == "awaiting_approval", (c_db["step"], c_db["error"])
    # the cause is fixed: the WAR on the control plane is the one its checksum names again
    (estate.files / "c-app.war").write_bytes((estate.files / "minwon.war").read_bytes())
    # retried from provision while nova-api is down: the step waits for the cloud, holding no queue slot
    assert outage.began is not None, "the waves fixture stops nova-api once every server is made"
    estate.post(f"/migrations/{failed['id']}/retry", json={"from_step": "provision"})
    estate.wait(lambda: estate.migration("wave-2", "c-app")["waiting_for"].startswith("waiting for the cloud"),
                "c-app waiting for the cloud")
    waiting = estate.migration("wave-2", "c-app")
    assert waiting["state"] == "waiting" and waiting["step"] == "provision", waiting
    down = time.monotonic() - outage.began
    outage.end(after=OUTAGE_SECONDS)
    back = time.monotonic()
    estate.wait(lambda: estate.resting("wave-2") and estate.migration("wave-2", "c-app")["state"] != "waiting",
                "c-app after the outage")
    retried = estate.migration("wave-2", "c-app")
    assert retried["state"] == "awaiting_approval", retried
    runs = _step_runs(retried)
    assert [s for s, state in runs if state == "succeeded"] == ["precheck", "provision", "provision", "configure",
                                                                "verify"], runs
    assert ("configure", "failed") in runs and ("provision", "cloud_unreachable") in runs
    assert len(_owned(estate, retried["id"])) == 1  # found again by its tag, not made twice
    timings.append(f"nova-api down {OUTAGE_SECONDS} s (waiting seen after {down:.0f} s); c-app went on "
                   f"{time.monotonic() - back:.0f} s after it came back")


def test_rollback_leaves_no_server_port_or_volume_of_the_migrations(waves: Estate) -> None:
    estate = waves
    wave = estate.wave("wave-2")
    ids = {m["system"]: m["id"] for m in wave["migrations"]}
    server_ids = [s["id"] for m in wave["migrations"] for s in m["servers"].values()]
    assert len(server_ids) == 2
    for migration_id in ids.values():
        estate.post(f"/migrations/{migration_id}/rollback")
    estate.wait(lambda: estate.resting("wave-2"), "wave 2 rolled back")
    for system, migration_id in ids.items():
        migration = estate.migration("wave-2", system)
        assert migration["state"] == "rolled_back", migration
        assert migration["rollback"]["leftovers"] == {"servers": [], "ports": [], "volumes": []}
        assert _owned(estate, migration_id) == []
    with estate.admin() as admin:
        assert admin.list_ports(device_ids=server_ids) == []
    assert LEGACY_APP not in _front_page(estate.front.addresses[0])  # wave 1's cutover stays as it was


def test_a_rollback_during_the_soak_dumps_the_new_database_first(waves: Estate) -> None:
    estate = waves
    rpt = estate.migration("wave-1", "m-rpt")
    assert rpt["state"] == "cut_over", rpt
    refused = httpx.post(f"{estate.server.url}/api/v1/migrations/{rpt['id']}/rollback", headers=estate.headers)
    assert refused.status_code == 409 and refused.json()["field"] == "confirm_writes_since_cutover", refused.text
    estate.post(f"/migrations/{rpt['id']}/rollback", json={"confirm_writes_since_cutover": True})
    estate.wait(lambda: estate.resting("wave-1"), "m-rpt rolled back")
    rolled = estate.migration("wave-1", "m-rpt")
    assert rolled["state"] == "rolled_back", rolled
    (dump,) = rolled["rollback"]["dumps"]
    path = Path(dump["path"])
    assert path.name == f"{dump['database']}.sql" and dump["sha256"] == sha256_of(path)
    text = path.read_text()
    assert "PostgreSQL database dump" in text and "COPY public.requests" in text
    assert dump["written_since_cutover"] == []  # nobody wrote to it: it is what was moved
    assert rolled["rollback"]["leftovers"] == {"servers": [], "ports": [], "volumes": []}
    assert _owned(estate, rolled["id"]) == []
