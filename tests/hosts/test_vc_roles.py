"""The VC network's roles on a fresh dev cloud host: site.yml makes one host the rooms' SIP registrar (Kamailio,
sip_registrar) and their video bridge (Janus, janus_bridge); the testinfra checks pass, a second run changes
nothing, the bridge's admin secret stays out of every runner artifact and of the host's journal, and from this
machine, the control plane's side of the dev cloud network:
- a sipp room endpoint registers with Kamailio, and an OPTIONS probe for its room is relayed to it (its answer,
  200, comes back through Kamailio); a room that is not registered gets 404;
- the control plane's bridge client (JanusBridge) gets Janus's `info`, is refused with a wrong admin secret (Janus
  error 403) and accepted with the right one, and finds no room (Debian's stock rooms 1234 and 5678 are gone).

One host (`vc` of tests/fleet.py) carries both roles, configured once for the module. Its server gets a security
group of this module's for the SIP and Janus ports, from this machine's address only, removed at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import psutil
import pytest
from fleet import Host
from playbook_runs import PLAYBOOKS, PlayRun, run_playbook

from controlplane.rooms.domain import probe_outcome
from controlplane.rooms.janus import BridgeAuthFailed, BridgeUnreachable, JanusBridge
from controlplane.rooms.sip_probe import ProbeTarget, probe_once

pytestmark = [pytest.mark.devcloud, pytest.mark.xdist_group("devcloud")]
T = TypeVar("T")

ADMIN_SECRET = "bridge-" + uuid.uuid4().hex + uuid.uuid4().hex[:8]
DOMAIN = "vc.devcloud.test"
ROLES = ("base", "sip_registrar", "janus_bridge")
SIP_PORT = 5060
HTTP_PORT, ADMIN_PORT = 8088, 7088
EXTRAVARS = {"sip_registrar_domain": DOMAIN, "sip_registrar_children": 2, "janus_bridge_rtp_port_range": "30000-30999"}

CHECKS = PLAYBOOKS / "checks"
SIP_SCENARIOS = Path(__file__).resolve().parent / "sip"
SIPP = "/usr/bin/sipp"
# The dev cloud's servers are throwaway hosts whose addresses come back with new host keys: their inventory, not
# ansible.cfg, turns host key checking off (see the comment in ansible.cfg).
SSH_COMMON_ARGS = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
# Both roles' read-only `verify` entry points, as one playbook.
VERIFY_PLAYBOOK = [{
    "name": "Verify the VC roles", "hosts": "all", "gather_facts": False,
    "tasks": [{"name": f"Verify {role}", "ansible.builtin.include_role": {"name": role, "tasks_from": "verify"}}
              for role in ("sip_registrar", "janus_bridge")]}]


# Playbooks (run as tests/hosts/test_roles.py runs them: tests/playbook_runs.py) --------------------------------------


# The groups of site.yml's other roles, declared without hosts (a play whose group is not in the inventory warns).
OTHER_GROUPS = ("postgresql", "data_migration", "tomcat", "nginx", "app_deploy")


def inventory(host: Host, key: Path, control_path_dir: Path) -> dict[str, Any]:
    """One host in both groups of the VC roles (every host gets base); the other roles' groups empty."""
    return {"all": {
        "hosts": {host.name: {"ansible_host": host.address}},
        "vars": {"ansible_user": "root", "ansible_ssh_private_key_file": str(key),
                 "ansible_ssh_common_args": SSH_COMMON_ARGS,
                 # SSH master connections (ControlPersist) of this module's runs only, closed before the end.
                 "ansible_control_path_dir": str(control_path_dir)},
        "children": {"sip_registrar": {"hosts": {host.name: {}}}, "janus_bridge": {"hosts": {host.name: {}}},
                     **{group: {"hosts": {}} for group in OTHER_GROUPS}},
    }}


@dataclass
class CheckRun:
    returncode: int
    seconds: float
    evidence: dict[str, Any]
    output: str


def run_checks(host: Host, check_vars: dict[str, Any], key: Path, work: Path) -> CheckRun:
    """The role checks exactly as the control plane runs them (paramiko backend), evidence as JSON."""
    tag = uuid.uuid4().hex[:8]
    vars_file, evidence_file = work / f"check-vars-{tag}.json", work / f"evidence-{tag}.json"
    vars_file.write_text(json.dumps(check_vars))
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--no-header", "-rfE",
            f"--hosts=paramiko://root@{host.address}?ssh_identity_file={key}&timeout=10",
            f"--check-vars={vars_file}", f"--evidence={evidence_file}",
            *[str(CHECKS / f"test_{role}.py") for role in ROLES]]
    started = time.monotonic()
    done = subprocess.run(argv, cwd=CHECKS, capture_output=True, text=True, timeout=300, check=False)
    seconds = time.monotonic() - started
    evidence = json.loads(evidence_file.read_text()) if evidence_file.exists() else {}
    return CheckRun(done.returncode, seconds, evidence, done.stdout[-6000:] + done.stderr[-2000:])


# The server's ports for this machine -------------------------------------------------------------------------------


def open_vc_ports(fleet: Any, host: Host) -> Any:
    """A security group admitting SIP (udp 5060) and Janus's HTTP and admin APIs (tcp 8088, 7088) from this
    machine's address on the dev cloud network only, added to the host's server."""
    conn = fleet.conn
    group = conn.network.create_security_group(
        name=f"tests-vc-{fleet.tag}", description=f"cp_owner={fleet.owner}: SIP and Janus from the control plane")
    try:
        for protocol, port in (("udp", SIP_PORT), ("tcp", HTTP_PORT), ("tcp", ADMIN_PORT)):
            conn.network.create_security_group_rule(
                security_group_id=group.id, direction="ingress", ethertype="IPv4", protocol=protocol,
                port_range_min=port, port_range_max=port, remote_ip_prefix=f"{fleet.gateway}/32")
        conn.compute.add_security_group_to_server(host.server_id, group)
    except BaseException:
        conn.network.delete_security_group(group, ignore_missing=True)
        raise
    return group


def close_vc_ports(fleet: Any, host: Host, group: Any) -> None:
    conn = fleet.conn
    try:
        conn.compute.remove_security_group_from_server(host.server_id, group)
    finally:
        conn.network.delete_security_group(group, ignore_missing=True)


def eventually(check: Callable[[], T], what: str, *, seconds: float = 30, errors: tuple[type[Exception], ...] = (
        OSError,)) -> T:
    """check() once it returns without one of `errors` (the security group reaches the host within seconds)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return check()
        except errors:
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: still failing after {seconds:.0f} s") from None
            time.sleep(0.5)


# SIP from this machine -------------------------------------------------------------------------------------------


def free_udp_port(address: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


@dataclass
class Sipp:
    """A sipp we started (foreground, so its PID is ours to stop), and its output."""

    process: subprocess.Popen[bytes]
    log: Path
    port: int

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def stop(self, seconds: float = 5) -> None:
        """SIGTERM by PID, SIGKILL when it lingers."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=seconds)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=seconds)


def start_sipp(work: Path, address: str, scenario: str, *args: str) -> Sipp:
    """sipp on free ports of `address` (its SIP, control and media sockets: -i, -ci, -mi), in the foreground."""
    port, control_port, media_port = (free_udp_port(address) for _ in range(3))
    log = work / f"sipp-{scenario.removesuffix('.xml')}-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [SIPP, *args, "-sf", str(SIP_SCENARIOS / scenario), "-i", address, "-p", str(port), "-ci", address,
             "-cp", str(control_port), "-mi", address, "-mp", str(media_port), "-nostdin", "-skip_rlimit"],
            cwd=work, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    return Sipp(process, log, port)


def udp_bound(pid: int, port: int) -> bool:
    try:
        return any(c.laddr and c.laddr.port == port for c in psutil.Process(pid).net_connections(kind="udp"))
    except psutil.Error:
        return False


@dataclass
class SipAnswer:
    status: int
    headers: dict[str, str]  # lower-case names (the first of each)


def sip_options(target: tuple[str, int], uri: str, local_address: str, *, timeout: float = 3) -> SipAnswer:
    """One SIP OPTIONS for `uri` sent to `target` over UDP from `local_address`, with a fresh Call-ID (sent again
    every second until the final answer)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((local_address, 0))
        local_port = sock.getsockname()[1]
        call_id = secrets.token_hex(12)
        request = (f"OPTIONS {uri} SIP/2.0\r\n"
                   f"Via: SIP/2.0/UDP {local_address}:{local_port};branch=z9hG4bK{secrets.token_hex(8)};rport\r\n"
                   "Max-Forwards: 70\r\n"
                   f"From: <sip:probe@{local_address}>;tag={secrets.token_hex(4)}\r\n"
                   f"To: <{uri}>\r\n"
                   f"Call-ID: {call_id}\r\n"
                   "CSeq: 1 OPTIONS\r\n"
                   f"Contact: <sip:probe@{local_address}:{local_port}>\r\n"
                   "Content-Length: 0\r\n\r\n").encode()
        deadline = time.monotonic() + timeout
        sock.settimeout(1.0)
        while time.monotonic() < deadline:
            sock.sendto(request, target)
            try:
                while True:
                    data = sock.recv(65535).decode(errors="replace")
                    head = data.split("\r\n\r\n", 1)[0].split("\r\n")
                    headers: dict[str, str] = {}
                    for line in head[1:]:
                        name, _, value = line.partition(":")
                        headers.setdefault(name.strip().lower(), value.strip())
                    parts = head[0].split(" ")
                    if (len(parts) < 2 or parts[0] != "SIP/2.0" or headers.get("call-id") != call_id
                            or parts[1].startswith("1")):
                        continue
                    return SipAnswer(int(parts[1]), headers)
            except TimeoutError:
                continue
    raise AssertionError(f"no answer to OPTIONS {uri} from {target[0]}:{target[1]} within {timeout} s")


# The host, configured once ---------------------------------------------------------------------------------------


@dataclass
class VcHost:
    host: Host
    gateway: str
    ssh: Any  # the root conftest's ssh_key: .private, .run(address, command)
    work: Path
    first: PlayRun
    checks: CheckRun
    second: PlayRun

    @property
    def address(self) -> str:
        return self.host.address

    def bridge(self, admin_secret: str = ADMIN_SECRET) -> JanusBridge:
        return JanusBridge(f"http://{self.address}:{HTTP_PORT}/janus", f"http://{self.address}:{ADMIN_PORT}/admin",
                           admin_secret, timeout=5.0)


def services_log(ssh: Any, host: Host) -> str:
    """The end of the VC services' journal on the host: what a failed run needs to be understood."""
    done = ssh.run(host.address, "journalctl --no-pager -o short-precise -n 80 -u kamailio -u janus", timeout=60)
    return done.stdout + done.stderr


def check_vars(host: Host) -> dict[str, Any]:
    """What the checks read: the playbook's variables (not the secret), and the roles the host got."""
    return {"vars": EXTRAVARS, "hosts": {host.address: {"check_roles": list(ROLES)}}}


@pytest.fixture(scope="module")
def vc(fleet: Any, ssh_key: Any, tmp_path_factory: pytest.TempPathFactory, timings: list[str]) -> Iterator[VcHost]:
    """The fresh `vc` host configured by site.yml, checked, and configured again."""
    host = fleet.host("vc")
    work = tmp_path_factory.mktemp("vc-roles")
    inv = inventory(host, ssh_key.private, work / "cp")
    secret_vars = {"janus_bridge_admin_secret": ADMIN_SECRET}
    group = open_vc_ports(fleet, host)
    try:
        first = run_playbook("site.yml", inv, work, extravars=EXTRAVARS, secrets=secret_vars)
        assert first.status == "successful", (first.failures, services_log(ssh_key, host))
        checks = run_checks(host, check_vars(host), ssh_key.private, work)
        second = run_playbook("site.yml", inv, work, extravars=EXTRAVARS, secrets=secret_vars)
        counted = sum(h["passed"] + h["failed"] for h in checks.evidence.get("hosts", {}).values())
        timings.extend([
            f"VC roles: first apply of site.yml (base, sip_registrar, janus_bridge), 1 fresh host: "
            f"{first.seconds:.1f} s",
            f"VC roles: testinfra checks, {counted} (paramiko): {checks.seconds:.1f} s",
            f"VC roles: second apply: {second.seconds:.1f} s, changed {second.stats.get('changed', {})}",
        ])
        yield VcHost(host, fleet.gateway, ssh_key, work, first, checks, second)
    finally:
        # The SSH master connections the runs left (ControlPersist), before the server goes.
        for socket_path in (work / "cp").glob("*"):
            subprocess.run(["ssh", "-o", f"ControlPath={socket_path}", "-O", "exit", "master"],
                           capture_output=True, timeout=10, check=False)
        close_vc_ports(fleet, host, group)


# Tests -----------------------------------------------------------------------------------------------------------


def test_site_playbook_configures_the_registrar_and_the_bridge(vc: VcHost) -> None:
    assert vc.first.status == "successful" and vc.first.rc == 0 and not vc.first.failures
    changed = {task for _, task in vc.first.changed_tasks}
    assert {"Install Kamailio", "Configure Kamailio as the registrar", "Install the Janus packages", "Configure Janus",
            "Restart kamailio", "Restart janus"} <= changed, changed
    for run in (vc.first, vc.second):
        assert run.artifacts is not None
        output = (run.artifacts / "stdout").read_text(errors="replace")
        warnings = [line for line in output.splitlines() if "WARNING]" in line]
        assert not warnings, warnings


def test_checks_pass_and_leave_evidence(vc: VcHost) -> None:
    checks = vc.checks
    assert checks.returncode == 0, checks.output
    assert checks.evidence["passed"] is True
    entry = checks.evidence["hosts"][vc.address]
    assert entry["failed"] == 0, entry
    assert {c["role"] for c in entry["checks"] if c["outcome"] == "passed"} == set(ROLES)


def test_second_apply_changes_nothing(vc: VcHost) -> None:
    second = vc.second
    assert second.status == "successful" and second.rc == 0, second.failures
    assert second.stats.get("ok", {}).get(vc.host.name, 0) > 0, second.stats
    assert second.changed(vc.host.name) == 0, second.changed_tasks
    assert not second.changed_tasks


def test_the_verify_entry_points_read_only(vc: VcHost) -> None:
    playbook = vc.work / "verify-vc.json"
    playbook.write_text(json.dumps(VERIFY_PLAYBOOK))
    inv = inventory(vc.host, vc.ssh.private, vc.work / "cp")
    run = run_playbook(playbook, inv, vc.work, extravars=EXTRAVARS,
                       secrets={"janus_bridge_admin_secret": ADMIN_SECRET})
    assert run.status == "successful", run.failures
    assert run.changed(vc.host.name) == 0, run.changed_tasks
    tasks = {event["event_data"]["task"] for event in _events(run) if event.get("event") == "runner_on_ok"}
    assert {"Ask the registrar with SIP OPTIONS", "Ask the HTTP API for its info",
            "List the sessions through the admin API with the admin secret"} <= tasks
    _assert_no_secret_in(run)
    # The admin secret is checked: a wrong one fails the admin API's task (censored: its request holds the secret).
    wrong = run_playbook(playbook, inv, vc.work, extravars=EXTRAVARS,
                         secrets={"janus_bridge_admin_secret": "not-the-admin-secret-0123"})
    assert wrong.status == "failed"
    assert [f["task"] for f in wrong.failures] == ["List the sessions through the admin API with the admin secret"]
    _assert_no_secret_in(wrong, "not-the-admin-secret-0123")


def _events(run: PlayRun) -> list[dict[str, Any]]:
    assert run.artifacts is not None
    return [json.loads(p.read_text()) for p in (run.artifacts / "job_events").glob("*.json")]


def _assert_no_secret_in(run: PlayRun, secret: str = ADMIN_SECRET) -> None:
    """Not in any file of the run's private data directory: artifacts (stdout, events, fact cache), inventory, env."""
    files = [p for p in run.private_data_dir.rglob("*") if p.is_file()]
    assert any(p.parent.name == "job_events" for p in files)
    leaked = [str(p) for p in files if secret in p.read_text(errors="replace")]
    assert not leaked


def test_the_admin_secret_stays_out_of_artifacts_and_the_hosts_logs(vc: VcHost) -> None:
    for run in (vc.first, vc.second):
        _assert_no_secret_in(run)
        # Every task that handles it is censored, its events included.
        for task in ("Check janus_bridge_admin_secret (at least 16 characters, no control characters, "
                     "not Janus's default)", "Configure Janus"):
            events = [e for e in _events(run) if e.get("event") == "runner_on_ok" and e["event_data"]["task"] == task]
            assert events and all(e["event_data"]["res"].get("censored") for e in events), task
    assert ADMIN_SECRET not in vc.checks.output
    assert ADMIN_SECRET not in json.dumps(vc.checks.evidence)
    # On the host: not in its journal (module invocations are logged there), and in no file of /etc but janus.jcfg.
    journal = vc.ssh.run(vc.address, "journalctl -o cat --no-pager", timeout=60)
    assert journal.returncode == 0 and journal.stdout, journal.stderr
    assert ADMIN_SECRET not in journal.stdout
    holders = vc.ssh.run(vc.address, f"grep -rlF -- {ADMIN_SECRET} /etc /root /tmp /var/log /var/tmp; true")
    assert holders.stdout.split() == ["/etc/janus/janus.jcfg"], holders.stdout


def test_a_room_endpoint_registers_and_is_probed_through_the_registrar(vc: VcHost, timings: list[str]) -> None:
    registrar = (vc.address, SIP_PORT)
    room = f"room-{uuid.uuid4().hex[:8]}"
    # Kamailio answers for itself: OPTIONS with no user part (this also waits for the security group to be in force).
    answer = eventually(lambda: sip_options(registrar, f"sip:{DOMAIN}", vc.gateway), "OPTIONS to the registrar",
                        errors=(OSError, AssertionError))
    assert answer.status == 200

    endpoint = start_sipp(vc.work, vc.gateway, "uas_options.xml")
    register: Sipp | None = None
    try:
        deadline = time.monotonic() + 10
        while not udp_bound(endpoint.process.pid, endpoint.port):
            assert endpoint.process.poll() is None and time.monotonic() < deadline, endpoint.output()
            time.sleep(0.05)
        started = time.monotonic()
        register = start_sipp(
            vc.work, vc.gateway, "uac_register.xml", f"{vc.address}:{SIP_PORT}", "-m", "1", "-timeout", "15s",
            "-timeout_error", "-key", "room_user", room, "-key", "room_domain", DOMAIN,
            "-key", "room_contact", f"{vc.gateway}:{endpoint.port}", "-key", "expires", "300")
        assert register.process.wait(timeout=30) == 0, register.output()
        registered = time.monotonic() - started
        dump = vc.ssh.run(vc.address, "kamcmd ul.dump brief")
        assert f"AoR: {room}" in dump.stdout, dump.stdout + dump.stderr

        started = time.monotonic()
        answer = sip_options(registrar, f"sip:{room}@{DOMAIN}", vc.gateway)
        probed = time.monotonic() - started
        # 200 from the endpoint itself, relayed by Kamailio: the sipp UAS's To tag and Contact.
        assert answer.status == 200, answer
        assert "SIPpTag01" in answer.headers["to"], answer.headers
        assert f"@{vc.gateway}:{endpoint.port}" in answer.headers["contact"], answer.headers

        unknown = sip_options(registrar, f"sip:no-such-room-{uuid.uuid4().hex[:8]}@{DOMAIN}", vc.gateway)
        assert unknown.status == 404, unknown
        foreign = sip_options(registrar, f"sip:{room}@elsewhere.invalid", vc.gateway)
        assert foreign.status == 403, foreign
        timings.append(f"VC roles: sipp REGISTER {registered * 1000:.0f} ms (with sipp's start), OPTIONS through "
                       f"Kamailio to the endpoint {probed * 1000:.1f} ms")

        # The product's prober, through the registrar: the registered room is up; once its endpoint stops, down.
        target = ProbeTarget(room, vc.address, SIP_PORT, f"sip:{room}@{DOMAIN}")
        up = probe_once(target, timeout=3, local_address=vc.gateway)
        assert probe_outcome(up.ok, up.status, up.rtt, up.error).state == "up", up
        endpoint.stop()
        down = probe_once(target, timeout=3, local_address=vc.gateway)
        assert probe_outcome(down.ok, down.status, down.rtt, down.error).state == "down", down
    finally:
        for sipp in (register, endpoint):
            if sipp is not None:
                sipp.stop()


def test_the_bridge_answers_the_control_planes_client(vc: VcHost) -> None:
    with vc.bridge() as bridge:
        info = eventually(bridge.info, "Janus's info from this machine", errors=(BridgeUnreachable,))
        assert info.up and info.videoroom, info
        assert info.session_timeout == 60, info
        bridge.admin_check()
        # Debian's stock rooms (1234, 5678) are gone: the bridge's rooms are the control plane's only.
        assert bridge.list_rooms() == []
    with vc.bridge("not-the-admin-secret") as wrong, pytest.raises(BridgeAuthFailed) as refused:
        wrong.admin_check()
    assert refused.value.janus_code == 403
    assert ADMIN_SECRET not in str(refused.value)
