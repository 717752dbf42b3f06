"""PlaybookRunner: the control plane's only use of ansible_runner.

Each job runs in a private directory of its own (0700, files 0600) holding its inventory, its plain extra
variables and, in a separate 0600 file, its secret variables; the directory is deleted when the run ends,
whatever the outcome. Runner events are handed to the caller as JobEvents with every secret redacted and
are never written to runner artifacts (the event handler drops them), so nothing secret stays on disk.

Every value of a job (extra variables, host variables, secrets) reaches Ansible as unsafe data, never as a
template: a caller's "{{ lookup('pipe', ...) }}" is a string to Ansible, not a command on this machine. This
module is the one place that guarantees it, whoever built the job.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ansible_runner

from controlplane.automation.domain import JobEvent, PlaybookJob, RunResult, event_from_runner, job_outcome
from controlplane.processes import process_identity, runner_alive

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
PLAYBOOKS = REPO_ROOT / "playbooks"
ANSIBLE_CFG = REPO_ROOT / "ansible.cfg"
# ansible-playbook of this interpreter's environment first, whatever PATH the control plane was started with
# (runner's `binary` option would switch it to raw mode and drop the playbook argument).
VENV_BIN = Path(sys.executable).parent


_umask_lock = threading.Lock()
_umask_users = 0
_umask_saved = 0o022


@contextmanager
def _private_umask() -> Iterator[None]:
    """umask 077 while any job runs: ansible-runner creates its artifact files and directories world-readable.

    umask is per process, so concurrent jobs share one setting, restored when the last of them ends.
    """
    global _umask_users, _umask_saved
    with _umask_lock:
        if _umask_users == 0:
            _umask_saved = os.umask(0o077)
        _umask_users += 1
    try:
        yield
    finally:
        with _umask_lock:
            _umask_users -= 1
            if _umask_users == 0:
                os.umask(_umask_saved)


class PlaybookRunner:
    def __init__(self, *, playbooks: Path = PLAYBOOKS, ansible_cfg: Path = ANSIBLE_CFG,
                 work_dir: Path | None = None) -> None:
        self.playbooks = playbooks
        self.ansible_cfg = ansible_cfg
        self.work_dir = work_dir

    def run(self, job: PlaybookJob, *, on_event: Callable[[JobEvent], None] | None = None,
            cancel: threading.Event | None = None) -> RunResult:
        """Run one playbook to the end (or until `cancel` is set); events go to `on_event` as they happen."""
        secret_values = [*job.secrets.values(), *([job.private_key] if job.private_key else [])]
        events: list[JobEvent] = []

        def handle(raw: dict[str, Any]) -> bool:
            event = event_from_runner(raw, secret_values)
            if event is not None:
                events.append(event)
                if on_event is not None:
                    on_event(event)
            return False  # never written to the run's artifacts

        with _private_umask():
            private = Path(tempfile.mkdtemp(prefix=run_dir_prefix("job"), dir=self.work_dir))  # mode 0700
            # The job's own SSH master connections: a master of an earlier job (ControlPersist) could otherwise serve
            # this one for a host that has since been replaced at the same address. In the system's temporary
            # directory, whatever work_dir is: a socket's path must stay under ~100 characters.
            control_dir = Path(tempfile.mkdtemp(prefix=run_dir_prefix("ssh")))
            try:
                variable_files = self._write_private(private, job)
                envvars = self._environment()
                envvars["ANSIBLE_SSH_CONTROL_PATH_DIR"] = str(control_dir)
                known_hosts = private / "known_hosts"
                if job.known_hosts is not None:
                    write_private(known_hosts, job.known_hosts)
                    checking = "yes" if job.known_hosts.strip() else "accept-new"
                    envvars["ANSIBLE_SSH_COMMON_ARGS"] = (f"-o UserKnownHostsFile={known_hosts} "
                                                          f"-o StrictHostKeyChecking={checking}")
                result = ansible_runner.run(
                    private_data_dir=str(private),
                    project_dir=str(self.playbooks),
                    playbook=job.playbook,
                    inventory=str(private / "inventory" / "hosts.json"),
                    cmdline=" ".join(f"-e {shlex.quote(f'@{path}')}" for path in variable_files),
                    ssh_key=job.private_key,
                    envvars=envvars,
                    settings={"job_timeout": int(job.timeout_seconds) if job.timeout_seconds else 0,
                              "suppress_ansible_output": True},
                    limit=job.limit,
                    event_handler=handle,
                    cancel_callback=lambda: bool(cancel and cancel.is_set()),
                    quiet=True,
                    # stdout and the events' JSON would keep task output (and so possibly secrets) on disk.
                    suppress_output_file=True,
                    rotate_artifacts=1,
                )
                outcome = job_outcome(result.status, result.rc, timeout_seconds=job.timeout_seconds, failures=events)
                learned = known_hosts.read_text() if job.known_hosts is not None else None
                return RunResult(outcome, result.rc, tuple(events), learned)
            finally:
                _close_masters(control_dir)
                shutil.rmtree(control_dir, ignore_errors=True)
                shutil.rmtree(private, ignore_errors=True)

    def _environment(self) -> dict[str, str]:
        return {"ANSIBLE_CONFIG": str(self.ansible_cfg), "ANSIBLE_ROLES_PATH": str(self.playbooks / "roles"),
                "ANSIBLE_NOCOLOR": "1", "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}"}

    @staticmethod
    def _write_private(private: Path, job: PlaybookJob) -> list[Path]:
        """The inventory, the extra variables and, when the job has secrets, a vars file of their own (all 0600,
        every value unsafe); returns the vars files, passed with `-e @file`."""
        inventory = private / "inventory"
        inventory.mkdir(mode=0o700)
        write_private(inventory / "hosts.json", json.dumps(unsafe_inventory(job.inventory)))
        env = private / "env"
        env.mkdir(mode=0o700, exist_ok=True)
        files = [write_private(env / "vars.json", json.dumps(unsafe(dict(job.extravars))))]
        if job.secrets:
            files.append(write_private(env / "secret-vars.json", json.dumps(unsafe(dict(job.secrets)))))
        return files


# Ansible's JSON loaders (extra vars files, inventory files) read {"__ansible_unsafe": text} as text that is never
# templated: Jinja2 in it stays characters. Mapping keys are never templated, so they stay as they are.
_UNSAFE_KEY = "__ansible_unsafe"
# Connection variables the control plane itself sets in the inventory (addresses, the SSH user): plain strings,
# since Ansible's connection plugins read some of them before any templating (and none come from a caller as such).
_CONNECTION_VARIABLES = frozenset({"ansible_host", "ansible_user"})


def unsafe(value: Any) -> Any:
    """`value` with every string in it marked unsafe for Ansible, however deep."""
    if isinstance(value, str):
        return {_UNSAFE_KEY: value}
    if isinstance(value, Mapping):
        return {key: unsafe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [unsafe(item) for item in value]
    return value


def unsafe_inventory(inventory: Mapping[str, Any]) -> dict[str, Any]:
    """An inventory structure whose host and group variables are unsafe (host and group names are keys)."""
    def group(body: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if "hosts" in body:
            out["hosts"] = {name: {key: value if key in _CONNECTION_VARIABLES else unsafe(value)
                                   for key, value in (host_vars or {}).items()}
                            for name, host_vars in (body["hosts"] or {}).items()}
        if "vars" in body:
            out["vars"] = unsafe(body["vars"])
        if "children" in body:
            out["children"] = {name: group(child or {}) for name, child in (body["children"] or {}).items()}
        return out

    return {name: group(body or {}) for name, body in inventory.items()}


RUN_DIR_KINDS = ("job", "ssh", "checks")


def run_dir_prefix(kind: str) -> str:
    """cp-<kind>-<pid>.<start>-: the process that made a run directory is in its name, so that one a dead
    process left behind (a crash: its secret vars file, key, SSH sockets) can be told from a live one's."""

    return f"cp-{kind}-{os.getpid()}.{process_identity().rsplit(':', 1)[1]}-"


def remove_orphaned_run_dirs(directory: Path | None = None) -> list[Path]:
    """Remove the run directories (jobs, SSH masters, checks) of processes that are gone; returns them."""

    removed = []
    for kind in RUN_DIR_KINDS:
        for path in (directory or Path(tempfile.gettempdir())).glob(f"cp-{kind}-*"):
            pid, _, ticks = path.name.removeprefix(f"cp-{kind}-").split("-", 1)[0].partition(".")
            if not pid.isdigit() or runner_alive(f"{socket.gethostname()}:{pid}:{ticks}"):
                continue  # a live process's, or not named by this version
            if kind == "ssh":
                _close_masters(path)
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _close_masters(control_dir: Path) -> None:
    """Stop the job's SSH master connections now rather than ControlPersist seconds after it ended."""
    for socket_path in control_dir.glob("*"):
        subprocess.run(["ssh", "-o", f"ControlPath={socket_path}", "-O", "exit", "master"],  # noqa: S603, S607
                       capture_output=True, timeout=10, check=False)


def write_private(path: Path, text: str) -> Path:
    """A file only its owner can read, created with mode 0600 (never briefly readable by others)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    return path
