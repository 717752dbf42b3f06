"""Start, find and stop the dev cloud's processes by the PIDs it recorded (never by name)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


class DevCloudError(RuntimeError):
    """A dev cloud step failed; the message says which and where its log is."""


@dataclass(frozen=True)
class Service:
    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    port: int | None = None
    # An HTTP API answers any status once it is up; a plain TCP port only needs to accept.
    http: bool = False
    # A daemon without a port is ready when it is still running this long after the wait began
    # (nova-compute, for one, exits a second or two after start when its configuration is wrong).
    settle_seconds: float = 5


def _start_time(pid: int) -> str | None:
    """The kernel's start time of a process: with the PID, it tells our process from a later one reusing its PID."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the parenthesised command name (which may contain spaces): state is field 3, start time 22.
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else fields[19]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def http_answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5):
            return True
    except urllib.error.HTTPError:
        return True  # 401/404/300: the application is serving
    except OSError:
        return False


class Supervisor:
    """Runs services in their own sessions; a pid file holds `PID START_TIME`, logs go to one file per service."""

    def __init__(self, run_dir: Path, log_dir: Path) -> None:
        self.run_dir = run_dir
        self.log_dir = log_dir

    def log_file(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def _pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def pid(self, name: str) -> int | None:
        """The PID of the running service we started, or None."""
        try:
            pid_text, started = self._pid_file(name).read_text().split()
        except (OSError, ValueError):
            return None
        pid = int(pid_text)
        return pid if _start_time(pid) == started else None

    def start(self, service: Service) -> int:
        if (pid := self.pid(service.name)) is not None:
            return pid
        if service.port is not None and port_open(service.port):
            raise DevCloudError(
                f"{service.name}: port 127.0.0.1:{service.port} is already taken by a process the dev cloud did not "
                "start; stop it or free the port"
            )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with self.log_file(service.name).open("ab") as log:
            process = subprocess.Popen(  # noqa: S603 - fixed argv built by the launcher
                service.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, **service.env}, start_new_session=True,
            )
        self._pid_file(service.name).write_text(f"{process.pid} {_start_time(process.pid)}\n")
        return process.pid

    def wait_ready(self, service: Service, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pid(service.name) is None:
                raise DevCloudError(f"{service.name} exited while starting; see {self.log_file(service.name)}")
            if service.port is None:
                if time.monotonic() >= deadline - timeout + service.settle_seconds:
                    return
                time.sleep(0.25)
                continue
            if http_answers(service.port) if service.http else port_open(service.port):
                return
            time.sleep(0.25)
        raise DevCloudError(f"{service.name} did not answer on port {service.port} within {timeout:.0f} s; "
                            f"see {self.log_file(service.name)}")

    def stop(self, name: str, timeout: float = 20) -> bool:
        """SIGTERM to the service's process group, SIGKILL after `timeout`; False when it was not running."""
        pid = self.pid(name)
        if pid is None:
            self._pid_file(name).unlink(missing_ok=True)
            return False
        # Each service leads its own session (start_new_session), so its group is exactly its own processes.
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.pid(name) == pid:
            _reap(pid)
            time.sleep(0.1)
        if self.pid(name) == pid:
            os.killpg(pid, signal.SIGKILL)
            while self.pid(name) == pid:
                _reap(pid)
                time.sleep(0.05)
        # Workers of a stopped master may outlive it by a moment; the group is ours alone.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        self._pid_file(name).unlink(missing_ok=True)
        return True


def _reap(pid: int) -> None:
    """Collect a child of this process (started in the same CLI run) so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
