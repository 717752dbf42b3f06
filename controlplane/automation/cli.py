"""`controlplane credentials|jobs ...`: the SSH credentials playbook jobs log in with, and the jobs themselves: run
one here with live progress, list, show, watch (one run here or by the server) and cancel. As the CLI's system
actor; every write audited."""

from __future__ import annotations

import json
import threading
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import typer
from pydantic import ValidationError
from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from controlplane import clikit
from controlplane.automation import flows as job_flows
from controlplane.automation import service as job_service
from controlplane.automation.domain import JobStatus
from controlplane.automation.schemas import CredentialIn, JobEventRead, JobIn, JobRead
from controlplane.context import AppContext
from controlplane.db import transaction
from controlplane.errors import AppError
from controlplane.secrets import secret_box

credentials_app = typer.Typer(help="SSH credentials the playbook jobs log in with (private keys stored sealed).",
                              no_args_is_help=True)
jobs_app = typer.Typer(help="Playbook jobs: run, list, show, watch, cancel.", no_args_is_help=True)
console = clikit.console  # the jobs' output (a test draws the live view on a console of its own)

WATCH_POLL_SECONDS = 0.5
EVENTS_PER_POLL = 1000
# What each field of a job request is called on the command line, for the error messages.
_JOB_OPTIONS = {"playbook": "PLAYBOOK", "credential": "--credential", "agency": "--agency", "hosts": "--hosts-file",
                "extravars": "--extra-vars", "secrets": "--secret-vars-file", "limit": "--limit",
                "timeout_seconds": "--timeout", "verify": "--no-verify"}


def _say(text: str) -> None:
    clikit.say(text, out=console)


# --- what the user gives ------------------------------------------------------------------------------------

def _extra_vars(value: str | None) -> dict[str, Any]:
    if value is None:
        return {}
    if value.startswith("@"):
        document = clikit.read_document(Path(value[1:]), "--extra-vars")
    else:
        try:
            document = json.loads(value)
        except json.JSONDecodeError as exc:
            raise clikit.refuse(f"--extra-vars: not valid JSON ({exc.msg} at column {exc.colno}); give a JSON "
                                "object or @file.yaml") from None
    return clikit.mapping(document, "--extra-vars", "a mapping of variable names to values")


def _secret_vars(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    secrets_ = clikit.mapping(clikit.read_document(path, "--secret-vars-file"), "--secret-vars-file",
                              "a mapping of variable names to secret values")
    # Numbers are fine as secrets (a PIN, a port): they reach Ansible as text anyway.
    return {k: str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v for k, v in secrets_.items()}


def _hosts(path: Path) -> list[Any]:
    document = clikit.read_document(path, "--hosts-file")
    if not isinstance(document, list) or not document:
        raise clikit.refuse(f"--hosts-file: {path} must be a non-empty list of hosts, each with name, address and "
                            "optional groups and vars")
    return document


def _job_where(field: str, hosts_file: Path) -> str:
    """' (--hosts-file hosts.yaml, entry 2)': where the user wrote the field."""
    top, _, rest = field.partition(".")
    option = _JOB_OPTIONS.get(top)
    if top == "hosts" and rest.split(".")[0].isdigit():
        return f" (--hosts-file {hosts_file}, entry {int(rest.split('.')[0]) + 1})"
    if top == "hosts":
        return f" (--hosts-file {hosts_file})"
    return f" ({option})" if option and option != "PLAYBOOK" else ""


# --- drawing a job ---------------------------------------------------------------------------------------

def _status_style(status: JobStatus) -> str:
    return {JobStatus.SUCCESSFUL: "green", JobStatus.FAILED: "red", JobStatus.CANCELED: "yellow"}.get(status, "cyan")


def _count(value: int, column: str) -> Text:
    if value and column in ("failed", "unreachable"):
        return Text(str(value), style="red")
    if value and column == "changed":
        return Text(str(value), style="yellow")
    return Text(str(value))


def _totals_table(job: JobRead, totals: dict[str, dict[str, int]], *, title: str = "Hosts") -> Table:
    table = clikit.table("host", "address", "groups", "ok", "changed", "failed", "unreachable", "skipped",
                         title=title, wrap=("groups",))
    for host in job.hosts:
        counts = totals.get(host.name, {})
        table.add_row(host.name, host.address, ", ".join(host.groups) or "–",
                      *(_count(counts.get(c, 0), c) for c in ("ok", "changed", "failed", "unreachable", "skipped")))
    return table


def _checks_table(checks: list[tuple[str, str | None, str, str, str]]) -> Table:
    table = clikit.table("host", "role", "check", "outcome", "message", title="Checks", fold=("message",))
    for host, role, check, outcome, message in checks:
        style = {"passed": "green", "failed": "red"}.get(outcome, "yellow")
        table.add_row(host, role or "–", check, Text(outcome, style=style), message)
    return table


class _JobProgress:
    """What a job watcher knows so far, from the job's row and its events as they arrive; renders itself for
    rich.live (a spinner line, the current play and task, a line per host with its counts, then the checks)."""

    def __init__(self, job: JobRead) -> None:
        self.lock = threading.Lock()  # rich.live draws from a thread of its own while events are added
        self.job = job
        self.play: str | None = None
        self.task: str | None = None
        self.phase = ""
        self.totals: dict[str, dict[str, int]] = {}
        self.checks: list[tuple[str, str | None, str, str, str]] = []
        self.seq = 0

    def add(self, event: JobEventRead) -> None:
        with self.lock:
            self._add(event)

    def _add(self, event: JobEventRead) -> None:
        self.seq = max(self.seq, event.seq)
        if event.kind == "play":
            self.play, self.task, self.phase = event.task, None, "playbook"
        elif event.kind == "task":
            self.task = event.task
        elif event.kind == "verify":
            self.phase, self.task = "verification", None
        elif event.kind == "check" and event.host is not None:
            role, _, check = (event.task or "").partition(": ")
            self.checks.append((event.host, role or None, check or role, event.status, event.message))
        elif event.host is not None and event.kind in ("ok", "failed", "unreachable", "skipped"):
            counts = self.totals.setdefault(event.host, dict.fromkeys(
                ("ok", "changed", "failed", "unreachable", "skipped"), 0))
            counts[event.kind] += 1
            counts["changed"] += int(event.changed)

    @staticmethod
    def line(event: JobEventRead) -> str | None:
        """The event as one line of a plain log (what a watcher prints when its output is not a terminal)."""
        host, task, message = event.host or "", event.task or "", event.message
        reason = f" {message}" if message else ""
        if event.kind == "play":
            return f"PLAY [{task}]"
        if event.kind == "task":
            return f"TASK [{task}]"
        if event.kind == "ok":
            return f"{'changed' if event.changed else 'ok'}: [{host}]"
        if event.kind in ("failed", "unreachable"):
            return f"{event.kind}: [{host}]{reason}"
        if event.kind == "skipped":
            return f"skipping: [{host}]"
        if event.kind == "verify":
            return f"VERIFY [{message}]"
        if event.kind == "check":
            return f"check {event.status}: [{host}] {task}{reason}"
        return None

    def __rich__(self) -> Group:
        with self.lock:
            return self._draw()

    def _draw(self) -> Group:
        job = self.job
        head = Text.assemble((f"job {job.id}", "bold"), f"  {job.playbook} on {len(job.hosts)} host(s)  ",
                             (job.status.value, _status_style(job.status)))
        parts: list[Any] = [Spinner("dots", text=head) if not job.status.finished else head]
        where = [f"play: {self.play}"] if self.play else []
        if self.phase == "verification":
            where.append("verifying: testinfra checks")
        elif self.task:
            where.append(f"task: {self.task}")
        if where:
            parts.append(Text("  ".join(where)))
        parts.append(_totals_table(job, self.totals))
        if self.checks:
            parts.append(_checks_table(list(self.checks)))
        return Group(*parts)


def _job_snapshot(ctx: AppContext, job_id: str, after: int) -> tuple[JobRead, list[JobEventRead]]:
    with transaction(ctx.sessions) as session:
        # The row first, then the events: a job seen ended has stored all its events already.
        job = job_service.job_read(job_service.get_job(session, viewer=clikit.actor(), job_id=job_id))
        return job, job_service.events(session, job_id=job_id, after=after, limit=EVENTS_PER_POLL)


def _follow(ctx: AppContext, job_id: str) -> JobRead:
    """Poll the job's row and events until it has ended; a live view on a terminal, a plain log otherwise (a line
    per event, flushed at once, then a recap)."""
    job, batch = _job_snapshot(ctx, job_id, 0)
    progress = _JobProgress(job)

    def step(batch: list[JobEventRead], log: bool) -> bool:
        """Take in a batch of events (printing them as a log when asked); True once everything was seen."""
        for event in batch:
            progress.add(event)
            line = progress.line(event) if log else None
            if line is not None:
                _say(line)
        if log:
            console.file.flush()
        return progress.job.status.finished and len(batch) < EVENTS_PER_POLL

    terminal = console.is_terminal
    with Live(progress, console=console, refresh_per_second=8) if terminal else nullcontext():
        while not step(batch, not terminal):
            if len(batch) < EVENTS_PER_POLL:
                time.sleep(WATCH_POLL_SECONDS)
            progress.job, batch = _job_snapshot(ctx, job_id, progress.seq)
    if not terminal:  # the live view ends showing all this; a log ends with a recap
        console.print(_totals_table(progress.job, _final_totals(progress.job, progress.totals), title="Recap"))
        if progress.checks:
            console.print(_checks_table(progress.checks))
    return progress.job


def _final_totals(job: JobRead, seen: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    return {host: stats.model_dump() for host, stats in job.host_stats.items()} or seen


def _ended(job: JobRead) -> typer.Exit:
    """The job's outcome as the last line and the exit code: 0 successful, 1 failed or canceled."""
    verification = job.verification
    if verification is not None and verification.error is None:
        _say(f"checks: {verification.passed} passed, {verification.failed} failed, {verification.skipped} skipped")
    style = _status_style(job.status)
    reason = f": {job.explanation}" if job.explanation else ""
    console.print(f"job {job.id} [{style}]{job.status.value}[/]{escape(reason)}", soft_wrap=True, highlight=False)
    return typer.Exit(clikit.OK if job.status is JobStatus.SUCCESSFUL else clikit.FAILED)


# --- credentials -------------------------------------------------------------------------------------------

@credentials_app.command("put")
@clikit.reports()
def credentials_put(
    name: str = typer.Argument(..., help="the credential's name (lower case letters, digits, '.', '_', '-')"),
    private_key_file: Path = typer.Option(..., "--private-key-file", help="an unencrypted OpenSSH or PEM key"),
    username: str = typer.Option("root", help="the SSH login on the hosts"),
    known_hosts_file: Path | None = typer.Option(None, "--known-hosts-file",
                                                 help="the hosts' keys (default: trust each host on first contact)"),
    description: str = typer.Option("", help="what it is for"),
) -> None:
    """Create an SSH credential, or replace its key; the private key is stored sealed and never shown."""
    private_key = clikit.read_text(private_key_file, "--private-key-file")
    known_hosts = clikit.read_text(known_hosts_file, "--known-hosts-file") if known_hosts_file else ""
    data = clikit.validated(CredentialIn, {"username": username, "private_key": private_key,
                                           "known_hosts": known_hosts, "description": description})
    with clikit.context() as ctx, transaction(ctx.sessions) as session:
        credential, created = job_service.put_credential(session, clock=ctx.clock, actor=clikit.actor(),
                                                         box=secret_box(ctx.settings), name=name, data=data)
        read = job_service.credential_read(credential)
    hosts = f"{read.known_hosts_entries} known host key(s)" if read.known_hosts_entries else \
        "no known host keys (each job trusts a host's key on first contact)"
    _say(f"{'created' if created else 'updated'} credential '{read.name}' (user {read.username}): {read.fingerprint}; "
         f"{hosts}")


@credentials_app.command("list")
@clikit.reports()
def credentials_list() -> None:
    """SSH credentials: name, login, key fingerprint and host keys (never the private key)."""
    with clikit.context() as ctx, transaction(ctx.sessions) as session:
        rows = [job_service.credential_read(c) for c in job_service.list_credentials(session)]
        settings = ctx.settings
    table = clikit.table("name", "username", "fingerprint", "known hosts", "description", "updated",
                         title="SSH credentials", fold=("description",))
    for row in rows:
        table.add_row(row.name, row.username, row.fingerprint, str(row.known_hosts_entries), row.description or "–",
                      clikit.local(row.updated_at, settings))
    console.print(table)


@credentials_app.command("delete")
@clikit.reports()
def credentials_delete(name: str = typer.Argument(..., help="the credential's name")) -> None:
    """Delete a credential no job has used."""
    with clikit.context() as ctx, transaction(ctx.sessions) as session:
        job_service.delete_credential(session, clock=ctx.clock, actor=clikit.actor(), name=name)
    _say(f"deleted credential '{name}'")


# --- jobs ----------------------------------------------------------------------------------------------

@jobs_app.command("run")
@clikit.reports()
def jobs_run(
    playbook: str = typer.Argument(..., help="site.yml, migrate_system.yml or verify.yml"),
    credential: str = typer.Option(..., help="the SSH credential to log in with"),
    hosts_file: Path = typer.Option(..., "--hosts-file",
                                    help="YAML: a list of {name, address, groups, vars}"),
    agency: str | None = typer.Option(None, help="the agency whose systems these hosts are"),
    extra_vars: str | None = typer.Option(None, "--extra-vars", help="@file.yaml or a JSON object"),
    secret_vars_file: Path | None = typer.Option(None, "--secret-vars-file",
                                                 help="YAML mapping of secret variables (stored sealed)"),
    limit: str | None = typer.Option(None, help="Ansible --limit pattern"),
    timeout: int | None = typer.Option(None, help="the playbook's time limit in seconds (default 3600)"),
    no_verify: bool = typer.Option(False, "--no-verify", help="skip the roles' testinfra checks"),
) -> None:
    """Record a job and run it here, showing its progress; exit 0 when it succeeded, 1 when not, 2 for bad input."""
    request: dict[str, Any] = {"playbook": playbook, "credential": credential, "agency": agency,
                               "hosts": _hosts(hosts_file), "extravars": _extra_vars(extra_vars),
                               "secrets": _secret_vars(secret_vars_file), "limit": limit, "verify": not no_verify}
    if timeout is not None:
        request["timeout_seconds"] = timeout
    try:
        data = JobIn.model_validate(request)
    except ValidationError as exc:
        raise clikit.report_invalid(exc, lambda field: _job_where(field, hosts_file)) from None
    actor = clikit.actor()
    with clikit.context() as ctx:
        try:
            with transaction(ctx.sessions) as session:
                job_id = job_flows.request_job(session, ctx=ctx, actor=actor, data=data, foreground=True).id
        except AppError as exc:
            if not exc.field:
                raise
            reason = exc.message.removeprefix(f"{exc.field}: ")
            raise clikit.fail(f"{exc.field}: {reason}{_job_where(exc.field, hosts_file)}",
                              code=clikit.exit_code(exc)) from None
        clikit.say(f"job {job_id}: {playbook} on {len(data.hosts)} host(s), running here (Ctrl-C cancels it)",
                   out=clikit.err)
        worker = threading.Thread(target=job_flows.run_job, args=(ctx,), kwargs={"job_id": job_id},
                                  name=f"job-{job_id[:8]}", daemon=True)
        worker.start()
        try:
            job = _follow(ctx, job_id)
        except KeyboardInterrupt:
            clikit.say(f"canceling job {job_id} ...", out=clikit.err)
            try:
                with transaction(ctx.sessions) as session:
                    job_flows.cancel_job(session, ctx=ctx, actor=actor, job_id=job_id)
                job_flows.signal_cancel(ctx, job_id=job_id)
                job = _follow(ctx, job_id)
            except KeyboardInterrupt:
                with transaction(ctx.sessions) as session:
                    job_service.fail_job(session, clock=ctx.clock, job_id=job_id,
                                         explanation="interrupted: its command was stopped; run it again")
                raise clikit.fail(f"job {job_id} interrupted", code=130) from None
            except AppError:  # it ended meanwhile
                job = _follow(ctx, job_id)
        worker.join(timeout=10)
    raise _ended(job)


@jobs_app.command("list")
@clikit.reports()
def jobs_list(
    status: JobStatus | None = typer.Option(None, help="pending, running, successful, failed or canceled"),
    agency: str | None = typer.Option(None, help="agency code"),
) -> None:
    """Jobs, newest first (at most 50)."""
    with clikit.context() as ctx, transaction(ctx.sessions) as session:
        rows = [job_service.job_read(j) for j in job_service.list_jobs(session, viewer=clikit.actor(), status=status,
                                                                       agency=agency)]
        settings = ctx.settings
    table = clikit.table("id", "status", "playbook", "agency", "hosts", "requested by", "requested", "finished",
                         "explanation", title="Jobs", fold=("explanation",))
    for row in rows:
        table.add_row(row.id, Text(row.status.value, style=_status_style(row.status)), row.playbook,
                      row.agency or "–", str(len(row.hosts)), row.requested_by, clikit.local(row.created_at, settings),
                      clikit.local(row.finished_at, settings), row.explanation or "")
    console.print(table)


@jobs_app.command("show")
@clikit.reports()
def jobs_show(job_id: str = typer.Argument(..., help="the job's id")) -> None:
    """One job: status and explanation, per-host totals, and the evidence of its checks."""
    with clikit.context() as ctx, transaction(ctx.sessions) as session:
        job = job_service.job_read(job_service.get_job(session, viewer=clikit.actor(), job_id=job_id))
        events = job_service.events(session, job_id=job_id, limit=5000)
        checks = job_service.checks(session, job_id=job_id)
        settings = ctx.settings
    style = _status_style(job.status)
    console.print(f"job {job.id}: [{style}]{job.status.value}[/]"
                  + (" (cancel requested)" if job.cancel_requested and not job.status.finished else ""))
    if job.explanation:
        _say(job.explanation)
    facts = [("playbook", job.playbook), ("credential", job.credential), ("agency", job.agency or "–"),
             ("requested by", job.requested_by), ("requested", clikit.local(job.created_at, settings)),
             ("started", clikit.local(job.started_at, settings)),
             ("finished", clikit.local(job.finished_at, settings)),
             ("rc", "–" if job.rc is None else str(job.rc)), ("limit", job.limit or "–"),
             ("time limit", f"{job.timeout_seconds} s" if job.timeout_seconds else "–"),
             ("extra vars", json.dumps(job.extravars, ensure_ascii=False) if job.extravars else "–"),
             ("secret vars", ", ".join(job.secret_names) + " (values never shown)" if job.secret_names else "–")]
    for label, value in facts:
        _say(f"{label}: {value}")
    progress = _JobProgress(job)
    for event in events:
        progress.add(event)
    console.print(_totals_table(job, _final_totals(job, progress.totals)))
    if not job.verify:
        _say("verification: not requested")
    elif job.verification is None:
        _say("verification: no result yet" if not job.status.finished else "verification: did not run")
    else:
        v = job.verification
        _say(f"verification: {v.passed} passed, {v.failed} failed, {v.skipped} skipped"
             + (f"; {v.error}" if v.error else ""))
    if checks:
        console.print(_checks_table([(c.host, c.role, c.check, c.outcome, c.message) for c in checks]))


@jobs_app.command("cancel")
@clikit.reports()
def jobs_cancel(job_id: str = typer.Argument(..., help="the job's id")) -> None:
    """Stop a job: a pending one now, a running one (here or in the server) within a few seconds."""
    with clikit.context() as ctx, transaction(ctx.sessions) as session:
        job = job_service.job_read(job_flows.cancel_job(session, ctx=ctx, actor=clikit.actor(), job_id=job_id))
    if job.status.finished:
        _say(f"job {job.id} {job.status.value}: {job.explanation}")
    else:
        _say(f"job {job.id}: cancel requested; its runner stops it within a few seconds "
             f"(controlplane jobs watch {job.id})")


@jobs_app.command("watch")
@clikit.reports()
def jobs_watch(job_id: str = typer.Argument(..., help="the job's id")) -> None:
    """Follow a job (run here or by the server) until it ends; exit 0 when it succeeded, 1 when not."""
    with clikit.context() as ctx:
        try:
            job = _follow(ctx, job_id)
        except KeyboardInterrupt:
            raise clikit.fail(f"stopped watching; job {job_id} goes on (controlplane jobs cancel {job_id} stops "
                              "it)", code=130) from None
    raise _ended(job)
