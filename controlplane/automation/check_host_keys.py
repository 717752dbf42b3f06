"""A pytest plugin for the checks' own process (verify.CheckRunner loads it with -p): testinfra's paramiko backend
accepts any host key; with CP_CHECK_KNOWN_HOSTS set, a host must present the key recorded there, or it is refused.
"""

from __future__ import annotations

import os
from typing import Any

import pytest


def pytest_configure(config: pytest.Config) -> None:
    known_hosts = os.environ.get("CP_CHECK_KNOWN_HOSTS")
    if not known_hosts:
        return
    import paramiko

    choose = paramiko.SSHClient.set_missing_host_key_policy

    def strict(client: paramiko.SSHClient, _policy: Any) -> None:
        # testinfra sets its permissive policy on every new client: every client gets the recorded keys instead.
        client.load_host_keys(known_hosts)
        choose(client, paramiko.RejectPolicy())

    paramiko.SSHClient.set_missing_host_key_policy = strict
