"""Jobs end to end on a real dev cloud host: the API records a job, ansible-runner applies the base role over SSH,
testinfra checks it with the keys the run met, the evidence is stored; a second run changes nothing; drift behind
Ansible's back fails the checks with their message; an unreachable host says so; no secret is left anywhere."""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fleet import Host
from sqlalchemy import select

from controlplane.app import create_app
from controlplane.auth import service as auth_service
from controlplane.auth.roles import Role
from controlplane.auth.schemas import UserCreate
from controlplane.automation.runner import RUN_DIR_KINDS, run_dir_prefix
from controlplane.clock import Clock
from controlplane.config import Settings
from controlplane.db import Base, make_engine, make_sessionmaker, transaction
from controlplane.migrations import upgrade

pytestmark = pytest.mark.devcloud
SECRET = "Job-S3cret-" + uuid.uuid4().hex
PASSWORD = "correct-horse-battery-9"


@pytest.fixture(scope="module")
def host(fleet: Any) -> Host:
    return fleet.host("jobs")


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, ssh_key: Any) -> Iterator[tuple[TestClient, dict[str, str], Any]]:
    """The app with its real runner and checks, on a database of its own, an operator and the hosts' credential."""
    url = f"sqlite:///{tmp_path_factory.mktemp('jobs-db') / 'controlplane.db'}"
    upgrade(url)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    with transaction(sessions) as session:
        auth_service.create_user(session, clock=Clock(), actor="test", data=UserCreate(
            username="ops", password=PASSWORD, role=Role.OPERATOR))
    data = tmp_path_factory.mktemp("data")
    settings = Settings(env="test", database_url=url, data_dir=data, cloud="", metrics_refresh_seconds=3600,
                        workflows=True, workflows_database_url=f"sqlite:///{data / 'workflows.db'}")
    with TestClient(create_app(settings)) as client:
        token = client.post("/api/v1/auth/token", json={"username": "ops", "password": PASSWORD}).json()
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        created = client.put("/api/v1/credentials/devcloud-root", headers=headers,
                             json={"private_key": ssh_key.private.read_text()})
        assert created.status_code == 201, created.text
        yield client, headers, sessions
    engine.dispose()


def _run(api: Any, host: Host, playbook: str = "site.yml", **extra: Any) -> dict[str, Any]:
    client, headers, _ = api
    body = {"playbook": playbook, "credential": "devcloud-root",
            "hosts": [{"name": host.name, "address": host.address}],
            "secrets": {"base_unused_token": SECRET}, "timeout_seconds": 900, **extra}
    accepted = client.post("/api/v1/jobs", headers=headers, json=body)
    assert accepted.status_code == 202, accepted.text
    url = accepted.json()["url"]
    deadline = time.monotonic() + 900
    while (job := client.get(url, headers=headers).json())["status"] in ("pending", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(1)
    return dict(job)


def _everything_stored(api: Any) -> str:
    _, _, sessions = api
    with transaction(sessions) as session:
        return "\n".join(str(tuple(row)) for table in Base.metadata.sorted_tables
                         for row in session.execute(select(table)))


def test_a_job_configures_a_real_host_and_stores_the_checks_as_evidence(api: Any, host: Host,
                                                                        ssh_key: Any) -> None:
    client, headers, _ = api
    job = _run(api, host)
    assert job["status"] == "successful", job["explanation"]
    stats = job["host_stats"][host.name]
    assert stats["failed"] == stats["unreachable"] == 0 and stats["changed"] > 0
    assert job["verification"]["failed"] == 0 and job["verification"]["passed"] >= 5

    checks = client.get(f"/api/v1/jobs/{job['id']}/checks", headers=headers).json()
    assert {c["host"] for c in checks} == {host.address} and {c["role"] for c in checks} == {"base"}
    assert "test_services_run_and_start_at_boot" in {c["check"] for c in checks if c["outcome"] == "passed"}
    events = client.get(f"/api/v1/jobs/{job['id']}/events", headers=headers).json()
    assert {"play", "task", "ok", "verify", "check"} <= {e["kind"] for e in events}
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)

    # The same again: nothing changes on the host.
    again = _run(api, host)
    assert again["status"] == "successful", again["explanation"]
    assert again["host_stats"][host.name]["changed"] == 0, again["host_stats"]

    # Neither the secret variable nor the private key is in any stored row; no run directory is left.
    stored = _everything_stored(api)
    key_body = ssh_key.private.read_text().splitlines()[1]
    assert SECRET not in stored and key_body not in stored
    # This process's only: the other suite, running beside this one, makes run directories of its own.
    assert not [p for kind in RUN_DIR_KINDS for p in Path(tempfile.gettempdir()).glob(run_dir_prefix(kind) + "*")]


def test_drift_behind_ansibles_back_fails_the_checks_with_their_message(api: Any, host: Host,
                                                                        ssh_key: Any) -> None:
    assert _run(api, host)["status"] == "successful"
    stopped = ssh_key.run(host.address, "systemctl stop chrony")
    assert stopped.returncode == 0, stopped.stderr
    # verify.yml's quick look (the node exporter answers) passes; the evidence does not.
    job = _run(api, host, playbook="verify.yml")
    assert job["status"] == "failed"
    assert job["explanation"].startswith(
        f"check test_services_run_and_start_at_boot of role base failed on {host.name}: "), job["explanation"]
    assert "chrony is not running" in job["explanation"]
    assert _run(api, host)["status"] == "successful"  # configuring again puts it right


def test_an_unreachable_host_fails_the_job_saying_so(api: Any) -> None:
    ghost = Host("ghost-1", "10.78.0.254", "x")
    job = _run(api, ghost, timeout_seconds=120)
    assert job["status"] == "failed" and job["verification"] is None
    assert job["explanation"].startswith("host ghost-1 unreachable") or " on ghost-1 unreachable" in job["explanation"]
    assert job["host_stats"]["ghost-1"]["unreachable"] == 1
