"""Template injection through the API, with the real runner and a real ansible-playbook (only the cloud is a fake):
jobs (extra variables, host variables, secrets) and waves (variables, the front's variables) carry the `pipe`,
`file` and `url` lookups of an attack to Ansible, which must treat them as text. The control plane's playbooks are
replaced by echo playbooks that run on this machine (connection: local) and write what Ansible saw.
"""

# ruff: noqa: F811  (fixtures imported from the fakes modules are parameters of the tests)
from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import PASSWORD
from fastapi.testclient import TestClient
from jobs_fakes import FakeChecks, ssh_private_key  # noqa: F401
from migration_fakes import (
    API,
    EngineApp,
    MigrationCloud,
    _engine_app,
    wave_body,
)
from servers import CountingListener
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from controlplane.app import create_app
from controlplane.automation.runner import PlaybookRunner
from controlplane.clock import FixedClock
from controlplane.config import Settings
from controlplane.db import transaction
from controlplane.inventory.models import AgencySystem
from tests.engine import workflows_database

ECHO = Path(__file__).parent / "echo_playbooks"


class Attack:
    """Lookups that would run a command (marker files), read a file (a canary token) and fetch a URL (a listener on
    127.0.0.1 counting requests), one payload per variable path."""

    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path
        self.token = "canary-" + uuid.uuid4().hex
        self.canary = tmp_path / "control-plane-file"
        self.canary.write_text(self.token)
        self.listener = CountingListener()
        self.requests, self.url = self.listener.requests, self.listener.url

    def payload(self, where: str) -> str:
        return (f"{{{{ lookup('ansible.builtin.pipe', 'touch {self.dir / ('marker-' + where)}') }}}}"
                f"{{{{ lookup('ansible.builtin.file', '{self.canary}') }}}}"
                f"{{{{ lookup('ansible.builtin.url', '{self.url}{where}') }}}}")

    def assert_nothing_happened(self, *texts: str) -> None:
        assert sorted(p.name for p in self.dir.glob("marker-*")) == []
        assert self.requests == []
        assert all(self.token not in text for text in texts)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def attack(tmp_path: Path) -> Iterator[Attack]:
    attack = Attack(tmp_path)
    yield attack
    attack.close()


def _echoes(directory: Path) -> dict[str, dict[str, Any]]:
    return {path.stem: json.loads(path.read_text()) for path in sorted(directory.glob("*.json"))}


def test_a_jobs_variables_reach_ansible_as_text(settings: Settings, clock: FixedClock,
                                                sessions: sessionmaker[Session], make_user: Callable[..., str],
                                                catalogue: Any, ssh_private_key: str, attack: Attack,
                                                tmp_path: Path) -> None:
    echo_dir = tmp_path / "echo"
    echo_dir.mkdir()
    with workflows_database(settings, tmp_path) as workflows_url:
        app = create_app(settings.model_copy(update={"workflows": True, "workflows_database_url": workflows_url}),
                         clock=clock, playbook_runner=PlaybookRunner(playbooks=ECHO), check_runner=FakeChecks())
        job, events = _run_echo_job(app, make_user, ssh_private_key, attack, echo_dir)

    assert job["status"] == "successful", job["explanation"]
    assert _echoes(echo_dir) == {"local-1-all": {
        "echo_extra": attack.payload("extra"), "echo_nested": {"list": [attack.payload("nested")]},
        "echo_host": attack.payload("host"), "echo_secret": attack.payload("secret")}}
    attack.assert_nothing_happened(json.dumps(job), events)


def _run_echo_job(app: Any, make_user: Callable[..., str], ssh_private_key: str, attack: Attack,
                  echo_dir: Path) -> tuple[dict[str, Any], str]:
    with TestClient(app) as client:
        make_user("ops1", "operator")
        token = client.post(f"{API}/auth/token", json={"username": "ops1", "password": PASSWORD}).json()
        ops = {"Authorization": f"Bearer {token['access_token']}"}
        assert client.put(f"{API}/credentials/hosts-root", headers=ops,
                          json={"private_key": ssh_private_key}).status_code == 201
        names = ["echo_extra", "echo_nested", "echo_host", "echo_secret"]
        accepted = client.post(f"{API}/jobs", headers=ops, json={
            "playbook": "site.yml", "credential": "hosts-root", "verify": False,
            "hosts": [{"name": "local-1", "address": "127.0.0.1", "vars": {"echo_host": attack.payload("host")}}],
            "extravars": {"echo_dir": str(echo_dir), "echo_vars": names, "echo_extra": attack.payload("extra"),
                          "echo_nested": {"list": [attack.payload("nested")]}},
            "secrets": {"echo_secret": attack.payload("secret")}})
        assert accepted.status_code == 202, accepted.text
        assert app.state.ctx.workflows.wait_idle(timeout=120)
        return client.get(accepted.json()["url"], headers=ops).json(), \
            client.get(accepted.json()["events_url"], headers=ops).text


def test_a_waves_variables_and_front_variables_reach_ansible_as_text(
        settings: Settings, clock: FixedClock, sessions: sessionmaker[Session], catalogue: Any,
        make_user: Callable[..., str], ssh_private_key: str, attack: Attack, tmp_path: Path) -> None:
    echo_dir = tmp_path / "echo"
    echo_dir.mkdir()
    with workflows_database(settings, tmp_path) as workflows_url:
        engine_settings = settings.model_copy(update={"workflows": True, "workflows_database_url": workflows_url})
        for app in _engine_app(engine_settings, clock, sessions, make_user, ssh_private_key, tmp_path,
                               MigrationCloud(), PlaybookRunner(playbooks=ECHO), FakeChecks()):  # type: ignore[arg-type]
            _run_t_app_through_cutover(app, attack, echo_dir)

    seen = _echoes(echo_dir)
    # configure and verify on the new app server, the cutover on the front: each got its value verbatim.
    assert seen == {"t-app-app-1-base-tomcat-app_deploy": {"echo_wave": attack.payload("wave")},
                    "t-app-app-1-all": {"echo_wave": attack.payload("wave")},
                    "front-app-nginx": {"echo_front": attack.payload("front")}}, seen
    attack.assert_nothing_happened(json.dumps(seen))


def _run_t_app_through_cutover(app: EngineApp, attack: Attack, echo_dir: Path) -> None:
    with transaction(app.sessions) as session:  # t-app's database is migrated already: a wave of t-app alone
        session.scalars(select(AgencySystem).where(AgencySystem.code == "t-db")).one().status = "migrated"
    body = wave_body(app.files, systems=["t-app"], soak_hours=0)
    inputs = body["inputs"]["t-app"]
    inputs["variables"] = {"echo_dir": str(echo_dir), "echo_vars": ["echo_wave"], "echo_wave": attack.payload("wave")}
    # The cutover job runs on the front alone, with the front's own variables.
    inputs["front"]["vars"] = {"echo_dir": str(echo_dir), "echo_vars": ["echo_front"],
                               "echo_front": attack.payload("front")}
    wave = app.post("/waves", 201, json={**body, "inputs": {"t-app": inputs}})
    app.post(f"/waves/{wave['id']}/run")
    wave = app.wait(wave["id"], timeout=180)
    migration = app.migration(wave, "t-app")
    assert migration["state"] == "awaiting_approval", migration["error"][-400:]
    app.post(f"/migrations/{migration['id']}/approve")
    deadline = time.monotonic() + 180
    while (migration := app.migration(app.wait(wave["id"], timeout=180), "t-app"))["state"] != "succeeded":
        assert migration["state"] not in ("failed", "canceled"), migration["error"][-400:]
        assert time.monotonic() < deadline, migration["state"]
        time.sleep(0.2)
