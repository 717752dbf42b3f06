"""Migrations held outside the queue: what an approved cutover waits for (its dependencies, its maintenance
window) and a cut-over system's soak, from the migration's row, and taking on those whose wait is over (a new
attempt each). The rules are pure (domain.cutover_hold, domain.soak_hold); this reads the rows for them."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from controlplane.context import AppContext
from controlplane.inventory import planning
from controlplane.inventory.windows import parse_window
from controlplane.waves import service
from controlplane.waves.domain import (
    Dependency,
    Hold,
    State,
    cloud_hold,
    cloud_retry_delay,
    cutover_hold,
    soak_hold,
)
from controlplane.waves.models import Migration


def next_step(migration: Migration) -> str | None:
    steps = [planning.Step(s) for s in migration.plan["steps"]]
    step = planning.next_step(migration.steps_done, steps=steps)
    return step.value if step else None


def hold_of(ctx: AppContext, migration: Migration, step: str | None) -> Hold | None:
    """What keeps the migration from running `step` now: the cloud not answering its last try, its cutover's
    dependencies or window, its soak."""
    local = ZoneInfo(ctx.settings.timezone)
    if migration.cloud_retry_at is not None and ctx.clock.now() < migration.cloud_retry_at:
        return Hold(State.WAITING, migration.waiting_for, until=migration.cloud_retry_at)
    if step == planning.Step.CUTOVER.value:
        window = migration.plan.get("maintenance_window")
        return cutover_hold(_dependencies(migration), window=parse_window(window) if window else None,
                            local_now=ctx.clock.now().astimezone(local),
                            window_forced=migration.window_forced is not None)
    if step == planning.Step.RETIRE.value and migration.soak_until is not None:
        return soak_hold(migration.soak_until, now=ctx.clock.now(), local_until=migration.soak_until.astimezone(local))
    return None


def _dependencies(migration: Migration) -> list[Dependency]:
    others = {m.system.code: m for m in migration.wave.migrations}
    return [Dependency(code, State(others[code].state), planning.Step.CUTOVER.value in others[code].steps_done)
            for code in migration.depends_on if code in others]


def record(session: Session, ctx: AppContext, migration: Migration, hold: Hold, step: str | None) -> None:
    migration.step, migration.waiting_for = step, hold.reason
    service.set_state(session, clock=ctx.clock, migration=migration, state=hold.state, message=hold.reason)


def wait_for_cloud(session: Session, ctx: AppContext, migration: Migration, step: str, error: str) -> None:
    """The cloud did not answer the step (after the gateway's own retries): it runs again later, longer each time,
    with no slot of a queue held meanwhile."""
    migration.cloud_waits += 1
    migration.cloud_retry_at = ctx.clock.now() + timedelta(seconds=cloud_retry_delay(migration.cloud_waits))
    local = migration.cloud_retry_at.astimezone(ZoneInfo(ctx.settings.timezone))
    record(session, ctx, migration, cloud_hold(error, local_retry=local, until=migration.cloud_retry_at), step)


def take_on(session: Session, ctx: AppContext, held: list[Migration]) -> tuple[list[tuple[str, str, str]], int]:
    """Queue those of `held` whose hold is over; record a hold whose reason changed; write nothing else. Returns
    the attempts to submit and how many migrations changed."""
    woken, moved = [], 0
    for migration in held:
        step = next_step(migration)
        hold = hold_of(ctx, migration, step)
        if hold is None:
            service.queue(session, clock=ctx.clock, migration=migration,
                          message=f"{migration.system.code} goes on with {step or 'its end'}")
            woken.append((migration.id, migration.workflow_id or "", migration.agency.code))
            moved += 1
        elif (hold.state.value, hold.reason) != (migration.state, migration.waiting_for):
            record(session, ctx, migration, hold, step)
            moved += 1
    return woken, moved
