"""Verification: the roles' testinfra checks (playbooks/checks/) run against a job's hosts, with per-host evidence.

The checks run in a pytest process of their own (the checks directory's pytest.ini keeps the control plane's
settings out), through testinfra's paramiko backend, from a private directory (0700) holding the SSH key, the
hosts' keys and the variables, removed afterwards. Hosts are checked against the keys the job's playbook run met
(check_host_keys): a host that answers with another key is refused, not checked.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote

from controlplane.automation.domain import ROLES, CheckResult, CheckRun, VerificationError, checks_from_evidence, redact
from controlplane.automation.runner import run_dir_prefix, write_private

CHECKS = Path(__file__).resolve().parent.parent.parent / "playbooks" / "checks"
_PLUGIN = "controlplane.automation.check_host_keys"


class CheckRunner:
    def __init__(self, *, checks: Path = CHECKS, work_dir: Path | None = None) -> None:
        self.checks = checks
        self.work_dir = work_dir

    def run(self, request: CheckRun, *, cancel: threading.Event | None = None,
            secrets: Iterable[str] = ()) -> list[CheckResult]:
        """Every check of the requested roles on every host; raises VerificationError if pytest itself broke."""
        unknown = [role for role in request.roles if role not in ROLES]
        if unknown:
            raise VerificationError(f"no checks for role {unknown[0]!r}")
        secret_values = [*secrets, request.private_key]
        private = Path(tempfile.mkdtemp(prefix=run_dir_prefix("checks"), dir=self.work_dir))
        try:
            key = write_private(private / "id", request.private_key.rstrip("\n") + "\n")
            check_vars = write_private(private / "check-vars.json", json.dumps(request.check_vars))
            evidence = private / "evidence.json"
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(private),
                   "PYTHONPATH": str(Path(__file__).resolve().parent.parent.parent), "PYTHONDONTWRITEBYTECODE": "1"}
            if request.known_hosts.strip():
                env["CP_CHECK_KNOWN_HOSTS"] = str(write_private(private / "known_hosts", request.known_hosts))
            hosts = ",".join(f"paramiko://{quote(request.user)}@{address}?ssh_identity_file={key}&timeout=10"
                             for address in request.addresses)
            argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", _PLUGIN, "-q", "-rN",
                    f"--hosts={hosts}", f"--check-vars={check_vars}", f"--evidence={evidence}",
                    *(f"test_{role}.py" for role in request.roles)]
            process = subprocess.Popen(argv, cwd=self.checks, env=env, stdout=subprocess.PIPE,  # noqa: S603
                                       stderr=subprocess.STDOUT, text=True, start_new_session=True)
            output = _wait(process, timeout=request.timeout_seconds, cancel=cancel)
            if cancel is not None and cancel.is_set():
                raise VerificationError("canceled on request while the checks ran")
            if process.returncode not in (0, 1) or not evidence.exists():
                tail = redact(output.strip()[-800:], secret_values)
                raise VerificationError(f"the checks did not run (pytest exit {process.returncode}): {tail}")
            return checks_from_evidence(json.loads(evidence.read_text()), secret_values)
        finally:
            shutil.rmtree(private, ignore_errors=True)


def _wait(process: subprocess.Popen[str], *, timeout: float, cancel: threading.Event | None) -> str:
    """The process's output once it ends; killed when it runs past `timeout` or `cancel` is set."""
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(process.stdout.read() if process.stdout else ""),
                              daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    while process.poll() is None:
        if (cancel is not None and cancel.is_set()) or time.monotonic() > deadline:
            process.kill()
            process.wait()
            if not (cancel is not None and cancel.is_set()):
                raise VerificationError(f"the checks ran past their time limit of {timeout:.0f} s")
            break
        reader.join(0.2)
    reader.join(5)
    return result[0] if result else ""

