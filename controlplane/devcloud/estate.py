"""The rehearsal estate: the legacy side of two sample systems of an agency on the dev cloud, as an operator finds it
before a migration, and a ready wave file to migrate them (`controlplane devcloud estate up|show|down`).

`up` goes through the product's own services and flows, each step finding what is there before making anything (a
second `up` changes nothing):
  1. the agency (REHEARSAL unless told otherwise), onboarded on the cloud: a network that clashes with no other
     agency's nor with a route of this machine, ingress 22/80/8080/5432 (+ICMP) from 10/8, the estate's SSH key;
     the onboarding applied in the foreground;
  2. the estate's SSH key pair (<data dir>/estate/<agency>/id_ed25519, 0600) as the credential estate-<agency>;
  3. its two systems in the inventory (samples.systems: a PostgreSQL database and the WebLogic application that
     calls it), imported when missing, never changed once there (an operator may have migrated them since);
  4. the files in the artifacts directory (samples.Files): the legacy WAR, the new one, the legacy data and its
     manifest;
  5. three hosts in the agency's project, tagged cp_owner=estate/<AGENCY>/<role>: the legacy database, the legacy
     application server and the users' nginx front;
  6. a playbook job (migrate_system.yml, samples.legacy_job) on each host that does not answer as it should yet,
     side by side: PostgreSQL with the legacy data loaded and proven against the manifest, Tomcat (WebLogic's
     stand-in) serving the legacy WAR at /, nginx on the front proxying to it;
  7. the dump the wave moves, taken from the legacy database with pg_dump over SSH (a real source, proven against
     the manifest by the load above), when the database was (re)configured or the dump is missing;
  8. the wave file (samples.wave_file), named after the first wave name not taken yet.
`down` deletes the estate's hosts and files; servers that migrations of its systems left in the project are listed,
and deleted with `with_migrations`. The agency, its onboarding, the credential, the key and the systems are kept.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from controlplane.auth import audit
from controlplane.auth import service as auth_service
from controlplane.auth.schemas import AgencyCreate, AgencyKind
from controlplane.automation import flows as job_flows
from controlplane.automation import service as job_service
from controlplane.automation.domain import JobStatus
from controlplane.automation.schemas import CredentialIn, JobIn
from controlplane.cloud import flows as cloud_flows
from controlplane.cloud import service as cloud_service
from controlplane.cloud.domain import ServerInfo, ServerSpec
from controlplane.cloud.schemas import OnboardingSpecIn, TenancyStatus
from controlplane.context import AppContext
from controlplane.db import transaction
from controlplane.devcloud import samples
from controlplane.devcloud.hosts import BRIDGE_PREFIX, ssh_answers
from controlplane.devcloud.samples import AGENCY, ROLES, Files, Names
from controlplane.errors import AppError, Conflict, NotFound
from controlplane.inventory import service as inventory
from controlplane.inventory.schemas import ImportMode
from controlplane.secrets import secret_box
from controlplane.waves import flows as wave_flows
from controlplane.waves import service as wave_service
from controlplane.waves.domain import State

SSH_TIMEOUT_SECONDS = 180
# The dev cloud's hosts are throwaway machines, each server with new host keys: none is kept for them.
SSH_OPTIONS = ("-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o",
               "ConnectTimeout=5", "-o", "LogLevel=ERROR")
COUNT_ROWS = "SELECT count(*) FROM public.requests"
QUIET = frozenset({"found", "unchanged", "kept", "left"})  # what a run reports without changing anything


class EstateFailed(AppError):
    """A step of the estate could not be done (the message says which and why)."""

    status_code = 502
    code = "estate_failed"


@dataclass(frozen=True)
class Change:
    action: str  # created, updated, applied, configured, written, taken, deleted | found, unchanged, kept, left
    what: str

    @property
    def changed(self) -> bool:
        return self.action not in QUIET


@dataclass(frozen=True)
class Host:
    role: str
    name: str
    address: str
    status: str
    id: str


@dataclass
class Outcome:
    agency: str
    changes: list[Change] = field(default_factory=list)
    hosts: dict[str, Host] = field(default_factory=dict)
    wave_file: Path | None = None
    wave_name: str | None = None

    @property
    def changed(self) -> bool:
        return any(change.changed for change in self.changes)


@dataclass(frozen=True)
class Status:
    """What `estate show` prints: the agency's tenancy, its hosts, the other servers of its project, its systems with
    the waves that hold them, and the files."""

    agency: str
    tenancy: str | None  # the tenancy's status; None: not onboarded
    cidr: str | None
    hosts: list[Host]
    others: list[ServerInfo]  # servers of the project the estate did not make (migrations' ones)
    systems: dict[str, str]  # code -> inventory status
    waves: list[tuple[int, str, str, str]]  # (wave id, wave name, system, migration state)
    files: list[Path]
    wave_file: Path | None


class Estate:
    """The rehearsal estate of one agency, made and found through the product's services, on `ctx`'s database and
    cloud (the dev cloud: its hosts are reached by SSH and HTTP from this machine). `say` gets a line per step."""

    def __init__(self, ctx: AppContext, *, agency: str = AGENCY, actor: audit.Actor,
                 say: Callable[[str], None] | None = None) -> None:
        self.ctx, self.names, self.actor = ctx, Names(agency), actor
        self.say = say or (lambda _line: None)
        self.home = ctx.settings.data_dir / "estate" / self.names.slug
        self.files = Files(ctx.settings.effective_artifacts_dir / f"estate-{self.names.slug}")
        self._outcome = Outcome(agency)

    @property
    def key_file(self) -> Path:
        return self.home / "id_ed25519"

    @property
    def wave_path(self) -> Path:
        return self.home / "wave.yaml"

    def _note(self, action: str, what: str) -> None:
        self._outcome.changes.append(Change(action, what))
        self.say(f"{action:<10} {what}")

    # --- up ---------------------------------------------------------------------------------------------------

    def up(self) -> Outcome:
        self._outcome = Outcome(self.names.agency)
        self.ensure_agency()
        public_key = self.ensure_key()
        cidr = self.ensure_onboarded(public_key)
        self.ensure_credential()
        self.ensure_systems()
        self.ensure_files()
        hosts = self.ensure_hosts()
        todo = self.unready(hosts)
        if todo:
            self.configure(hosts, todo, cidr=cidr)
        self.ensure_dump(hosts["db"], fresh="db" in todo)
        self.ensure_wave_file(hosts)
        return self._outcome

    def ensure_agency(self) -> None:
        code = self.names.agency
        with transaction(self.ctx.sessions) as session:
            try:
                auth_service.agency_by_code(session, code=code)
                self._note("found", f"agency {code}")
                return
            except NotFound:
                auth_service.create_agency(session, clock=self.ctx.clock, actor=self.actor, data=AgencyCreate(
                    code=code, name_ko=samples.AGENCY_NAME_KO, name_en=samples.AGENCY_NAME_EN,
                    kind=AgencyKind.AGENCY))
        self._note("created", f"agency {code} ({samples.AGENCY_NAME_EN})")

    def ensure_key(self) -> str:
        """The estate's SSH key pair (made once); its public key."""
        public_file = self.key_file.with_suffix(".pub")
        if self.key_file.is_file():
            key = serialization.load_ssh_private_key(self.key_file.read_bytes(), password=None)
            line = f"{_public_line(key)} estate-{self.names.slug}"
            if not public_file.is_file() or public_file.read_text().split()[:2] != line.split()[:2]:
                public_file.write_text(line + "\n")  # the public half, written again from the private key
            self._note("found", f"SSH key {self.key_file}")
            return line
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = Ed25519PrivateKey.generate()
        private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                    serialization.NoEncryption())
        line = f"{_public_line(key)} estate-{self.names.slug}"
        fd = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(private)
        public_file.write_text(line + "\n")
        self._note("created", f"SSH key {self.key_file} (0600)")
        return line

    def ensure_onboarded(self, public_key: str) -> str:
        """The agency's spec set and applied (a plan first when it was applied: an apply only when the cloud differs);
        the network's CIDR."""
        code, cloud = self.names.agency, self.ctx.cloud.cloud_name
        with transaction(self.ctx.sessions) as session:
            agency = auth_service.agency_by_code(session, code=code)
            tenancy = cloud_service.find_tenancy(session, agency_id=agency.id, cloud=cloud)
            if tenancy is not None:
                cidr = tenancy.cidr
            else:
                others = [t.cidr for t in cloud_service.list_tenancies(session, viewer=self.actor, cloud=cloud)]
                cidr = samples.free_cidr([*others, *_routes()])
            data = OnboardingSpecIn.model_validate(samples.onboarding(public_key, cidr))
            tenancy, _created = cloud_service.put_spec(session, clock=self.ctx.clock, actor=self.actor, cloud=cloud,
                                                       code=code, data=data)
            status = cloud_service.tenancy_status(tenancy)
        if status is TenancyStatus.APPLIED:
            with transaction(self.ctx.sessions) as session:
                plan = cloud_flows.plan(session, ctx=self.ctx, viewer=self.actor, code=code)
            if plan.is_noop:
                self._note("found", f"{code} onboarded on {cloud} (network {cidr}, nothing to change)")
                return cidr
        self.say(f"applying the onboarding of {code} on {cloud} (network {cidr}) ...")
        with transaction(self.ctx.sessions) as session:
            operation = cloud_flows.request_apply(session, ctx=self.ctx, actor=self.actor, code=code, foreground=True)
            operation_id = operation.id
        cloud_flows.run_apply(self.ctx, operation_id=operation_id)
        with transaction(self.ctx.sessions) as session:
            done = cloud_service.operation_read(cloud_service.get_operation(session, viewer=self.actor,
                                                                            operation_id=operation_id))
        if done.error is not None:
            raise EstateFailed(f"the onboarding of {code} failed (operation {operation_id}): {done.error.message}")
        self._note("applied", f"{code} onboarding on {cloud}: project agency-{code.lower()}, network {cidr}, "
                              f"ingress {', '.join(map(str, samples.INGRESS_PORTS))} from {samples.INGRESS_FROM}")
        return cidr

    def ensure_credential(self) -> None:
        name, private_key = self.names.credential, self.key_file.read_text()
        public_key = self.key_file.with_suffix(".pub").read_text().strip()
        with transaction(self.ctx.sessions) as session:
            try:
                held = job_service.get_credential(session, name=name)
                if job_service.fingerprint(held.public_key) == job_service.fingerprint(public_key):
                    self._note("found", f"credential {name}")
                    return
            except NotFound:
                pass
            _credential, created = job_service.put_credential(
                session, clock=self.ctx.clock, actor=self.actor, box=secret_box(self.ctx.settings), name=name,
                data=CredentialIn(private_key=private_key, description=f"the rehearsal estate of {self.names.agency}"))
        self._note("created" if created else "updated", f"credential {name} (the estate's key)")

    def ensure_systems(self) -> None:
        wanted = samples.systems(self.names)
        codes = [system["code"] for system in wanted]
        with transaction(self.ctx.sessions) as session:
            held = {s.code: s.status for s in inventory.domain_systems(session, codes=codes)}
            missing = [system for system in wanted if system["code"] not in held]
            if missing:
                content = yaml.safe_dump({"systems": missing}, allow_unicode=True, sort_keys=False).encode()
                inventory.import_systems(session, clock=self.ctx.clock, actor=self.actor,
                                         filename=f"estate-{self.names.slug}.yaml", content=content,
                                         mode=ImportMode.MERGE)
        for code, status in held.items():
            self._note("found", f"system {code} ({status})")
        for system in missing:
            self._note("created", f"system {system['code']} ({system['name_en']})")

    def ensure_files(self) -> None:
        self.files.directory.mkdir(parents=True, exist_ok=True)
        for path, content in self.files.made().items():
            if path.is_file() and path.read_bytes() == content:
                self._note("unchanged", str(path))
                continue
            _write(path, content)
            self._note("written", str(path))

    def _agency_id(self) -> int:
        with transaction(self.ctx.sessions) as session:
            return auth_service.agency_by_code(session, code=self.names.agency).id

    def ensure_hosts(self, roles: Sequence[str] = ROLES) -> dict[str, Host]:
        """The estate's hosts (of `roles`: all three by default), booted side by side where missing, each answering
        SSH from here."""
        agency_id, cloud = self._agency_id(), self.ctx.cloud.cloud_name
        with wave_flows.agency_cloud(self.ctx, agency_id=agency_id, cloud=cloud) as (gateway, _spec):
            found = {role: gateway.find_server(self.names.owner(role)) for role in roles}

        def make(role: str) -> ServerInfo:
            with wave_flows.agency_cloud(self.ctx, agency_id=agency_id, cloud=cloud) as (gateway, spec):
                return gateway.create_server(ServerSpec(
                    owner=self.names.owner(role), name=self.names.server(role), flavor=samples.FLAVOR,
                    image=self.ctx.settings.migration_image, network=spec.network_name, key_name=spec.keypair_name,
                    labels={"cp_estate": self.names.agency}))

        todo = [role for role, server in found.items() if server is None or server.status != "ACTIVE"]
        new = {role for role, server in found.items() if server is None}
        if todo:
            self.say(f"booting {', '.join(self.names.server(r) for r in todo)} ...")
            with ThreadPoolExecutor(max_workers=len(todo)) as pool:
                found.update(zip(todo, pool.map(make, todo), strict=True))
        hosts = {}
        for role, server in found.items():
            assert server is not None
            if not server.addresses:
                raise EstateFailed(f"server {server.name} ({server.id}) has no address")
            hosts[role] = Host(role, server.name, server.addresses[0], server.status, server.id)
            self._note("created" if role in new else "found", f"server {server.name} ({server.addresses[0]})")
        deadline = time.monotonic() + SSH_TIMEOUT_SECONDS
        for host in hosts.values():
            while not ssh_answers(host.address):
                if time.monotonic() > deadline:
                    raise EstateFailed(f"{host.name} ({host.address}) does not answer SSH after "
                                       f"{SSH_TIMEOUT_SECONDS} s")
                time.sleep(0.5)
        self._outcome.hosts = hosts
        return hosts

    def unready(self, hosts: dict[str, Host]) -> list[str]:
        """The roles whose host does not answer as it should: the database with every row of the legacy data, the
        application server with the legacy application, the front with a page (legacy or, once cut over, new)."""
        todo = []
        rows = self.ssh(hosts["db"].address, shlex.join(["runuser", "-u", "postgres", "--", "psql", "-XtAc",
                                                          COUNT_ROWS, self.names.database]), check=False)
        if rows.strip() != str(samples.DATASET_ROWS):
            todo.append("db")
        if samples.LEGACY_APP not in _page(f"http://{hosts['app'].address}:8080/"):
            todo.append("app")
        front = _page(f"http://{hosts['front'].address}/")
        if samples.LEGACY_APP not in front and samples.NEW_APP not in front:
            todo.append("front")
        for role in ROLES:
            if role not in todo:
                self._note("found", f"{hosts[role].name} configured")
        return todo

    def configure(self, hosts: dict[str, Host], roles: list[str], *, cidr: str) -> list[str]:
        """A playbook job per host of `roles` (run here, side by side: a job's plays run one after the other), each
        setting up its part of the legacy side; their ids."""
        addresses = {r: h.address for r, h in hosts.items()}
        jobs: dict[str, str] = {}
        for role in roles:
            body = samples.legacy_job(self.names, addresses, self.files, cidr=cidr, credential=self.names.credential,
                                      roles=[role])
            if role == "db":
                body["secrets"] = {"postgresql_db_owner_password": secrets.token_urlsafe(24)}
            data = JobIn.model_validate(body)
            with transaction(self.ctx.sessions) as session:
                jobs[role] = job_flows.request_job(session, ctx=self.ctx, actor=self.actor, data=data,
                                                   foreground=True).id
            self.say(f"job {jobs[role]}: {', '.join(data.extravars['migration_steps'])} on {hosts[role].name} ...")
        workers = [threading.Thread(target=job_flows.run_job, args=(self.ctx,), kwargs={"job_id": job_id},
                                    name=f"estate-job-{job_id[:8]}", daemon=True) for job_id in jobs.values()]
        for worker in workers:
            worker.start()
        seen = dict.fromkeys(jobs.values(), 0)
        while True:  # each change a task makes on a host, and each failure, as they happen
            alive = any(worker.is_alive() for worker in workers)
            quiet = True
            for job_id in jobs.values():
                with transaction(self.ctx.sessions) as session:
                    events = job_service.events(session, job_id=job_id, after=seen[job_id], limit=1000)
                for event in events:
                    quiet, seen[job_id] = False, max(seen[job_id], event.seq)
                    if event.kind in ("failed", "unreachable") or (event.kind == "ok" and event.changed):
                        self.say(f"    {'changed' if event.kind == 'ok' else event.kind}: [{event.host}] "
                                 f"{event.task}" + (f": {event.message}" if event.kind != "ok" and event.message
                                                    else ""))
            if not alive and quiet:
                break
            time.sleep(0.5)
        failed = []
        for role, job_id in jobs.items():
            with transaction(self.ctx.sessions) as session:
                job = job_service.job_read(job_service.get_job(session, viewer=self.actor, job_id=job_id))
            if job.status is JobStatus.SUCCESSFUL:
                self._note("configured", f"{hosts[role].name} (job {job_id})")
            else:
                failed.append(f"job {job_id} on {hosts[role].name} {job.status.value}: {job.explanation} "
                              f"(controlplane jobs show {job_id})")
        if failed:
            raise EstateFailed("; ".join(failed))
        return list(jobs.values())

    def ensure_dump(self, db: Host, *, fresh: bool) -> None:
        """The plain pg_dump of the legacy database that the wave moves, taken over SSH."""
        if self.files.dump.is_file() and not fresh:
            self._note("unchanged", f"{self.files.dump} (taken from {db.name})")
            return
        dump = self.ssh(db.address, "runuser -u postgres -- pg_dump --no-owner --no-privileges "
                                     + shlex.quote(self.names.database), timeout=120)
        _write(self.files.dump, dump.encode())
        self._note("taken", f"{self.files.dump} (pg_dump of {self.names.database} on {db.name})")

    def ensure_wave_file(self, hosts: dict[str, Host]) -> Path:
        with transaction(self.ctx.sessions) as session:
            taken = {w.name for w in wave_service.list_waves(session, viewer=self.actor, limit=100_000)}
        number = 1
        while self.names.wave(number) in taken:
            number += 1
        name = self.names.wave(number)
        text = samples.wave_file(self.names, wave=name, addresses={r: h.address for r, h in hosts.items()},
                                 files=self.files, checksum=samples.sha256_of_bytes(samples.war_bytes(
                                     samples.NEW_APP)), path=self.wave_path)
        self._outcome.wave_file, self._outcome.wave_name = self.wave_path, name
        if self.wave_path.is_file() and self.wave_path.read_text(encoding="utf-8") == text:
            self._note("unchanged", f"{self.wave_path} (wave {name})")
        else:
            _write(self.wave_path, text.encode())
            self._note("written", f"{self.wave_path} (wave {name})")
        return self.wave_path

    def ssh(self, address: str, command: str, *, timeout: float = 30, check: bool = True) -> str:
        """Run `command` as root on a dev cloud host with the estate's key; its output."""
        argv = ["ssh", "-i", str(self.key_file), *SSH_OPTIONS, f"root@{address}", command]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)  # noqa: S603
        if check and done.returncode != 0:
            raise EstateFailed(f"on {address}, `{command}` failed ({done.returncode}): {done.stderr.strip()[-300:]}")
        return done.stdout

    # --- show and down ----------------------------------------------------------------------------------------

    def _servers(self) -> tuple[str | None, str | None, list[ServerInfo]]:
        """(tenancy status, cidr, the servers of the agency's project); no servers when it is not onboarded."""
        with transaction(self.ctx.sessions) as session:
            try:
                agency = auth_service.agency_by_code(session, code=self.names.agency)
            except NotFound:
                return None, None, []
            tenancy = cloud_service.find_tenancy(session, agency_id=agency.id, cloud=self.ctx.cloud.cloud_name)
            if tenancy is None:
                return None, None, []
            status, cidr, applied = cloud_service.tenancy_status(tenancy).value, tenancy.cidr, bool(
                tenancy.service_user and tenancy.project_id)
            agency_id = agency.id
        if not applied:
            return status, cidr, []
        with wave_flows.agency_cloud(self.ctx, agency_id=agency_id, cloud=self.ctx.cloud.cloud_name) as (gateway, _):
            return status, cidr, gateway.list_servers()

    def _migrations(self) -> list[tuple[int, str, str, str]]:
        codes = {self.names.db_system, self.names.app_system}
        with transaction(self.ctx.sessions) as session:
            return [(w.id, w.name, m.system.code, m.state)
                    for w in wave_service.list_waves(session, viewer=self.actor, limit=100_000)
                    for m in w.migrations if m.system.code in codes]

    def show(self) -> Status:
        status, cidr, servers = self._servers()
        hosts = [Host(role, s.name, s.addresses[0] if s.addresses else "–", s.status, s.id)
                 for s in servers if (role := samples.role_of(s.owner, self.names.agency)) is not None]
        others = [s for s in servers if samples.role_of(s.owner, self.names.agency) is None]
        with transaction(self.ctx.sessions) as session:
            held = {s.code: str(s.status) for s in inventory.domain_systems(
                session, codes=[self.names.db_system, self.names.app_system])}
        files = sorted(p for p in self.files.directory.glob("*") if p.is_file()) \
            if self.files.directory.is_dir() else []
        return Status(self.names.agency, status, cidr, sorted(hosts, key=lambda h: ROLES.index(h.role)), others,
                      held, self._migrations(), files, self.wave_path if self.wave_path.is_file() else None)

    def down(self, *, with_migrations: bool = False) -> Outcome:
        """Delete the estate's hosts and files (and, with `with_migrations`, the servers migrations left in the
        project). Refused while a migration of its systems runs: its steps would lose their hosts midway."""
        self._outcome = Outcome(self.names.agency)
        running = [(wave, system, state) for wave, _name, system, state in self._migrations()
                   if State(state).active]
        if running:
            raise Conflict("migrations of the estate's systems are running: "
                           + ", ".join(f"{system} of wave {wave} ({state})" for wave, system, state in running)
                           + "; wait for them to rest (controlplane waves watch ID), then run estate down again",
                           field="agency")
        _status, _cidr, servers = self._servers()
        ours = [s for s in servers if samples.role_of(s.owner, self.names.agency) is not None]
        theirs = [s for s in servers if samples.role_of(s.owner, self.names.agency) is None]
        doomed = ours + (theirs if with_migrations else [])
        if doomed:
            self.say(f"deleting {', '.join(s.name for s in doomed)} ...")
            agency_id, cloud = self._agency_id(), self.ctx.cloud.cloud_name

            def delete(server: ServerInfo) -> None:
                with wave_flows.agency_cloud(self.ctx, agency_id=agency_id, cloud=cloud) as (gateway, _spec):
                    gateway.delete_server(server.id)

            with ThreadPoolExecutor(max_workers=len(doomed)) as pool:
                list(pool.map(delete, doomed))
            for server in doomed:
                self._note("deleted", f"server {server.name} ({', '.join(server.addresses) or 'no address'}"
                                      f"{'' if server in ours else ', owner ' + str(server.owner)})")
        for server in [] if with_migrations else theirs:
            self._note("left", f"server {server.name} (owner {server.owner}): roll its migration back, or "
                               "estate down --with-migrations")
        for path in [*self._estate_files(), self.wave_path]:
            if path.is_file():
                path.unlink()
                self._note("deleted", str(path))
        if self.files.directory.is_dir() and not any(self.files.directory.iterdir()):
            self.files.directory.rmdir()
        if not self._outcome.changes:
            self._note("found", f"no estate of {self.names.agency} to remove")
        kept = [f"agency {self.names.agency} and its onboarding", f"credential {self.names.credential}",
                f"key {self.key_file}", f"systems {self.names.db_system}, {self.names.app_system}"]
        self._note("kept", "; ".join(kept))
        return self._outcome

    def _estate_files(self) -> list[Path]:
        return [*self.files.made(), self.files.dump]


def _public_line(key: Any) -> str:
    """`ssh-ed25519 AAAA...` of a private key."""
    return str(key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                             serialization.PublicFormat.OpenSSH).decode())


def _write(path: Path, content: bytes) -> None:
    """Replace the file in one step (a reader never sees half of it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(content)
    partial.replace(path)


def _page(url: str) -> str:
    """The page at `url` when it answers 200, else ''."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - http to a dev cloud host
            return str(response.read().decode(errors="replace")) if response.status == 200 else ""
    except (urllib.error.URLError, OSError, ValueError):
        return ""


def _routes() -> Iterable[str]:
    """The IPv4 networks this machine routes to that are in use (every dev cloud network with a host up has its
    gateway address here)."""
    try:
        listing = subprocess.run(["ip", "-j", "-4", "route", "show"],  # noqa: S607
                                 capture_output=True, text=True, timeout=10, check=True).stdout
        return samples.routed(json.loads(listing), bridge_prefix=BRIDGE_PREFIX)
    except (OSError, subprocess.SubprocessError, ValueError):
        return []
