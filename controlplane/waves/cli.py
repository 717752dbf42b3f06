"""`controlplane waves ...`: make a wave from a file, run it and watch it with a progress bar per system, approve
cutovers, pause, resume, cancel, retry and roll back.

Where the work runs: a command that starts work runs the migration engine in this process when nothing else holds
it (the embedded default: `waves run ID --watch` without a server) and stays until the wave is at rest (the
workflows a Ctrl-C leaves are recovered by the next engine: this command again, or `controlplane serve`). When the
server holds the engine, the command hands the attempts to it through the system database and only watches.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
import yaml
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from controlplane.automation import flows as job_flows
from controlplane.context import AppContext
from controlplane.db import transaction
from controlplane.errors import AppError
from controlplane.migration import flows, service
from controlplane.migration.engine import Engine, EngineBusy, WorkflowClient
from controlplane.migration.execution import Control, State
from controlplane.migration.schemas import WaveIn, WaveRead

waves_app = typer.Typer(help="Waves of migrations: create, run (--watch), watch, show, approve, pause, resume, "
                             "cancel, retry, rollback.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)
POLL_SECONDS = 1.0
_STYLE = {"succeeded": "green", "failed": "red", "rollback_failed": "red", "canceled": "yellow",
          "awaiting_approval": "cyan", "paused": "yellow", "rolled_back": "magenta"}


def _context() -> AppContext:
    from controlplane.cli import _cloud_context

    return _cloud_context()


def _actor() -> str:
    from controlplane.cli import _actor as cli_actor

    return cli_actor()


def _fail(exc: AppError) -> typer.Exit:
    err.print(f"[red]error:[/] {escape(f'{exc.field}: {exc.message}' if exc.field else exc.message)}", soft_wrap=True)
    for detail in (exc.details or [])[1:]:
        err.print(escape(f"  {detail.get('field') or detail.get('system') or ''}: {detail.get('message')}"),
                  soft_wrap=True)
    return typer.Exit(2 if exc.status_code < 500 else 1)


@contextmanager
def _session(ctx: AppContext) -> Iterator[Any]:
    try:
        with transaction(ctx.sessions) as session:
            yield session
    except AppError as exc:
        raise _fail(exc) from None


@contextmanager
def _workflows(ctx: AppContext) -> Iterator[bool]:
    """The engine here (True) or a client of the server's (False), for the commands that start work."""
    engine = Engine(ctx)
    try:
        engine.start()
    except EngineBusy:
        client = WorkflowClient(ctx.settings.effective_workflows_database_url)
        ctx.workflows = client
        try:
            yield False
        finally:
            client.stop()
        return
    ctx.workflows = engine
    flows.resume_interrupted(ctx)
    try:
        yield True
    finally:
        engine.stop()


def _read(ctx: AppContext, wave_id: int) -> WaveRead:
    with _session(ctx) as session:
        return service.wave_read(session, service.get_wave(session, viewer=_actor(), wave_id=wave_id),
                                 viewer=_actor())


def _at_rest(wave: WaveRead) -> bool:
    return not any(m.state.active for m in wave.migrations)


def _watch(ctx: AppContext, wave_id: int) -> WaveRead:
    """A progress bar per system (steps done of its steps) until no migration of the wave is queued or running."""
    wave = _read(ctx, wave_id)
    columns = (TextColumn("{task.fields[system]:<14}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[status]}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        tasks: dict[str, TaskID] = {m.id: progress.add_task("", total=len(m.steps), system=m.system, status="")
                                    for m in wave.migrations}
        while True:
            for m in wave.migrations:
                style = _STYLE.get(m.state.value, "")
                where = f" {m.step}" if m.step and m.state is not State.SUCCEEDED else ""
                status = f"[{style}]{m.state.value}[/]{escape(where)}" if style else f"{m.state.value}{escape(where)}"
                progress.update(tasks[m.id], completed=len(m.steps_done), status=status)
            if _at_rest(wave):
                break
            time.sleep(POLL_SECONDS)
            wave = _read(ctx, wave_id)
    return wave


def _summary(wave: WaveRead) -> typer.Exit:
    """The wave's state and each failure; exit 0 when nothing failed, 1 otherwise."""
    for m in wave.migrations:
        if m.error and m.state in (State.FAILED, State.ROLLBACK_FAILED):
            console.print(escape(f"{m.system}: {m.state.value} at {m.step}: {m.error}"), soft_wrap=True,
                          highlight=False)
    waiting = [m.system for m in wave.migrations if m.state is State.AWAITING_APPROVAL]
    if waiting:
        console.print(escape(f"awaiting approval: {', '.join(waiting)} (controlplane waves approve {wave.id} "
                             f"--system CODE | --all)"), soft_wrap=True, highlight=False)
    console.print(f"wave {wave.id} {escape(wave.name)}: {wave.state}", highlight=False)
    failed = any(m.state in (State.FAILED, State.ROLLBACK_FAILED) for m in wave.migrations)
    return typer.Exit(1 if failed else 0)


def _table(wave: WaveRead) -> Table:
    table = Table("system", "agency", "state", "step", "done", "servers", "error",
                  title=f"Wave {wave.id} {escape(wave.name)}: {wave.state}")
    for m in wave.migrations:
        table.add_row(m.system, m.agency, m.state.value, m.step or "–", f"{len(m.steps_done)}/{len(m.steps)}",
                      ", ".join(m.servers) or "–", escape(m.error[:120]) or "–")
    return table


@waves_app.command("create")
def waves_create(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True,
                                help="YAML or JSON: name, systems, credential, inputs (as POST /api/v1/waves)"),
) -> None:
    """Make a wave: planned now, refused (exit 2) with every finding unless the plan is clean."""
    try:
        data = WaveIn.model_validate(yaml.safe_load(file.read_text(encoding="utf-8")))
    except (yaml.YAMLError, ValidationError) as exc:
        problems = exc.errors() if isinstance(exc, ValidationError) else [{"loc": ("file",), "msg": str(exc)}]
        for problem in problems:
            err.print(escape(f"error: {'.'.join(str(p) for p in problem['loc'])}: {problem['msg']}"),
                      soft_wrap=True)
        raise typer.Exit(2) from None
    ctx = _context()
    with _session(ctx) as session:
        wave = service.wave_read(session, flows.create_wave(session, ctx=ctx, actor=_actor(), data=data),
                                 viewer=_actor())
    console.print(f"wave {wave.id} {escape(wave.name)}: {len(wave.migrations)} systems "
                  f"({', '.join(m.system for m in wave.migrations)}); run it with `controlplane waves run "
                  f"{wave.id} --watch`", soft_wrap=True, highlight=False)


@waves_app.command("list")
def waves_list() -> None:
    """The waves, newest first, with their migrations' states."""
    ctx = _context()
    with _session(ctx) as session:
        waves = [service.wave_read(session, w, viewer=_actor(), detail=False)
                 for w in service.list_waves(session, viewer=_actor())]
    table = Table("id", "name", "state", "systems", "created", title=f"Waves ({len(waves)})")
    for wave in waves:
        counts = ", ".join(f"{n} {state}" for state, n in sorted(wave.counts.items()))
        table.add_row(str(wave.id), escape(wave.name), wave.state, counts,
                      wave.created_at.isoformat(timespec="minutes"))
    console.print(table)


@waves_app.command("show")
def waves_show(wave_id: int = typer.Argument(..., help="the wave's id")) -> None:
    """Each system's state, step, steps done, servers and error."""
    console.print(_table(_read(_context(), wave_id)))


@waves_app.command("watch")
def waves_watch(wave_id: int = typer.Argument(..., help="the wave's id")) -> None:
    """Progress bars until the wave is at rest; exit 1 when a migration failed."""
    raise _summary(_watch(_context(), wave_id))


@waves_app.command("run")
def waves_run(
    wave_id: int = typer.Argument(..., help="the wave's id"),
    watch: bool = typer.Option(False, "--watch", help="progress bars until the wave is at rest"),
) -> None:
    """Start every pending migration of the wave."""
    ctx = _context()
    with _workflows(ctx) as here:
        with _session(ctx) as session:
            wave = service.get_wave(session, viewer=_actor(), wave_id=wave_id)
            queued = [(m.id, str(m.workflow_id), m.agency.code)
                      for m in service.run_wave(session, clock=ctx.clock, actor=_actor(), wave=wave)]
        flows.submit(ctx, queued)
        console.print(f"{len(queued)} migrations queued"
                      f"{'' if here else ' (the server runs them)'}", highlight=False)
        if watch or here:
            raise _summary(_watch(ctx, wave_id))


def _control(wave_id: int, control: Control, systems: list[str], every: bool, from_step: str | None = None) -> None:
    ctx = _context()
    queueing = control in (Control.RESUME, Control.RETRY, Control.APPROVE, Control.ROLLBACK)
    with _workflows(ctx) if queueing else _nothing() as here:
        submitted: list[tuple[str, str, str, str | None]] = []
        with _session(ctx) as session:
            wave = service.get_wave(session, viewer=_actor(), wave_id=wave_id)
            chosen = [m for m in wave.migrations if every or m.system.code in systems]
            unknown = sorted(set(systems) - {m.system.code for m in wave.migrations})
            if unknown or not chosen:
                raise _fail(AppError(f"{', '.join(unknown) or 'no system'} is not in wave {wave_id}; name them "
                                     "with --system or use --all", field="system"))
            for migration in chosen:
                if control is Control.ROLLBACK:
                    undo = service.request_rollback(session, clock=ctx.clock, actor=_actor(), migration=migration)
                    submitted.append((migration.id, undo.workflow_id, migration.agency.code, undo.id))
                    message = f"rollback of {migration.system.code}: {' -> '.join(undo.steps) or 'nothing'}"
                else:
                    message = service.request_control(session, clock=ctx.clock, actor=_actor(),
                                                      migration=migration, control=control, from_step=from_step)
                    job_id = flows.running_job(session, migration_id=migration.id)
                    if control is Control.CANCEL and job_id is not None:  # its runner reads the flag within 1 s
                        job_flows.cancel_job(session, ctx=ctx, actor=_actor(), job_id=job_id)
                    if queueing:
                        submitted.append((migration.id, str(migration.workflow_id), migration.agency.code, None))
                console.print(escape(message), soft_wrap=True, highlight=False)
        for migration_id, workflow_id, agency, rollback_id in submitted:
            if rollback_id:
                flows.submit_rollback(ctx, rollback_id=rollback_id, workflow_id=workflow_id, agency=agency)
            else:
                flows.submit(ctx, [(migration_id, workflow_id, agency)])
        if here:  # this process runs the work: stay until it is done
            raise _summary(_watch(ctx, wave_id))


@contextmanager
def _nothing() -> Iterator[bool]:
    yield False


_SYSTEM = typer.Option([], "--system", help="a system of the wave (repeat)")
_ALL = typer.Option(False, "--all", help="every system of the wave")


@waves_app.command("approve")
def waves_approve(wave_id: int, system: list[str] = _SYSTEM, every: bool = _ALL) -> None:
    """Approve the cutover of systems awaiting it."""
    _control(wave_id, Control.APPROVE, system, every)


@waves_app.command("pause")
def waves_pause(wave_id: int, system: list[str] = _SYSTEM, every: bool = _ALL) -> None:
    """Pause after the current step."""
    _control(wave_id, Control.PAUSE, system, every)


@waves_app.command("resume")
def waves_resume(wave_id: int, system: list[str] = _SYSTEM, every: bool = _ALL) -> None:
    """Go on with paused migrations from their next step."""
    _control(wave_id, Control.RESUME, system, every)


@waves_app.command("cancel")
def waves_cancel(wave_id: int, system: list[str] = _SYSTEM, every: bool = _ALL) -> None:
    """Stop migrations (a running playbook job is canceled); roll them back to remove what they made."""
    _control(wave_id, Control.CANCEL, system, every)


@waves_app.command("retry")
def waves_retry(wave_id: int, system: list[str] = _SYSTEM,
                from_step: str | None = typer.Option(None, "--from-step", help="default: the failed step")) -> None:
    """Run failed or canceled migrations again from the failed step (or --from-step)."""
    _control(wave_id, Control.RETRY, system, False, from_step)


@waves_app.command("rollback")
def waves_rollback(wave_id: int, system: list[str] = _SYSTEM, every: bool = _ALL) -> None:
    """Undo migrations: the front back to the legacy side, their servers deleted, and proof nothing is left."""
    _control(wave_id, Control.ROLLBACK, system, every)


def worker() -> None:
    """Run the migration engine without the API until stopped (SIGTERM or Ctrl-C): beside `controlplane serve`
    on a PostgreSQL system database (each process with its own CP_WORKFLOWS_EXECUTOR_ID), or alone."""
    import signal
    import threading

    from controlplane.automation import flows as automation_flows

    ctx = _context()
    automation_flows.recover_interrupted(ctx)
    engine = Engine(ctx)
    try:
        engine.start()
    except EngineBusy as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(1) from None
    ctx.workflows = engine
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        resumed = flows.resume_interrupted(ctx)
        console.print(f"migration engine running (executor {ctx.settings.workflows_executor_id}, {resumed} "
                      "migrations queued or rolling back); stop it with Ctrl-C", highlight=False)
        stop.wait()
    finally:
        engine.stop()
        ctx.engine.dispose()
