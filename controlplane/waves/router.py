"""HTTP routes of waves and migrations: make a wave from a clean plan, run it, control its migrations (pause,
resume, cancel, retry from a step, approve the cutover, roll back), read them and follow their events (JSON and
Server-Sent Events)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, Header, Query, Response
from fastapi.responses import StreamingResponse

from controlplane.auth.deps import Ctx, DbSession, require
from controlplane.auth.roles import Permission, Principal
from controlplane.automation import flows as job_flows
from controlplane.context import AppContext
from controlplane.db import transaction
from controlplane.errors import InvalidInput
from controlplane.event_stream import BATCH, event_stream
from controlplane.http_api import MAX_ID, After, RowId, errors
from controlplane.waves import flows, service
from controlplane.waves.domain import Control, State, refusal
from controlplane.waves.models import Migration
from controlplane.waves.schemas import (
    Accepted,
    ApproveIn,
    EventRead,
    MigrationRead,
    RetryIn,
    RollbackIn,
    WaveIn,
    WaveRead,
)

Reader = Annotated[Principal, Depends(require(Permission.MIGRATION_READ))]
Writer = Annotated[Principal, Depends(require(Permission.MIGRATION_WRITE))]
Approver = Annotated[Principal, Depends(require(Permission.MIGRATION_APPROVE))]

router = APIRouter(prefix="/api/v1", tags=["migrations"])
_WAVE_CONTROLS = (Control.PAUSE, Control.RESUME, Control.CANCEL)
_QUEUEING = (Control.RUN, Control.RESUME, Control.RETRY, Control.APPROVE)
CONTROLS = errors(409, 503, s409="the state does not accept this control (`control_refused` says what it accepts)",
                  s503="the durable engine does not run in this process")


@router.post("/waves", response_model=WaveRead, status_code=201,
             summary="Make a wave of systems (planned now: 422 with every finding unless the plan is clean)",
             responses=errors(404, 409, s404="the credential is unknown",
                              s409="a wave of that name exists, or a system is held by another wave's migration"))
def create_wave(*, data: WaveIn, response: Response, principal: Writer, session: DbSession, ctx: Ctx) -> WaveRead:
    wave = flows.create_wave(session, ctx=ctx, actor=principal, data=data)
    response.headers["Location"] = f"{router.prefix}/waves/{wave.id}"
    return service.wave_read(session, wave, viewer=principal)


@router.get("/waves", response_model=list[WaveRead], summary="Waves, newest first")
def list_waves(*, principal: Reader, session: DbSession, limit: int = Query(50, ge=1, le=500)) -> list[WaveRead]:
    return [service.wave_read(session, w, viewer=principal, detail=False)
            for w in service.list_waves(session, viewer=principal, limit=limit)]


@router.get("/waves/{wave_id}", response_model=WaveRead,
            summary="A wave with its migrations, their step runs (timings, jobs) and rollbacks")
def get_wave(*, wave_id: RowId, principal: Reader, session: DbSession) -> WaveRead:
    return service.wave_read(session, service.get_wave(session, viewer=principal, wave_id=wave_id), viewer=principal)


@router.post("/waves/{wave_id}/run", response_model=WaveRead, status_code=202,
             summary="Start every pending migration of the wave (durable workflows; 202)",
             responses=CONTROLS)
def run_wave(*, wave_id: RowId, background: BackgroundTasks, principal: Writer, session: DbSession,
             ctx: Ctx) -> WaveRead:
    ctx.durable("migrations")
    wave = service.get_wave(session, viewer=principal, wave_id=wave_id)
    queued = service.run_wave(session, clock=ctx.clock, actor=principal, wave=wave)
    background.add_task(flows.submit, ctx, [_attempt(m) for m in queued])
    return service.wave_read(session, wave, viewer=principal)


@router.post("/waves/{wave_id}/{control}", response_model=WaveRead, status_code=202,
             summary="pause, resume or cancel every migration of the wave that accepts it", responses=CONTROLS)
def control_wave(*, wave_id: RowId, control: Control, background: BackgroundTasks, principal: Writer,
                 session: DbSession, ctx: Ctx) -> WaveRead:
    if control not in _WAVE_CONTROLS:
        raise InvalidInput(f"a wave accepts {', '.join(_WAVE_CONTROLS)}; {control} is per migration",
                           field="control")
    wave = service.get_wave(session, viewer=principal, wave_id=wave_id)
    touched = [m for m in wave.migrations if principal.can_reach(m.agency_id) and
               refusal(m.state, control) is None]
    if not touched:
        raise service.ControlRefused(f"no migration of wave {wave.name} accepts {control}", field="control")
    for migration in touched:
        _apply(session, ctx, principal, migration, control, background)
    return service.wave_read(session, wave, viewer=principal)


@router.get("/migrations/{migration_id}", response_model=MigrationRead,
            summary="A migration: state, steps done, servers, step runs and its rollback")
def get_migration(*, migration_id: str, principal: Reader, session: DbSession) -> MigrationRead:
    return service.migration_read(session, service.get_migration(session, viewer=principal,
                                                                 migration_id=migration_id))


@router.post("/migrations/{migration_id}/approve", response_model=Accepted, status_code=202,
             summary="Approve the cutover of a migration awaiting it (or, with `force_window`, one waiting for its "
                     "maintenance window), or the retire of a cut-over one before its soak ends",
             responses=CONTROLS)
def approve(*, migration_id: str, background: BackgroundTasks, principal: Approver, session: DbSession,
            ctx: Ctx, data: ApproveIn | None = None) -> Accepted:
    migration = service.get_migration(session, viewer=principal, migration_id=migration_id)
    return _apply(session, ctx, principal, migration, Control.APPROVE, background,
                  force_window=data.force_window if data else None)


@router.post("/migrations/{migration_id}/retry", response_model=Accepted, status_code=202,
             summary="Run a failed or canceled migration again from the failed step (or `from_step`)",
             responses=CONTROLS)
def retry(*, migration_id: str, background: BackgroundTasks, principal: Writer, session: DbSession, ctx: Ctx,
          data: RetryIn | None = None) -> Accepted:
    migration = service.get_migration(session, viewer=principal, migration_id=migration_id)
    return _apply(session, ctx, principal, migration, Control.RETRY, background,
                  from_step=data.from_step if data else None)


@router.post("/migrations/{migration_id}/rollback", response_model=Accepted, status_code=202,
             summary="Undo a migration: front back to legacy, its databases dumped if it was cut over (confirm it), "
                     "its servers deleted, then proven gone",
             responses=CONTROLS)
def rollback(*, migration_id: str, background: BackgroundTasks, principal: Writer, session: DbSession,
             ctx: Ctx, data: RollbackIn | None = None) -> Accepted:
    ctx.durable("migrations")
    migration = service.get_migration(session, viewer=principal, migration_id=migration_id)
    undo = service.request_rollback(session, clock=ctx.clock, actor=principal, migration=migration,
                                    confirm_writes_since_cutover=bool(data and data.confirm_writes_since_cutover))
    background.add_task(flows.submit_rollback, ctx, rollback_id=undo.id, workflow_id=undo.workflow_id,
                        agency=migration.agency.code)
    return Accepted(state=migration.state, message=f"rollback of {migration.system.code}: "
                                                   f"{' -> '.join(undo.steps) or 'nothing to undo'}",
                    url=f"{router.prefix}/migrations/{migration.id}")


@router.post("/migrations/{migration_id}/{control}", response_model=Accepted, status_code=202,
             summary="pause, resume or cancel one migration", responses=CONTROLS)
def control_migration(*, migration_id: str, control: Control, background: BackgroundTasks, principal: Writer,
                      session: DbSession, ctx: Ctx) -> Accepted:
    if control not in _WAVE_CONTROLS:
        raise InvalidInput(f"{control} has a route of its own (/migrations/{{id}}/{control})", field="control")
    migration = service.get_migration(session, viewer=principal, migration_id=migration_id)
    return _apply(session, ctx, principal, migration, control, background)


def _attempt(migration: Migration) -> tuple[str, str, str]:
    return migration.id, str(migration.workflow_id), migration.agency.code


def _apply(session: DbSession, ctx: AppContext, principal: Principal, migration: Migration, control: Control,
           background: BackgroundTasks, *, from_step: str | None = None, force_window: str | None = None) -> Accepted:
    if control in _QUEUEING:
        ctx.durable("migrations")
    message = service.request_control(session, clock=ctx.clock, actor=principal, migration=migration,
                                      control=control, from_step=from_step, force_window=force_window)
    if control in _QUEUEING:
        background.add_task(flows.submit, ctx, [_attempt(migration)])
    elif control is Control.CANCEL and State(migration.state).active:
        job_id = flows.running_job(session, migration_id=migration.id)
        if job_id is not None:
            job_flows.cancel_job(session, ctx=ctx, actor=principal, job_id=job_id)
            background.add_task(job_flows.signal_cancel, ctx, job_id=job_id)
    return Accepted(state=migration.state, message=message, url=f"{router.prefix}/migrations/{migration.id}")


@router.get("/waves/{wave_id}/events", response_model=list[EventRead],
            summary="The wave's events after `after` (an event id), in order")
def wave_events(*, wave_id: RowId, principal: Reader, session: DbSession, after: After = 0,
                limit: int = Query(1000, ge=1, le=5000)) -> list[EventRead]:
    wave = service.get_wave(session, viewer=principal, wave_id=wave_id)
    return service.events(session, viewer=principal, wave=wave, after=after, limit=limit)


@router.get("/waves/{wave_id}/events/stream", response_class=StreamingResponse,
            summary="The wave's events as Server-Sent Events (`wave-event`; `end` once nothing runs)",
            responses={200: {"content": {"text/event-stream": {}}}})
def stream_wave_events(*, wave_id: RowId, principal: Reader, session: DbSession, ctx: Ctx, after: After = 0,
                       last_event_id: Annotated[int | None, Header(ge=0, le=MAX_ID)] = None) -> Response:
    service.get_wave(session, viewer=principal, wave_id=wave_id)  # 404 before the stream starts
    return wave_event_stream(ctx, principal, wave_id, last_event_id if last_event_id is not None else after)


def wave_event_stream(ctx: AppContext, viewer: Principal, wave_id: int, after: int) -> Response:
    """SSE of a wave's events from `after` on, until nothing of it runs (also the wave page's)."""
    def read(last: int) -> tuple[list[EventRead], str]:
        with transaction(ctx.sessions) as session:
            wave = service.get_wave(session, viewer=viewer, wave_id=wave_id)
            return service.events(session, viewer=viewer, wave=wave, after=last, limit=BATCH), wave.state

    return event_stream(read, after=after, event="wave-event", cursor=lambda event: event.id,
                        finished=lambda state: state not in (State.PENDING.value, State.RUNNING.value),
                        end=lambda state: {"state": state})
