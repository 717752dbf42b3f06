"""The roles on fresh dev cloud hosts: site.yml configures them, the testinfra checks pass, a second run changes
nothing, secrets stay out of artifacts, a cutover switches the front, data is proven by row counts and checksums,
and failures name their task and host.

Three hosts, configured once for the module:
- db:  postgresql + data_migration (a pg_dump-style dump of 3 tables, checked against its source manifest);
- app: tomcat + a WAR (copied from this machine) + nginx as the cutover front, first proxying to the legacy site;
- web: nginx serving the legacy static site (downloaded by the host from a URL on this machine).
"""

from __future__ import annotations

import csv
import dataclasses
import ipaddress
import json
import shlex
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from artifacts import (
    ArtifactServer,
    make_dataset,
    make_site,
    make_war,
    sha256_of,
    table_manifest,
    write_dump,
)
from fleet import Host
from playbook_runs import PLAYBOOKS, PlayRun, run_playbook

pytestmark = [pytest.mark.devcloud, pytest.mark.xdist_group("devcloud")]

SECRET = "owner-" + uuid.uuid4().hex
ROLES = ("base", "postgresql", "data_migration", "tomcat", "nginx", "app_deploy")
NEW_APP = "new minwon on tomcat"
LEGACY_APP = "legacy minwon on the old web server"
ROOT_APP = "new minwon at the root"


CHECKS = PLAYBOOKS / "checks"
# The dev cloud's servers are throwaway hosts whose addresses come back with new host keys: their inventory, not
# ansible.cfg, turns host key checking off (see the comment in ansible.cfg).
SSH_COMMON_ARGS = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"


# Playbooks -------------------------------------------------------------------------------------------------


def inventory(groups: dict[str, Iterable[Host]], hostvars: dict[str, dict[str, Any]], key: Path,
              extra_hosts: Iterable[tuple[str, str]] = ()) -> dict[str, Any]:
    """An inventory: every host in `all` with its address and vars, and in the role groups it belongs to."""
    hosts: dict[str, dict[str, Any]] = {}
    for members in groups.values():
        for host in members:
            hosts[host.name] = {"ansible_host": host.address, **hostvars.get(host.name, {})}
    for name, address in extra_hosts:
        hosts[name] = {"ansible_host": address}
    return {"all": {
        "hosts": hosts,
        "vars": {"ansible_user": "root", "ansible_ssh_private_key_file": str(key),
                 "ansible_ssh_common_args": SSH_COMMON_ARGS},
        "children": {group: {"hosts": {host.name: {} for host in members}} for group, members in groups.items()},
    }}


# Checks ----------------------------------------------------------------------------------------------------


@dataclass
class CheckRun:
    returncode: int
    seconds: float
    evidence: dict[str, Any]
    output: str


def run_checks(roles: Iterable[str], hosts: Iterable[Host], check_vars: dict[str, Any], key: Path, work: Path,
               ) -> CheckRun:
    """The role checks exactly as the control plane runs them, one pytest over all hosts; evidence as JSON."""
    work.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    vars_file, evidence_file = work / f"check-vars-{tag}.json", work / f"evidence-{tag}.json"
    vars_file.write_text(json.dumps(check_vars))
    host_list = ",".join(f"paramiko://root@{h.address}?ssh_identity_file={key}&timeout=10" for h in hosts)
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--no-header", "-rfE",
            f"--hosts={host_list}", f"--check-vars={vars_file}", f"--evidence={evidence_file}",
            *[str(CHECKS / f"test_{role}.py") for role in roles]]
    started = time.monotonic()
    done = subprocess.run(argv, cwd=CHECKS, capture_output=True, text=True, timeout=600, check=False)
    seconds = time.monotonic() - started
    evidence = json.loads(evidence_file.read_text()) if evidence_file.exists() else {}
    return CheckRun(done.returncode, seconds, evidence, done.stdout[-6000:] + done.stderr[-2000:])


def write_csv_export(directory: Path) -> tuple[Path, list[dict[str, Any]], dict[str, Any]]:
    """A CSV export of two tables with its DDL: (schema file, data_migration_csv_files, manifest)."""
    directory.mkdir(parents=True, exist_ok=True)
    rooms = [("SEJONG-101", "정부세종청사", 12, "화상회의실, 1층"), ("SEOUL-7F", "정부서울청사", 30, None),
             ("GWACHEON-B2", "정부과천청사", 8, 'quote " inside'), ("DAEJEON-3", "정부대전청사", 16, "two\nlines")]
    bookings = [(i, rooms[i % len(rooms)][0], date(2014, 7, 1) + timedelta(days=i % 30),
                 None if i % 5 == 0 else f"회의 {i}") for i in range(1, 301)]
    schema = directory / "schema.sql"
    schema.write_text(
        "CREATE TABLE public.rooms (code text PRIMARY KEY, site text NOT NULL, seats integer NOT NULL, note text);\n"
        "CREATE TABLE public.bookings (id integer PRIMARY KEY, room_code text NOT NULL REFERENCES public.rooms(code),"
        " day date NOT NULL, purpose text);\n", encoding="utf-8")
    files = []
    for table, header, rows in (("public.rooms", ["code", "site", "seats", "note"], rooms),
                                ("public.bookings", ["id", "room_code", "day", "purpose"], bookings)):
        path = directory / f"{table.split('.')[1]}.csv"
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(header)
            writer.writerows([["" if v is None else v.isoformat() if isinstance(v, date) else v for v in row]
                              for row in rows])
        files.append({"table": table, "src": str(path), "header": True})
    manifest = {"method": "copy-text-md5/1", "tables": {"public.rooms": table_manifest(rooms),
                                                        "public.bookings": table_manifest(bookings)}}
    return schema, files, manifest


# The estate and its tests --------------------------------------------------------------------------------------


@dataclass
class Estate:
    db: Host
    app: Host
    web: Host
    ssh: Any  # the root conftest's ssh_key: .private, .run(address, command)
    work: Path
    groups: dict[str, list[Host]]
    hostvars: dict[str, dict[str, Any]]
    extravars: dict[str, Any]
    check_roles: dict[str, list[str]]
    csv_export: tuple[Path, list[dict[str, Any]], dict[str, Any]]
    first: PlayRun = None  # type: ignore[assignment]
    checks: CheckRun = None  # type: ignore[assignment]
    second: PlayRun = None  # type: ignore[assignment]

    @property
    def hosts(self) -> list[Host]:
        return [self.db, self.app, self.web]

    def inventory(self, hostvars: dict[str, dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
        merged = {name: {**values, **(hostvars or {}).get(name, {})} for name, values in self.hostvars.items()}
        return inventory(self.groups, merged, self.ssh.private, **extra)

    def check_vars(self, hostvars: dict[str, dict[str, Any]] | None = None, **extravars: Any) -> dict[str, Any]:
        """What the checks read: the playbook's variables, per host by address, without the secret."""
        hosts = {}
        for host in self.hosts:
            hosts[host.address] = {**self.hostvars[host.name], **(hostvars or {}).get(host.name, {}),
                                   "check_roles": self.check_roles[host.name]}
        return {"vars": {**self.extravars, **extravars}, "hosts": hosts}

    def run(self, playbook: str, **kwargs: Any) -> PlayRun:
        kwargs.setdefault("extravars", self.extravars)
        kwargs.setdefault("secrets", {"postgresql_db_owner_password": SECRET})
        return run_playbook(playbook, kwargs.pop("inv", None) or self.inventory(), self.work, **kwargs)


def prepare_estate(db: Host, app: Host, web: Host, ssh: Any, work: Path, artifact_base: str) -> Estate:
    """The three hosts' groups and variables, and the artifacts and data they get (files under work/files)."""
    files = work / "files"
    war, site = files / "minwon.war", files / "portal.tar.gz"
    dump, manifest = files / "minwon.sql", files / "minwon-manifest.json"
    groups = {"postgresql": [db], "data_migration": [db], "tomcat": [app], "nginx": [app, web],
              "app_deploy": [app, web]}
    check_roles = {db.name: ["base", "postgresql", "data_migration"],
                   app.name: ["base", "tomcat", "nginx", "app_deploy"], web.name: ["base", "nginx", "app_deploy"]}
    extravars = {
        "migration_system": "MOIS-MINWON",
        "base_groups": [{"name": "ops"}],
        "base_users": [{"name": "ops", "groups": ["ops"], "authorized_keys": [ssh.public], "sudo": True}],
        "postgresql_listen_addresses": ["*"],
        "postgresql_hba_entries": [
            {"type": "host", "database": "minwon", "user": "minwon_app", "address": "10.78.0.0/24",
             "method": "scram-sha-256"},
            {"type": "host", "database": "all", "user": "all", "address": "127.0.0.1/32",
             "method": "scram-sha-256"}],
        "postgresql_settings": {"max_connections": 50, "shared_buffers": "64MB"},
        "postgresql_db_name": "minwon",
        "postgresql_db_owner": "minwon_app",
        "data_migration_db_name": "minwon",
        "data_migration_db_owner": "minwon_app",
        "data_migration_dump_src": str(dump),
        "data_migration_manifest_src": str(manifest),
        "tomcat_heap_min": "64m",
        "tomcat_heap_max": "192m",
    }
    hostvars = {
        db.name: {},
        app.name: {"app_deploy_kind": "war", "app_deploy_name": "minwon", "app_deploy_artifact_src": str(war),
                   "app_deploy_artifact_checksum": sha256_of(war),
                   "app_deploy_health_url": "http://127.0.0.1:8080/minwon/", "app_deploy_health_content": NEW_APP,
                   "nginx_upstreams": [f"{web.address}:80"]},
        web.name: {"app_deploy_kind": "static", "app_deploy_name": "portal",
                   "app_deploy_artifact_url": f"{artifact_base}/portal.tar.gz",
                   "app_deploy_artifact_checksum": sha256_of(site),
                   "app_deploy_health_url": "http://127.0.0.1/minwon/", "app_deploy_health_content": LEGACY_APP},
    }
    return Estate(db, app, web, ssh, work, groups, hostvars, extravars, check_roles, write_csv_export(files / "csv"))


def make_files(work: Path) -> Path:
    """The WAR, the legacy static site, the dump and its manifest, under work/files."""
    files = work / "files"
    files.mkdir(parents=True, exist_ok=True)
    make_war(files / "minwon.war", NEW_APP)
    make_site(files / "portal.tar.gz", {"index.html": "<p>legacy portal</p>\n",
                                        "minwon/index.html": f"<p>{LEGACY_APP}</p>\n"})
    data = make_dataset()
    write_dump(data, files / "minwon.sql")
    (files / "minwon-manifest.json").write_text(json.dumps(data.manifest()))
    return files


@pytest.fixture(scope="module")
def estate(fleet: Any, ssh_key: Any, tmp_path_factory: pytest.TempPathFactory,
           timings: list[str]) -> Iterator[Estate]:
    """Three fresh hosts configured by site.yml, checked, and configured again."""
    work = tmp_path_factory.mktemp("roles")
    server = ArtifactServer(make_files(work), fleet.gateway)
    try:
        db, app, web = (fleet.host(name) for name in ("db", "app", "web"))
        estate = prepare_estate(db, app, web, ssh_key, work, server.base)
        estate.first = estate.run("site.yml")
        assert estate.first.status == "successful", estate.first.failures
        estate.checks = run_checks(ROLES, estate.hosts, estate.check_vars(), ssh_key.private, work)
        estate.second = estate.run("site.yml")
        counted = sum(h["passed"] + h["failed"] for h in estate.checks.evidence.get("hosts", {}).values())
        timings.extend([
            f"first apply of site.yml, 3 fresh hosts: {estate.first.seconds:.1f} s",
            f"testinfra checks, {counted} over 3 hosts (paramiko): {estate.checks.seconds:.1f} s",
            f"second apply: {estate.second.seconds:.1f} s, changed {estate.second.stats.get('changed', {})}",
        ])
        yield estate
    finally:
        server.close()
        # The SSH master connections the runs left (ControlPersist), before their servers are deleted.
        for socket_path in (work / "cp").glob("*"):
            subprocess.run(["ssh", "-o", f"ControlPath={socket_path}", "-O", "exit", "master"],
                           capture_output=True, timeout=10, check=False)


def test_site_playbook_configures_fresh_hosts(estate: Estate) -> None:
    assert estate.first.status == "successful" and estate.first.rc == 0
    assert not estate.first.failures
    for host in estate.hosts:
        assert estate.first.changed(host.name) > 0, host.name


def test_site_playbook_runs_without_warnings(estate: Estate) -> None:
    """Ansible's warnings (deprecations, a module guessing a default, a temporary directory made with a warning)
    are problems of the roles: none in either run."""
    for run in (estate.first, estate.second):
        assert run.artifacts is not None
        output = (run.artifacts / "stdout").read_text(errors="replace")
        warnings = [line for line in output.splitlines() if "WARNING]" in line]
        assert not warnings, warnings


def test_checks_pass_on_every_host_and_leave_evidence(estate: Estate) -> None:
    checks = estate.checks
    assert checks.returncode == 0, checks.output
    assert checks.evidence["passed"] is True
    assert set(checks.evidence["hosts"]) == {h.address for h in estate.hosts}
    for host in estate.hosts:
        entry = checks.evidence["hosts"][host.address]
        assert entry["failed"] == 0, entry
        ran = {c["role"] for c in entry["checks"] if c["outcome"] == "passed"}
        assert ran == set(estate.check_roles[host.name]), host.name
        assert all(c["duration"] >= 0 and c["check"].startswith("test_") for c in entry["checks"])


def test_second_apply_changes_nothing(estate: Estate) -> None:
    second = estate.second
    assert second.status == "successful" and second.rc == 0, second.failures
    # Every host was worked on (tasks ran, none failed or unreachable), and none of its tasks changed anything.
    assert all(second.stats.get("ok", {}).get(h.name, 0) > 0 for h in estate.hosts), second.stats
    assert not second.stats.get("failures") and not second.stats.get("dark"), second.stats
    assert {h.name: second.changed(h.name) for h in estate.hosts} == {h.name: 0 for h in estate.hosts}, (
        second.changed_tasks)
    assert not second.changed_tasks


def test_the_owner_password_stays_out_of_artifacts_and_events(estate: Estate) -> None:
    for run in (estate.first, estate.second):
        assert run.artifacts is not None
        # The whole private data directory: artifacts (stdout, events, fact cache), inventory and env files.
        private = run.artifacts.parents[1]
        files = [p for p in private.rglob("*") if p.is_file()]
        assert any(p.parent.name == "job_events" for p in files)
        leaked = [str(p) for p in files if SECRET in p.read_text(errors="replace")]
        assert not leaked
        events = [json.loads(p.read_text()) for p in (run.artifacts / "job_events").glob("*.json")]
        owner = [e for e in events if e.get("event") == "runner_on_ok"
                 and e["event_data"].get("task") == "Create the database owner"]
        assert owner and all(e["event_data"]["res"].get("censored") for e in owner)
    # The password works: the owner logs in over TCP with it (scram-sha-256 from pg_hba.conf).
    login = f"PGPASSWORD={SECRET} psql -X -At -h 127.0.0.1 -U minwon_app -d minwon -c 'SELECT current_user'"
    done = estate.ssh.run(estate.db.address, login)
    assert done.stdout.strip() == "minwon_app", done.stderr


def test_verify_playbook_reads_only(estate: Estate, timings: list[str]) -> None:
    run = estate.run("verify.yml")
    timings.append(f"verify.yml: {run.seconds:.1f} s")
    assert run.status == "successful", run.failures
    assert all(run.stats.get("ok", {}).get(h.name, 0) > 0 for h in estate.hosts), run.stats
    assert all(run.changed(h.name) == 0 for h in estate.hosts), run.changed_tasks


def _front(host: Host) -> str:
    with urllib.request.urlopen(f"http://{host.address}/minwon/", timeout=10) as response:
        return response.read().decode()


def test_cutover_switches_the_front_to_the_new_backend_and_back(estate: Estate) -> None:
    assert LEGACY_APP in _front(estate.app)
    steps = {**estate.extravars, "migration_steps": ["nginx"]}
    new = {estate.app.name: {"nginx_upstreams": ["127.0.0.1:8080"]}}
    cutover = estate.run("migrate_system.yml", inv=estate.inventory(new), extravars=steps, limit=estate.app.name)
    assert cutover.status == "successful", cutover.failures
    changed = {task for host, task in cutover.changed_tasks}
    assert changed == {"Write the site", "Reload the nginx service"}
    assert NEW_APP in _front(estate.app)
    checks = run_checks(["nginx"], [estate.app], estate.check_vars(new), estate.ssh.private, estate.work)
    assert checks.returncode == 0, checks.output

    rollback = estate.run("migrate_system.yml", extravars=steps, limit=estate.app.name)
    assert rollback.status == "successful", rollback.failures
    assert {task for host, task in rollback.changed_tasks} == {"Write the site", "Reload the nginx service"}
    assert LEGACY_APP in _front(estate.app)


def _csv_vars(estate: Estate, **more: Any) -> dict[str, Any]:
    schema, files, manifest = estate.csv_export
    return {**estate.extravars, "postgresql_db_name": "rooms", "postgresql_hba_entries": [],
            "data_migration_db_name": "rooms", "data_migration_format": "csv", "data_migration_dump_src": "",
            "data_migration_manifest_src": "", "data_migration_manifest": manifest,
            "data_migration_schema_src": str(schema), "data_migration_csv_files": files, **more}


def test_csv_export_loads_through_migrate_system_and_is_checked(estate: Estate) -> None:
    extravars = _csv_vars(estate, migration_steps=["postgresql", "data_migration"])
    load = estate.run("migrate_system.yml", extravars=extravars, limit=estate.db.name)
    assert load.status == "successful", load.failures
    assert ("Load into the database in one transaction" in {t for _, t in load.changed_tasks})
    again = estate.run("migrate_system.yml", extravars=extravars, limit=estate.db.name)
    assert again.status == "successful" and again.changed(estate.db.name) == 0, again.changed_tasks
    checks = run_checks(["data_migration"], [estate.db], estate.check_vars(**_csv_vars(estate)), estate.ssh.private,
                        estate.work)
    assert checks.returncode == 0, checks.output


def test_changed_data_fails_naming_the_table_until_it_is_replaced(estate: Estate) -> None:
    tamper = "runuser -u postgres -- psql -X -q -d rooms -c \"UPDATE public.bookings SET purpose = 'x' WHERE id = 7\""
    done = estate.ssh.run(estate.db.address, tamper)
    assert done.returncode == 0, done.stderr

    verify = estate.run("verify.yml", extravars=_csv_vars(estate), limit=estate.db.name)
    assert verify.status == "failed"
    [failure] = verify.failures
    assert (failure["host"], failure["task"]) == (estate.db.name, "Compare the tables with the manifest")
    assert "table public.bookings: checksum" in failure["message"]
    assert "public.rooms" not in failure["message"]
    checks = run_checks(["data_migration"], [estate.db], estate.check_vars(**_csv_vars(estate)), estate.ssh.private,
                        estate.work)
    assert checks.returncode != 0
    [failed] = [c for c in checks.evidence["hosts"][estate.db.address]["checks"] if c["outcome"] == "failed"]
    assert failed["check"] == "test_tables_match_the_source_manifest" and "public.bookings: checksum" in (
        failed["message"])

    steps = {"migration_steps": ["data_migration"]}
    refused = estate.run("migrate_system.yml", extravars=_csv_vars(estate, **steps), limit=estate.db.name)
    assert refused.status == "failed"
    assert [(f["host"], f["task"]) for f in refused.failures] == [
        (estate.db.name, "Refuse to overwrite tables that hold other data")]
    assert "public.bookings" in refused.failures[0]["message"]
    replaced = estate.run("migrate_system.yml", extravars=_csv_vars(estate, data_migration_replace=True, **steps),
                          limit=estate.db.name)
    assert replaced.status == "successful", replaced.failures
    checks = run_checks(["data_migration"], [estate.db], estate.check_vars(**_csv_vars(estate)), estate.ssh.private,
                        estate.work)
    assert checks.returncode == 0, checks.output


def test_a_dump_brings_the_database_and_what_changed_since_the_load_to_the_control_plane(estate: Estate) -> None:
    # What a rollback after cutover does before deleting the database's server: the users changed a booking.
    change = ("runuser -u postgres -- psql -X -q -d rooms -c "
              "\"UPDATE public.bookings SET purpose = 'moved' WHERE id = 3\"")
    done = estate.ssh.run(estate.db.address, change)
    assert done.returncode == 0, done.stderr
    fetched = estate.work / "fetched"
    fetched.mkdir()
    dump = estate.run("migrate_system.yml", limit=estate.db.name, extravars=_csv_vars(
        estate, migration_steps=["data_migration"], data_migration_action="dump", cp_fetch_dir=str(fetched)))
    assert dump.status == "successful", dump.failures
    assert sorted(p.name for p in fetched.iterdir()) == ["rooms.changes.json", "rooms.sql"]
    text = (fetched / "rooms.sql").read_text()
    assert text.startswith("--\n-- PostgreSQL database dump") and "COPY public.bookings" in text and "moved" in text
    changes = json.loads((fetched / "rooms.changes.json").read_text())
    assert changes["method"] == "copy-text-md5/1"
    assert [d.split(":")[0] for d in changes["differences"]] == ["table public.bookings"], changes
    left = estate.ssh.run(estate.db.address, "ls /var/lib/postgresql/cp-migration/ 2>/dev/null | grep -c rooms")
    assert left.stdout.strip() in ("", "0")  # the staged copy is gone from the host


@pytest.mark.parametrize(("variables", "task", "message"), [
    pytest.param({"tomcat_heap_max": "lots", "migration_steps": ["tomcat"]}, "Check the heap sizes",
                 "tomcat_heap_min and tomcat_heap_max take java's -Xms/-Xmx sizes", id="bad-heap"),
    pytest.param({"nginx_listen_port": "eighty", "migration_steps": ["nginx"]},
                 "Validating arguments against arg spec 'main'", "nginx_listen_port", id="bad-type"),
    pytest.param({"migration_steps": ["tomcat", "weblogic"]}, "Check migration_system and migration_steps",
                 "migration_steps, a list drawn from", id="bad-step"),
])
def test_a_bad_variable_fails_naming_the_task_and_host(estate: Estate, variables: dict[str, Any], task: str,
                                                       message: str) -> None:
    run = estate.run("migrate_system.yml", extravars={**estate.extravars, **variables}, limit=estate.app.name)
    assert run.status == "failed"
    [failure] = run.failures
    assert failure["host"] == estate.app.name
    assert failure["task"].startswith(task), failure
    assert message in failure["message"], failure


def _unallocatable_address(cloud: Any, network_name: str) -> str:
    """An address of the network's subnet outside its allocation pools (and not the gateway): no server has it."""
    network = cloud.network.find_network(network_name, ignore_missing=False)
    subnet = next(s for s in cloud.network.subnets(network_id=network.id) if s.ip_version == 4)
    pools = [(ipaddress.ip_address(p["start"]), ipaddress.ip_address(p["end"])) for p in subnet.allocation_pools]
    gateway = ipaddress.ip_address(subnet.gateway_ip)
    for address in reversed(list(ipaddress.ip_network(subnet.cidr).hosts())):
        if address != gateway and not any(start <= address <= end for start, end in pools):
            return str(address)
    raise AssertionError(f"{subnet.cidr}: every address is in an allocation pool {subnet.allocation_pools}")


def test_an_unreachable_host_is_reported_as_unreachable(estate: Estate, fleet: Any) -> None:
    ghost_address = _unallocatable_address(fleet.conn, "devcloud-net")
    ghost = dataclasses.replace(estate.db, name="ghost", address=ghost_address)
    groups = {**estate.groups, "nginx": [*estate.groups["nginx"], ghost]}
    inv = inventory(groups, estate.hostvars, estate.ssh.private)
    run = estate.run("migrate_system.yml", inv=inv, extravars={**estate.extravars, "migration_steps": ["nginx"]},
                     limit="ghost")
    assert run.status == "failed"
    assert run.stats.get("dark", {}).get("ghost") == 1
    [failure] = run.failures
    assert failure["host"] == "ghost" and failure["status"] == "unreachable"
    assert failure["task"] == "Gathering Facts"
    # The error says which address could not be reached, and over what.
    assert f"connect to host {ghost_address} port 22" in failure["message"], failure


_HTTP_GET = ("import sys, urllib.request, urllib.error\n"
             "try:\n    r = urllib.request.urlopen(sys.argv[1], timeout=10)\n"
             "except urllib.error.HTTPError as e:\n    r = e\n"
             "sys.stdout.write(str(r.status) + chr(10) + r.read().decode(errors='replace'))\n")


def _tomcat_get(estate: Estate, path: str) -> tuple[int, str]:
    """GET from Tomcat on the app host's loopback (its security group keeps 8080 closed): (status, body)."""
    done = estate.ssh.run(estate.app.address, f"python3 -c {shlex.quote(_HTTP_GET)} http://127.0.0.1:8080{path}")
    assert done.returncode == 0, done.stderr
    status, _, body = done.stdout.partition("\n")
    return int(status), body


def test_a_war_named_root_replaces_debians_default_application_at_the_root(estate: Estate, timings: list[str]) -> None:
    """ROOT.war is served at / (not Debian's "It works !" page), a second run changes nothing, the checks pass."""
    war = make_war(estate.work / "files" / "ROOT.war", ROOT_APP)
    root = {estate.app.name: {"app_deploy_name": "ROOT", "app_deploy_artifact_src": str(war),
                              "app_deploy_artifact_checksum": sha256_of(war),
                              "app_deploy_health_url": "http://127.0.0.1:8080/", "app_deploy_health_content": ROOT_APP}}
    status, body = _tomcat_get(estate, "/")
    assert status == 200 and "It works !" in body, (status, body[:300])  # what the tomcat role left at /

    steps = {**estate.extravars, "migration_steps": ["app_deploy"]}
    deploy = estate.run("migrate_system.yml", inv=estate.inventory(root), extravars=steps, limit=estate.app.name)
    assert deploy.status == "successful", deploy.failures
    assert {task for _, task in deploy.changed_tasks} == {"Remove Debian's default application at /",
                                                          "Copy the WAR from the control machine"}
    status, body = _tomcat_get(estate, "/")
    assert status == 200 and ROOT_APP in body and "It works" not in body, (status, body[:300])
    assert NEW_APP in _tomcat_get(estate, "/minwon/")[1]  # the other context stays

    again = estate.run("migrate_system.yml", inv=estate.inventory(root), extravars=steps, limit=estate.app.name)
    assert again.status == "successful" and again.changed(estate.app.name) == 0, again.changed_tasks
    checks = run_checks(["app_deploy"], [estate.app], estate.check_vars(root), estate.ssh.private, estate.work)
    assert checks.returncode == 0, checks.output
    timings.append(f"ROOT.war: deploy {deploy.seconds:.1f} s, again {again.seconds:.1f} s, "
                   f"checks {checks.seconds:.1f} s")


def test_a_failed_health_check_names_the_url_and_its_answer(estate: Estate) -> None:
    missing = {estate.app.name: {"app_deploy_health_url": "http://127.0.0.1:8080/no-such-app/",
                                 "app_deploy_health_timeout": 4}}
    steps = {**estate.extravars, "migration_steps": ["app_deploy"]}
    run = estate.run("migrate_system.yml", inv=estate.inventory(missing), extravars=steps, limit=estate.app.name)
    assert run.status == "failed"
    [failure] = run.failures
    assert (failure["host"], failure["task"]) == (estate.app.name, "Fail unless the application answered")
    message = failure["message"]
    assert message.startswith("http://127.0.0.1:8080/no-such-app/ answered 404 after 2 tries "
                              "(app_deploy_health_timeout 4 s): "), message
    # Tomcat's error page, as text.
    assert "HTTP Status 404" in message and "<" not in message, message
