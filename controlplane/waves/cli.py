"""`controlplane waves ...`: make a wave from a file, run it and watch it with a progress bar per system (not on a
terminal: a plain line per change of a migration's state or step), approve cutovers, pause, resume, cancel, retry
and roll back.

Where the work runs: a command that starts work runs the durable engine in this process when nothing else holds
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
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from controlplane import clikit
from controlplane.automation import flows as job_flows
from controlplane.composition import start_engine, stop_engine
from controlplane.context import AppContext
from controlplane.db import transaction
from controlplane.waves import flows, service
from controlplane.waves.domain import Control, State
from controlplane.waves.schemas import MigrationRead, WaveIn, WaveRead

waves_app = typer.Typer(help="Waves of migrations: create, run (--watch), watch, show, approve, pause, resume, "
                             "cancel, retry, rollback.", no_args_is_help=True)
commands_app = typer.Typer()  # worker: a command of the root
console = clikit.console
POLL_SECONDS = 1.0
_STYLE = {"succeeded": "green", "failed": "red", "rollback_failed": "red", "canceled": "yellow",
          "awaiting_approval": "cyan", "paused": "yellow", "rolled_back": "magenta", "waiting": "cyan",
          "blocked": "red", "cut_over": "green"}


def _details(details: list[dict[str, Any]]) -> Iterator[str]:
    """The problems after the first (the error line says that one)."""
    return clikit.detail_lines(details[1:])


def _read(ctx: AppContext, wave_id: int) -> WaveRead:
    with transaction(ctx.sessions) as session:
        return service.wave_read(session, service.get_wave(session, viewer=clikit.actor(), wave_id=wave_id),
                                 viewer=clikit.actor())


def _at_rest(wave: WaveRead) -> bool:
    return not any(m.state.active for m in wave.migrations)


def _where(m: MigrationRead) -> str:
    return f" ({m.step})" if m.step and m.state is not State.SUCCEEDED else ""


def _watch(ctx: AppContext, wave_id: int) -> WaveRead:
    """Until no migration of the wave is queued or running: on a terminal a progress bar per system (steps done of
    its steps); otherwise a plain line per change of a migration's state or step, then the wave's table."""
    if clikit.plain_progress():
        lines = clikit.StateLines(ctx.clock, ctx.settings)
        while True:
            wave = _read(ctx, wave_id)
            for m in wave.migrations:
                lines.update(m.system, f"{m.state.value}{_where(m)} {len(m.steps_done)}/{len(m.steps)}")
            if _at_rest(wave):
                console.print(_table(wave))
                return wave
            time.sleep(POLL_SECONDS)
    wave = _read(ctx, wave_id)
    columns = (TextColumn("{task.fields[system]:<14}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[status]}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        tasks: dict[str, TaskID] = {m.id: progress.add_task("", total=len(m.steps), system=m.system, status="")
                                    for m in wave.migrations}
        while True:
            for m in wave.migrations:
                style = _STYLE.get(m.state.value, "")
                where = escape(_where(m))
                status = f"[{style}]{m.state.value}[/]{where}" if style else f"{m.state.value}{where}"
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
            clikit.say(f"{m.system}: {m.state.value} at {m.step}: {m.error}")
    waiting = [m.system for m in wave.migrations if m.state is State.AWAITING_APPROVAL]
    if waiting:
        clikit.say(f"awaiting approval: {', '.join(waiting)} (controlplane waves approve {wave.id} "
                   f"--system CODE | --all)")
    for m in wave.migrations:
        if m.waiting_for:
            clikit.say(f"{m.system}: {m.waiting_for}")
    _say_dumps(wave)
    if any(m.waiting_for and m.state is not State.BLOCKED for m in wave.migrations):
        clikit.say("held migrations go on by themselves while `controlplane serve` or `controlplane worker` runs")
    clikit.say(f"wave {wave.id} {wave.name}: {wave.state}")
    failed = any(m.state in (State.FAILED, State.ROLLBACK_FAILED) for m in wave.migrations)
    return typer.Exit(clikit.FAILED if failed else clikit.OK)


def _say_dumps(wave: WaveRead) -> None:
    """Where each rollback after cutover left the dump of a database, and what was written to it since."""
    for m in wave.migrations:
        for dump in (m.rollback.dumps or []) if m.rollback else []:
            written = "; ".join(dump["written_since_cutover"]) or "nothing differs from the source manifest"
            clikit.say(f"{m.system}: {dump['database']} dumped to {dump['path']} ({dump['sha256']}): {written}")


def _table(wave: WaveRead) -> Table:
    """Each system's state, step, steps done, servers (one a line) and its whole error or what it waits for (under
    the table when the row does not fit the width)."""
    table = clikit.table("system", "agency", "state", "step", "done", "servers", "detail",
                         title=f"Wave {wave.id} {wave.name}: {wave.state}", fold=("detail",))
    for m in wave.migrations:
        table.add_row(m.system, m.agency, m.state.value, m.step or "–", f"{len(m.steps_done)}/{len(m.steps)}",
                      "\n".join(m.servers) or "–", m.error or m.waiting_for or "–")
    return table


@waves_app.command("create")
@clikit.reports(details=_details)
def waves_create(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True,
                                help="YAML or JSON: name, systems, credential, inputs (as POST /api/v1/waves)"),
) -> None:
    """Make a wave: planned now, refused (exit 2) with every finding unless the plan is clean."""
    data = clikit.body(file, WaveIn, option="file")
    with clikit.context() as ctx, transaction(ctx.sessions) as session:
        wave = service.wave_read(session, flows.create_wave(session, ctx=ctx, actor=clikit.actor(), data=data),
                                 viewer=clikit.actor())
    clikit.say(f"wave {wave.id} {wave.name}: {len(wave.migrations)} systems "
               f"({', '.join(m.system for m in wave.migrations)}); run it with `controlplane waves run "
               f"{wave.id} --watch`")


@waves_app.command("list")
@clikit.reports(details=_details)
def waves_list() -> None:
    """The waves, newest first, with their migrations' states."""
    with clikit.context() as ctx, transaction(ctx.sessions) as session:
        waves = [service.wave_read(session, w, viewer=clikit.actor(), detail=False)
                 for w in service.list_waves(session, viewer=clikit.actor())]
    table = clikit.table("id", "name", "state", "systems", "created", title=f"Waves ({len(waves)})",
                         wrap=("name", "systems"))
    for wave in waves:
        counts = ", ".join(f"{n} {state}" for state, n in sorted(wave.counts.items()))
        table.add_row(str(wave.id), wave.name, wave.state, counts, wave.created_at.isoformat(timespec="minutes"))
    console.print(table)


@waves_app.command("show")
@clikit.reports(details=_details)
def waves_show(wave_id: int = typer.Argument(..., help="the wave's id")) -> None:
    """Each system's state, step, steps done, servers and error."""
    with clikit.context() as ctx:
        wave = _read(ctx, wave_id)
    console.print(_table(wave))
    _say_dumps(wave)


@waves_app.command("watch")
@clikit.reports(details=_details)
def waves_watch(wave_id: int = typer.Argument(..., help="the wave's id")) -> None:
    """Progress bars (not on a terminal: a line per change) until the wave is at rest; exit 1 when a migration
    failed."""
    with clikit.context() as ctx:
        wave = _watch(ctx, wave_id)
    raise _summary(wave)


@waves_app.command("run")
@clikit.reports(details=_details)
def waves_run(
    wave_id: int = typer.Argument(..., help="the wave's id"),
    watch: bool = typer.Option(False, "--watch", help="progress bars (not on a terminal: a line per change) until "
                                                      "the wave is at rest"),
) -> None:
    """Start every pending migration of the wave."""
    with clikit.context() as ctx, clikit.engine_here_or_client(ctx) as here:
        with transaction(ctx.sessions) as session:
            wave = service.get_wave(session, viewer=clikit.actor(), wave_id=wave_id)
            queued = [(m.id, str(m.workflow_id), m.agency.code)
                      for m in service.run_wave(session, clock=ctx.clock, actor=clikit.actor(), wave=wave)]
        flows.submit(ctx, queued)
        clikit.say(f"{len(queued)} migrations queued{'' if here else ' (the server runs them)'}")
        console.file.flush()
        if watch or here:
            raise _summary(_watch(ctx, wave_id))


def _control(wave_id: int, control: Control, systems: list[str], every: bool, from_step: str | None = None,
             force_window: str | None = None, confirm_writes: bool = False) -> None:
    actor = clikit.actor()
    queueing = control in (Control.RESUME, Control.RETRY, Control.APPROVE, Control.ROLLBACK)
    with (clikit.reporting(_details), clikit.context() as ctx,
          clikit.engine_here_or_client(ctx) if queueing else _nothing() as here):
        submitted: list[tuple[str, str, str, str | None]] = []
        with transaction(ctx.sessions) as session:
            wave = service.get_wave(session, viewer=actor, wave_id=wave_id)
            chosen = [m for m in wave.migrations if every or m.system.code in systems]
            unknown = sorted(set(systems) - {m.system.code for m in wave.migrations})
            if unknown or not chosen:
                raise clikit.refuse(f"{', '.join(unknown) or 'no system'} is not in wave {wave_id}; name them with "
                                    "--system or use --all", field="system")
            for migration in chosen:
                if control is Control.ROLLBACK:
                    undo = service.request_rollback(session, clock=ctx.clock, actor=actor, migration=migration,
                                                    confirm_writes_since_cutover=confirm_writes)
                    submitted.append((migration.id, undo.workflow_id, migration.agency.code, undo.id))
                    message = f"rollback of {migration.system.code}: {' -> '.join(undo.steps) or 'nothing'}"
                else:
                    message = service.request_control(session, clock=ctx.clock, actor=actor,
                                                      migration=migration, control=control, from_step=from_step,
                                                      force_window=force_window)
                    job_id = flows.running_job(session, migration_id=migration.id)
                    if control is Control.CANCEL and job_id is not None:  # its runner reads the flag within 1 s
                        job_flows.cancel_job(session, ctx=ctx, actor=actor, job_id=job_id)
                    if queueing:
                        submitted.append((migration.id, str(migration.workflow_id), migration.agency.code, None))
                clikit.say(message)
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
def waves_approve(wave_id: int, system: list[str] = _SYSTEM, every: bool = _ALL,
                  force_window: str | None = typer.Option(
                      None, "--force-window", metavar="REASON",
                      help="cut over outside the systems' maintenance windows, for this reason (audited)")) -> None:
    """Approve the cutover of systems awaiting it (or waiting for their window, with --force-window), or the
    retire of cut-over systems before their soak ends."""
    _control(wave_id, Control.APPROVE, system, every, force_window=force_window)


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
def waves_rollback(wave_id: int, system: list[str] = _SYSTEM, every: bool = _ALL,
                   confirm_writes: bool = typer.Option(
                       False, "--confirm-writes-since-cutover",
                       help="roll back cut-over systems: their new databases are dumped first, but what their users "
                            "wrote since the cutover is not loaded into the legacy side")) -> None:
    """Undo migrations: the front back to the legacy side, the new databases of cut-over systems dumped, their
    servers deleted, and proof nothing is left."""
    _control(wave_id, Control.ROLLBACK, system, every, confirm_writes=confirm_writes)


@commands_app.command("worker")
@clikit.reports()
def worker() -> None:
    """Run the durable engine without the API until stopped (SIGTERM or Ctrl-C): beside `controlplane serve`
    on a PostgreSQL system database (each process with its own CP_WORKFLOWS_EXECUTOR_ID), or alone."""
    import signal
    import threading

    from controlplane.workflows import EngineBusy

    with clikit.context() as ctx:
        try:
            engine = start_engine(ctx)
        except EngineBusy as exc:
            raise clikit.fail(str(exc)) from None
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        try:
            clikit.say(f"engine running (executor {ctx.settings.workflows_executor_id}): migrations, playbook jobs, "
                       "cloud applies, room probes and bridge reconciles; stop it with Ctrl-C")
            stop.wait()
        finally:
            stop_engine(ctx, engine)
