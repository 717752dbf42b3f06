"""Waves and migrations in the database: made from a clean plan, read with agency scope, their states, step runs and
events recorded as the workflows go. Keyword-only; the caller owns the transaction."""

from __future__ import annotations

import secrets as random_secrets
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session, joinedload

from controlplane.auth import audit
from controlplane.auth.roles import Principal
from controlplane.automation.service import get_credential, variables_problems
from controlplane.clock import Clock
from controlplane.errors import Conflict, InvalidInput, NotFound
from controlplane.inventory import domain as inventory_domain
from controlplane.inventory import planning
from controlplane.inventory.models import AgencySystem
from controlplane.secrets import SecretBox
from controlplane.waves.domain import Control, State, database, inputs_of, missing_inputs, refusal, retry_from
from controlplane.waves.models import Migration, MigrationEvent, Rollback, StepRun, Wave
from controlplane.waves.schemas import EventRead, MigrationRead, RollbackRead, StepRunRead, WaveIn, WaveRead

SECRET_NAME = "postgresql_db_owner_password"


class ControlRefused(Conflict):
    code = "control_refused"


def _actor_name(actor: audit.Actor) -> str:
    return actor.username if isinstance(actor, Principal) else actor


# --------------------------------------------------------------------------- waves


def create_wave(session: Session, *, clock: Clock, actor: audit.Actor, box: SecretBox, data: WaveIn,
                plan: planning.MigrationPlan, cloud: str, network_cidrs: dict[str, str], artifacts: Path) -> Wave:
    """A draft wave with one pending migration per system of `plan` (which must be clean), all or nothing. Its
    inputs pass the rules of jobs (variable names, files only from the `artifacts` directory) before anything is
    made."""
    if session.scalar(select(Wave.id).where(Wave.name == data.name)) is not None:
        raise Conflict(f"a wave named '{data.name}' exists already", field="name")
    if not plan.ok:
        raise InvalidInput(f"the wave cannot be planned: {len(plan.findings)} finding(s), first: "
                           f"{plan.findings[0].describe()}", field="systems",
                           details=[f.to_dict() for f in plan.findings])
    _refuse_held(session, [p.system for p in plan.systems])
    credential = get_credential(session, name=data.credential)
    stray = sorted(set(data.inputs) - set(data.systems))
    if stray:
        raise InvalidInput(f"inputs for {stray[0]}, which is not in the wave", field=f"inputs.{stray[0]}")
    system_plans = plan.systems
    problems = []
    for system_plan in system_plans:
        given = data.inputs.get(system_plan.system)
        raw = given.model_dump(mode="json") if given else {}
        problems += [{"field": f"inputs.{system_plan.system}.{name}", "message": why}
                     for name, why in missing_inputs(system_plan.to_dict(), inputs_of(raw))]
        problems += [{"field": field, "message": why}
                     for field, why in _input_problems(system_plan.system, raw, artifacts)]
    if problems:
        raise InvalidInput(f"{problems[0]['field']}: {problems[0]['message']}", field=problems[0]["field"],
                           details=problems)
    now = clock.now()
    wave = Wave(name=data.name, state=State.PENDING.value, catalogue_version=plan.catalogue_version, cloud=cloud,
                credential_id=credential.id, created_by=_actor_name(actor), created_at=now, soak_hours=data.soak_hours)
    session.add(wave)
    session.flush()
    rows = {s.code: s for s in session.scalars(
        select(AgencySystem).where(AgencySystem.code.in_([p.system for p in system_plans])))}
    in_wave = {p.system for p in system_plans}
    for position, system_plan in enumerate(system_plans):
        row = rows[system_plan.system]
        given = data.inputs.get(system_plan.system)
        legacy = {**(given.model_dump(mode="json") if given else {}),
                  "network_cidr": network_cidrs.get(system_plan.agency, "")}
        session.add(Migration(
            id=str(uuid.uuid4()), wave_id=wave.id, system_id=row.id, agency_id=row.agency_id, position=position,
            state=State.PENDING.value, plan=system_plan.to_dict(), legacy=legacy,
            depends_on=[d for d in row.depends_on if d in in_wave], steps_done=[], resources={},
            secrets_sealed=box.seal(random_secrets.token_urlsafe(24)), created_at=now))
    session.flush()
    audit.record(session, clock=clock, actor=actor, action="create", entity_type="wave", entity_id=wave.id,
                 after={"name": wave.name, "systems": [p.system for p in system_plans], "cloud": cloud,
                        "credential": credential.name, "summary": plan.summary()})
    add_event(session, clock=clock, wave_id=wave.id, kind="state", state=wave.state,
              message=f"wave {wave.name} made: {plan.summary()}")
    for warning in plan.warnings:  # the plan's warnings do not stop the wave; they stay in its events
        add_event(session, clock=clock, wave_id=wave.id, kind="warning", system=warning.system,
                  message=warning.message)
    return wave


def _refuse_held(session: Session, codes: list[str]) -> None:
    """409 when a system is held by a migration of another wave: one that is not rolled back, nor canceled before
    it made anything (two waves of one system would make its servers twice and switch its front twice). The
    systems' rows are locked first, so that two waves made at once cannot both pass (PostgreSQL)."""
    session.scalars(select(AgencySystem.id).where(AgencySystem.code.in_(codes)).with_for_update()).all()
    holders = session.execute(
        select(AgencySystem.code, Wave.name, Migration.state, Migration.resources)
        .join(Migration, Migration.system_id == AgencySystem.id).join(Wave, Wave.id == Migration.wave_id)
        .where(AgencySystem.code.in_(codes), Migration.state != State.ROLLED_BACK.value)
        .order_by(Migration.created_at)).all()
    held = [(code, wave, state) for code, wave, state, resources in holders
            if state != State.CANCELED.value or resources]
    if held:
        code, wave, state = held[0]
        raise Conflict(f"{code} is held by wave '{wave}' ({state}): roll it back or cancel it there first",
                       field="systems", details=[{"field": "systems", "system": c, "wave": w, "state": st}
                                                 for c, w, st in held])


def _input_problems(code: str, given: dict[str, Any], artifacts: Path) -> list[tuple[str, str]]:
    """What the jobs of a system's steps would refuse in its inputs, found when the wave is made: variable names
    (`migration_*` are the engine's), and every file (artifact, dump, schema, manifest, CSV) outside `artifacts`."""
    where = f"inputs.{code}"
    variables = {"variables": given.get("variables") or {}, "front.vars": (given.get("front") or {}).get("vars") or {}}
    problems = [problem for name, values in variables.items()
                for problem in variables_problems(values, f"{where}.{name}", artifacts=artifacts,
                                                  reserved=("migration_",))]
    files = {name: given[name] for name in ("artifact", "data") if given.get(name)}
    return problems + variables_problems(files, where, artifacts=artifacts)


def _reach(viewer: audit.Actor, migration: Migration) -> bool:
    return not isinstance(viewer, Principal) or viewer.can_reach(migration.agency_id)


def get_wave(session: Session, *, viewer: audit.Actor, wave_id: int) -> Wave:
    # The wave and its migrations in one statement: read apart (PostgreSQL reads committed data per statement), the
    # migrations could show a transition whose wave state the first read missed (all succeeded, wave "running").
    wave = session.scalars(select(Wave).where(Wave.id == wave_id).options(joinedload(Wave.migrations))
                           .execution_options(populate_existing=True)).unique().one_or_none()
    if wave is None or not any(_reach(viewer, m) for m in wave.migrations):
        raise NotFound(f"no wave {wave_id}", field="wave_id")
    return wave


def list_waves(session: Session, *, viewer: audit.Actor, limit: int = 100) -> list[Wave]:
    waves = session.scalars(select(Wave).order_by(Wave.id.desc()).limit(limit))
    return [w for w in waves if any(_reach(viewer, m) for m in w.migrations)]


def get_migration(session: Session, *, viewer: audit.Actor, migration_id: str) -> Migration:
    migration = session.get(Migration, migration_id)
    if migration is None or not _reach(viewer, migration):
        raise NotFound(f"no migration {migration_id}", field="migration_id")
    return migration



def wave_state(states: Sequence[str]) -> str:
    """A wave sums up its migrations: running while any is active or waits for an operator, else its outcome."""
    kinds = set(states)
    if kinds <= {State.PENDING.value}:
        return State.PENDING.value
    if kinds & {State.QUEUED.value, State.RUNNING.value, State.ROLLING_BACK.value}:
        return State.RUNNING.value
    for state in (State.FAILED, State.ROLLBACK_FAILED, State.BLOCKED, State.AWAITING_APPROVAL, State.WAITING,
                  State.PAUSED, State.CUT_OVER, State.CANCELED):
        if state.value in kinds:
            return state.value
    if kinds <= {State.SUCCEEDED.value, State.ROLLED_BACK.value}:
        return State.SUCCEEDED.value if State.SUCCEEDED.value in kinds else State.ROLLED_BACK.value
    return State.RUNNING.value


def refresh_wave(session: Session, *, clock: Clock, wave: Wave) -> None:
    """Sum the wave's state up again, from the database as it is now: the wave's row is read locked (PostgreSQL;
    SQLite serialises writers anyway) and fresh, so two migrations changing state at once cannot sum up from what
    the other had not committed, nor compare with a state this session read earlier."""
    session.flush()
    # FOR NO KEY UPDATE: the events' foreign keys hold KEY SHARE locks on the row, which this must not wait for.
    stored = session.execute(select(Wave.state).where(Wave.id == wave.id).with_for_update(key_share=True)).scalar_one()
    states = list(session.scalars(select(Migration.state).where(Migration.wave_id == wave.id)))
    state = wave_state(states)
    wave.state = state
    if state == stored:
        return
    if state == State.RUNNING.value and wave.started_at is None:
        wave.started_at = clock.now()
    ended = all(State(s) in (State.SUCCEEDED, State.ROLLED_BACK, State.CANCELED) for s in states)
    wave.finished_at = clock.now() if ended else None
    add_event(session, clock=clock, wave_id=wave.id, kind="state", state=state, message=f"wave is {state}")


# --------------------------------------------------------------------------- controls


def check_control(migration: Migration, control: Control) -> None:
    why = refusal(migration.state, control)
    if why is not None:
        raise ControlRefused(f"{migration.system.code}: {why}", field="state")


def set_state(session: Session, *, clock: Clock, migration: Migration, state: State, message: str = "",
              step: str | None = None, error: str | None = None) -> None:
    migration.state = state.value
    if error is not None:
        migration.error = error
    if state is State.RUNNING and migration.started_at is None:
        migration.started_at = clock.now()
    if state in (State.SUCCEEDED, State.ROLLED_BACK, State.CANCELED):
        migration.finished_at = clock.now()
    add_event(session, clock=clock, wave_id=migration.wave_id, migration_id=migration.id,
              system=migration.system.code, kind="state", state=state.value, step=step or migration.step,
              message=message or state.value)
    refresh_wave(session, clock=clock, wave=migration.wave)


def request_control(session: Session, *, clock: Clock, actor: audit.Actor, migration: Migration, control: Control,
                    from_step: str | None = None, force_window: str | None = None) -> str:
    """Apply an operator's control to a migration (audited); returns what happened. Starting the workflow it
    may need is the caller's (after commit). `force_window` (approve only) is why its cutover may run outside the
    system's maintenance window."""
    check_control(migration, control)
    before = {"state": migration.state, "steps_done": list(migration.steps_done)}
    name = migration.system.code
    if force_window is not None and not 3 <= len(force_window.strip()) <= 300:
        raise InvalidInput("force_window: say why the cutover may run outside the window (3 to 300 characters)",
                           field="force_window")
    if control is Control.APPROVE and migration.state == State.WAITING.value and force_window is None:
        raise ControlRefused(f"{name}: its cutover is approved already and {migration.waiting_for}; to cut over "
                             "outside its maintenance window, approve with force_window and the reason",
                             field="force_window")
    if control is Control.PAUSE:
        migration.control = Control.PAUSE.value
        message = f"{name} pauses after its current step"
        add_event(session, clock=clock, wave_id=migration.wave_id, migration_id=migration.id, system=name,
                  kind="control", state=migration.state, message=message)
    elif control is Control.CANCEL and State(migration.state).active:
        migration.control = Control.CANCEL.value
        message = f"{name} is being canceled"
        add_event(session, clock=clock, wave_id=migration.wave_id, migration_id=migration.id, system=name,
                  kind="control", state=migration.state, message=message)
    elif control is Control.CANCEL:
        migration.control = None
        message = f"{name} canceled"
        set_state(session, clock=clock, migration=migration, state=State.CANCELED, message=message)
    elif control is Control.APPROVE and migration.state == State.CUT_OVER.value:
        migration.soak_until = clock.now()
        message = f"retire of {name} approved by {_actor_name(actor)} before its soak ended"
        add_event(session, clock=clock, wave_id=migration.wave_id, migration_id=migration.id, system=name,
                  kind="approval", step=planning.Step.RETIRE.value, state=migration.state, message=message)
        queue(session, clock=clock, migration=migration)
    elif control is Control.APPROVE:
        if migration.approved_at is None:
            migration.approved_by, migration.approved_at = _actor_name(actor), clock.now()
        message = f"cutover of {name} approved by {_actor_name(actor)}"
        if force_window is not None:
            migration.window_forced = force_window
            message += f", outside its maintenance window if need be: {force_window}"
        add_event(session, clock=clock, wave_id=migration.wave_id, migration_id=migration.id, system=name,
                  kind="approval", step=planning.Step.CUTOVER.value, state=migration.state, message=message)
        queue(session, clock=clock, migration=migration)
    elif control is Control.RETRY:
        try:
            migration.steps_done = retry_from(migration.plan["steps"], migration.steps_done, from_step)
        except inventory_domain.StepError as exc:
            raise InvalidInput(str(exc), field=exc.field) from None
        start = migration.plan["steps"][len(migration.steps_done)]
        message = f"{name} retried from {start}"
        migration.error, migration.cloud_retry_at, migration.cloud_waits = "", None, 0  # an operator's retry: now
        queue(session, clock=clock, migration=migration, message=message)
    else:  # run, resume
        message = f"{name} {'resumed' if control is Control.RESUME else 'queued'}"
        queue(session, clock=clock, migration=migration, message=message)
    audit.record(session, clock=clock, actor=actor, action=control.value, entity_type="migration",
                 entity_id=migration.id, agency_id=migration.agency_id, before=before,
                 after={"state": migration.state, "control": migration.control, "from_step": from_step,
                        "force_window": force_window, "system": name})
    return message


def queue(session: Session, *, clock: Clock, migration: Migration, message: str = "") -> None:
    """A new attempt of its workflow (the caller starts it under `workflow_id` once committed)."""
    migration.attempt += 1
    migration.control, migration.waiting_for = None, ""
    migration.workflow_id = f"migration-{migration.id}-{migration.attempt}"
    set_state(session, clock=clock, migration=migration, state=State.QUEUED, message=message or "queued")


def run_wave(session: Session, *, clock: Clock, actor: audit.Actor, wave: Wave) -> list[Migration]:
    """Queue every pending migration of the wave; 409 when none is pending."""
    pending = [m for m in wave.migrations if m.state == State.PENDING.value]
    if not pending:
        raise ControlRefused(f"wave {wave.name} has no pending migration (it is {wave.state})", field="state")
    for migration in pending:
        queue(session, clock=clock, migration=migration, message=f"{migration.system.code} queued")
    audit.record(session, clock=clock, actor=actor, action="run", entity_type="wave", entity_id=wave.id,
                 after={"systems": [m.system.code for m in pending]})
    return pending


def request_rollback(session: Session, *, clock: Clock, actor: audit.Actor, migration: Migration,
                     confirm_writes_since_cutover: bool = False) -> Rollback:
    """Start undoing a migration (audited). After its cutover, its users may have written to its new database: the
    rollback dumps it before deleting its server, and must be confirmed knowing those writes are not loaded back
    into the legacy side (409 otherwise, and nothing is done)."""
    check_control(migration, Control.ROLLBACK)
    cut_over = planning.Step.CUTOVER.value in migration.steps_done
    if cut_over and migration.plan["data_moves"] and not confirm_writes_since_cutover:
        name = database(migration.plan)
        raise ControlRefused(
            f"{migration.system.code} is cut over: its users may have written to its new database {name} since. "
            f"The rollback dumps {name} (kept with the rollback, with its checksum) before deleting its server, but "
            "those writes are not loaded into the legacy side; confirm with confirm_writes_since_cutover",
            field="confirm_writes_since_cutover")
    failed = migration.step if migration.state in (State.FAILED.value, State.CANCELED.value,
                                                   State.PAUSED.value) else None
    steps = migration.plan["steps"]
    if failed is not None and failed not in steps[len(migration.steps_done):len(migration.steps_done) + 1]:
        failed = None
    try:
        undo = planning.rollback_steps(migration.steps_done, failed=failed,
                                     steps=[planning.Step(s) for s in steps])
    except inventory_domain.StepError as exc:
        raise ControlRefused(f"{migration.system.code}: {exc}", field="state") from None
    # Servers may exist although provision never finished (it failed or was cut short): undo it anyway.
    if planning.Step.PROVISION not in undo and migration.resources:
        undo = (*undo, planning.Step.PROVISION)
    rollback = Rollback(id=str(uuid.uuid4()), migration_id=migration.id, state=State.RUNNING.value,
                        steps=[s.value for s in undo], steps_done=[], leftovers={}, error="",
                        workflow_id="", requested_by=_actor_name(actor), created_at=clock.now())
    rollback.workflow_id = f"rollback-{rollback.id}"
    session.add(rollback)
    migration.attempt += 1
    migration.control, migration.waiting_for = None, ""
    migration.workflow_id = rollback.workflow_id
    set_state(session, clock=clock, migration=migration, state=State.ROLLING_BACK,
              message=f"rollback: {' -> '.join(rollback.steps) or 'nothing to undo'}")
    audit.record(session, clock=clock, actor=actor, action="rollback", entity_type="migration",
                 entity_id=migration.id, agency_id=migration.agency_id,
                 after={"rollback": rollback.id, "steps": rollback.steps, "system": migration.system.code,
                        "confirm_writes_since_cutover": confirm_writes_since_cutover})
    return rollback


def servers_ahead(session: Session, *, migration: Migration) -> list[dict[str, Any]]:
    """The planned servers not made yet of the agency's migrations under way that were asked for before this one
    (an earlier wave, or earlier in its wave): what the agency's quota must keep for them. First asked, first
    served: two prechecks at once agree on which of them has the room."""
    ahead = session.scalars(select(Migration).where(
        Migration.agency_id == migration.agency_id, Migration.id != migration.id,
        Migration.state.in_([State.QUEUED.value, State.RUNNING.value, State.PAUSED.value, State.WAITING.value]),
        or_(Migration.wave_id < migration.wave_id,
            and_(Migration.wave_id == migration.wave_id, Migration.position < migration.position))))
    return [server for other in ahead for server in other.plan["servers"] if server["name"] not in other.resources]


def current_rollback(session: Session, *, migration_id: str) -> Rollback | None:
    return session.scalar(select(Rollback).where(Rollback.migration_id == migration_id)
                          .order_by(Rollback.created_at.desc()).limit(1))


# --------------------------------------------------------------------------- steps and events


def start_step(session: Session, *, clock: Clock, migration: Migration, step: str,
               rollback: Rollback | None = None) -> StepRun:
    run = StepRun(migration_id=migration.id, rollback_id=rollback.id if rollback else None, step=step,
                  state=State.RUNNING.value, detail={}, started_at=clock.now())
    session.add(run)
    if rollback is None:
        migration.step = step
    add_event(session, clock=clock, wave_id=migration.wave_id, migration_id=migration.id,
              system=migration.system.code, kind="step", step=step, state="running",
              message=f"{'undo ' if rollback else ''}{step} started")
    session.flush()
    return run


def interrupt_runs(session: Session, *, clock: Clock, migration: Migration) -> None:
    """Close the step runs a stopped process left running (the workflow, recovered, runs the step again)."""
    for run in session.scalars(select(StepRun).where(StepRun.migration_id == migration.id,
                                                     StepRun.state == State.RUNNING.value)):
        end_step(session, clock=clock, run=run, migration=migration, state="interrupted",
                 error="the control plane stopped while this step ran; it runs again")


def end_step(session: Session, *, clock: Clock, run: StepRun, migration: Migration, state: str,
             detail: dict[str, Any] | None = None, error: str = "", message: str = "") -> None:
    run.state, run.error, run.finished_at = state, error[:2000], clock.now()
    run.detail = {**run.detail, **(detail or {})}
    run.duration = (run.finished_at - run.started_at).total_seconds()
    prefix = "undo " if run.rollback_id else ""
    add_event(session, clock=clock, wave_id=migration.wave_id, migration_id=migration.id,
              system=migration.system.code, kind="step", step=run.step, state=state,
              message=message or error or f"{prefix}{run.step} {state} in {run.duration:.1f} s")


def add_event(session: Session, *, clock: Clock, wave_id: int, kind: str, message: str,
              migration_id: str | None = None, system: str | None = None, step: str | None = None,
              state: str | None = None) -> None:
    session.add(MigrationEvent(wave_id=wave_id, migration_id=migration_id, system=system, kind=kind, step=step,
                               state=state, message=message[:4000], at=clock.now()))


def events(session: Session, *, viewer: audit.Actor, wave: Wave, after: int = 0, limit: int = 1000
           ) -> list[EventRead]:
    reachable = {m.id for m in wave.migrations if _reach(viewer, m)}
    everything = len(reachable) == len(wave.migrations)
    rows = session.scalars(select(MigrationEvent).where(MigrationEvent.wave_id == wave.id, MigrationEvent.id > after)
                           .order_by(MigrationEvent.id).limit(limit))
    return [EventRead.model_validate(e, from_attributes=True) for e in rows
            if e.migration_id in reachable or (e.migration_id is None and everything)]



# --------------------------------------------------------------------------- reads


def step_run_reads(session: Session, *, migration_id: str) -> list[StepRunRead]:
    runs = session.scalars(select(StepRun).where(StepRun.migration_id == migration_id).order_by(StepRun.id))
    return [StepRunRead(step=r.step, state=r.state, rollback=r.rollback_id is not None, started_at=r.started_at,
                        finished_at=r.finished_at, duration=r.duration, error=r.error, detail=r.detail)
            for r in runs]


def rollback_read(rollback: Rollback | None) -> RollbackRead | None:
    return RollbackRead.model_validate(rollback, from_attributes=True) if rollback else None


def migration_read(session: Session, migration: Migration, *, detail: bool = True) -> MigrationRead:
    return MigrationRead(
        id=migration.id, wave_id=migration.wave_id, system=migration.system.code, agency=migration.agency.code,
        position=migration.position, state=State(migration.state), step=migration.step,
        steps=migration.plan["steps"], steps_done=migration.steps_done, depends_on=migration.depends_on,
        control=migration.control, error=migration.error, attempt=migration.attempt,
        servers=migration.resources, approved_by=migration.approved_by, approved_at=migration.approved_at,
        waiting_for=migration.waiting_for, soak_until=migration.soak_until, window_forced=migration.window_forced,
        started_at=migration.started_at, finished_at=migration.finished_at,
        step_runs=step_run_reads(session, migration_id=migration.id) if detail else [],
        rollback=rollback_read(current_rollback(session, migration_id=migration.id)) if detail else None)


def wave_read(session: Session, wave: Wave, *, viewer: audit.Actor, detail: bool = True) -> WaveRead:
    migrations = [m for m in wave.migrations if _reach(viewer, m)]
    counts: dict[str, int] = {}
    for migration in migrations:
        counts[migration.state] = counts.get(migration.state, 0) + 1
    base = f"/api/v1/waves/{wave.id}"
    return WaveRead(id=wave.id, name=wave.name, state=wave.state, cloud=wave.cloud,
                    catalogue_version=wave.catalogue_version, created_by=wave.created_by, created_at=wave.created_at,
                    started_at=wave.started_at, finished_at=wave.finished_at, soak_hours=wave.soak_hours,
                    counts=counts,
                    migrations=[migration_read(session, m, detail=detail) for m in migrations], url=base,
                    events_url=f"{base}/events", stream_url=f"{base}/events/stream")
