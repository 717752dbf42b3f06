"""Real Debian hosts on this machine: systemd-nspawn machines, each in its own network namespace.

Standard library only: the control plane imports this module, and so does nova-compute from the dev cloud's own
virtualenv (controlplane.devcloud.nova_driver).
A host's firewall is a table of nftables rules in its namespace (controlplane.devcloud.firewall), loaded through
`before_boot` before the host first runs and replaced by `apply_firewall`; the hosts run without CAP_NET_ADMIN, so
they cannot change it. Whether a host has booted is asked from inside its namespace, which its firewall leaves alone.

On disk:
- `<cache_dir>/rootfs/bookworm-<hash>`: the debootstrap base, the read-only lower layer of every host;
- `<cache_dir>/apt-cacher-ng`: the apt proxy's package cache;
- `<state_dir>/hosts/<name>/`: a host's own disk (`upper/`, `work/`), its root mountpoint (`root/`), `host.json`,
  `nspawn.pid` and `console.log`;
- `<state_dir>/apt-proxy/`: the apt proxy's configuration, logs and pid file.
On the network: a bridge `cpn-<network id>` per Neutron network holding the subnet's gateway address, per host a
namespace `cph-<name>` and a veth pair (`cpv-<name>` on the bridge, `eth0` inside), and the port-less bridge `cpsvc0`
holding 10.77.0.1, where the apt proxy listens. Hosts route only to this machine, which does not NAT for them:
Debian's mirror is reached through the proxy.
Processes are recorded with their PID and start time and stopped by those only; interfaces and namespaces carry the
prefixes above, so cleanup finds exactly what was created here.
"""

from __future__ import annotations

import builtins
import contextlib
import ctypes
import dataclasses
import fcntl
import hashlib
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from controlplane.devcloud.firewall import FAMILY as FIREWALL_FAMILY
from controlplane.devcloud.firewall import TABLE as FIREWALL_TABLE

SUITE = "bookworm"
BASE_PACKAGES = ("openssh-server", "python3", "iproute2", "procps", "sudo", "ca-certificates", "apt-utils", "less",
                 "systemd", "systemd-sysv", "dbus", "python3-apt")
APT_PROXY_ADDRESS = "10.77.0.1"
APT_PROXY_PORT = 3142
SERVICE_INTERFACE = "cpsvc0"
BRIDGE_PREFIX = "cpn-"
NETNS_PREFIX = "cph-"
VETH_PREFIX = "cpv-"
MASKED_UNITS = (
    # No one logs in on the console: nspawn's console is a read-only log here.
    "console-getty.service", "getty@.service",
    # Unattended apt runs would take the dpkg lock from under Ansible's apt tasks at random times.
    "apt-daily.timer", "apt-daily-upgrade.timer",
    # A container has no block devices or LVM volumes to trim or scrub.
    "fstrim.timer", "e2scrub_all.timer", "e2scrub_reap.service",
    # eth0 is configured from outside; a role enabling systemd-networkd would otherwise wait minutes at boot.
    "systemd-networkd-wait-online.service",
)
SSHD_CONFIG = "PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
APT_PROXY_CONFIG = f'Acquire::http::Proxy "http://{APT_PROXY_ADDRESS}:{APT_PROXY_PORT}";\n'
SOURCES_LIST = (f"deb http://deb.debian.org/debian {SUITE} main\n"
                f"deb http://deb.debian.org/debian {SUITE}-updates main\n"
                f"deb http://deb.debian.org/debian-security {SUITE}-security main\n")
# Up to 11 characters: the veth `cpv-<name>` must fit in an interface name (15 characters).
_HOST_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,9}[a-z0-9])?")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*")


class HostError(RuntimeError):
    """A host or the apt proxy could not be built, booted, reached or removed; the message says which and why."""


@dataclasses.dataclass(frozen=True)
class HostInfo:
    """A host as its HostManager knows it."""

    name: str
    address: str  # with its prefix length, e.g. 10.78.0.5/24
    gateway: str
    network_id: str
    hostname: str
    state_dir: Path
    pid: int | None  # the systemd-nspawn process while the host runs

    @property
    def ip(self) -> str:
        return self.address.split("/")[0]

    @property
    def running(self) -> bool:
        return self.pid is not None


def host_name_for(instance_uuid: str) -> str:
    """A server's host name: short enough for interface names, unique in practice (44 bits of the UUID)."""
    return instance_uuid.replace("-", "").lower()[:11]


def bridge_name_for(network_id: str) -> str:
    key = re.sub(r"[^a-z0-9]", "", network_id.lower())[:11]
    if not key:
        raise HostError(f"network id {network_id!r} has no letters or digits to name a bridge after")
    return BRIDGE_PREFIX + key


def _run(*argv: str, timeout: float = 60, stdin: str | None = None) -> str:
    try:
        result = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout,  # noqa: S603
                                check=False)
    except subprocess.TimeoutExpired as exc:
        raise HostError(f"`{' '.join(argv)}` did not finish within {timeout:.0f} s") from exc
    if result.returncode != 0:
        raise HostError(f"`{' '.join(argv)}` failed: {(result.stderr or result.stdout).strip()[-2000:]}")
    return result.stdout


def _link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def _links(prefix: str) -> builtins.list[str]:
    return sorted(path.name for path in Path("/sys/class/net").iterdir() if path.name.startswith(prefix))


def _ensure_link(name: str, *kind: str) -> None:
    """`ip link add` that tolerates a concurrent creator of the same link."""
    if not _link_exists(name):
        try:
            _run("ip", "link", "add", name, *kind)
        except HostError:
            if not _link_exists(name):
                raise


def _delete_link(name: str) -> None:
    """`ip link del` that tolerates the link vanishing meanwhile (a namespace being deleted takes its veths)."""
    if _link_exists(name):
        try:
            _run("ip", "link", "del", name)
        except HostError:
            if _link_exists(name):
                raise


def _netns_exists(netns: str) -> bool:
    return Path("/run/netns", netns).exists()


def _delete_netns(netns: str) -> None:
    """`ip netns del` that tolerates the namespace vanishing meanwhile."""
    if _netns_exists(netns):
        try:
            _run("ip", "netns", "del", netns)
        except HostError:
            if _netns_exists(netns):
                raise


def _netns_in_use(netns: str) -> bool:
    """Whether any process lives in the namespace (a booted host's init does)."""
    try:
        return bool(_run("ip", "netns", "pids", netns).strip())
    except HostError:
        return _netns_exists(netns)  # gone meanwhile is free; a namespace that cannot be asked is not


def _release_abandoned_bridge(bridge: str) -> bool:
    """Remove one of our bridges, with the wiring of the hosts on it, when none of them runs; False when one does.

    Such a bridge belongs to a deleted network, or to hosts whose processes were killed without a shutdown (a dev
    cloud whose machine session ended): its range is free again. A powered-off host of ours that was on it is
    wired afresh by its next start.
    """
    try:
        ports = [port.name for port in Path("/sys/class/net", bridge, "brif").iterdir()]
    except FileNotFoundError:
        return True  # another host's wiring released it meanwhile
    names = [port.removeprefix(VETH_PREFIX) for port in ports]
    if any(not port.startswith(VETH_PREFIX) for port in ports) or any(_netns_in_use(NETNS_PREFIX + n) for n in names):
        return False
    for name in names:
        _delete_link(VETH_PREFIX + name)
        _delete_netns(NETNS_PREFIX + name)
    _delete_link(bridge)
    return True


def _mounted(path: Path) -> bool:
    return os.path.ismount(path)


def _answers(address: str, port: int, banner: bytes = b"") -> bool:
    try:
        with socket.create_connection((address, port), timeout=1) as sock:
            return not banner or sock.recv(len(banner)) == banner
    except OSError:
        return False


def ssh_answers(address: str) -> bool:
    """A dev cloud server's SSH says hello at `address`, reached from this machine (through its firewall)."""
    return _answers(address, 22, banner=b"SSH-")


_CLONE_NEWNET = 0x40000000


def _socket_in(netns: str) -> socket.socket:
    """A TCP socket of the namespace `netns`: this thread enters it only to create the socket, which stays there."""
    libc = ctypes.CDLL(None, use_errno=True)
    with open("/proc/thread-self/ns/net") as own, open(f"/run/netns/{netns}") as target:
        if libc.setns(target.fileno(), _CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"cannot enter network namespace {netns}")
        try:
            return socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        finally:
            if libc.setns(own.fileno(), _CLONE_NEWNET) != 0:
                # A thread left in a host's namespace would reach the host instead of this machine: stop here.
                os.write(2, f"cannot leave network namespace {netns}\n".encode())
                os._exit(70)


def _answers_inside(netns: str, address: str, port: int, banner: bytes) -> bool:
    """Whether the host answers at its own address from inside its namespace, where its firewall does not filter."""
    try:
        with _socket_in(netns) as sock:
            sock.settimeout(1)
            sock.connect((address, port))
            return sock.recv(len(banner)) == banner
    except OSError:
        return False


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock across processes, polled rather than blocking so green threads in one process still run."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                time.sleep(0.2)
        yield


# -- processes: recorded as "PID start-time" so that a recycled PID is never mistaken for ours -----------------------
def _start_time(pid: int) -> str | None:
    """The start time of a live (not zombie) process, None when there is none."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


def _recorded(pid_file: Path) -> int | None:
    """The PID in `pid_file` when that very process still runs."""
    try:
        pid_text, started = pid_file.read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    return pid if _start_time(pid) == started else None


def _spawn(argv: builtins.list[str], log: Path, pid_file: Path) -> int:
    """Start a process in its own session (it outlives its starter, e.g. nova-compute) and record it."""
    with log.open("ab") as out:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,  # noqa: S603
                                   start_new_session=True)
    pid_file.write_text(f"{process.pid} {_start_time(process.pid)}\n")
    return process.pid


def _children(pid: int) -> dict[int, str]:
    """Live direct children of a process, with their start times."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                started = _start_time(int(stat.parent.name))
                if started is not None:
                    children[int(stat.parent.name)] = started
    return children


def _wait_gone(pid_file: Path, pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        gone = _recorded(pid_file) != pid
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reaps it when this process started it: no zombie is left behind
        if gone:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def _terminate(pid_file: Path, timeout: float) -> None:
    """SIGTERM the recorded process; SIGKILL it and its direct children (a container's init) after `timeout`."""
    pid = _recorded(pid_file)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        if not _wait_gone(pid_file, pid, timeout):
            # Killing nspawn alone would leave the container running under PID 1: its init goes first.
            children = _children(pid)
            for child in children:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            # A container's init dies last in its namespace: until then its sshd may still answer at the address.
            deadline = time.monotonic() + 10
            while any(_start_time(child) == started for child, started in children.items()):
                if time.monotonic() > deadline:
                    raise HostError(f"the children {sorted(children)} of process {pid} survived SIGKILL")
                time.sleep(0.02)
            if not _wait_gone(pid_file, pid, 10):
                raise HostError(f"process {pid} ({pid_file}) survived SIGKILL")
    pid_file.unlink(missing_ok=True)


# -- the manager ------------------------------------------------------------------------------------------------------
class HostManager:
    """Hosts and the apt proxy under `state_dir`; the base root filesystem and the package cache under `cache_dir`."""

    def __init__(self, state_dir: Path, cache_dir: Path,
                 before_boot: Callable[[HostInfo], None] | None = None) -> None:
        self.state_dir = state_dir.absolute()
        self.cache_dir = cache_dir.absolute()
        # Called with a host once its namespace is wired, before it boots (the dev cloud loads its firewall there).
        self.before_boot = before_boot
        for path in (self.state_dir, self.cache_dir):
            if any(char in str(path) for char in ",:"):
                raise HostError(f"{path} must be free of ',' and ':': it goes into overlay mount options")

    # -- base root filesystem ---------------------------------------------------------------------------------------
    @property
    def base_dir(self) -> Path:
        """Keyed by everything that shapes the base, so a changed recipe builds a new base beside the old one."""
        recipe = json.dumps([SUITE, BASE_PACKAGES, MASKED_UNITS, SSHD_CONFIG, APT_PROXY_CONFIG, SOURCES_LIST])
        return self.cache_dir / "rootfs" / f"{SUITE}-{hashlib.sha256(recipe.encode()).hexdigest()[:10]}"

    def ensure_base(self) -> Path:
        """debootstrap once (about 45 s, 300 MB), prepared for fast container boots; every host shares it."""
        base = self.base_dir
        if base.is_dir():
            return base
        with _locked(base.parent / f".{base.name}.lock"):
            if base.is_dir():
                return base
            for stale in base.parent.glob(f".{base.name}.build-*"):  # an interrupted build of this very base
                shutil.rmtree(stale)
            building = Path(tempfile.mkdtemp(prefix=f".{base.name}.build-", dir=base.parent))
            try:
                building.chmod(0o755)  # it becomes the hosts' /
                _run("debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", SUITE, str(building),
                     timeout=1800)
                self._prepare_base(building)
                building.rename(base)
            except BaseException:
                shutil.rmtree(building, ignore_errors=True)
                raise
        return base

    @staticmethod
    def _prepare_base(root: Path) -> None:
        for unit in MASKED_UNITS:
            link = root / "etc/systemd/system" / unit
            link.unlink(missing_ok=True)
            link.symlink_to("/dev/null")
        (root / "etc/ssh/sshd_config.d/controlplane.conf").write_text(SSHD_CONFIG)
        for key in (root / "etc/ssh").glob("ssh_host_*"):  # every host gets its own
            key.unlink()
        (root / "etc/apt/apt.conf.d/01controlplane-proxy").write_text(APT_PROXY_CONFIG)
        (root / "etc/apt/sources.list").write_text(SOURCES_LIST)
        # debootstrap copied this machine's resolver; hosts reach no name server (apt's proxy resolves for them).
        (root / "etc/resolv.conf").unlink(missing_ok=True)
        (root / "etc/resolv.conf").write_text("")

    # -- apt proxy --------------------------------------------------------------------------------------------------
    @property
    def _proxy_dir(self) -> Path:
        return self.state_dir / "apt-proxy"

    def ensure_apt_proxy(self) -> None:
        """apt-cacher-ng on 10.77.0.1:3142, a plain caching proxy; a proxy another HostManager runs there is shared."""
        # A bridge without ports holds the address like a dummy interface would; some kernels lack CONFIG_DUMMY.
        _ensure_link(SERVICE_INTERFACE, "type", "bridge")
        _run("ip", "addr", "replace", f"{APT_PROXY_ADDRESS}/32", "dev", SERVICE_INTERFACE)
        _run("ip", "link", "set", SERVICE_INTERFACE, "up")
        run_dir = self._proxy_dir
        pid_file = run_dir / "pid"
        with _locked(run_dir / "lock"):
            if _recorded(pid_file) is not None or _answers(APT_PROXY_ADDRESS, APT_PROXY_PORT):
                return
            cache = self.cache_dir / "apt-cacher-ng"
            cache.mkdir(parents=True, exist_ok=True)
            conf = run_dir / "conf"
            conf.mkdir(exist_ok=True)
            # No Remap lines: every request goes to the origin the host asked for, and is cached.
            (conf / "acng.conf").write_text(
                f"CacheDir: {cache}\nLogDir: {run_dir}\nPort: {APT_PROXY_PORT}\nBindAddress: {APT_PROXY_ADDRESS}\n"
                f"SocketPath: {run_dir / 'socket'}\nExThreshold: 4\n")
            log = run_dir / "apt-cacher-ng.out"
            _spawn(["apt-cacher-ng", "-c", str(conf), "ForeGround=1"], log, pid_file)
            deadline = time.monotonic() + 10
            while not _answers(APT_PROXY_ADDRESS, APT_PROXY_PORT):
                if _recorded(pid_file) is None or time.monotonic() > deadline:
                    _terminate(pid_file, timeout=2)
                    raise HostError(f"apt-cacher-ng did not listen on {APT_PROXY_ADDRESS}:{APT_PROXY_PORT}; see {log}")
                time.sleep(0.05)

    def stop_apt_proxy(self) -> None:
        """Stop the proxy this manager started; the service address goes too unless another proxy still uses it."""
        _terminate(self._proxy_dir / "pid", timeout=5)
        # Asked only while the address is local: otherwise the question would leave this machine.
        if _link_exists(SERVICE_INTERFACE) and not _answers(APT_PROXY_ADDRESS, APT_PROXY_PORT):
            _delete_link(SERVICE_INTERFACE)

    # -- hosts ------------------------------------------------------------------------------------------------------
    def _host_dir(self, name: str) -> Path:
        if not _HOST_NAME.fullmatch(name):
            raise HostError(f"host name {name!r} must be 1-11 lowercase letters, digits or inner '-'")
        return self.state_dir / "hosts" / name

    def _names(self) -> builtins.list[str]:
        hosts_dir = self.state_dir / "hosts"
        names = (path.name for path in hosts_dir.iterdir()) if hosts_dir.is_dir() else ()
        return sorted(name for name in names if _HOST_NAME.fullmatch(name))

    def get(self, name: str) -> HostInfo | None:
        """The host of that name; None when there is none or it is only half-built."""
        host_dir = self._host_dir(name)
        try:
            meta = json.loads((host_dir / "host.json").read_text())
        except (OSError, ValueError):
            return None
        return HostInfo(name=name, address=meta["address"], gateway=meta["gateway"], network_id=meta["network_id"],
                        hostname=meta["hostname"], state_dir=host_dir, pid=_recorded(host_dir / "nspawn.pid"))

    def create(self, name: str, *, address: str, gateway: str, network_id: str, public_key: str | None,
               hostname: str, boot_timeout: float = 60) -> HostInfo:
        """Build and boot a host; return once its SSH answers.

        Idempotent: the same host again is returned as it is (booted if it was powered off, with its disk); a host
        of that name with another address, network or hostname is replaced.
        """
        try:
            interface = ipaddress.ip_interface(address)
            ipaddress.ip_address(gateway)
        except ValueError as exc:
            raise HostError(f"host {name}: {exc}") from exc
        if interface.version != 4 or interface.network.prefixlen == 32:
            raise HostError(f"host {name}: {address} must be an IPv4 address with the subnet's prefix length")
        if not _HOSTNAME.fullmatch(hostname):
            raise HostError(f"host {name}: {hostname!r} is not a valid hostname")
        spec = {"address": str(interface), "gateway": gateway, "network_id": network_id, "hostname": hostname}
        known = self.get(name)
        if known is not None and spec == {"address": known.address, "gateway": known.gateway,
                                          "network_id": known.network_id, "hostname": known.hostname}:
            return self.start(name, boot_timeout=boot_timeout)
        self.destroy(name)
        base = self.ensure_base()
        host_dir = self._host_dir(name)
        for part in ("upper", "work", "root"):
            (host_dir / part).mkdir(parents=True)
        self._mount(host_dir, base)
        self._personalise(host_dir / "root", hostname=hostname, ip=str(interface.ip), public_key=public_key)
        # Written last: a host without host.json is half-built, and the next create() builds it afresh.
        (host_dir / "host.json").write_text(json.dumps({**spec, "base": str(base)}, indent=1) + "\n")
        return self.start(name, boot_timeout=boot_timeout)

    @staticmethod
    def _mount(host_dir: Path, base: Path) -> None:
        _run("mount", "-t", "overlay", "overlay", "-o",
             f"lowerdir={base},upperdir={host_dir / 'upper'},workdir={host_dir / 'work'}", str(host_dir / "root"))

    @staticmethod
    def _personalise(root: Path, *, hostname: str, ip: str, public_key: str | None) -> None:
        (root / "etc/hostname").write_text(hostname + "\n")
        (root / "etc/hosts").write_text(f"127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n"
                                        f"{ip} {hostname}\n")
        # A machine id of its own; never empty, which systemd would treat as a first boot (preset-all).
        (root / "etc/machine-id").write_text(secrets.token_hex(16) + "\n")
        _run("ssh-keygen", "-A", "-f", str(root))
        ssh_dir = root / "root/.ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        authorized = ssh_dir / "authorized_keys"
        authorized.write_text(public_key.strip() + "\n" if public_key else "")
        authorized.chmod(0o600)

    def start(self, name: str, *, boot_timeout: float = 60) -> HostInfo:
        """Boot a created host with its disk (a running one is returned as it is); return once its SSH answers."""
        info = self.get(name)
        if info is None:
            raise HostError(f"host {name} does not exist in {self.state_dir / 'hosts'}")
        if info.running:
            return info
        host_dir = info.state_dir
        meta = json.loads((host_dir / "host.json").read_text())
        self.ensure_apt_proxy()
        if not _mounted(host_dir / "root"):
            self._mount(host_dir, Path(meta["base"]))
        netns = NETNS_PREFIX + name
        self._wire(name, ipaddress.ip_interface(info.address), info.gateway, info.network_id)
        if self.before_boot is not None:
            self.before_boot(info)
        pid_file, log = host_dir / "nspawn.pid", host_dir / "console.log"
        pid = _spawn(["systemd-nspawn", "-q", "-D", str(host_dir / "root"), "-M", name, "--register=no",
                      "--keep-unit", f"--network-namespace-path=/run/netns/{netns}", "--console=read-only",
                      # nspawn's default already; said here because the host's firewall lives in its namespace.
                      "--drop-capability=CAP_NET_ADMIN", "--resolv-conf=off", "-b"],
                     log, pid_file)
        deadline = time.monotonic() + boot_timeout
        # Asked from inside: whether this machine may reach the host is up to its security groups.
        while not _answers_inside(netns, info.ip, 22, banner=b"SSH-"):
            if _recorded(pid_file) != pid:
                raise HostError(f"host {name} ({info.ip}) stopped while booting; see {log}")
            if time.monotonic() > deadline:
                _terminate(pid_file, timeout=5)
                raise HostError(f"host {name} ({info.ip}) did not answer SSH within {boot_timeout:.0f} s; see {log}")
            time.sleep(0.05)
        return dataclasses.replace(info, pid=pid)

    @staticmethod
    def _wire(name: str, interface: ipaddress.IPv4Interface | ipaddress.IPv6Interface, gateway: str,
              network_id: str) -> None:
        bridge = bridge_name_for(network_id)
        gateway_cidr = f"{gateway}/{interface.network.prefixlen}"
        # A subnet overlapping one this machine already has (its own LAN, another network's bridge) would take over
        # the machine's routes to it.
        for line in _run("ip", "-o", "-4", "addr", "show").splitlines():
            device, cidr = line.split()[1], line.split()[3]
            if device != bridge and ipaddress.ip_network(cidr, strict=False).overlaps(interface.network):
                if device.startswith(BRIDGE_PREFIX) and _release_abandoned_bridge(device):
                    continue
                raise HostError(f"host {name}: subnet {interface.network} overlaps {cidr} of {device} on this machine")
        _ensure_link(bridge, "type", "bridge")
        _run("ip", "addr", "replace", gateway_cidr, "dev", bridge)
        _run("ip", "link", "set", bridge, "up")
        netns, veth = NETNS_PREFIX + name, VETH_PREFIX + name
        if not _netns_exists(netns):
            _run("ip", "netns", "add", netns)
        if not _link_exists(veth):
            _run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
        _run("ip", "link", "set", veth, "master", bridge, "up")
        _run("ip", "-n", netns, "link", "set", "lo", "up")
        _run("ip", "-n", netns, "addr", "replace", str(interface), "dev", "eth0")
        _run("ip", "-n", netns, "link", "set", "eth0", "up")
        _run("ip", "-n", netns, "route", "replace", "default", "via", gateway)

    def stop(self, name: str, *, timeout: float = 10) -> None:
        """Power a host off (SIGTERM: systemd shuts down cleanly; SIGKILL after `timeout`); its disk stays."""
        _terminate(self._host_dir(name) / "nspawn.pid", timeout=timeout)

    def destroy(self, name: str) -> None:
        """Power off and remove a host: process, mount, namespace, veth and files. An unknown host is fine."""
        host_dir = self._host_dir(name)
        self.stop(name)
        root = host_dir / "root"
        if _mounted(root):
            try:
                _run("umount", str(root))
            except HostError:
                _run("umount", "--lazy", str(root))  # still busy right after poweroff: detach now, free when idle
        _delete_link(VETH_PREFIX + name)  # and its peer, eth0 in the namespace
        _delete_netns(NETNS_PREFIX + name)
        if host_dir.exists():
            shutil.rmtree(host_dir)

    # -- firewall: a table of nftables rules in the host's namespace ----------------------------------------------
    def has_network(self, name: str) -> bool:
        """Whether the host's namespace is wired (from its first boot until it is destroyed)."""
        return _netns_exists(NETNS_PREFIX + name) and _link_exists(VETH_PREFIX + name)

    def apply_firewall(self, name: str, script: str) -> str:
        """Load an nft script in the host's namespace (one transaction); return the table as the kernel lists it."""
        self._host_dir(name)  # checks the name
        _run("ip", "netns", "exec", NETNS_PREFIX + name, "nft", "-f", "-", stdin=script)
        return self.firewall_listing(name)

    def firewall_listing(self, name: str) -> str:
        """Our table as the kernel lists it; empty when the namespace has none."""
        netns, table = NETNS_PREFIX + name, f"{FIREWALL_FAMILY} {FIREWALL_TABLE}"
        self._host_dir(name)
        if not _netns_exists(netns):
            raise HostError(f"host {name} has no network namespace")
        argv = ["ip", "netns", "exec", netns, "nft", "list", "table", *table.split()]
        try:
            listing = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)  # noqa: S603
        except subprocess.TimeoutExpired as exc:
            raise HostError(f"host {name}: `nft list table {table}` did not finish within 30 s") from exc
        if listing.returncode != 0:
            if "No such file or directory" in listing.stderr:
                return ""
            raise HostError(f"host {name}: `nft list table {table}` failed: {listing.stderr.strip()[-500:]}")
        return listing.stdout

    def list(self) -> builtins.list[HostInfo]:
        return [info for info in map(self.get, self._names()) if info is not None]

    def is_running(self, name: str) -> bool:
        return _recorded(self._host_dir(name) / "nspawn.pid") is not None

    def destroy_all(self) -> None:
        """Every host, then the project's bridges no host is attached to, then the apt proxy: nothing of ours remains.

        Bridges with ports and a proxy that another HostManager runs (the dev cloud's, while tests run) stay.
        """
        for name in self._names():
            self.destroy(name)
        for bridge in _links(BRIDGE_PREFIX):
            if not any(Path("/sys/class/net", bridge, "brif").iterdir()):
                _delete_link(bridge)
        self.stop_apt_proxy()

    def leftovers(self) -> builtins.list[str]:
        """What of this manager still exists: empty after destroy_all()."""
        hosts_dir = self.state_dir / "hosts"
        found = [f"host {path.name}" for path in sorted(hosts_dir.iterdir())] if hosts_dir.is_dir() else []
        found += [f"mount {line.split()[1]}" for line in Path("/proc/mounts").read_text().splitlines()
                  if line.split()[1].startswith(f"{self.state_dir}/")]
        if _recorded(self._proxy_dir / "pid") is not None:
            found.append("apt-cacher-ng")
        return found
