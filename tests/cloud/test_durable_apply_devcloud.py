"""A cloud apply on the durable engine survives its server being killed: a real `controlplane serve` on the dev
cloud is SIGKILLed while an agency's onboarding apply runs; the next server on the same databases recovers the
apply, which runs again from its start and succeeds, leaving one project, one network and one router (an apply is
safe to repeat, never twinned)."""

from __future__ import annotations

import random
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from servers import free_port, kill_tree, run_controlplane, server_env, stop_process, wait_healthy
from sqlalchemy import create_engine, text

from tests.cloud.test_cloud_api_devcloud import _conn, _delete_everything_of

pytestmark = pytest.mark.devcloud
API = "/api/v1"
PASSWORD = "apply-operator-password-7"


class Place:
    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root, self.env = root, env
        self.processes: list[subprocess.Popen[bytes]] = []

    def cli(self, *args: str, stdin: str | None = None) -> None:
        run_controlplane(self.root, self.env, *args, stdin=stdin)

    def serve(self, name: str) -> tuple[str, subprocess.Popen[bytes]]:
        port = free_port()
        log = self.root / f"{name}.log"
        with log.open("wb") as handle:
            process = subprocess.Popen([sys.executable, "-m", "controlplane", "serve", "--port", str(port)],
                                       cwd=self.root, env=self.env, stdout=handle, stderr=subprocess.STDOUT)
        self.processes.append(process)
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, process, log)
        return url, process

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.read_text(errors='replace')}" for p in sorted(self.root.glob("*.log")))


@pytest.fixture
def place(devcloud: Any, tmp_path: Path) -> Iterator[Place]:
    root = tmp_path / "cp"
    root.mkdir()
    env = server_env(root, env="test", cloud=devcloud.cloud_name, clouds_yaml=str(devcloud.clouds_yaml),
                     workflows="true", metrics_refresh_seconds="3600")
    place = Place(root, env)
    try:
        yield place
    finally:
        for process in place.processes:
            stop_process(process)


def _login(url: str) -> dict[str, str]:
    token = httpx.post(f"{url}{API}/auth/token", json={"username": "ops1", "password": PASSWORD}, timeout=30)
    assert token.status_code == 200, token.text
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


def _operation_status(database: Path, operation_id: str) -> str:
    engine = create_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as connection:
            return str(connection.execute(text("SELECT status FROM cloud_operations WHERE id = :id"),
                                          {"id": operation_id}).scalar_one())
    finally:
        engine.dispose()


def test_an_apply_killed_with_its_server_finishes_after_restart(place: Place, devcloud: Any, ssh_key: Any) -> None:
    code = f"K{uuid.uuid4().hex[:7].upper()}"
    names = {"project": f"agency-{code.lower()}", "user": f"agency-{code.lower()}-svc",
             "keypair": f"agency-{code.lower()}-key"}
    place.cli("db", "upgrade")
    place.cli("users", "create", "--username", "ops1", "--role", "admin", "--password-stdin", stdin=PASSWORD + "\n")
    conn = _conn(devcloud)
    try:
        url, first = place.serve("server-1")
        headers = _login(url)
        created = httpx.post(f"{url}{API}/agencies", headers=headers, timeout=30, json={
            "code": code, "name_ko": "중단 시험 기관", "name_en": "Kill test agency", "kind": "agency"})
        assert created.status_code == 201, created.text
        spec = httpx.put(f"{url}{API}/cloud/agencies/{code}/onboarding", headers=headers, timeout=30, json={
            "quotas": {"instances": 2, "cores": 2, "ram_mb": 2048, "volumes": 1},
            "cidr": f"10.87.{random.randint(1, 254)}.0/24", "ingress": [], "public_key": ssh_key.public})
        assert spec.status_code == 201, spec.text
        accepted = httpx.post(f"{url}{API}/cloud/agencies/{code}/onboarding/apply", headers=headers, timeout=30)
        assert accepted.status_code == 202, accepted.text
        operation_id = accepted.json()["operation_id"]
        database = place.root / "controlplane.db"
        deadline = time.monotonic() + 60
        while _operation_status(database, operation_id) != "running":
            assert time.monotonic() < deadline, f"the apply never started:\n{place.logs()}"
            time.sleep(0.05)
        kill_tree(first)
        assert _operation_status(database, operation_id) == "running", "the apply ended before the kill"

        url, _second = place.serve("server-2")
        headers = _login(url)
        deadline = time.monotonic() + 300
        while (op := httpx.get(f"{url}{API}/cloud/operations/{operation_id}", headers=headers,
                               timeout=30).json())["status"] in ("queued", "running"):
            assert time.monotonic() < deadline, f"the apply did not finish after the restart:\n{place.logs()}"
            time.sleep(0.5)
        assert op["status"] == "succeeded", f"{op}\n{place.logs()}"

        projects = [p for p in conn.identity.projects() if p.name == names["project"]]
        assert len(projects) == 1
        assert len(list(conn.network.networks(project_id=projects[0].id))) == 1
        assert len(list(conn.network.routers(project_id=projects[0].id))) == 1
        again = httpx.get(f"{url}{API}/cloud/agencies/{code}/onboarding/plan", headers=headers, timeout=60).json()
        assert again["is_noop"], again
    finally:
        _delete_everything_of(conn, names)
        conn.close()
