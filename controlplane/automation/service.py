"""Database access for SSH credentials, jobs, their events and check evidence. Keyword-only, no HTTP, no runs
(those are in flows.py, through the runner and check ports)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from controlplane.artifacts import ArtifactError, resolve_artifact
from controlplane.auth import audit
from controlplane.auth.roles import Principal
from controlplane.auth.service import agency_by_code
from controlplane.automation import domain
from controlplane.automation.domain import JobStatus
from controlplane.automation.models import Credential, Job, JobCheck, JobEvent
from controlplane.automation.schemas import (
    NAME_PATTERN,
    CredentialIn,
    CredentialRead,
    HostStatsRead,
    JobCheckRead,
    JobEventRead,
    JobHostIn,
    JobIn,
    JobRead,
    VerificationRead,
)
from controlplane.clock import Clock
from controlplane.errors import Conflict, InvalidInput, NotFound
from controlplane.secrets import SecretBox

ACTIVE = (JobStatus.PENDING.value, JobStatus.RUNNING.value)
MAX_TEXT = 1000


class JobFinished(Conflict):
    code = "job_finished"


# --- credentials -----------------------------------------------------------------------------------

def _public_key(private_key: str) -> str:
    """The OpenSSH public key of an unencrypted private key; InvalidInput naming private_key otherwise."""
    data = private_key.strip().encode()
    load = serialization.load_ssh_private_key if data.startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----") \
        else serialization.load_pem_private_key
    try:
        key: Any = load(data, password=None)
        public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    except TypeError:
        raise InvalidInput("private_key: the key is protected by a passphrase; give an unencrypted key",
                           field="private_key") from None
    except (ValueError, UnsupportedAlgorithm):
        raise InvalidInput("private_key: not an OpenSSH or PEM private key of a key type SSH uses",
                           field="private_key") from None
    return str(public.decode())


def fingerprint(public_key: str) -> str:
    """SHA256:... as ssh-keygen -l prints it."""
    blob = base64.b64decode(public_key.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def _known_hosts_entries(text: str) -> int:
    return sum(1 for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))


def _check_known_hosts(text: str) -> None:
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip() and not line.lstrip().startswith("#") and len(line.split()) < 3:
            raise InvalidInput(f"known_hosts: line {number} is not 'host key-type key'", field="known_hosts")


def credential_read(credential: Credential) -> CredentialRead:
    return CredentialRead(name=credential.name, username=credential.username, public_key=credential.public_key,
                          fingerprint=fingerprint(credential.public_key),
                          known_hosts_entries=_known_hosts_entries(credential.known_hosts),
                          description=credential.description, created_by=credential.created_by,
                          created_at=credential.created_at, updated_at=credential.updated_at)


def _credential_snapshot(credential: Credential) -> dict[str, Any]:
    return {"name": credential.name, "username": credential.username, "secret": credential.private_key_sealed,
            "public_key": credential.public_key, "known_hosts": _known_hosts_entries(credential.known_hosts),
            "description": credential.description}


def list_credentials(session: Session) -> Sequence[Credential]:
    return session.scalars(select(Credential).order_by(Credential.name)).all()


def get_credential(session: Session, *, name: str) -> Credential:
    credential = session.scalar(select(Credential).where(Credential.name == name))
    if credential is None:
        raise NotFound(f"unknown credential '{name}'", field="credential")
    return credential


def credential_name(session: Session, *, credential_id: int | None) -> str:
    """The name of a credential by its id ("" when there is none)."""
    if credential_id is None:
        return ""
    return session.scalar(select(Credential.name).where(Credential.id == credential_id)) or ""


def put_credential(session: Session, *, clock: Clock, actor: audit.Actor, box: SecretBox, name: str,
                   data: CredentialIn) -> tuple[Credential, bool]:
    """Create the credential, or replace its key and fields (a key rotation); True when it is new."""
    if not re.fullmatch(NAME_PATTERN, name):
        raise InvalidInput("name: 1-64 lower-case letters, digits, '.', '_' or '-', first a letter or digit",
                           field="name")
    public_key = _public_key(data.private_key)
    _check_known_hosts(data.known_hosts)
    now = clock.now()
    credential = session.scalar(select(Credential).where(Credential.name == name))
    created = credential is None
    before = {} if credential is None else _credential_snapshot(credential)
    if credential is None:
        credential = Credential(name=name, created_by=_actor_name(actor), created_at=now)
        session.add(credential)
    credential.username, credential.public_key = data.username, public_key
    credential.private_key_sealed = box.seal(data.private_key.strip() + "\n")
    credential.known_hosts, credential.description, credential.updated_at = data.known_hosts, data.description, now
    session.flush()
    audit.record(session, clock=clock, actor=actor, action="create" if created else "update",
                 entity_type="credential", entity_id=credential.name, before=None if created else before,
                 after=_credential_snapshot(credential))
    return credential, created


def delete_credential(session: Session, *, clock: Clock, actor: audit.Actor, name: str) -> None:
    credential = get_credential(session, name=name)
    used = session.scalar(select(func.count()).select_from(Job).where(Job.credential_id == credential.id))
    if used:
        raise Conflict(f"credential '{name}' is used by {used} job(s), whose records name it; replace its key "
                       "with PUT instead", field="name")
    audit.record(session, clock=clock, actor=actor, action="delete", entity_type="credential", entity_id=name,
                 before=_credential_snapshot(credential))
    session.delete(credential)


def _actor_name(actor: audit.Actor) -> str:
    return actor.username if isinstance(actor, Principal) else actor


# --- jobs --------------------------------------------------------------------------------------------

def hosts_of(job: Job) -> list[domain.JobHost]:
    return [domain.JobHost(name=h["name"], address=h["address"], groups=tuple(h.get("groups", ())),
                           vars=h.get("vars", {})) for h in job.hosts]


def request_job(session: Session, *, clock: Clock, actor: audit.Actor, box: SecretBox, data: JobIn,
                runner: str, artifacts: Path, queued: bool = True, fetch_dir: Path | None = None) -> Job:
    """Record a job as pending; its secrets are sealed in the row until it ends. The files its variables name are
    recorded as their real paths inside the artifacts directory (anything else is refused). Not `queued`: its
    requester runs it itself. `fetch_dir` (the control plane's own requests only, inside the artifacts directory):
    where its playbooks may bring files from the hosts (`cp_fetch_dir`)."""
    hosts = [domain.JobHost(name=h.name, address=h.address, groups=tuple(h.groups), vars=h.vars) for h in data.hosts]
    try:
        domain.validate_job(data.playbook, hosts, data.extravars, data.secrets, data.limit)
    except domain.JobSpecError as exc:
        raise InvalidInput(str(exc), field=exc.field) from None
    data = data.model_copy(update=with_artifacts(data.extravars, data.hosts, artifacts))
    if fetch_dir is not None:
        if not fetch_dir.resolve().is_relative_to(artifacts.resolve()):
            raise ValueError(f"a job's fetch directory must be inside {artifacts}")
        data = data.model_copy(update={"extravars": {**data.extravars,
                                                     domain.FETCH_DIR_VARIABLE: str(fetch_dir.resolve())}})
    agency_id = agency_by_code(session, code=data.agency, field="agency").id if data.agency is not None else None
    if isinstance(actor, Principal) and not actor.can_reach(agency_id):
        raise NotFound(f"unknown agency '{data.agency}'", field="agency")
    credential = get_credential(session, name=data.credential)
    job = Job(
        id=str(uuid.uuid4()), playbook=data.playbook, agency_id=agency_id, credential_id=credential.id,
        credential=credential, status=JobStatus.PENDING.value, explanation="",
        hosts=[h.model_dump() for h in data.hosts], extravars=data.extravars, secret_names=sorted(data.secrets),
        secrets_sealed=box.seal(json.dumps(data.secrets)) if data.secrets else None, limit=data.limit,
        timeout_seconds=data.timeout_seconds, verify=data.verify, cancel_requested=False,
        requested_by=_actor_name(actor), requested_by_user_id=actor.user_id if isinstance(actor, Principal) else None,
        runner=runner, queued=queued, created_at=clock.now(),
    )
    session.add(job)
    session.flush()
    audit.record(session, clock=clock, actor=actor, action="run", entity_type="job", entity_id=job.id,
                 agency_id=agency_id, after={"playbook": job.playbook, "credential": credential.name,
                                             "hosts": [h.name for h in hosts], "secrets": job.secret_names,
                                             "status": job.status})
    return job


def get_job(session: Session, *, viewer: audit.Actor, job_id: str) -> Job:
    job = session.get(Job, job_id)
    if job is None or (isinstance(viewer, Principal) and not viewer.can_reach(job.agency_id)):
        raise NotFound(f"unknown job '{job_id}'", field="job_id")
    return job


def list_jobs(session: Session, *, viewer: audit.Actor, status: JobStatus | None = None,
              agency: str | None = None, limit: int = 50) -> Sequence[Job]:
    query = select(Job).order_by(Job.created_at.desc(), Job.id).limit(limit)
    if isinstance(viewer, Principal) and viewer.scoped:
        query = query.where(Job.agency_id == viewer.agency_id)
    if status is not None:
        query = query.where(Job.status == status.value)
    if agency is not None:
        query = query.where(Job.agency_id == agency_by_code(session, code=agency, field="agency").id)
    return session.scalars(query).all()


def begin_job(session: Session, *, clock: Clock, job_id: str, runner: str) -> Job | None:
    """pending -> running (None when it is not pending any more: canceled meanwhile, or taken by another)."""
    started = session.execute(
        update(Job).where(Job.id == job_id, Job.status == JobStatus.PENDING.value)
        .values(status=JobStatus.RUNNING.value, started_at=clock.now(), runner=runner)
        .execution_options(synchronize_session=False)
    )
    if started.rowcount != 1:  # type: ignore[attr-defined]
        return None
    return session.get(Job, job_id, populate_existing=True)


def variables_problems(values: Mapping[str, Any], where: str, *, artifacts: Path,
                       reserved: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(field, reason) for everything jobs would refuse in variables given elsewhere (a wave's inputs): their names,
    and the files they name outside the artifacts directory."""
    problems = [(p.field, p.reason) for p in domain.variable_problems(values, where, reserved=reserved)]

    def resolve(field: str, value: Any) -> Any:
        try:
            resolve_artifact(artifacts, value)
        except ArtifactError as exc:
            problems.append((field, str(exc)))
        return value

    domain.map_controller_files(values, where, resolve)
    return problems


def with_artifacts(extravars: Mapping[str, Any], hosts: Sequence[JobHostIn], artifacts: Path) -> dict[str, Any]:
    """The job's extravars and hosts with each file its roles copy from this machine resolved inside `artifacts`;
    InvalidInput naming the field when one is outside it, a link out of it, or missing."""
    def resolve(field: str, value: Any) -> str:
        try:
            return str(resolve_artifact(artifacts, value))
        except ArtifactError as exc:
            raise InvalidInput(f"{field}: {exc}", field=field) from None

    return {"extravars": domain.map_controller_files(extravars, "extravars", resolve),
            "hosts": [host.model_copy(update={"vars": domain.map_controller_files(host.vars, f"hosts.{index}.vars",
                                                                                  resolve)})
                      for index, host in enumerate(hosts)]}


def secrets_of(job: Job, *, box: SecretBox) -> dict[str, str]:
    return json.loads(box.open(job.secrets_sealed)) if job.secrets_sealed else {}


def next_seq(session: Session, *, job_id: str) -> int:
    return int(session.scalar(select(func.coalesce(func.max(JobEvent.seq), 0)).where(JobEvent.job_id == job_id))
               or 0)


def add_event(session: Session, *, clock: Clock, job_id: str, event: domain.JobEvent) -> None:
    session.add(JobEvent(job_id=job_id, seq=event.seq, kind=event.kind, host=event.host,
                         task=(event.task or None) and event.task[:300], status=event.status, changed=event.changed,
                         duration=event.duration, message=event.message[:MAX_TEXT], at=clock.now()))


def cancel_requested(session: Session, *, job_id: str) -> bool:
    return bool(session.scalar(select(Job.cancel_requested).where(Job.id == job_id)))


def request_cancel(session: Session, *, clock: Clock, actor: audit.Actor, job_id: str) -> Job:
    """Ask a job to stop: a pending one is canceled now, a running one by its runner (soon after)."""
    job = get_job(session, viewer=actor, job_id=job_id)
    if job.status not in ACTIVE:
        raise JobFinished(f"job {job_id} has ended already ({job.status})", field="job_id")
    before = {"status": job.status, "cancel_requested": job.cancel_requested}
    job.cancel_requested = True
    # Compare-and-set: a job its runner started meanwhile is not marked canceled here (its runner reads the flag).
    not_started = session.execute(
        update(Job).where(Job.id == job.id, Job.status == JobStatus.PENDING.value)
        .values(status=JobStatus.CANCELED.value, explanation="canceled on request before it started",
                finished_at=clock.now(), secrets_sealed=None, cancel_requested=True)
        .execution_options(synchronize_session=False))
    if not_started.rowcount == 1:  # type: ignore[attr-defined]
        session.refresh(job)
    audit.record(session, clock=clock, actor=actor, action="cancel", entity_type="job", entity_id=job.id,
                 agency_id=job.agency_id, before=before,
                 after={"status": job.status, "cancel_requested": job.cancel_requested})
    return job


def _finish(job: Job, *, clock: Clock, status: JobStatus, explanation: str) -> None:
    job.status, job.explanation, job.finished_at = status.value, explanation[:2000], clock.now()
    job.secrets_sealed = None  # a finished job never needs them again


def complete_job(session: Session, *, clock: Clock, job_id: str, outcome: domain.Outcome, rc: int | None,
                 stats: Mapping[str, domain.HostStats], checks: Iterable[domain.CheckResult] = (),
                 verification: Mapping[str, Any] | None = None) -> Job:
    job = session.get(Job, job_id, populate_existing=True)
    assert job is not None
    for check in checks:
        session.add(JobCheck(job_id=job_id, host=check.host[:255], role=check.role, check=check.check[:200],
                             outcome=check.outcome, duration=check.duration, message=check.message[:MAX_TEXT]))
    job.rc, job.host_stats = rc, {host: vars(s) for host, s in stats.items()}
    job.verification = dict(verification) if verification is not None else None
    _finish(job, clock=clock, status=outcome.status, explanation=outcome.explanation)
    audit.record(session, clock=clock, actor="system", action="finished", entity_type="job", entity_id=job.id,
                 agency_id=job.agency_id, after={"status": job.status, "explanation": job.explanation})
    return job


def fail_job(session: Session, *, clock: Clock, job_id: str, explanation: str) -> Job | None:
    """A job that could not run to its end (refused by the executor, interrupted, broken): failed, saying why."""
    job = session.get(Job, job_id, populate_existing=True)
    if job is None or job.status not in ACTIVE:
        return None
    _finish(job, clock=clock, status=JobStatus.FAILED, explanation=explanation)
    audit.record(session, clock=clock, actor="system", action="finished", entity_type="job", entity_id=job.id,
                 agency_id=job.agency_id, after={"status": job.status, "explanation": job.explanation})
    return job


def pending_jobs(session: Session) -> list[str]:
    """The ids of the jobs waiting for the engine, oldest first (not those their requester runs itself)."""
    return list(session.scalars(select(Job.id).where(Job.status == JobStatus.PENDING.value, Job.queued)
                                .order_by(Job.created_at)))


def status_of(session: Session, *, job_id: str) -> str | None:
    return session.scalar(select(Job.status).where(Job.id == job_id))


# --- reads ---------------------------------------------------------------------------------------------

def job_read(job: Job) -> JobRead:
    return JobRead(
        id=job.id, playbook=job.playbook, agency=job.agency.code if job.agency else None,
        credential=job.credential.name, status=JobStatus(job.status), explanation=job.explanation, rc=job.rc,
        hosts=[JobHostIn.model_validate(h) for h in job.hosts], extravars=job.extravars,
        secret_names=job.secret_names, limit=job.limit, timeout_seconds=job.timeout_seconds, verify=job.verify,
        cancel_requested=job.cancel_requested,
        host_stats={host: HostStatsRead(**counts) for host, counts in (job.host_stats or {}).items()},
        verification=VerificationRead(**job.verification) if job.verification else None,
        requested_by=job.requested_by, created_at=job.created_at, started_at=job.started_at,
        finished_at=job.finished_at,
    )


def events(session: Session, *, job_id: str, after: int = 0, limit: int = 1000) -> list[JobEventRead]:
    rows = session.scalars(select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.seq > after)
                           .order_by(JobEvent.seq).limit(limit))
    return [JobEventRead(seq=e.seq, kind=e.kind, host=e.host, task=e.task, status=e.status, changed=e.changed,
                         duration=e.duration, message=e.message, at=e.at) for e in rows]


def checks(session: Session, *, job_id: str) -> list[JobCheckRead]:
    rows = session.scalars(select(JobCheck).where(JobCheck.job_id == job_id).order_by(JobCheck.id))
    return [JobCheckRead(host=c.host, role=c.role, check=c.check, outcome=c.outcome, duration=c.duration,
                         message=c.message) for c in rows]
