"""Configure 10 fresh hosts with the full stack: the project's ansible.cfg vs Ansible's defaults, same run.

Each phase boots its own fresh servers on the dev cloud (not timed), then times one `site.yml` run through
ansible-runner that gives every host base, postgresql, tomcat and nginx. The apt proxy is warmed first on one
host, so every phase installs from the same cache. Prints each phase's time and the ratios, and checks that
every phase configured every host without a failure.

Phases (`--phases`, default project,baseline, in that order):
- project:  ANSIBLE_CONFIG=ansible.cfg (forks 20, pipelining, ControlPersist, smart gathering + fact cache);
- baseline: an empty ansible.cfg, i.e. Ansible's defaults (forks 5, no pipelining, facts gathered again in every
            play), and no SSH connection reuse (ssh_args "-o ControlMaster=no");
- defaults: an empty ansible.cfg and nothing else: Ansible's own ssh_args do include ControlMaster=auto and
            ControlPersist=60s, so this sits between the two.

Everything it makes carries metadata cp_owner=bench-ansible-<run> and is deleted even on failure.
Run from the repository root: `.venv/bin/python bench/ansible_config.py [--hosts 10] [--phases project,defaults]`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import ansible_runner
import keystoneauth1.exceptions
import openstack
import openstack.config

from controlplane.devcloud.cloud import DevCloud
from controlplane.devcloud.hosts import ssh_answers

REPO = Path(__file__).resolve().parent.parent
PLAYBOOKS = REPO / "playbooks"
SSH_COMMON_ARGS = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
STACK_VARS = {
    "postgresql_db_name": "bench",
    "postgresql_db_owner": "bench_app",
    "tomcat_heap_min": "64m",
    "tomcat_heap_max": "128m",
}
PHASES = ("project", "baseline", "defaults")
CLOUD_RETRY_SECONDS = 180


def cloud_call(what: str, call: Any, *args: Any, **kwargs: Any) -> Any:
    """A cloud API call, retried while the API is unreachable (other work restarts the dev cloud's services)."""
    deadline = time.monotonic() + CLOUD_RETRY_SECONDS
    while True:
        try:
            return call(*args, **kwargs)
        except (openstack.exceptions.HttpException, keystoneauth1.exceptions.ConnectFailure) as exc:
            if isinstance(exc, openstack.exceptions.NotFoundException) or time.monotonic() > deadline:
                raise
            print(f"  {what}: {type(exc).__name__}, retrying")
            time.sleep(3)


class Servers:
    def __init__(self, conn: openstack.connection.Connection, owner: str, keypair: str) -> None:
        self.conn, self.owner, self.keypair = conn, owner, keypair
        self.ids: list[str] = []

    def boot(self, prefix: str, count: int) -> dict[str, str]:
        image = self.conn.image.find_image("debian-12", ignore_missing=False)
        flavor = self.conn.compute.find_flavor("small", ignore_missing=False)
        network = self.conn.network.find_network("devcloud-net", ignore_missing=False)
        created = []
        for i in range(count):
            server = cloud_call("create_server", self.conn.compute.create_server,
                name=f"{prefix}-{i}", image_id=image.id, flavor_id=flavor.id, networks=[{"uuid": network.id}],
                key_name=self.keypair, metadata={"cp_owner": self.owner})
            self.ids.append(server.id)
            created.append(server)
        hosts = {}
        for server in created:
            server = cloud_call("wait_for_server", self.conn.compute.wait_for_server, server, wait=300)
            hosts[server.name] = next(a["addr"] for addrs in server.addresses.values() for a in addrs
                                      if a["version"] == 4)
        deadline = time.monotonic() + 180
        for address in hosts.values():
            while not ssh_answers(address):
                if time.monotonic() > deadline:
                    raise SystemExit(f"{address} does not answer SSH")
                time.sleep(0.5)
        return hosts

    def delete_all(self) -> None:
        """Every server this run made: those it knows and any other with its owner (a retried create's twin)."""
        servers = cloud_call("list servers", lambda: list(self.conn.compute.servers(all_projects=True)))
        self.ids = list(dict.fromkeys([*self.ids, *(s.id for s in servers
                                                    if (s.metadata or {}).get("cp_owner") == self.owner)]))
        for server_id in self.ids:
            cloud_call("delete_server", self.conn.compute.delete_server, server_id, ignore_missing=True)
        for server_id in self.ids:
            with contextlib.suppress(openstack.exceptions.NotFoundException):
                server = cloud_call("get_server", self.conn.compute.get_server, server_id)
                cloud_call("wait_for_delete", self.conn.compute.wait_for_delete, server, wait=180)
        self.ids.clear()


def configure(hosts: dict[str, str], key: Path, work: Path, phase: str, secret: str) -> tuple[float, dict[str, Any]]:
    """One site.yml run over `hosts` with the phase's Ansible settings: (seconds, runner stats)."""
    private = work / f"{phase}-{uuid.uuid4().hex[:6]}"
    (private / "inventory").mkdir(parents=True)
    inventory = {"all": {
        "hosts": {name: {"ansible_host": address} for name, address in hosts.items()},
        # SSH master connections of this run only: none left by an earlier phase (its servers are deleted, and a new
        # server may get one of their addresses) is reused or slows this one down.
        "vars": {"ansible_user": "root", "ansible_ssh_private_key_file": str(key),
                 "ansible_ssh_common_args": SSH_COMMON_ARGS, "ansible_control_path_dir": str(private / "cp")},
        "children": {group: {"hosts": {name: {} for name in hosts}} for group in ("postgresql", "tomcat", "nginx")},
    }}
    (private / "inventory" / "hosts.json").write_text(json.dumps(inventory))
    secret_file = private / "secret-vars.json"
    secret_file.touch(mode=0o600)
    secret_file.write_text(json.dumps({"postgresql_db_owner_password": secret}))
    envvars = {"ANSIBLE_ROLES_PATH": str(PLAYBOOKS / "roles"), "ANSIBLE_NOCOLOR": "1",
               "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin:/usr/sbin:/sbin"}
    if phase == "project":
        envvars["ANSIBLE_CONFIG"] = str(REPO / "ansible.cfg")
    else:
        empty = private / "ansible.cfg"
        empty.write_text("[defaults]\n")
        envvars["ANSIBLE_CONFIG"] = str(empty)
        if phase == "baseline":
            envvars["ANSIBLE_SSH_ARGS"] = "-o ControlMaster=no"
    started = time.perf_counter()
    runner = ansible_runner.run(
        private_data_dir=str(private), project_dir=str(PLAYBOOKS), playbook="site.yml",
        inventory=str(private / "inventory" / "hosts.json"), extravars=STACK_VARS, cmdline=f"-e @{secret_file}",
        envvars=envvars, quiet=True)
    seconds = time.perf_counter() - started
    close_ssh_masters(private / "cp")
    stats = runner.stats or {}
    if runner.status != "successful" or stats.get("failures") or stats.get("dark"):
        # The work directory goes with the cleanup: the end of Ansible's output goes into the message instead.
        output = "".join(p.read_text(errors="replace") for p in (private / "artifacts").glob("*/stdout"))
        tail = "\n".join(output.splitlines()[-40:])
        raise SystemExit(f"phase {phase}: {runner.status}, failures {stats.get('failures')}, "
                         f"unreachable {stats.get('dark')}; the end of its output:\n{tail}")
    shutil.rmtree(private, ignore_errors=True)
    return seconds, stats


def close_ssh_masters(control_dir: Path) -> None:
    """Stop the SSH master connections a run left (ControlPersist) instead of leaving them to time out."""
    for socket_path in control_dir.glob("*"):
        subprocess.run(["ssh", "-o", f"ControlPath={socket_path}", "-O", "exit", "master"],
                       capture_output=True, timeout=10, check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=10)
    parser.add_argument("--phases", default="project,baseline")
    args = parser.parse_args()
    phases = [p for p in args.phases.split(",") if p]
    unknown = set(phases) - set(PHASES)
    if unknown:
        raise SystemExit(f"unknown phases {sorted(unknown)}; choose from {PHASES}")

    cloud = DevCloud.default()
    cloud.up()
    config = openstack.config.OpenStackConfig(config_files=[str(cloud.clouds_yaml)]).get_one(cloud=cloud.cloud_name)
    conn = openstack.connection.Connection(config=config)
    run = uuid.uuid4().hex[:6]
    work = Path(tempfile.mkdtemp(prefix="bench-ansible-"))
    key = work / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    keypair = f"bench-ansible-{run}"
    conn.compute.create_keypair(name=keypair, public_key=key.with_suffix(".pub").read_text())
    servers = Servers(conn, f"bench-ansible-{run}", keypair)
    secret = uuid.uuid4().hex
    results: dict[str, float] = {}
    try:
        print("warming the apt proxy: the full stack on one host")
        warm = servers.boot(f"bw-{run}", 1)
        seconds, _ = configure(warm, key, work, "project", secret)
        print(f"  warm-up run {seconds:.1f} s")
        servers.delete_all()
        for phase in phases:
            hosts = servers.boot(f"b{phase[0]}-{run}", args.hosts)
            seconds, stats = configure(hosts, key, work, phase, secret)
            tasks = sum(stats.get("ok", {}).values())
            results[phase] = seconds
            print(f"{phase:>8}: {args.hosts} fresh hosts, full stack in {seconds:.1f} s ({tasks} host-tasks ok)")
            servers.delete_all()
    finally:
        servers.delete_all()
        conn.compute.delete_keypair(keypair, ignore_missing=True)
        shutil.rmtree(work, ignore_errors=True)
    if "project" in results:
        for phase in ("baseline", "defaults"):
            if phase in results:
                print(f"{phase} / project = {results[phase] / results['project']:.2f}x")


if __name__ == "__main__":
    main()
