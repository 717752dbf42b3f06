"""The runner adapter against a real dev cloud host: events, status mapping, and no secret left anywhere."""

from __future__ import annotations

import stat
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from fleet import Host

from controlplane.automation.domain import JobEvent, JobStatus, PlaybookJob
from controlplane.automation.runner import PlaybookRunner
from controlplane.devcloud.cloud import DevCloud

pytestmark = pytest.mark.devcloud
PLAYBOOKS = Path(__file__).parent / "playbooks"
SECRET = "Sup3r-S3cret-" + uuid.uuid4().hex
SSH_ARGS = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"


@pytest.fixture(scope="module")
def host(fleet: Any) -> Host:
    return fleet.host("runner")


def _job(host: Host, ssh_key: Any, **extravars: Any) -> PlaybookJob:
    inventory = {"all": {"hosts": {host.name: {"ansible_host": host.address, "ansible_user": "root"}},
                         "vars": {"ansible_ssh_common_args": SSH_ARGS}}}
    return PlaybookJob("smoke.yml", inventory, extravars=extravars, secrets={"db_password": SECRET},
                       private_key=ssh_key.private.read_text(), timeout_seconds=120)


def test_a_run_streams_events_and_leaves_no_secret_on_disk(host: Host, ssh_key: Any, tmp_path: Path) -> None:
    runner = PlaybookRunner(playbooks=PLAYBOOKS, work_dir=tmp_path)
    seen: list[JobEvent] = []
    private_files: list[tuple[str, int, bool]] = []

    def on_event(event: JobEvent) -> None:
        seen.append(event)
        if event.kind == "ok" and not private_files:  # mid-run: inspect the private directory
            for path in tmp_path.rglob("*"):
                mode = stat.S_IMODE(path.stat().st_mode)
                secret_inside = path.is_file() and SECRET in path.read_text(errors="replace")
                private_files.append((str(path.relative_to(tmp_path)), mode, secret_inside))

    result = runner.run(_job(host, ssh_key), on_event=on_event)

    assert result.outcome.status is JobStatus.SUCCESSFUL, result.outcome
    assert [e.kind for e in seen if e.host] == ["ok", "ok", "skipped"]
    assert [e.task for e in seen if e.host] == ["Say the secret", "Write a file", "Fail on demand"]
    # While it ran: the private directory and every directory in it 0700 (ansible's own fact cache files are
    # 0644 inside them, unreachable for anyone else), and the secret only in the 0600 secret vars file.
    assert private_files
    for path, mode, secret_inside in private_files:
        assert mode & 0o077 == 0 or (mode == 0o644 and "/fact_cache/" in path), (path, oct(mode))
        assert not secret_inside or (path.endswith("env/secret-vars.json") and mode == 0o600), path
    # Afterwards nothing is left, and no event carries the secret.
    assert list(tmp_path.iterdir()) == []
    assert all(SECRET not in repr(event) for event in result.events)


def test_a_failing_task_names_the_task_and_host_without_the_secret(host: Host, ssh_key: Any) -> None:
    result = PlaybookRunner(playbooks=PLAYBOOKS).run(_job(host, ssh_key, fail_now=True))
    assert result.outcome.status is JobStatus.FAILED
    assert result.outcome.explanation.startswith(f"task 'Fail on demand' on {host.name} failed: asked to fail with ")
    assert SECRET not in result.outcome.explanation and "********" in result.outcome.explanation


def test_an_unreachable_host_is_reported_as_such(ssh_key: Any, devcloud: DevCloud) -> None:
    ghost = Host("ghost", "10.78.0.254", "x")
    result = PlaybookRunner(playbooks=PLAYBOOKS).run(_job(ghost, ssh_key))
    assert result.outcome.status is JobStatus.FAILED
    assert "on ghost unreachable" in result.outcome.explanation


def test_cancel_is_not_a_failure(host: Host, ssh_key: Any) -> None:
    cancel = threading.Event()
    cancel.set()
    result = PlaybookRunner(playbooks=PLAYBOOKS).run(_job(host, ssh_key), cancel=cancel)
    assert result.outcome.status is JobStatus.CANCELED
