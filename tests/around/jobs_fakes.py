"""Fakes of the automation adapters (the playbook runner and the check runner), for the code around them, and
the fixtures that inject them. A test module imports what it uses:

    from jobs_fakes import automation, operator  # noqa: F401  (fixtures)

(Not a conftest.py: a second module named conftest would shadow the root one for `from conftest import ...`.)

They behave like the real ones at the port: events as a run goes, an outcome through the one mapping of
controlplane.automation.domain, the cancel signal honoured, check results per host and role. The same flows against
real hosts are in tests/cloud/test_jobs_devcloud.py.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import PASSWORD
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from controlplane.app import create_app
from controlplane.automation.domain import (
    CheckResult,
    CheckRun,
    JobEvent,
    PlaybookJob,
    RunResult,
    VerificationError,
    job_outcome,
)
from controlplane.clock import FixedClock
from controlplane.config import Settings
from tests.engine import engine_settings


class FakeRunner:
    """PlaybookRunner's port over no hosts: one play, one task, an ok (or the failure asked for) per host."""

    def __init__(self) -> None:
        self.jobs: list[PlaybookJob] = []
        self.fail_host: str | None = None
        self.gate: threading.Event | None = None  # when set up, a run waits here (or for its cancel)
        self.started = threading.Event()
        self.error: Exception | None = None
        self.on_run: Callable[[PlaybookJob], None] | None = None  # what a job does on its hosts (files it fetches)

    def run(self, job: PlaybookJob, *, on_event: Callable[[JobEvent], None] | None = None,
            cancel: threading.Event | None = None) -> RunResult:
        self.jobs.append(job)
        if self.on_run is not None:
            self.on_run(job)
        if self.error is not None:
            self.started.set()
            raise self.error
        emit = on_event or (lambda _event: None)
        events: list[JobEvent] = []

        def add(event: JobEvent) -> None:
            events.append(event)
            emit(event)

        add(JobEvent(1, "play", None, "site", "play", False, None, ""))
        add(JobEvent(2, "task", None, "Install packages", "task", False, None, ""))
        self.started.set()  # under way, and its first events are stored
        if self.gate is not None:
            while not self.gate.wait(0.05):
                if cancel is not None and cancel.is_set():
                    return RunResult(job_outcome("canceled", 254, timeout_seconds=None), 254, tuple(events), "")
        hosts = {name: values for name, values in job.inventory["all"]["hosts"].items()
                 if job.limit is None or name == job.limit}  # a limit of one host name, as the tests use it
        for number, name in enumerate(hosts, start=3):
            failed = name == self.fail_host
            add(JobEvent(number, "failed" if failed else "ok", name, "Install packages",
                         "failed" if failed else "ok", not failed, 0.5,
                         "No package matching 'tomcat11' is available" if failed else ""))
        status = "failed" if self.fail_host in hosts else "successful"
        outcome = job_outcome(status, 2 if status == "failed" else 0, timeout_seconds=job.timeout_seconds,
                              failures=events)
        learned = "".join(f"{h['ansible_host']} ssh-ed25519 AAAAfake\n" for h in hosts.values())
        return RunResult(outcome, 0 if status == "successful" else 2, tuple(events), learned)


class FakeChecks:
    """CheckRunner's port: every requested role's one check passes on every host, but the failures asked for."""

    def __init__(self) -> None:
        self.requests: list[CheckRun] = []
        self.failing: set[tuple[str, str]] = set()  # (address, role)
        self.failing_roles: set[str] = set()  # on every host
        self.error: str | None = None

    def run(self, request: CheckRun, *, cancel: threading.Event | None = None,
            secrets: Iterable[str] = ()) -> list[CheckResult]:
        self.requests.append(request)
        if self.error:
            raise VerificationError(self.error)
        results = []
        for address in request.addresses:
            for role in request.check_vars["hosts"][address]["check_roles"]:
                failed = (address, role) in self.failing or role in self.failing_roles
                results.append(CheckResult(address, role, f"test_{role}_service_running",
                                           "failed" if failed else "passed", 0.2,
                                           f"AssertionError: {role} is not running" if failed else ""))
        return results


@dataclass
class Automation:
    client: TestClient
    runner: FakeRunner
    checks: FakeChecks
    sessions: sessionmaker[Session]
    wait: Callable[[], None] = field(repr=False)


@pytest.fixture
def automation(settings: Settings, clock: FixedClock, sessions: sessionmaker[Session], tmp_path: Path,
               engine_on: bool) -> Iterator[Automation]:
    runner, checks = FakeRunner(), FakeChecks()
    # Two playbook runs at once (CP_PLAYBOOK_CONCURRENCY): the tests fill the queue to see a job wait.
    with engine_settings(settings.model_copy(update={"playbook_concurrency": 2}), tmp_path,
                         on=engine_on) as with_engine:
        app = create_app(with_engine, clock=clock, playbook_runner=runner, check_runner=checks)
        with TestClient(app) as client:
            def wait() -> None:
                assert app.state.ctx.workflows.wait_idle(timeout=20), "jobs did not finish"

            yield Automation(client, runner, checks, sessions, wait)


@pytest.fixture(scope="session")
def ssh_private_key(tmp_path_factory: pytest.TempPathFactory) -> str:
    path: Path = tmp_path_factory.mktemp("keys") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ops@test", "-f", str(path)], check=True)
    return path.read_text()


# --- a logged-in operator with a credential, and a job request ----------------------------------------------------

SECRET = "db-owner-Pa55-" + "x" * 12
HOSTS = [{"name": "web-1", "address": "10.78.0.11", "groups": ["nginx"]},
         {"name": "db-1", "address": "10.78.0.12", "groups": ["postgresql"], "vars": {"postgresql_db_name": "app"}}]


def job_request(**overrides: Any) -> dict[str, Any]:
    """The body of POST /api/v1/jobs: site.yml on HOSTS of agency MOIS with one secret, as `hosts-root`."""
    return {"playbook": "site.yml", "credential": "hosts-root", "agency": "MOIS", "hosts": HOSTS,
            "extravars": {"nginx_listen_port": 8081}, "secrets": {"postgresql_db_owner_password": SECRET},
            **overrides}


@pytest.fixture
def headers(automation: Automation, make_user: Callable[..., str], catalogue: Any) -> Callable[..., dict[str, str]]:
    """A user of the role, and the Authorization header of a fresh token of theirs."""
    def login(username: str, role: str, agency: str | None = None) -> dict[str, str]:
        make_user(username, role, agency)
        response = automation.client.post("/api/v1/auth/token", json={"username": username, "password": PASSWORD})
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['access_token']}"}

    return login


@pytest.fixture
def operator(headers: Callable[..., dict[str, str]], automation: Automation, ssh_private_key: str) -> dict[str, str]:
    """An operator's header; the credential `hosts-root` exists."""
    ops = headers("ops1", "operator")
    response = automation.client.put("/api/v1/credentials/hosts-root", headers=ops,
                                     json={"private_key": ssh_private_key, "description": "dev hosts"})
    assert response.status_code == 201, response.text
    return ops
