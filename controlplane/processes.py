"""Which process runs something: an identity that a reused pid cannot take over, and whether it still runs.
Recorded on rows (who runs a job or an operation) and on the run directories the playbook runner leaves."""

from __future__ import annotations

import os
import socket
from functools import cache

import psutil


def _started(pid: int) -> str | None:
    """When process `pid` started (centiseconds since the epoch, as text), or None if there is no such process."""
    try:
        return str(round(psutil.Process(pid).create_time() * 100))
    except psutil.NoSuchProcess:
        return None
    except psutil.Error:
        return ""


@cache
def process_identity() -> str:
    """host:pid:start of this process: a pid reused by another process does not look alive."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_started(pid) or ''}"


def runner_alive(runner: str | None) -> bool:
    """Whether the process named by `runner` still runs; another host's process is presumed alive."""
    if not runner:
        return False
    host, pid_text, started = [*runner.rsplit(":", 2), "", ""][:3]
    if host != socket.gethostname():
        return True
    try:
        pid = int(pid_text)
    except ValueError:
        return False
    current = _started(pid)
    if current is None:
        return False
    return not started or not current or current == started
