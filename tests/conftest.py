"""Shared fixtures: a migrated database on SQLite and on PostgreSQL, apps, users and tokens."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from components import ALLOW_MISSING, allowed_missing, missing
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from controlplane.app import create_app
from controlplane.auth import security
from controlplane.auth import service as auth_service
from controlplane.auth.roles import Role
from controlplane.auth.schemas import AgencyCreate, AgencyKind, UserCreate
from controlplane.clock import FixedClock
from controlplane.compliance import service as compliance_service
from controlplane.compliance.schemas import MeetingCreate
from controlplane.config import Settings
from controlplane.db import Base, make_engine, make_sessionmaker, transaction
from controlplane.devcloud.cloud import DevCloud
from controlplane.migrations import upgrade

# The migration engine (DBOS, one per process) starts only in the apps of the tests that need it.
os.environ.setdefault("CP_WORKFLOWS", "false")
PG_ADMIN_URL = os.environ.get("CP_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
PASSWORD = "correct-horse-battery-9"
# Mid-2014: the 50% rule is in force and half of the year's sessions are still to come.
NOW = datetime(2014, 7, 1, 3, 0, tzinfo=UTC)


def pytest_configure(config: pytest.Config) -> None:
    allowed_missing()  # a misspelt CP_TESTS_ALLOW_MISSING stops the run before it starts
    _stop_like_ctrl_c()


def _stop_like_ctrl_c() -> None:
    """SIGTERM (a CI run cancelled, scripts/test stopping its background run) stops the run as Ctrl-C does, so the
    fixtures take down what they started (the dev cloud, its hosts, servers); so does a SIGINT that the shell
    ignored for a background job (Python then leaves SIGINT ignored)."""
    if threading.current_thread() is not threading.main_thread():
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_report_header(config: pytest.Config) -> str | None:
    """A run that may skip missing components says so at the top: it is not a full run."""
    allowed = allowed_missing()
    if not allowed:
        return None
    return f"{ALLOW_MISSING}: tests of missing {', '.join(sorted(allowed))} are skipped, not failed (not a full run)"


def _postgres_database() -> Iterator[str]:
    import psycopg

    admin_url = PG_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://")
    name = f"cp_test_{uuid.uuid4().hex[:12]}"
    unreachable = None
    try:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        unreachable = " ".join(str(exc).split())
    if unreachable is not None:  # outside the except: the failure is the message, not a chained traceback
        missing("postgres", f"PostgreSQL is not reachable at {admin_url}: {unreachable}")
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A freshly migrated database, once per backend for the whole run."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'controlplane.db'}"
        upgrade(url)
        yield url
    else:
        for url in _postgres_database():
            upgrade(url)
            yield url


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def _empty_tables(engine: Engine) -> None:
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in reversed(Base.metadata.sorted_tables):
                conn.execute(table.delete())


@pytest.fixture(autouse=True)
def _fast_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cheap argon2 parameters: still real argon2id hashes, a fraction of the time per login."""
    monkeypatch.setattr(security, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def sessions(engine: Engine) -> Iterator[sessionmaker[Session]]:
    """An empty, migrated database for this test."""
    _empty_tables(engine)
    yield make_sessionmaker(engine)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(env="test", database_url=database_url, data_dir=tmp_path, metrics_refresh_seconds=3600)


@pytest.fixture
def client(settings: Settings, clock: FixedClock, sessions: sessionmaker[Session]) -> Iterator[TestClient]:
    with TestClient(create_app(settings, clock=clock)) as test_client:
        yield test_client


@pytest.fixture
def catalogue(sessions: sessionmaker[Session], clock: FixedClock) -> dict[str, Any]:
    """Three ministries, the real policies, and four designated meetings."""
    with transaction(sessions) as s:
        for code, ko, en in [("MOIS", "행정안전부", "Ministry of the Interior and Safety"),
                             ("MOEF", "기획재정부", "Ministry of Economy and Finance"),
                             ("MSIT", "과학기술정보통신부", "Ministry of Science and ICT")]:
            auth_service.create_agency(s, clock=clock, actor="test", data=AgencyCreate(
                code=code, name_ko=ko, name_en=en, kind=AgencyKind.MINISTRY))
        compliance_service.seed_policies(s, clock=clock, actor="test")
        for code, host, others, since in [
            ("MOIS-LOCAL", "MOIS", ["MOEF", "MSIT"], date(2011, 1, 1)),
            ("MOIS-SAFETY", "MOIS", ["MSIT"], date(2011, 1, 1)),
            ("MOEF-ECON", "MOEF", ["MOIS", "MSIT"], date(2011, 1, 1)),
            ("MSIT-ICT", "MSIT", ["MOIS"], date(2014, 3, 1)),
        ]:
            compliance_service.create_meeting(s, clock=clock, actor="test", data=MeetingCreate(
                code=code, name_ko=f"{code} 회의", name_en=f"{code} meeting", host=host, participants=others,
                cadence="monthly", designated_from=since))
    return {"ministries": ["MOIS", "MOEF", "MSIT"]}


@pytest.fixture
def make_user(sessions: sessionmaker[Session], clock: FixedClock) -> Callable[..., str]:
    def _make(username: str, role: Role | str, agency: str | None = None) -> str:
        with transaction(sessions) as s:
            auth_service.create_user(s, clock=clock, actor="test", data=UserCreate(
                username=username, password=PASSWORD, role=Role(role), agency_code=agency))
        return username

    return _make


@pytest.fixture
def login(client: TestClient, make_user: Callable[..., str]) -> Callable[..., dict[str, str]]:
    """Create a user and return the Authorization header of a fresh token."""

    def _login(username: str, role: Role | str, agency: str | None = None) -> dict[str, str]:
        make_user(username, role, agency)
        response = client.post("/api/v1/auth/token", json={"username": username, "password": PASSWORD})
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['access_token']}"}

    return _login


def error_body(response: Any, status: int, field: str | None = None, code: str | None = None) -> dict[str, Any]:
    """The API's error answer: `status`, the body's shape (code, a message, field, maybe details), and the field and
    code when given."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert {"code", "message", "field"} <= set(body) <= {"code", "message", "field", "details"}, body
    assert isinstance(body["message"], str) and body["message"], body
    if field is not None:
        assert body["field"] == field, body
    if code is not None:
        assert body["code"] == code, body
    return body


@pytest.fixture
def engine_on() -> bool:
    """Whether the test's app runs the durable engine. A test parametrizes it off
    (`@pytest.mark.parametrize("engine_on", [False])`) to run the engine elsewhere (the CLI), or when what it proves
    happens before any work is handed over (input refused): the same answer, without an engine's start and stop."""
    return True


# --- the real local OpenStack dev cloud (tests marked devcloud, run in one process after the others) ---------
# Brought up once per run and taken down if this run started it (down checks that nothing it made is left).
# CP_DEVCLOUD_KEEP=1 leaves a cloud this run started running afterwards (faster local reruns).

@pytest.fixture(scope="session")
def devcloud() -> Iterator[DevCloud]:
    if os.geteuid() != 0:
        missing("root", "the dev cloud needs root (its servers are systemd-nspawn hosts in network namespaces)")
    cloud = DevCloud.default()
    was_running = all(service.running for service in cloud.status())
    cloud.up()
    yield cloud
    if not was_running and not os.environ.get("CP_DEVCLOUD_KEEP"):
        cloud.down()


@dataclass(frozen=True)
class SshKey:
    private: Path
    public: str

    def run(self, address: str, command: str, *, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run a command as root on a dev cloud host, the way Ansible reaches it."""
        return subprocess.run(
            ["ssh", "-i", str(self.private), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
             "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR", f"root@{address}", command],
            capture_output=True, text=True, timeout=timeout, check=False,
        )


@pytest.fixture(scope="session")
def fleet(devcloud: DevCloud, ssh_key: SshKey) -> Iterator[Any]:
    """The run's plain hosts (tests/fleet.py), booted together on first use: `fleet.host("jobs")`."""
    import openstack.config
    import openstack.connection
    from fleet import HOSTS, Fleet

    config = openstack.config.OpenStackConfig(config_files=[str(devcloud.clouds_yaml)]).get_one(
        cloud=devcloud.cloud_name)
    conn = openstack.connection.Connection(config=config)
    hosts = Fleet(conn, ssh_key.public)
    try:
        hosts.boot(HOSTS)
        yield hosts
    finally:
        try:
            hosts.close()
        finally:
            conn.close()


@pytest.fixture(scope="session")
def ssh_key(tmp_path_factory: pytest.TempPathFactory) -> SshKey:
    """A key pair for the hosts' root: `ssh_key.public` goes into a keypair, `ssh_key.run(ip, cmd)` logs in."""
    private = tmp_path_factory.mktemp("ssh") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(private)], check=True)
    return SshKey(private, private.with_suffix(".pub").read_text().strip())


# --- timings of real work (hosts, playbooks), printed at the end of the run --------------------------------------

_TIMINGS: list[str] = []


@pytest.fixture(scope="session")
def timings() -> list[str]:
    """Lines appended here are printed in the terminal summary (how long the real work took)."""
    return _TIMINGS


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _TIMINGS:
        terminalreporter.section("real work: timings")
        for line in _TIMINGS:
            terminalreporter.write_line(line)
