"""Jobs through the runner and check ports: requested by the API or the CLI, run by the durable engine on the
playbook queue (or in the foreground by the CLI), every event stored as it happens.

A job runs its playbook, then, when it succeeded and the job asks for it, the testinfra checks of the roles it
applied; a failed check fails the job with the check's message. Cancel reaches a job running in this process at
once, and one running in another process (the CLI cancelling a server's job, or the reverse) within a second,
through the job's row. A job cut short by a crash is not run again behind the operator's back: when the engine
recovers it, it ends failed as interrupted and can be relaunched (as AWX does).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy.orm import Session

from controlplane.auth import audit
from controlplane.automation import domain, service
from controlplane.automation.domain import CheckRun, JobStatus, Outcome, PlaybookJob, VerificationError
from controlplane.automation.metrics import JobMetrics
from controlplane.automation.models import Job
from controlplane.automation.schemas import JobHostIn, JobIn
from controlplane.context import AppContext
from controlplane.db import transaction
from controlplane.errors import InvalidInput
from controlplane.processes import process_identity
from controlplane.secrets import secret_box

log = logging.getLogger(__name__)
CANCEL_POLL_SECONDS = 1.0


PLAYBOOK_QUEUE = "cp-playbooks"
JOB_WORKFLOW = "cp.job"
INTERRUPTED = ("interrupted: the server stopped while this job ran; run it again (the roles are safe to repeat)")
_cancels: dict[str, threading.Event] = {}  # the jobs running in this process, by id
_cancels_lock = threading.Lock()


def request_job(session: Session, *, ctx: AppContext, actor: audit.Actor, data: JobIn,
                foreground: bool = False) -> Job:
    """Record a pending job (the caller submits it once its transaction has committed, or runs it itself when
    `foreground`: the CLI)."""
    job = service.request_job(session, clock=ctx.clock, actor=actor, box=secret_box(ctx.settings), data=data,
                              runner=process_identity(), artifacts=ctx.settings.effective_artifacts_dir,
                              queued=not foreground)
    if not foreground:
        ctx.durable("jobs")  # after the checks: bad input is a 422 either way; the caller's rollback drops the row
    return job


def submit_job(ctx: AppContext, *, job_id: str) -> None:
    """Hand a committed, pending job to the durable engine's playbook queue (CP_PLAYBOOK_CONCURRENCY playbooks at
    once across all processes, the migrations' included); a refusal fails the job at once."""
    try:
        ctx.durable("jobs").enqueue(PLAYBOOK_QUEUE, JOB_WORKFLOW, job_id, workflow_id=f"job-{job_id}")
        return
    except Exception as exc:
        log.warning("job %s could not be queued: %s", job_id, exc)
    with transaction(ctx.sessions) as session:
        job = service.fail_job(session, clock=ctx.clock, job_id=job_id,
                               explanation="the server could not queue this job; run it again")
        playbook = job.playbook if job else "unknown"
    ctx.metrics.of(JobMetrics).job_finished(playbook, JobStatus.FAILED.value, None)


def resume_unqueued(ctx: AppContext) -> int:
    """At start, with the engine running: queue again the jobs recorded but never handed to it (the process
    stopped between the commit and the enqueue); the same workflow id twice is one workflow."""
    engine = ctx.durable("jobs")
    with transaction(ctx.sessions) as session:
        pending = service.pending_jobs(session)
    for job_id in pending:
        if engine.status(f"job-{job_id}") is None:
            log.warning("job %s was never queued; queuing it now", job_id)
            submit_job(ctx, job_id=job_id)
    return len(pending)


def cancel_job(session: Session, *, ctx: AppContext, actor: audit.Actor, job_id: str) -> Job:
    """Record the cancel (the caller calls signal_cancel once its transaction has committed)."""
    return service.request_cancel(session, clock=ctx.clock, actor=actor, job_id=job_id)


def signal_cancel(ctx: AppContext, *, job_id: str) -> None:
    """Stop the job now if it runs in this process; a job elsewhere reads its committed row within a second."""
    with _cancels_lock:
        signal = _cancels.get(job_id)
    if signal is not None:
        signal.set()


def interrupt(ctx: AppContext, *, job_id: str) -> Job | None:
    """A job whose run was cut short (its process stopped): failed as interrupted, to be run again."""
    return _fail(ctx, job_id, INTERRUPTED)


@dataclass(frozen=True)
class _Run:
    """What a started job needs, read from its row (secrets opened) inside the transaction that started it."""

    playbook: str
    hosts: list[domain.JobHost]
    extravars: dict[str, object]
    secrets: dict[str, str]
    user: str
    private_key: str
    known_hosts: str
    limit: str | None
    timeout: int | None
    verify: bool


def run_job(ctx: AppContext, *, job_id: str, recovered: bool = False) -> Job | None:
    """Run one pending job to its end: playbook, then checks. None when it was not pending any more. With
    `recovered` (the engine taking up a run a crash cut short), a job found running ends interrupted instead."""
    with transaction(ctx.sessions) as session:
        job = service.begin_job(session, clock=ctx.clock, job_id=job_id, runner=process_identity())
        cut_short = job is None and recovered and service.status_of(session, job_id=job_id) == JobStatus.RUNNING.value
        playbook = job.playbook if job is not None else ""
    if cut_short:
        log.warning("job %s was cut short by a stop of its server: interrupted", job_id)
        return interrupt(ctx, job_id=job_id)
    if job is None:
        return None
    started = time.monotonic()
    status = JobStatus.FAILED.value
    ctx.metrics.of(JobMetrics).running.inc()
    try:
        run = _load(ctx, job_id)
        _check_artifacts(ctx, run)
        recorder = _EventRecorder(ctx, job_id, secrets=[*run.secrets.values(), run.private_key])
        with _cancel_signal(job_id) as cancel, _watch_cancel(ctx, job_id, cancel):
            result = ctx.runner.run(PlaybookJob(
                run.playbook, domain.inventory(run.hosts, user=run.user), extravars=run.extravars,
                secrets=run.secrets, private_key=run.private_key, timeout_seconds=run.timeout, limit=run.limit,
                known_hosts=run.known_hosts), on_event=recorder.add, cancel=cancel)
            outcome, verification = result.outcome, None
            checks: list[domain.CheckResult] = []
            stats = domain.host_stats(result.events)
            if run.verify and outcome.status is JobStatus.SUCCESSFUL:
                outcome, checks, verification = _verify(ctx, run, set(stats), result.known_hosts or run.known_hosts,
                                                        cancel, recorder)
        with transaction(ctx.sessions) as session:
            done = service.complete_job(session, clock=ctx.clock, job_id=job_id, outcome=outcome, rc=result.rc,
                                        stats=stats, checks=checks, verification=verification)
        status = done.status
        ctx.metrics.of(JobMetrics).checked(checks)
        log.info("job %s (%s) ended %s %s", job_id, playbook, status, done.explanation)
        return done
    except InvalidInput as exc:  # a file that left the artifacts directory since the job was requested
        return _fail(ctx, job_id, exc.message)
    except Exception as exc:
        log.exception("job %s failed unexpectedly", job_id)
        return _fail(ctx, job_id, f"unexpected error ({type(exc).__name__}); see the server log")
    except KeyboardInterrupt:  # Ctrl-C in the CLI: say so, then stop
        _fail(ctx, job_id, "interrupted while it ran; run it again (the roles are safe to repeat)")
        raise
    finally:
        ctx.metrics.of(JobMetrics).running.dec()
        ctx.metrics.of(JobMetrics).job_finished(playbook, status, time.monotonic() - started)


def _load(ctx: AppContext, job_id: str) -> _Run:
    box = secret_box(ctx.settings)
    with transaction(ctx.sessions) as session:
        job = service.get_job(session, viewer="system", job_id=job_id)
        return _Run(playbook=job.playbook, hosts=service.hosts_of(job), extravars=dict(job.extravars),
                    secrets=service.secrets_of(job, box=box), user=job.credential.username,
                    private_key=box.open(job.credential.private_key_sealed), known_hosts=job.credential.known_hosts,
                    limit=job.limit, timeout=job.timeout_seconds, verify=job.verify)


def _check_artifacts(ctx: AppContext, run: _Run) -> None:
    """The files the job copies are still where they were checked to be: no link swapped in since (InvalidInput)."""
    hosts = [JobHostIn(name=h.name, address=h.address, groups=list(h.groups), vars=dict(h.vars)) for h in run.hosts]
    now = service.with_artifacts(run.extravars, hosts, ctx.settings.effective_artifacts_dir)
    if now["extravars"] != run.extravars or [h.vars for h in now["hosts"]] != [h.vars for h in run.hosts]:
        raise InvalidInput("a file of the job no longer resolves to the same file in the artifacts directory "
                           "(replaced by a link?); run the job again")


def _verify(ctx: AppContext, run: _Run, ran_on: set[str], known_hosts: str, cancel: threading.Event,
            recorder: _EventRecorder) -> tuple[Outcome, list[domain.CheckResult], dict[str, object]]:
    """The checks of the roles the playbook applied, on the hosts it ran on (a `limit` leaves the others out)."""
    hosts = [host for host in run.hosts if host.name in ran_on]
    roles = [role for role in domain.ROLES
             if any(role in domain.roles_of(run.playbook, host, run.extravars) for host in hosts)]
    names = {host.address: host.name for host in hosts}
    if not roles:
        recorder.note("verify", "no role was applied: nothing to check")
        return Outcome(JobStatus.SUCCESSFUL, ""), [], _counts([], error=None)
    recorder.note("verify", f"testinfra checks of {', '.join(roles)} on {len(hosts)} host(s)")
    request = CheckRun(addresses=tuple(names), roles=tuple(roles),
                       check_vars=domain.check_vars(run.playbook, hosts, run.extravars), user=run.user,
                       private_key=run.private_key, known_hosts=known_hosts)
    try:
        results = ctx.checks.run(request, cancel=cancel, secrets=run.secrets.values())
    except VerificationError as exc:
        if cancel.is_set():
            return Outcome(JobStatus.CANCELED, "canceled on request during verification"), [], _counts(
                [], error=str(exc))
        return Outcome(JobStatus.FAILED, f"verification could not run: {exc}"), [], _counts([], error=str(exc))
    for result in results:
        recorder.check(result, names.get(result.host, result.host))
    return domain.verification_outcome(results, names), results, _counts(results, error=None)


def _counts(results: list[domain.CheckResult], *, error: str | None) -> dict[str, object]:
    return {**{outcome: sum(r.outcome == outcome for r in results) for outcome in ("passed", "failed", "skipped")},
            "error": error}


def _fail(ctx: AppContext, job_id: str, explanation: str) -> Job | None:
    try:
        with transaction(ctx.sessions) as session:
            return service.fail_job(session, clock=ctx.clock, job_id=job_id, explanation=explanation)
    except Exception:
        log.exception("recording the failure of job %s failed", job_id)
        return None


class _EventRecorder:
    """Stores each event in a transaction of its own as it comes, so that watchers see it at once."""

    def __init__(self, ctx: AppContext, job_id: str, *, secrets: list[str]) -> None:
        self._ctx, self._job_id, self._secrets = ctx, job_id, secrets
        with transaction(ctx.sessions) as session:
            self._seq = service.next_seq(session, job_id=job_id)

    def add(self, event: domain.JobEvent) -> None:
        self._seq = max(self._seq, event.seq)
        with transaction(self._ctx.sessions) as session:
            service.add_event(session, clock=self._ctx.clock, job_id=self._job_id, event=event)

    def _next(self) -> int:
        self._seq += 1
        return self._seq

    def note(self, kind: str, message: str) -> None:
        self.add(domain.JobEvent(seq=self._next(), kind=kind, host=None, task=None, status=kind, changed=False,
                                 duration=None, message=domain.redact(message, self._secrets)))

    def check(self, result: domain.CheckResult, host: str) -> None:
        self.add(domain.JobEvent(seq=self._next(), kind="check", host=host, task=f"{result.role}: {result.check}",
                                 status=result.outcome, changed=False, duration=result.duration,
                                 message=result.message))


@contextmanager
def _cancel_signal(job_id: str) -> Iterator[threading.Event]:
    """The event that stops the job while it runs here (set by `signal_cancel`)."""
    signal = threading.Event()
    with _cancels_lock:
        _cancels[job_id] = signal
    try:
        yield signal
    finally:
        with _cancels_lock:
            _cancels.pop(job_id, None)


@contextmanager
def _watch_cancel(ctx: AppContext, job_id: str, cancel: threading.Event) -> Iterator[None]:
    """Sets `cancel` when the job's row asks for it (a cancel made through another process)."""
    done = threading.Event()

    def watch() -> None:
        while not done.wait(CANCEL_POLL_SECONDS):
            try:
                with transaction(ctx.sessions) as session:
                    if service.cancel_requested(session, job_id=job_id):
                        cancel.set()
                        return
            except Exception:  # the next poll tries again
                log.warning("reading the cancel flag of job %s failed", job_id, exc_info=True)

    watcher = threading.Thread(target=watch, name=f"job-cancel-{job_id[:8]}", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join(CANCEL_POLL_SECONDS * 2)

