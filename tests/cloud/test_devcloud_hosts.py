"""Real Debian hosts (systemd-nspawn machines in network namespaces) as the dev cloud's compute driver makes them.

Needs root, systemd-nspawn, debootstrap and apt-cacher-ng; the first run builds the base root filesystem into the
cache (about a minute), later runs take seconds. Every host, namespace, mount and interface made here is removed at
the end, also when a test fails; hosts of a dev cloud running at the same time are left alone.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from components import missing

from controlplane.devcloud.hosts import (
    NETNS_PREFIX,
    VETH_PREFIX,
    HostError,
    HostInfo,
    HostManager,
    bridge_name_for,
)

pytestmark = pytest.mark.devcloud

NETWORK_ID = f"test-{uuid.uuid4().hex}"
GATEWAY = "10.79.250.1"


@dataclass(frozen=True)
class Ssh:
    key: Path
    public_key: str

    def run(self, ip: str, command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ssh", "-i", str(self.key), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
             "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR", f"root@{ip}", command],
            capture_output=True, text=True, timeout=120, check=False,
        )


def _cache_dir() -> Path:
    return Path(os.environ.get("CP_DEVCLOUD_CACHE_DIR") or Path.home() / ".cache" / "controlplane")


def _manager(state_dir: Path) -> HostManager:
    if os.geteuid() != 0:
        missing("root", "real hosts need root (network namespaces, mounts, systemd-nspawn)")
    absent = [tool for tool in ("systemd-nspawn", "debootstrap", "apt-cacher-ng") if shutil.which(tool) is None]
    if absent:
        missing("host-tools", f"real hosts need {', '.join(absent)}, not on PATH")
    return HostManager(state_dir, _cache_dir())


def _traces(host: HostInfo, manager: HostManager) -> list[str]:
    """What still exists of a destroyed host: namespace, veth, mounts, process, files."""
    found = []
    if Path("/run/netns", NETNS_PREFIX + host.name).exists():
        found.append("netns")
    if Path("/sys/class/net", VETH_PREFIX + host.name).exists():
        found.append("veth")
    host_dir = manager.state_dir / "hosts" / host.name
    if any(line.split()[1].startswith(str(host_dir)) for line in Path("/proc/mounts").read_text().splitlines()):
        found.append("mount")
    if host.pid is not None and Path("/proc", str(host.pid)).exists():
        found.append(f"process {host.pid}")
    if host_dir.exists():
        found.append("state directory")
    return found


@pytest.fixture(scope="module")
def ssh(tmp_path_factory: pytest.TempPathFactory) -> Ssh:
    key = tmp_path_factory.mktemp("ssh") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return Ssh(key, key.with_suffix(".pub").read_text())


@pytest.fixture(scope="module")
def manager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostManager]:
    manager = _manager(tmp_path_factory.mktemp("devcloud"))
    try:
        yield manager
    finally:
        manager.destroy_all()


@pytest.fixture(scope="module")
def hosts(manager: HostManager, ssh: Ssh) -> list[HostInfo]:
    """Two hosts on one network, booted at the same time as Nova would for two servers."""
    def create(number: int) -> HostInfo:
        return manager.create(f"t{number}", address=f"10.79.250.{10 + number}/24", gateway=GATEWAY,
                              network_id=NETWORK_ID, public_key=ssh.public_key, hostname=f"web-{number}")

    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(create, (1, 2)))


def test_hosts_are_booted_debian_machines_reachable_over_ssh(hosts: list[HostInfo], ssh: Ssh) -> None:
    for host in hosts:
        result = ssh.run(host.ip, "uname -a; hostname; cat /etc/debian_version; systemctl is-system-running --wait;"
                                  " systemctl --failed --no-legend")
        assert result.returncode == 0, result.stdout + result.stderr
        uname, hostname, version, state = result.stdout.splitlines()[:4]
        assert uname.startswith("Linux ")
        assert hostname == host.hostname
        assert version.startswith("12.")
        assert state == "running", result.stdout  # degraded would list the failed units after it


def test_hosts_reach_each_other_on_their_network(hosts: list[HostInfo], ssh: Ssh) -> None:
    first, second = hosts
    result = ssh.run(first.ip, f"timeout 5 bash -c 'exec 3<>/dev/tcp/{second.ip}/22; head -c 4 <&3'")
    assert result.stdout == "SSH-", result.stderr


def test_apt_update_goes_through_the_proxy(hosts: list[HostInfo], ssh: Ssh) -> None:
    result = ssh.run(hosts[0].ip, "ip -4 route; apt-config dump Acquire::http::Proxy; apt-get update")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    # The host's only way off its network is the gateway, this machine, where the proxy address is local.
    assert lines[:3] == [f"default via {GATEWAY} dev eth0 ",
                         f"10.79.250.0/24 dev eth0 proto kernel scope link src {hosts[0].ip} ",
                         'Acquire::http::Proxy "http://10.77.0.1:3142";']
    assert not [line for line in lines if line.startswith(("Err:", "W:", "E:"))], result.stdout


def test_create_again_returns_the_running_host(manager: HostManager, hosts: list[HostInfo], ssh: Ssh) -> None:
    first = hosts[0]
    again = manager.create(first.name, address=first.address, gateway=first.gateway, network_id=first.network_id,
                           public_key=ssh.public_key, hostname=first.hostname)
    assert again == first
    assert {host.name: host.running for host in manager.list()} == {"t1": True, "t2": True}


def test_power_off_and_on_keeps_the_disk(manager: HostManager, hosts: list[HostInfo], ssh: Ssh) -> None:
    second = hosts[1]
    assert ssh.run(second.ip, "echo kept > /root/marker").returncode == 0
    manager.stop(second.name)
    assert not manager.is_running(second.name)
    assert ssh.run(second.ip, "true").returncode == 255
    started = manager.start(second.name)
    assert started.running and started.pid != second.pid
    assert ssh.run(second.ip, "cat /root/marker").stdout == "kept\n"


def test_destroy_leaves_no_trace_and_is_idempotent(manager: HostManager, hosts: list[HostInfo], ssh: Ssh) -> None:
    host = manager.create("t3", address="10.79.250.13/24", gateway=GATEWAY, network_id=NETWORK_ID,
                          public_key=ssh.public_key, hostname="db-1")
    assert ssh.run(host.ip, "true").returncode == 0
    manager.destroy("t3")
    assert _traces(host, manager) == []
    manager.destroy("t3")
    assert [info.name for info in manager.list()] == ["t1", "t2"]


def test_a_host_that_does_not_answer_ssh_fails_naming_itself_and_its_log(manager: HostManager, ssh: Ssh) -> None:
    host = manager.create("t4", address="10.79.250.14/24", gateway=GATEWAY, network_id=NETWORK_ID,
                          public_key=ssh.public_key, hostname="broken-1")
    manager.stop("t4")
    (host.state_dir / "root/etc/systemd/system/ssh.service").symlink_to("/dev/null")
    message = r"host t4 \(10\.79\.250\.14\) did not answer SSH within 1 s; see /.*/t4/console\.log"
    with pytest.raises(HostError, match=message):
        manager.start("t4", boot_timeout=1)
    assert not manager.is_running("t4")
    manager.destroy("t4")


def test_destroy_all_leaves_nothing_and_spares_other_managers(
    hosts: list[HostInfo], ssh: Ssh, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A second manager (as the dev cloud's beside the tests') shares the proxy; its destroy_all takes only its own."""
    other = _manager(tmp_path_factory.mktemp("other"))
    network_id = f"test-{uuid.uuid4().hex}"
    try:
        host = other.create("o1", address="10.79.251.10/24", gateway="10.79.251.1", network_id=network_id,
                            public_key=ssh.public_key, hostname="other-1")
        assert ssh.run(host.ip, "apt-get -q update >/dev/null && echo ok").stdout == "ok\n"
    finally:
        other.destroy_all()
    assert _traces(host, other) == []
    assert other.leftovers() == []
    assert not Path("/sys/class/net", bridge_name_for(network_id)).exists()
    other.destroy_all()
    for host in hosts:
        assert ssh.run(host.ip, "apt-get -q update >/dev/null && echo ok").stdout == "ok\n"


def test_destroy_all_of_the_module_manager(manager: HostManager, hosts: list[HostInfo]) -> None:
    """Last: takes the module's hosts down, as the fixture's teardown does when an earlier test fails."""
    current = manager.list()
    assert [host.name for host in current] == [host.name for host in hosts]
    manager.destroy_all()
    assert manager.leftovers() == []
    assert [trace for host in current for trace in _traces(host, manager)] == []
    assert not Path("/sys/class/net", bridge_name_for(NETWORK_ID)).exists()
    manager.destroy_all()


def test_a_killed_managers_network_does_not_block_its_range(ssh: Ssh, tmp_path_factory: pytest.TempPathFactory) -> None:
    """As after a machine session whose dev cloud was killed: its hosts' processes are gone, its bridge, veths and
    namespaces are not. A new cloud's network on the same range takes the range over."""
    killed = _manager(tmp_path_factory.mktemp("killed"))
    fresh = _manager(tmp_path_factory.mktemp("fresh"))
    old_network, new_network = f"test-{uuid.uuid4().hex}", f"test-{uuid.uuid4().hex}"
    try:
        old = killed.create("k1", address="10.79.252.10/24", gateway="10.79.252.1", network_id=old_network,
                            public_key=ssh.public_key, hostname="killed-1")
        in_namespace = subprocess.run(["ip", "netns", "pids", NETNS_PREFIX + old.name], capture_output=True,
                                      text=True, check=True).stdout.split()
        assert old.pid is not None
        for pid in [old.pid, *map(int, in_namespace)]:
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while killed.is_running("k1") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not killed.is_running("k1")
        assert Path("/sys/class/net", bridge_name_for(old_network)).exists()

        new = fresh.create("f1", address="10.79.252.20/24", gateway="10.79.252.1", network_id=new_network,
                           public_key=ssh.public_key, hostname="fresh-1")
        assert ssh.run(new.ip, "hostname").stdout == "fresh-1\n"
        assert not Path("/sys/class/net", bridge_name_for(old_network)).exists()
        assert not Path("/run/netns", NETNS_PREFIX + old.name).exists()

        # A running host's network is never taken over.
        with pytest.raises(HostError, match=r"host f2: subnet 10\.79\.252\.0/24 overlaps 10\.79\.252\.1/24 of cpn-"):
            killed.create("f2", address="10.79.252.30/24", gateway="10.79.252.1", network_id=old_network,
                          public_key=ssh.public_key, hostname="other-2")
    finally:
        killed.destroy_all()
        fresh.destroy_all()
    assert killed.leftovers() == [] and fresh.leftovers() == []
    assert not Path("/sys/class/net", bridge_name_for(new_network)).exists()
