"""Servers of the tests: a free port on 127.0.0.1 and an environment holding only a `controlplane` process's own
settings, for the tests that start one; a listener that counts the requests it gets.

    from servers import CountingListener, free_port, server_env
"""

from __future__ import annotations

import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


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
