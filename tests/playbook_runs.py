"""Playbooks run against dev cloud hosts the way the tests of the roles run them: ansible-playbook through
ansible-runner with the project's ansible.cfg (or none: Ansible's own defaults), the secrets only in a 0600 vars
file removed after the run, and what changed and what failed gathered from the events."""

from __future__ import annotations

import json
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ansible_runner

REPO = Path(__file__).resolve().parents[1]
PLAYBOOKS = REPO / "playbooks"
ANSIBLE_CFG = REPO / "ansible.cfg"


@dataclass
class PlayRun:
    status: str
    rc: int
    seconds: float
    stats: dict[str, dict[str, int]]
    failures: list[dict[str, str]] = field(default_factory=list)  # {host, task, status, message}
    changed_tasks: list[tuple[str, str]] = field(default_factory=list)  # (host, task)
    artifacts: Path | None = None

    def changed(self, host: str) -> int:
        return self.stats.get("changed", {}).get(host, 0)

    @property
    def private_data_dir(self) -> Path:
        assert self.artifacts is not None
        return self.artifacts.parents[1]


def run_playbook(playbook: str | Path, inv: dict[str, Any], work: Path, *, extravars: dict[str, Any] | None = None,
                 secrets: dict[str, str] | None = None, limit: str | None = None,
                 ansible_cfg: Path | None = ANSIBLE_CFG, forks: int | None = None) -> PlayRun:
    """ansible-playbook through ansible-runner with the project's ansible.cfg; secrets only in a 0600 vars file."""
    work.mkdir(parents=True, exist_ok=True)
    private = Path(work) / f"run-{uuid.uuid4().hex[:8]}"
    (private / "inventory").mkdir(parents=True)
    # SSH master connections (ControlPersist) of this module's runs only: a master left by another test to a
    # deleted server whose address a new server got would otherwise be reused, and break or hang.
    inv = {"all": {**inv["all"], "vars": {"ansible_control_path_dir": str(work / "cp"), **inv["all"]["vars"]}}}
    (private / "inventory" / "hosts.json").write_text(json.dumps(inv))
    cmdline = []
    if secrets:
        secret_file = private / "secret-vars.json"
        secret_file.touch(mode=0o600)
        secret_file.write_text(json.dumps(secrets))
        cmdline += ["-e", f"@{secret_file}"]
    if forks:
        cmdline += ["--forks", str(forks)]
    envvars = {"ANSIBLE_ROLES_PATH": str(PLAYBOOKS / "roles"), "ANSIBLE_NOCOLOR": "1",
               "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin:/usr/sbin:/sbin"}
    # No ansible.cfg at all: Ansible's own defaults (the benchmark's baseline).
    envvars["ANSIBLE_CONFIG"] = str(ansible_cfg) if ansible_cfg else str(private / "no-ansible.cfg")
    if not ansible_cfg:
        (private / "no-ansible.cfg").write_text("[defaults]\n")
    changed_tasks: list[tuple[str, str]] = []
    failures: list[dict[str, str]] = []

    def on_event(event: dict[str, Any]) -> bool:
        data = event.get("event_data") or {}
        name = event.get("event")
        result = data.get("res") or {}
        # A no_log task's result is censored, changed included: its stdout line still says "changed: [host]".
        if name == "runner_on_ok" and (result.get("changed") or str(event.get("stdout", "")).strip().endswith(
                f"changed: [{data.get('host')}]")):
            changed_tasks.append((data.get("host", ""), data.get("task", "")))
        if (name == "runner_on_failed" and not data.get("ignore_errors")) or name == "runner_on_unreachable":
            failures.append({"host": data.get("host", ""), "task": data.get("task", ""),
                             "status": "unreachable" if name == "runner_on_unreachable" else "failed",
                             "message": str(result.get("msg") or result.get("stderr") or "")})
        return True

    started = time.monotonic()
    try:
        runner = ansible_runner.run(
            private_data_dir=str(private), project_dir=str(PLAYBOOKS), playbook=str(playbook),
            inventory=str(private / "inventory" / "hosts.json"), extravars=extravars or {},
            cmdline=" ".join(cmdline) or None, limit=limit, envvars=envvars, quiet=True, event_handler=on_event)
    finally:
        (private / "secret-vars.json").unlink(missing_ok=True)
    seconds = time.monotonic() - started
    return PlayRun(runner.status, runner.rc, seconds, runner.stats or {}, failures, changed_tasks,
                   Path(runner.config.artifact_dir))
