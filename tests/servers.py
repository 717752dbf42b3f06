"""Servers of the tests: a free port on 127.0.0.1 and an environment holding only a `controlplane` process's own
settings, for the tests that start one; waiting for one to answer, killing one with everything below it (what a
power cut does) or stopping it; a listener that counts the requests it gets.

    from servers import CountingListener, free_port, kill_tree, run_controlplane, server_env, stop_process, wait_healthy
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psutil


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(data_dir: Path, **settings: str) -> dict[str, str]:
    """The caller's environment without any CP_* variable (a CP_DATABASE_URL would win), CP_DATA_DIR, unbuffered
    output, and `settings` as CP_<NAME> variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CP_")}
    env.update({"CP_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"})
    env.update({f"CP_{name.upper()}": value for name, value in settings.items()})
    return env


def run_controlplane(root: Path, env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    """`controlplane ARGS` as a new process in `root` with `env` (a real command line); its output, exit 0 asserted."""
    result = subprocess.run([sys.executable, "-m", "controlplane", *args], cwd=root, env=env, input=stdin,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"controlplane {' '.join(args)}: {result.stdout}\n{result.stderr}"
    return result.stdout


def wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path, *, seconds: float = 60) -> None:
    """Until the server at `url` answers /healthz; AssertionError with its log when it exits or never answers."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise AssertionError(f"the server did not answer /healthz within {seconds} s:\n{log.read_text(errors='replace')}")


def process_tree(pid: int) -> list[psutil.Process]:
    """The process and all its descendants (ansible-runner starts ansible-playbook in a session of its own, on a
    pty, so the server's process group does not hold it)."""
    try:
        parent = psutil.Process(pid)
        return [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def kill_tree(process: subprocess.Popen[bytes]) -> int:
    """SIGKILL the process and every process below it at once (what a power cut leaves): its exit status."""
    processes = process_tree(process.pid)
    for each in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            each.send_signal(signal.SIGKILL)
    status = process.wait(timeout=15)
    psutil.wait_procs(processes[1:], timeout=15)
    return status


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (SIGKILL after 20 s), then whatever it left running below it."""
    if process.poll() is not None:
        return
    below = process_tree(process.pid)[1:]
    os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=15)
    for child in below:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.send_signal(signal.SIGKILL)


class CountingListener:
    """An HTTP server on 127.0.0.1 that answers every GET with `body` and keeps the paths it was asked for: what a
    test proves nobody fetched (a `url` lookup that must not run)."""

    def __init__(self, body: bytes = b"fetched") -> None:
        self.requests: list[str] = []
        requests = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                requests.append(self.path)
                self.send_response(200)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
