"""Real Debian hosts on this machine: systemd-nspawn machines in network namespaces on Linux bridges.

Standard library only: nova-compute imports it from the dev cloud's own virtualenv (see compute_driver.py).

- Base root filesystem: debootstrap once into the cache, then every host is an overlayfs upper layer over it.
- Network: a bridge per Neutron network (`cpn-...`) holding the subnet's gateway address, a namespace
  and a veth pair per host; hosts reach the apt proxy at 10.77.0.1 (a local address of this machine).
- Every process is recorded with its PID and start time and stopped by it; every interface, namespace
  and mount carries the project's prefixes, so cleanup finds exactly what was created here.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

SUITE = "bookworm"
BASE_PACKAGES = ("openssh-server", "python3", "iproute2", "procps", "sudo", "ca-certificates", "apt-utils", "less",
                 "systemd", "systemd-sysv", "dbus", "python3-apt")
APT_PROXY_ADDRESS = "10.77.0.1"
APT_PROXY_PORT = 3142
SERVICE_INTERFACE = "cpsvc0"
BRIDGE_PREFIX = "cpn-"
HOST_PREFIX = "cph-"
VETH_PREFIX = "cpv-"
# Units that cannot work in a container or only slow its boot; masked so a host reports `running`.
MASKED_UNITS = ("console-getty.service", "getty@.service", "systemd-networkd-wait-online.service",
                "apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer", "e2scrub_reap.service",
                "fstrim.timer", "systemd-timesyncd.service", "sys-kernel-config.mount", "sys-kernel-debug.mount",
                "sys-kernel-tracing.mount")


class HostError(RuntimeError):
    """A host could not be built, booted or reached; the message says why and where the log is."""


@dataclass(frozen=True)
class HostInfo:
    name: str
    address: str  # with prefix length, e.g. 10.78.0.12/24
    gateway: str
    network_id: str
    hostname: str
    pid: int | None = None

    @property
    def ip(self) -> str:
        return self.address.split("/")[0]


def host_name_for(instance_uuid: str) -> str:
    """Machine and namespace name of a server's host: short (interface names have 15 characters) and unique."""
    return HOST_PREFIX + instance_uuid.replace("-", "")[:10]


def bridge_name_for(network_id: str) -> str:
    return BRIDGE_PREFIX + network_id.replace("-", "")[:11]


def _run(*argv: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)  # noqa: S603
    if check and result.returncode != 0:
        raise HostError(f"{' '.join(argv[:4])} failed: {result.stderr.strip() or result.stdout.strip()}")
    return result


def _start_time(pid: int) -> str | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


def _alive(pid_file: Path) -> int | None:
    """The PID recorded in `pid_file` when that very process still runs (PID and start time match)."""
    try:
        pid_text, started = pid_file.read_text().split()
    except (OSError, ValueError):
        return None
    return int(pid_text) if _start_time(int(pid_text)) == started else None


def _spawn(argv: list[str], log: Path, pid_file: Path) -> int:
    with log.open("ab") as out:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,  # noqa: S603
                                   start_new_session=True)
    pid_file.write_text(f"{process.pid} {_start_time(process.pid)}\n")
    return process.pid


def _stop(pid_file: Path, timeout: float) -> None:
    pid = _alive(pid_file)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid_file) == pid and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.05)
        if _alive(pid_file) == pid:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            while _alive(pid_file) == pid:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
                time.sleep(0.05)
    pid_file.unlink(missing_ok=True)


def _link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def _links(prefix: str) -> list[str]:
    return sorted(p.name for p in Path("/sys/class/net").iterdir() if p.name.startswith(prefix))


def _wait_for_ssh(address: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex((address, 22)) == 0 and sock.recv(4).startswith(b"SSH"):
                return True
        time.sleep(0.1)
    return False


class HostManager:
    """Hosts under `state_dir/<name>/`; the base root filesystem and the apt proxy's cache under `cache_dir`."""

    def __init__(self, state_dir: Path, cache_dir: Path) -> None:
        self.state_dir = state_dir
        self.cache_dir = cache_dir

    # -- base root filesystem ------------------------------------------------------------------------------
    @property
    def base_dir(self) -> Path:
        key = hashlib.sha256(f"{SUITE} {' '.join(BASE_PACKAGES)} {MASKED_UNITS} {APT_PROXY_ADDRESS}".encode())
        return self.cache_dir / "rootfs" / f"{SUITE}-{key.hexdigest()[:10]}"

    def ensure_base(self) -> Path:
        """debootstrap once (about 45 s), prepared for fast container boots; shared by every host."""
        base = self.base_dir
        if (base / "etc" / "os-release").exists():
            return base
        base.parent.mkdir(parents=True, exist_ok=True)
        with (base.parent / ".build.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if (base / "etc" / "os-release").exists():
                return base
            building = base.with_name(base.name + ".building")
            shutil.rmtree(building, ignore_errors=True)
            _run("debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", SUITE, str(building))
            self._prepare_base(building)
            building.rename(base)
        return base

    @staticmethod
    def _prepare_base(root: Path) -> None:
        for unit in MASKED_UNITS:
            (root / "etc/systemd/system" / unit).unlink(missing_ok=True)
            (root / "etc/systemd/system" / unit).symlink_to("/dev/null")
        (root / "etc/apt/apt.conf.d/01proxy").write_text(
            f'Acquire::http::Proxy "http://{APT_PROXY_ADDRESS}:{APT_PROXY_PORT}";\n')
        (root / "etc/ssh/sshd_config.d/controlplane.conf").write_text(
            "PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "UseDNS no\n")
        # Every host gets its own host keys and machine id in its upper layer.
        for key in (root / "etc/ssh").glob("ssh_host_*"):
            key.unlink()
        (root / "etc/machine-id").write_text("")
        (root / "etc/resolv.conf").unlink(missing_ok=True)
        (root / "etc/resolv.conf").write_text("")

    # -- apt proxy -----------------------------------------------------------------------------------------
    def ensure_apt_proxy(self) -> None:
        """apt-cacher-ng on 10.77.0.1:3142, a plain caching proxy (hosts have no route out of this machine)."""
        if not _link_exists(SERVICE_INTERFACE):
            # A bridge without ports: this kernel has no dummy interfaces, bridges work everywhere here.
            _run("ip", "link", "add", SERVICE_INTERFACE, "type", "bridge")
        if APT_PROXY_ADDRESS not in _run("ip", "-4", "addr", "show", "dev", SERVICE_INTERFACE).stdout:
            _run("ip", "addr", "add", f"{APT_PROXY_ADDRESS}/32", "dev", SERVICE_INTERFACE)
        _run("ip", "link", "set", SERVICE_INTERFACE, "up")
        run_dir = self.state_dir / "apt-proxy"
        run_dir.mkdir(parents=True, exist_ok=True)
        pid_file = run_dir / "pid"
        if _alive(pid_file) is not None:
            return
        cache = self.cache_dir / "apt-cacher-ng"
        cache.mkdir(parents=True, exist_ok=True)
        conf = run_dir / "conf"
        conf.mkdir(exist_ok=True)
        (conf / "acng.conf").write_text(
            f"CacheDir: {cache}\nLogDir: {run_dir}\nPort: {APT_PROXY_PORT}\nBindAddress: {APT_PROXY_ADDRESS}\n"
            f"SocketPath: {run_dir / 'socket'}\nExThreshold: 4\nVerboseLog: 0\n"
        )
        _spawn(["apt-cacher-ng", "-c", str(conf), "ForeGround=1"], run_dir / "apt-cacher-ng.log", pid_file)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                sock.settimeout(0.5)
                if sock.connect_ex((APT_PROXY_ADDRESS, APT_PROXY_PORT)) == 0:
                    return
            time.sleep(0.1)
        raise HostError(f"apt-cacher-ng did not start; see {run_dir / 'apt-cacher-ng.log'}")

    def stop_apt_proxy(self) -> None:
        _stop(self.state_dir / "apt-proxy" / "pid", timeout=5)
        if _link_exists(SERVICE_INTERFACE):
            _run("ip", "link", "del", SERVICE_INTERFACE, check=False)

    # -- hosts ---------------------------------------------------------------------------------------------
    def _dir(self, name: str) -> Path:
        return self.state_dir / name

    def create(self, name: str, *, address: str, gateway: str, network_id: str, public_key: str | None,
               hostname: str, boot_timeout: float = 60) -> HostInfo:
        """Boot a host (idempotent: a running host is returned as it is) and wait until SSH answers."""
        if not name.startswith(HOST_PREFIX) or len(name) > 14:
            raise HostError(f"host name {name!r} must start with {HOST_PREFIX!r} and have at most 14 characters")
        interface = ipaddress.ip_interface(address)
        info = HostInfo(name, address, gateway, network_id, hostname)
        host_dir = self._dir(name)
        if (pid := _alive(host_dir / "pid")) is not None:
            return HostInfo(**{**asdict(info), "pid": pid})
        root = host_dir / "root"
        if not (os.path.ismount(root) and Path("/run/netns", name).exists()):
            self.destroy(name)  # a half-built host is rebuilt from scratch; a powered-off one keeps its disk
            base = self.ensure_base()
            self.ensure_apt_proxy()
            host_dir.mkdir(parents=True)
            (host_dir / "host.json").write_text(json.dumps(asdict(info)))
            for directory in ("upper", "work", "root"):
                (host_dir / directory).mkdir()
            _run("mount", "-t", "overlay", "overlay", "-o",
                 f"lowerdir={base},upperdir={host_dir / 'upper'},workdir={host_dir / 'work'}", str(root))
            self._personalise(root, info, public_key)
            self._wire(name, interface, gateway, network_id)
        pid = _spawn(["systemd-nspawn", "-q", "-D", str(root), "-M", name, "--register=no", "--keep-unit",
                      f"--network-namespace-path=/run/netns/{name}", "-b"], host_dir / "console.log", host_dir / "pid")
        if not _wait_for_ssh(info.ip, boot_timeout):
            alive = _alive(host_dir / "pid") is not None
            self.destroy(name)
            raise HostError(f"host {name} ({info.ip}) {'did not answer SSH' if alive else 'stopped while booting'} "
                            f"within {boot_timeout:.0f} s")
        return HostInfo(**{**asdict(info), "pid": pid})

    @staticmethod
    def _personalise(root: Path, info: HostInfo, public_key: str | None) -> None:
        (root / "etc/hostname").write_text(info.hostname + "\n")
        (root / "etc/hosts").write_text(f"127.0.0.1 localhost\n{info.ip} {info.hostname}\n")
        (root / "etc/machine-id").write_text(secrets.token_hex(16) + "\n")
        _run("ssh-keygen", "-A", "-f", str(root))
        ssh_dir = root / "root/.ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        (ssh_dir / "authorized_keys").write_text((public_key.strip() + "\n") if public_key else "")
        (ssh_dir / "authorized_keys").chmod(0o600)

    @staticmethod
    def _wire(name: str, interface: ipaddress.IPv4Interface | ipaddress.IPv6Interface, gateway: str,
              network_id: str) -> None:
        bridge = bridge_name_for(network_id)
        if not _link_exists(bridge):
            _run("ip", "link", "add", bridge, "type", "bridge")
        gateway_cidr = f"{gateway}/{interface.network.prefixlen}"
        if f" {gateway_cidr} " not in _run("ip", "-4", "addr", "show", "dev", bridge).stdout:
            _run("ip", "addr", "add", gateway_cidr, "dev", bridge)
        _run("ip", "link", "set", bridge, "up")
        veth = VETH_PREFIX + name.removeprefix(HOST_PREFIX)
        _run("ip", "netns", "add", name)
        _run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", name)
        _run("ip", "link", "set", veth, "master", bridge, "up")
        for argv in (("ip", "link", "set", "lo", "up"), ("ip", "addr", "add", str(interface), "dev", "eth0"),
                     ("ip", "link", "set", "eth0", "up"), ("ip", "route", "add", "default", "via", gateway)):
            _run("ip", "netns", "exec", name, *argv)

    def stop(self, name: str) -> None:
        """Power a host off (SIGTERM lets systemd shut down cleanly) but keep its disk."""
        _stop(self._dir(name) / "pid", timeout=15)

    def destroy(self, name: str) -> None:
        """Power off and remove a host: process, mount, namespace, veth and its files. Unknown hosts are fine."""
        host_dir = self._dir(name)
        self.stop(name)
        root = host_dir / "root"
        if os.path.ismount(root):
            _run("umount", str(root), check=False)
            if os.path.ismount(root):
                _run("umount", "-l", str(root))
        if Path("/run/netns", name).exists():
            _run("ip", "netns", "del", name)
        veth = VETH_PREFIX + name.removeprefix(HOST_PREFIX)
        if _link_exists(veth):
            _run("ip", "link", "del", veth, check=False)
        shutil.rmtree(host_dir, ignore_errors=True)

    def hosts(self) -> list[HostInfo]:
        if not self.state_dir.exists():
            return []
        hosts = []
        for meta in sorted(self.state_dir.glob(f"{HOST_PREFIX}*/host.json")):
            info = json.loads(meta.read_text())
            hosts.append(HostInfo(**{**info, "pid": _alive(meta.parent / "pid")}))
        return hosts

    def is_running(self, name: str) -> bool:
        return _alive(self._dir(name) / "pid") is not None

    def destroy_all(self) -> None:
        """Every host, then the bridges left without hosts, then the apt proxy: nothing of ours remains."""
        for host_dir in sorted(self.state_dir.glob(f"{HOST_PREFIX}*")) if self.state_dir.exists() else []:
            self.destroy(host_dir.name)
        for bridge in _links(BRIDGE_PREFIX):
            if not any(Path("/sys/class/net", bridge, "brif").iterdir()):
                _run("ip", "link", "del", bridge, check=False)
        self.stop_apt_proxy()

    def leftovers(self) -> list[str]:
        """What of ours still exists (after destroy_all this is empty): processes, mounts, namespaces, links."""
        found = [f"host {h.name} (pid {h.pid})" for h in self.hosts() if h.pid is not None]
        mounts = Path("/proc/mounts").read_text().splitlines()
        found += [f"mount {line.split()[1]}" for line in mounts if line.split()[1].startswith(str(self.state_dir))]
        netns = Path("/run/netns")
        if netns.exists():
            found += [f"netns {p.name}" for p in netns.iterdir() if p.name.startswith(HOST_PREFIX)]
        found += [f"link {name}" for name in (*_links(BRIDGE_PREFIX), *_links(VETH_PREFIX), *_links(SERVICE_INTERFACE))]
        if _alive(self.state_dir / "apt-proxy" / "pid") is not None:
            found.append("apt-cacher-ng")
        return found
