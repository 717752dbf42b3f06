"""The real local OpenStack dev cloud, brought up once per test run and taken down if this run started it.

Every test module here is in the xdist group "devcloud", so one worker owns the cloud for the whole run.
Set CP_DEVCLOUD_KEEP=1 to leave a cloud this run started running afterwards (faster local reruns).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from controlplane.devcloud.cloud import DevCloud


@pytest.fixture(scope="session")
def devcloud() -> Iterator[DevCloud]:
    if os.geteuid() != 0:
        reason = "the dev cloud needs root (its servers are systemd-nspawn hosts in network namespaces)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    cloud = DevCloud.default()
    was_running = all(service.running for service in cloud.status())
    cloud.up()
    yield cloud
    if not was_running and not os.environ.get("CP_DEVCLOUD_KEEP"):
        cloud.down()



@dataclass(frozen=True)
class SshKey:
    private: Path
    public: str

    def run(self, address: str, command: str, *, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run a command as root on a dev cloud host, the way Ansible reaches it."""
        return subprocess.run(
            ["ssh", "-i", str(self.private), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
             "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR", f"root@{address}", command],
            capture_output=True, text=True, timeout=timeout, check=False,
        )


@pytest.fixture(scope="session")
def ssh_key(tmp_path_factory: pytest.TempPathFactory) -> SshKey:
    """A key pair for the hosts' root: `ssh_key.public` goes into a keypair, `ssh_key.run(ip, cmd)` logs in."""
    private = tmp_path_factory.mktemp("ssh") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(private)], check=True)
    return SshKey(private, private.with_suffix(".pub").read_text().strip())
