"""Playbook jobs on the durable engine, with real server processes, a real ansible-playbook and a real DBOS:

- a job whose server is killed (SIGKILL, its ansible processes with it) ends failed as interrupted once a new server
  starts on the same databases, and is not run a second time behind the operator's back; run again, it succeeds;
- CP_PLAYBOOK_CONCURRENCY=1 holds across two servers sharing one PostgreSQL app database and one workflows database.

The control plane's playbooks are replaced by a probe `site.yml` that runs on this machine (connection: local) and
appends a start and an end line (with the time) per run to a file. The runner takes its playbooks directory only as
an argument, so each server is `python -c` calling uvicorn on `create_app(Settings(), playbook_runner=...)`: still
its own process, reading its settings from CP_* variables like `controlplane serve`.

Cloud applies (a cut-short apply runs again) need a cloud: the dev cloud run covers them, not this file.
"""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from components import missing
from conftest import PASSWORD, PG_ADMIN_URL
from servers import free_port, kill_tree, process_tree, run_controlplane, server_env, stop_process, wait_healthy

API = "/api/v1"
SERVER_START_SECONDS = 60
JOB_SECONDS = 60
PROBE = """\
- name: Durable work probe
  hosts: all
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  tasks:
    - name: Record the start, sleep, record the end
      ansible.builtin.shell: |
        echo "start {{ probe_tag }} $(date +%s.%N)" >> {{ probe_file }}
        sleep {{ probe_sleep }}
        echo "end {{ probe_tag }} $(date +%s.%N)" >> {{ probe_file }}
"""
SERVE = """\
import sys
from pathlib import Path

import uvicorn

from controlplane.app import create_app
from controlplane.automation.runner import PlaybookRunner
from controlplane.config import Settings

app = create_app(Settings(), playbook_runner=PlaybookRunner(playbooks=Path(sys.argv[1])))
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="info", proxy_headers=False)
"""


@dataclass
class Server:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    headers: dict[str, str] = field(default_factory=dict)

    def text(self) -> str:
        return f"--- {self.name} ({self.log}) ---\n{self.log.read_text(errors='replace')}"


@dataclass
class Place:
    """Where the servers of one test run: a data directory, the probe playbooks, the servers' environment."""

    root: Path
    env: dict[str, str]
    servers: list[Server] = field(default_factory=list)
    key: str = ""

    @property
    def playbooks(self) -> Path:
        return self.root / "playbooks"

    @property
    def probe_file(self) -> Path:
        return self.root / "probe.log"

    def cli(self, *args: str, stdin: str | None = None) -> None:
        run_controlplane(self.root, self.env, *args, stdin=stdin)

    def start(self, name: str, **settings: str) -> Server:
        port = free_port()
        log = self.root / f"{name}.log"
        env = {**self.env, **{f"CP_{k.upper()}": v for k, v in settings.items()}}
        with log.open("wb") as handle:
            process = subprocess.Popen([sys.executable, "-c", SERVE, str(self.playbooks), str(port)], cwd=self.root,
                                       env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
        server = Server(name, f"http://127.0.0.1:{port}", process, log)
        self.servers.append(server)
        _wait_healthy(server)
        token = httpx.post(f"{server.url}{API}/auth/token", json={"username": "ops1", "password": PASSWORD},
                           timeout=30)
        assert token.status_code == 200, token.text
        server.headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        return server

    def logs(self) -> str:
        return "\n".join(server.text() for server in self.servers)

    def stop_all(self) -> None:
        for server in self.servers:
            stop_process(server.process)

    def probe_lines(self) -> list[list[str]]:
        if not self.probe_file.exists():
            return []
        return [line.split() for line in self.probe_file.read_text().splitlines() if line.strip()]


def _place(tmp_path: Path, **settings: str) -> Place:
    root = tmp_path / "cp"
    (root / "playbooks").mkdir(parents=True)
    (root / "playbooks" / "site.yml").write_text(PROBE)
    env = server_env(root, env="test", cloud="", metrics_refresh_seconds="3600", workflows="true", **settings)
    return Place(root, env)


def _wait_healthy(server: Server) -> None:
    wait_healthy(server.url, server.process, server.log, seconds=SERVER_START_SECONDS)


def _prepare(place: Place) -> None:
    """The app database migrated, an operator, the operator's credential (a key Ansible's local connection ignores)."""
    place.cli("db", "upgrade")
    place.cli("users", "create", "--username", "ops1", "--role", "operator", "--password-stdin",
              stdin=PASSWORD + "\n")
    key = place.root / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    place.key = key.read_text()


def _credential(place: Place, server: Server) -> None:
    response = httpx.put(f"{server.url}{API}/credentials/local-root", headers=server.headers,
                         json={"private_key": place.key}, timeout=30)
    assert response.status_code == 201, response.text


def _post_job(place: Place, server: Server, tag: str, sleep: float) -> str:
    response = httpx.post(f"{server.url}{API}/jobs", headers=server.headers, timeout=30, json={
        "playbook": "site.yml", "credential": "local-root", "verify": False,
        "hosts": [{"name": "local-1", "address": "127.0.0.1"}],
        "extravars": {"probe_tag": tag, "probe_file": str(place.probe_file), "probe_sleep": sleep}})
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


def _job(server: Server, job_id: str) -> dict[str, Any]:
    response = httpx.get(f"{server.url}{API}/jobs/{job_id}", headers=server.headers, timeout=30)
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()
    return job


def _wait_ended(place: Place, server: Server, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + JOB_SECONDS
    while (job := _job(server, job_id))["status"] in ("pending", "running"):
        if time.monotonic() > deadline:
            pytest.fail(f"job {job_id} still {job['status']} after {JOB_SECONDS} s:\n{place.logs()}")
        time.sleep(0.3)
    return job


# --- a job killed with its server -------------------------------------------------------------------------------

def test_a_job_killed_with_its_server_ends_interrupted_after_restart(tmp_path: Path, timings: list[str]):
    place = _place(tmp_path)  # SQLite app database in the data directory, its workflows database beside it
    began = time.monotonic()
    try:
        _prepare(place)
        first = place.start("server-1")
        _credential(place, first)
        job_id = _post_job(place, first, "first", 30)

        deadline = time.monotonic() + JOB_SECONDS  # the playbook's task has started: its start line is written
        while not any(line[:2] == ["start", "first"] for line in place.probe_lines()):
            assert time.monotonic() < deadline, f"the job's playbook never started:\n{place.logs()}"
            assert _job(first, job_id)["status"] in ("pending", "running")
            time.sleep(0.2)
        assert _job(first, job_id)["status"] == "running"
        ansible = [p for p in process_tree(first.process.pid) if "ansible-playbook" in " ".join(p.cmdline())]
        assert ansible, "no ansible-playbook process under the server"
        assert kill_tree(first.process) == -signal.SIGKILL
        assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in ansible)
        killed = time.monotonic()

        second = place.start("server-2")  # same databases, same executor id: DBOS recovers the workflow
        job = _wait_ended(place, second, job_id)
        recovered = time.monotonic() - killed
        assert job["status"] == "failed", (job, place.logs())
        assert job["explanation"].startswith("interrupted"), (job, place.logs())

        # The relaunch: the same job again (a short sleep) ends successful, and the interrupted one never ran again.
        again = _wait_ended(place, second, _post_job(place, second, "second", 0))
        assert again["status"] == "successful", (again, place.logs())
        runs = [line[:2] for line in place.probe_lines()]
        assert runs == [["start", "first"], ["start", "second"], ["end", "second"]], (runs, place.logs())
        assert _job(second, job_id)["status"] == "failed"
        timings.append(f"durable work: killed job interrupted {recovered:.1f} s after the kill (new server "
                       f"start included); whole test {time.monotonic() - began:.1f} s")
    finally:
        place.stop_all()


# --- one playbook at a time across two servers ------------------------------------------------------------------

@pytest.fixture
def postgres_databases() -> Iterator[tuple[str, str]]:
    """A fresh app database and a fresh workflows database on the test PostgreSQL, dropped afterwards."""
    import psycopg

    admin_url = PG_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://")
    names = [f"cp_test_{uuid.uuid4().hex[:12]}", f"cp_wf_{uuid.uuid4().hex[:12]}"]
    unreachable = None
    try:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
            for name in names:
                conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        unreachable = " ".join(str(exc).split())
    if unreachable is not None:
        missing("postgres", f"PostgreSQL is not reachable at {admin_url}: {unreachable}")
    try:
        base = PG_ADMIN_URL.rsplit("/", 1)[0]
        yield f"{base}/{names[0]}", f"{base}/{names[1]}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            for name in names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _executors(workflows_url: str, job_ids: list[str]) -> dict[str, int]:
    """How many of the jobs' workflows each executor ran (DBOS may give them all to one: not asserted)."""
    import psycopg

    with psycopg.connect(workflows_url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        rows = conn.execute("SELECT executor_id, count(*) FROM dbos.workflow_status WHERE workflow_uuid = ANY(%s) "
                            "GROUP BY executor_id", ([f"job-{job_id}" for job_id in job_ids],)).fetchall()
    return {str(executor): int(count) for executor, count in rows}


@pytest.mark.postgres
def test_playbook_concurrency_holds_across_two_servers_on_postgresql(tmp_path: Path, timings: list[str],
                                                                     postgres_databases: tuple[str, str]):
    app_url, workflows_url = postgres_databases
    place = _place(tmp_path, database_url=app_url, workflows_database_url=workflows_url, playbook_concurrency="1")
    began = time.monotonic()
    try:
        _prepare(place)
        # One after the other: the first creates DBOS's tables, the second finds them.
        servers = [place.start("server-a", workflows_executor_id="executor-a"),
                   place.start("server-b", workflows_executor_id="executor-b")]
        _credential(place, servers[0])
        jobs = {f"job{i}": (servers[i % 2], _post_job(place, servers[i % 2], f"job{i}", 2)) for i in range(4)}
        ended = {tag: _wait_ended(place, server, job_id) for tag, (server, job_id) in jobs.items()}
        assert all(job["status"] == "successful" for job in ended.values()), (ended, place.logs())

        lines = place.probe_lines()
        starts = {tag: [float(t) for kind, t_tag, t in lines if kind == "start" and t_tag == tag] for tag in jobs}
        ends = {tag: [float(t) for kind, t_tag, t in lines if kind == "end" and t_tag == tag] for tag in jobs}
        assert all(len(starts[tag]) == 1 and len(ends[tag]) == 1 for tag in jobs), (lines, place.logs())
        intervals = sorted((starts[tag][0], ends[tag][0], tag) for tag in jobs)
        for (_, end, before), (start, _, after) in itertools.pairwise(intervals):
            assert end <= start, f"{before} and {after} ran at the same time: {intervals}\n{place.logs()}"
        timings.append(f"durable work: 4 jobs of 2 s, concurrency 1 across 2 servers: "
                       f"{intervals[-1][1] - intervals[0][0]:.1f} s from first start to last end, run by "
                       f"{_executors(workflows_url, [job_id for _, job_id in jobs.values()])}; "
                       f"whole test {time.monotonic() - began:.1f} s")
    finally:
        place.stop_all()
