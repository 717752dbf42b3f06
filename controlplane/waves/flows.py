"""The steps of a migration and of its rollback, through the ports: the cloud gateway (servers in the agency's
project, found by their owner tag), playbook jobs (configure, move data, verify with testinfra evidence, switch
the front) and the inventory (retire). The engine's workflows call `decide`, `run_step` and `undo_step`; each
is safe to repeat: a step already done is not run again, a server is found before it is created.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane.artifacts import sha256_of
from controlplane.auth import audit
from controlplane.automation import flows as job_flows
from controlplane.automation import service as job_service
from controlplane.automation.domain import JobStatus
from controlplane.automation.schemas import JobHostIn, JobIn
from controlplane.cloud import flows as cloud_flows
from controlplane.cloud import service as cloud_service
from controlplane.cloud.domain import ServerSpec
from controlplane.cloud.errors import CloudUnavailable
from controlplane.context import AppContext
from controlplane.db import transaction
from controlplane.errors import InvalidInput
from controlplane.inventory import domain as inventory_domain
from controlplane.inventory import planning
from controlplane.inventory import service as inventory
from controlplane.inventory.models import AgencySystem
from controlplane.processes import process_identity
from controlplane.secrets import secret_box
from controlplane.waves import holds, service
from controlplane.waves.domain import HELD, JobSpec, State, database, inputs_of, owner_tag, step_jobs
from controlplane.waves.metrics import MigrationMetrics
from controlplane.waves.models import Migration, Rollback, StepRun, Wave
from controlplane.waves.schemas import WaveIn

log = logging.getLogger(__name__)
AGENCY_QUEUE = "cp-migrations"
MIGRATION_WORKFLOW = "cp.migration"
ROLLBACK_WORKFLOW = "cp.rollback"
# The steps that run playbooks: each takes a slot of the playbook queue, which jobs share (CP_PLAYBOOK_CONCURRENCY).
PLAYBOOK_STEPS = frozenset({planning.Step.CONFIGURE.value, planning.Step.MOVE_DATA.value, planning.Step.VERIFY.value,
                            planning.Step.CUTOVER.value})
JOB_TIMEOUT_SECONDS = 3600
CLOUD_UNREACHABLE = "cloud_unreachable"  # a step run's end when the cloud did not answer: it runs again later


class StepFailed(Exception):
    """A step could not do its work; the message says what and why (it becomes the migration's error)."""


class StepCanceled(Exception):
    """The operator canceled the migration while the step ran."""


@dataclass(frozen=True)
class Decision:
    action: str  # run | end
    step: str | None = None
    outcome: str | None = None  # the state the workflow ends in


# --------------------------------------------------------------------------- the workflow's decisions


def decide(ctx: AppContext, migration_id: str, *, attempt: str | None = None) -> Decision:
    """What the migration's workflow does next, from its row: the next step, or the end (done, stopped, or held
    outside the queue until an operator or `wake_held` takes it on). The workflow of `attempt` ends when the
    migration has moved on to another attempt (a retry made while it was finishing)."""
    with transaction(ctx.sessions) as session:
        migration = _migration(session, migration_id)
        state = State(migration.state)
        if attempt is not None and migration.workflow_id != attempt:
            return Decision("end", outcome="superseded")
        if migration.control == "cancel":
            migration.control = None
            service.set_state(session, clock=ctx.clock, migration=migration, state=State.CANCELED,
                              message=f"{migration.system.code} canceled")
            return Decision("end", outcome=State.CANCELED.value)
        if state not in (State.QUEUED, State.RUNNING):
            return Decision("end", outcome=state.value)
        if migration.control == "pause":
            migration.control = None
            service.set_state(session, clock=ctx.clock, migration=migration, state=State.PAUSED, message=(
                f"{migration.system.code} paused before {holds.next_step(migration) or 'its end'}"))
            return Decision("end", outcome=State.PAUSED.value)
        step = holds.next_step(migration)
        if step is None:
            migration.step = None
            service.set_state(session, clock=ctx.clock, migration=migration, state=State.SUCCEEDED,
                              message=f"{migration.system.code} migrated")
            return Decision("end", outcome=State.SUCCEEDED.value)
        if step == planning.Step.CUTOVER.value and migration.approved_at is None:
            migration.step = step
            service.set_state(session, clock=ctx.clock, migration=migration, state=State.AWAITING_APPROVAL,
                              message=f"{migration.system.code} is ready for cutover: an operator approves it")
            return Decision("end", outcome=State.AWAITING_APPROVAL.value)
        if step == planning.Step.RETIRE.value and migration.soak_until is None:
            hours = migration.wave.soak_hours
            soak = timedelta(hours=ctx.settings.migration_soak_hours if hours is None else hours)
            migration.soak_until = ctx.clock.now() + soak
        hold = holds.hold_of(ctx, migration, step)
        if hold is not None:
            holds.record(session, ctx, migration, hold, step)
            return Decision("end", outcome=hold.state.value)
        if state is State.QUEUED:
            service.set_state(session, clock=ctx.clock, migration=migration, state=State.RUNNING, step=step,
                              message=f"{migration.system.code} running (attempt {migration.attempt})")
        return Decision("run", step=step)


# --------------------------------------------------------------------------- held outside the queue


def wake_held(ctx: AppContext) -> int:
    """Take on the migrations held outside the queue whose wait is over (a window open, a soak ended, a dependency
    cut over): each gets a new attempt on its agency's queue. Returns how many were taken on. Run now and then by
    the engine (`CP_MIGRATION_WAKE_SECONDS`)."""
    with transaction(ctx.sessions) as session:
        held = session.scalars(select(Migration).where(Migration.state.in_([s.value for s in HELD]))
                               .with_for_update(of=Migration))
        woken, moved = holds.take_on(session, ctx, list(held))
    submit(ctx, woken)
    if moved:
        count_states(ctx)
    return len(woken)


def release_dependents(ctx: AppContext, migration_id: str) -> list[tuple[str, str, str]]:
    """After a step of the migration: its dependents held for its cutover go on at once if it is cut over, or are
    shown blocked if it stopped. Returns their new attempts, for the workflow to submit."""
    with transaction(ctx.sessions) as session:
        migration = _migration(session, migration_id)
        code = migration.system.code
        held = session.scalars(select(Migration).where(
            Migration.wave_id == migration.wave_id, Migration.state.in_([State.WAITING.value, State.BLOCKED.value]))
            .with_for_update(of=Migration))
        return holds.take_on(session, ctx, [m for m in held if code in m.depends_on])[0]


def _migration(session: Session, migration_id: str) -> Migration:
    migration = session.get(Migration, migration_id)
    if migration is None:
        raise LookupError(f"migration {migration_id} is gone")
    return migration


# --------------------------------------------------------------------------- running a step


def run_step(ctx: AppContext, migration_id: str, step: str) -> str:
    """Run one step to its end and record it; returns succeeded | failed | canceled | cloud_unreachable. A step done is
    not run again (a workflow replaying after a crash lands here)."""
    with transaction(ctx.sessions) as session:
        migration = _migration(session, migration_id)
        if step in migration.steps_done:
            return "succeeded"
        cut_short = running_job(session, migration_id=migration_id)
        service.interrupt_runs(session, clock=ctx.clock, migration=migration)
        run_id = service.start_step(session, clock=ctx.clock, migration=migration, step=step).id
    if cut_short is not None:  # the job of this step's run a crash stopped
        job_flows.interrupt(ctx, job_id=cut_short)
    started = time.monotonic()
    outcome, error, detail = "succeeded", "", {}
    try:
        detail = STEPS[step](ctx, migration_id, run_id)
    except StepCanceled as exc:
        outcome, error = "canceled", str(exc)
    except StepFailed as exc:
        outcome, error = "failed", str(exc)
    except CloudUnavailable as exc:  # an outage: waited out, not a failure
        outcome, error = CLOUD_UNREACHABLE, str(exc)
    except Exception as exc:  # an adapter's error: name it, keep the trace in the log only
        log.exception("step %s of migration %s failed", step, migration_id)
        outcome, error = "failed", f"{step} failed: {exc}"
    with transaction(ctx.sessions) as session:
        migration = _migration(session, migration_id)
        run = session.get(StepRun, run_id)
        assert run is not None
        service.end_step(session, clock=ctx.clock, run=run, migration=migration, state=outcome, detail=detail,
                         error=error)
        if outcome == "succeeded":
            migration.steps_done = [*migration.steps_done, step]
            migration.cloud_retry_at, migration.cloud_waits = None, 0
        elif outcome == "canceled" or migration.control == "cancel":
            migration.control = None
            service.set_state(session, clock=ctx.clock, migration=migration, state=State.CANCELED,
                              message=f"{migration.system.code} canceled during {step}")
        elif outcome == CLOUD_UNREACHABLE:
            holds.wait_for_cloud(session, ctx, migration, step, error)
        else:
            service.set_state(session, clock=ctx.clock, migration=migration, state=State.FAILED, step=step,
                              error=error, message=f"{step} failed: {error}")
    ctx.metrics.of(MigrationMetrics).step_finished(step, outcome, time.monotonic() - started)
    return outcome


@dataclass
class _Facts:
    """What a step reads of its migration, inside one transaction."""

    system: str
    agency: str
    agency_id: int
    wave_id: int
    plan: dict[str, Any]
    inputs: Any
    resources: dict[str, dict[str, Any]]
    credential: str
    cloud: str
    secret: str


def _facts(ctx: AppContext, migration_id: str) -> _Facts:
    with transaction(ctx.sessions) as session:
        m = _migration(session, migration_id)
        credential = job_service.credential_name(session, credential_id=m.wave.credential_id)
        return _Facts(system=m.system.code, agency=m.agency.code, agency_id=m.agency_id, wave_id=m.wave_id,
                      plan=m.plan,
                      inputs=inputs_of(m.legacy), resources=dict(m.resources),
                      credential=credential, cloud=m.wave.cloud,
                      secret=secret_box(ctx.settings).open(m.secrets_sealed) if m.secrets_sealed else "")


def _note(ctx: AppContext, migration_id: str, run_id: int, **detail: Any) -> None:
    """Record part of a step's detail at once (job ids, servers), so a crash does not lose it."""
    with transaction(ctx.sessions) as session:
        run = session.get(StepRun, run_id)
        assert run is not None
        merged = dict(run.detail)
        for key, value in detail.items():
            merged[key] = [*merged.get(key, []), value] if key == "jobs" else value
        run.detail = merged


def _run_jobs(ctx: AppContext, migration_id: str, run_id: int, specs: tuple[JobSpec, ...],
              facts: _Facts, *, fetch_dir: Path | None = None) -> dict[str, Any]:
    """Run a step's playbook jobs one after the other; the first that does not succeed fails the step. Jobs that
    fetch files bring them into `fetch_dir`."""
    results = []
    for spec in specs:
        data = JobIn(playbook=spec.playbook, credential=facts.credential, agency=facts.agency,
                     hosts=[JobHostIn(**host) for host in spec.hosts], extravars=spec.extravars,
                     secrets={name: facts.secret for name in spec.secrets}, verify=spec.verify,
                     timeout_seconds=JOB_TIMEOUT_SECONDS)
        with transaction(ctx.sessions) as session:
            if _cancel_requested(session, migration_id):
                raise StepCanceled("canceled before its job started")
            try:
                job = job_service.request_job(session, clock=ctx.clock, actor=f"migration:{facts.system}",
                                              box=secret_box(ctx.settings), data=data, runner=process_identity(),
                                              artifacts=ctx.settings.effective_artifacts_dir, queued=False,
                                              fetch_dir=fetch_dir if spec.fetch else None)
            except InvalidInput as exc:  # e.g. an artifact removed since the wave was made
                raise StepFailed(f"{spec.what}: {exc.message}") from None
            job_id = job.id
        _note(ctx, migration_id, run_id, jobs=job_id)
        done = job_flows.run_job(ctx, job_id=job_id)
        status = done.status if done is not None else JobStatus.FAILED.value
        explanation = done.explanation if done is not None else "the job did not start"
        results.append({"job": job_id, "status": status, "what": spec.what})
        if status == JobStatus.CANCELED.value:
            raise StepCanceled(f"{spec.what}: job {job_id} canceled")
        if status != JobStatus.SUCCESSFUL.value:
            raise StepFailed(f"{spec.what}: job {job_id} {status}: {explanation}")
    return {"results": results}


def _cancel_requested(session: Session, migration_id: str) -> bool:
    return session.scalar(select(Migration.control).where(Migration.id == migration_id)) == "cancel"


def running_job(session: Session, *, migration_id: str) -> str | None:
    """The playbook job a running step of the migration waits for, if any (cancel stops it)."""
    run = session.scalar(select(StepRun).where(StepRun.migration_id == migration_id, StepRun.state == "running")
                         .order_by(StepRun.id.desc()).limit(1))
    jobs = (run.detail or {}).get("jobs", []) if run else []
    if not jobs:
        return None
    return jobs[-1] if job_service.status_of(session, job_id=jobs[-1]) in job_service.ACTIVE else None


# --------------------------------------------------------------------------- the steps


@contextmanager
def agency_cloud(ctx: AppContext, *, agency_id: int, cloud: str) -> Iterator[tuple[cloud_flows.AgencyCloud, Any]]:
    """The agency's own gateway and onboarding spec (cloud_flows.agency_cloud); an agency not onboarded or not
    applied fails the step."""
    try:
        with cloud_flows.agency_cloud(ctx, agency_id=agency_id, cloud=cloud) as pair:
            yield pair
    except cloud_flows.NotOnboarded as exc:  # raised before the body runs
        raise StepFailed(exc.message) from None


def precheck(ctx: AppContext, migration_id: str, run_id: int) -> dict[str, Any]:
    """Everything the later steps need is there: the agency's project, the SSH credential, room in the quota for
    the servers still to create, and the files the jobs read."""
    facts = _facts(ctx, migration_id)
    if not facts.credential:
        raise StepFailed("the wave's SSH credential was deleted")
    files = [v for v in (*(facts.inputs.artifact or {}).values(), *(facts.inputs.data or {}).values())
             if isinstance(v, str) and v.startswith("/")]
    missing = [f for f in files if not os.path.isfile(f)]
    if missing:
        raise StepFailed(f"file(s) the jobs need are missing on the control plane: {', '.join(missing)}")
    with transaction(ctx.sessions) as session:
        tenancy = cloud_service.find_tenancy(session, agency_id=facts.agency_id, cloud=facts.cloud)
        project_id = tenancy.project_id if tenancy else None
        ahead = service.servers_ahead(session, migration=_migration(session, migration_id))
    if project_id is None:
        raise StepFailed(f"{facts.agency} is not onboarded on cloud {facts.cloud}: apply its cloud spec first")
    with ctx.cloud.dedicated() as admin:
        usage = admin.quota_usage(project_id)
    todo = [s for s in facts.plan["servers"] if s["name"] not in facts.resources]
    wanted, kept = _sizes(todo), _sizes(ahead)
    figures = {u.resource: u for u in usage.resources}
    short = []
    for resource, need in wanted.items():
        figure = figures.get("ram" if resource == "ram_mb" else resource)
        if figure is None or figure.limit == inventory_domain.UNLIMITED:
            continue
        if figure.in_use + kept[resource] + need > figure.limit:
            short.append(f"{resource}: {figure.in_use} in use + {kept[resource]} kept for the agency's migrations "
                         f"ahead + {need} needed > {figure.limit}")
    if short:
        raise StepFailed(f"{facts.agency}'s quota has no room for the servers: {'; '.join(short)}")
    return {"servers_to_create": len(todo), "quota_checked": wanted, "kept_for_migrations_ahead": kept}


def _sizes(servers: list[dict[str, Any]]) -> dict[str, int]:
    return {"instances": len(servers), "cores": sum(s["flavor"]["vcpus"] for s in servers),
            "ram_mb": sum(s["flavor"]["ram_mb"] for s in servers)}


def provision(ctx: AppContext, migration_id: str, run_id: int) -> dict[str, Any]:
    """Create the system's servers in the agency's project (each found by its owner tag first)."""
    facts = _facts(ctx, migration_id)
    made: dict[str, dict[str, Any]] = dict(facts.resources)
    with agency_cloud(ctx, agency_id=facts.agency_id, cloud=facts.cloud) as (gateway, spec):
        for server in facts.plan["servers"]:
            info = gateway.create_server(ServerSpec(
                owner=owner_tag(migration_id, server["name"]), name=server["name"], flavor=server["flavor"]["name"],
                image=server["image"], network=spec.network_name,
                key_name=spec.keypair_name if spec.public_key else None,
                labels={"cp_migration": migration_id, "cp_wave": str(facts.wave_id), "cp_agency": facts.agency}))
            if not info.addresses:
                raise StepFailed(f"server {server['name']} ({info.id}) has no address")
            made[server["name"]] = {"id": info.id, "address": info.addresses[0]}
            with transaction(ctx.sessions) as session:  # kept at once: a rollback after a crash finds it
                _migration(session, migration_id).resources = dict(made)
            _note(ctx, migration_id, run_id, servers=dict(made))
    return {"servers": made}


def _jobs_step(step: planning.Step) -> Callable[[AppContext, str, int], dict[str, Any]]:
    def run(ctx: AppContext, migration_id: str, run_id: int) -> dict[str, Any]:
        facts = _facts(ctx, migration_id)
        specs = step_jobs(step, facts.plan, facts.resources, facts.inputs)
        if not specs:
            return {"note": "nothing to run"}
        return _run_jobs(ctx, migration_id, run_id, specs, facts)

    return run


def cutover(ctx: AppContext, migration_id: str, run_id: int) -> dict[str, Any]:
    facts = _facts(ctx, migration_id)
    specs = step_jobs(planning.Step.CUTOVER, facts.plan, facts.resources, facts.inputs)
    if not specs:
        return {"note": "no front to switch: the system's clients reach its new servers directly"}
    return _run_jobs(ctx, migration_id, run_id, specs, facts)


def retire(ctx: AppContext, migration_id: str, run_id: int) -> dict[str, Any]:
    """The legacy side is retired: the system is marked migrated in the inventory (its dependents are free)."""
    with transaction(ctx.sessions) as session:
        migration = _migration(session, migration_id)
        system = session.get(AgencySystem, migration.system_id)
        assert system is not None
        system.status = inventory_domain.SystemStatus.MIGRATED.value
        system.updated_at = ctx.clock.now()
        legacy = migration.legacy.get("legacy_upstreams") or []
    return {"inventory_status": inventory_domain.SystemStatus.MIGRATED.value, "legacy_released": legacy}


STEPS: dict[str, Callable[[AppContext, str, int], dict[str, Any]]] = {
    planning.Step.PRECHECK.value: precheck,
    planning.Step.PROVISION.value: provision,
    planning.Step.CONFIGURE.value: _jobs_step(planning.Step.CONFIGURE),
    planning.Step.MOVE_DATA.value: _jobs_step(planning.Step.MOVE_DATA),
    planning.Step.VERIFY.value: _jobs_step(planning.Step.VERIFY),
    planning.Step.CUTOVER.value: cutover,
    planning.Step.RETIRE.value: retire,
}


# --------------------------------------------------------------------------- rollback


def undo_step(ctx: AppContext, rollback_id: str, step: str) -> str:
    """Undo one step of a rollback (safe to repeat); returns succeeded | failed."""
    with transaction(ctx.sessions) as session:
        rollback = _rollback(session, rollback_id)
        if step in rollback.steps_done:
            return "succeeded"
        migration = _migration(session, rollback.migration_id)
        cut_short = running_job(session, migration_id=migration.id)
        service.interrupt_runs(session, clock=ctx.clock, migration=migration)
        run_id = service.start_step(session, clock=ctx.clock, migration=migration, step=step, rollback=rollback).id
        migration_id = migration.id
    if cut_short is not None:
        job_flows.interrupt(ctx, job_id=cut_short)
    outcome, error, detail = "succeeded", "", {}
    try:
        detail = UNDO[step](ctx, migration_id, run_id)
    except (StepFailed, StepCanceled) as exc:
        outcome, error = "failed", str(exc)
    except Exception as exc:
        log.exception("undo of %s (rollback %s) failed", step, rollback_id)
        outcome, error = "failed", f"undo of {step} failed: {exc}"
    with transaction(ctx.sessions) as session:
        rollback = _rollback(session, rollback_id)
        migration = _migration(session, rollback.migration_id)
        run = session.get(StepRun, run_id)
        assert run is not None
        service.end_step(session, clock=ctx.clock, run=run, migration=migration, state=outcome, detail=detail,
                         error=error)
        if outcome == "succeeded":
            rollback.steps_done = [*rollback.steps_done, step]
        else:
            _end_rollback(session, ctx, rollback, migration, error=error)
    return outcome


def finish_rollback(ctx: AppContext, rollback_id: str) -> str:
    """After the undo steps: look for anything of the migration left in the cloud; none is the proof."""
    with transaction(ctx.sessions) as session:
        rollback = _rollback(session, rollback_id)
        if rollback.state != State.RUNNING.value:
            return rollback.state
        migration = _migration(session, rollback.migration_id)
        agency_id, cloud, known = migration.agency_id, migration.wave.cloud, _known_server_ids(session, migration)
    try:
        with agency_cloud(ctx, agency_id=agency_id, cloud=cloud) as (gateway, _spec):
            left = leftovers(gateway, migration_id=rollback.migration_id, server_ids=known)
    except Exception as exc:
        left, error = {}, f"could not look for leftovers: {exc}"
    else:
        error = "" if not any(left.values()) else f"left in the cloud: {_describe(left)}"
    with transaction(ctx.sessions) as session:
        rollback = _rollback(session, rollback_id)
        migration = _migration(session, rollback.migration_id)
        rollback.leftovers = left
        _end_rollback(session, ctx, rollback, migration, error=error)
        return rollback.state


def _end_rollback(session: Session, ctx: AppContext, rollback: Rollback, migration: Migration, *, error: str) -> None:
    rollback.finished_at = ctx.clock.now()
    if error:
        rollback.state, rollback.error = State.FAILED.value, error[:2000]
        service.set_state(session, clock=ctx.clock, migration=migration, state=State.ROLLBACK_FAILED,
                          error=error, message=f"rollback failed: {error}")
        return
    rollback.state = State.SUCCEEDED.value
    migration.steps_done, migration.resources, migration.step, migration.approved_at = [], {}, None, None
    migration.approved_by, migration.error, migration.soak_until, migration.window_forced = None, "", None, None
    service.set_state(session, clock=ctx.clock, migration=migration, state=State.ROLLED_BACK,
                      message=f"{migration.system.code} rolled back: nothing of it is left in the cloud")


def _rollback(session: Session, rollback_id: str) -> Rollback:
    rollback = session.get(Rollback, rollback_id)
    if rollback is None:
        raise LookupError(f"rollback {rollback_id} is gone")
    return rollback


def _known_server_ids(session: Session, migration: Migration) -> list[str]:
    """Every server id the migration ever recorded (provision's detail too: a crash may have lost the row's)."""
    ids = {r["id"] for r in migration.resources.values()}
    for run in session.scalars(select(StepRun).where(StepRun.migration_id == migration.id,
                                                     StepRun.step == planning.Step.PROVISION.value)):
        ids |= {s["id"] for s in (run.detail or {}).get("servers", {}).values()}
    return sorted(ids)


def leftovers(gateway: cloud_flows.AgencyCloud, *, migration_id: str, server_ids: list[str]) -> dict[str, list[str]]:
    """Servers tagged as the migration's and ports of its servers still in the agency's project."""
    prefix = owner_tag(migration_id, "")
    servers = [f"{s.name} ({s.id})" for s in gateway.list_servers() if (s.owner or "").startswith(prefix)]
    ports = [f"{p['id']} (device {p['device_id']})" for p in gateway.list_ports(device_ids=server_ids)]
    return {"servers": servers, "ports": ports, "volumes": []}  # servers boot from images: no volumes are made


def _describe(left: dict[str, list[str]]) -> str:
    return "; ".join(f"{len(items)} {kind}: {', '.join(items)}" for kind, items in left.items() if items)


def undo_cutover(ctx: AppContext, migration_id: str, run_id: int) -> dict[str, Any]:
    facts = _facts(ctx, migration_id)
    specs = step_jobs(planning.Step.CUTOVER, facts.plan, facts.resources, facts.inputs, rollback=True)
    if not specs:
        return {"note": "no front was switched"}
    return _run_jobs(ctx, migration_id, run_id, specs, facts)


def undo_move_data(ctx: AppContext, migration_id: str, run_id: int) -> dict[str, Any]:
    """A cut-over system's users may have written to its new database: dump it (and measure it against the source
    manifest) into the rollback's directory before the provision undo deletes its server."""
    facts = _facts(ctx, migration_id)
    with transaction(ctx.sessions) as session:
        rollback = service.current_rollback(session, migration_id=migration_id)
        assert rollback is not None
        rollback_id, cut_over = rollback.id, planning.Step.CUTOVER.value in rollback.steps
    if not cut_over:
        return {"note": "never cut over: the new database holds only what was moved, and goes with its server"}
    where = ctx.settings.effective_artifacts_dir / "rollbacks" / rollback_id
    where.mkdir(parents=True, exist_ok=True)
    specs = step_jobs(planning.Step.MOVE_DATA, facts.plan, facts.resources, facts.inputs, rollback=True)
    result = _run_jobs(ctx, migration_id, run_id, specs, facts, fetch_dir=where)
    dumps = [_dump_of(where, database(facts.plan))]
    with transaction(ctx.sessions) as session:
        _rollback(session, rollback_id).dumps = dumps
    return result | {"dumps": dumps}


def _dump_of(where: Path, name: str) -> dict[str, Any]:
    """The dump a job brought back, with its checksum and what differs from the source manifest."""
    dump, measure = where / f"{name}.sql", where / f"{name}.changes.json"
    if not dump.is_file() or not measure.is_file():
        raise StepFailed(f"the dump of {name} did not arrive in {where}")
    return {"database": name, "path": str(dump), "sha256": sha256_of(dump),
            "bytes": dump.stat().st_size,
            "written_since_cutover": json.loads(measure.read_text()).get("differences", [])}


def undo_provision(ctx: AppContext, migration_id: str, run_id: int) -> dict[str, Any]:
    """Delete every server of the migration: those recorded and any found by its owner tag."""
    facts = _facts(ctx, migration_id)
    deleted = []
    with agency_cloud(ctx, agency_id=facts.agency_id, cloud=facts.cloud) as (gateway, _spec):
        targets = {r["id"]: name for name, r in facts.resources.items()}
        for server in facts.plan["servers"]:
            found = gateway.find_server(owner_tag(migration_id, server["name"]))
            if found is not None:
                targets[found.id] = server["name"]
        for server_id, name in sorted(targets.items(), key=lambda item: item[1]):
            gateway.delete_server(server_id)
            deleted.append(f"{name} ({server_id})")
    with transaction(ctx.sessions) as session:
        _migration(session, migration_id).resources = {}
    return {"deleted": deleted}


UNDO: dict[str, Callable[[AppContext, str, int], dict[str, Any]]] = {
    planning.Step.CUTOVER.value: undo_cutover,
    planning.Step.MOVE_DATA.value: undo_move_data,
    planning.Step.PROVISION.value: undo_provision,
}


def fail_unexpectedly(ctx: AppContext, migration_id: str, error: str) -> None:
    with transaction(ctx.sessions) as session:
        migration = _migration(session, migration_id)
        for run in session.scalars(select(StepRun).where(StepRun.migration_id == migration_id,
                                                         StepRun.state == "running")):
            service.end_step(session, clock=ctx.clock, run=run, migration=migration, state="failed", error=error)
        service.set_state(session, clock=ctx.clock, migration=migration, state=State.FAILED, error=error[:2000],
                          message=error)


def fail_rollback_unexpectedly(ctx: AppContext, rollback_id: str, error: str) -> None:
    with transaction(ctx.sessions) as session:
        rollback = _rollback(session, rollback_id)
        if rollback.state == State.RUNNING.value:
            _end_rollback(session, ctx, rollback, _migration(session, rollback.migration_id), error=error)


def rollback_plan(ctx: AppContext, rollback_id: str) -> list[str]:
    with transaction(ctx.sessions) as session:
        return list(_rollback(session, rollback_id).steps)


def agency_of(ctx: AppContext, migration_id: str) -> str:
    with transaction(ctx.sessions) as session:
        return _migration(session, migration_id).agency.code


def count_states(ctx: AppContext) -> None:
    with transaction(ctx.sessions) as session:
        ctx.metrics.of(MigrationMetrics).count(session)


# --------------------------------------------------------------------------- requests (the API and the CLI)


def create_wave(session: Session, *, ctx: AppContext, actor: audit.Actor, data: WaveIn) -> Wave:
    """A wave from systems of the inventory, planned now against the agencies' cached quotas: refused (422 with
    every finding) unless the plan is clean, and unless every system has the inputs its steps need."""
    known = {s.code for s in inventory.domain_systems(session, codes=data.systems)}
    unknown = [code for code in data.systems if code not in known]
    if unknown:
        raise InvalidInput(f"{unknown[0]} is not in the inventory", field="systems",
                           details=[{"field": "systems", "system": c, "message": "not in the inventory"}
                                    for c in unknown])
    cached = cloud_flows.cached_figures(ctx)
    quotas, cloud_free = inventory.capacity_inputs(session, cloud=ctx.settings.cloud, cached=cached)
    try:
        plan = inventory.build_plan(session, waves=[data.systems], quotas=quotas, cloud_free=cloud_free,
                                    networks=inventory.network_inputs(session, cloud=ctx.settings.cloud),
                                    flavors=inventory.flavors_of(cached), image=ctx.settings.migration_image)
    except inventory_domain.DependencyCycleError as exc:
        raise InvalidInput(str(exc), field="systems") from None
    cidrs = {t.agency.code: t.cidr for t in cloud_service.list_tenancies(session, viewer=actor,
                                                                         cloud=ctx.settings.cloud)}
    return service.create_wave(session, clock=ctx.clock, actor=actor, box=secret_box(ctx.settings), data=data,
                               plan=plan, cloud=ctx.settings.cloud, network_cidrs=cidrs,
                               artifacts=ctx.settings.effective_artifacts_dir)


def submit(ctx: AppContext, migrations: list[tuple[str, str, str]]) -> None:
    """Hand committed attempts to the engine: (migration id, workflow id, agency code) each."""
    workflows = ctx.durable("migrations")
    for migration_id, workflow_id, agency in migrations:
        workflows.enqueue(AGENCY_QUEUE, MIGRATION_WORKFLOW, migration_id, workflow_id=workflow_id, partition=agency)


def submit_rollback(ctx: AppContext, *, rollback_id: str, workflow_id: str, agency: str) -> None:
    ctx.durable("migrations").enqueue(AGENCY_QUEUE, ROLLBACK_WORKFLOW, rollback_id, workflow_id=workflow_id,
                                      partition=agency)


def resume_unqueued(ctx: AppContext) -> int:
    """At start, after DBOS has recovered its own workflows: submit again any queued attempt whose workflow
    never reached DBOS (the process died between the commit and the enqueue). The same id is a no-op."""
    with transaction(ctx.sessions) as session:
        rows = [(m.id, m.workflow_id, m.agency.code, m.state) for m in session.scalars(
            select(Migration).where(Migration.state.in_([State.QUEUED.value, State.ROLLING_BACK.value])))]
        pending = []
        for mid, wid, agency, state in rows:
            undo = service.current_rollback(session, migration_id=mid) if state == State.ROLLING_BACK.value else None
            pending.append((mid, wid, agency, undo.id if undo else None))
    workflows = ctx.durable("migrations")
    for migration_id, workflow_id, agency, rollback_id in pending:
        if workflow_id and workflows.status(workflow_id) is None:
            log.warning("migration %s: its workflow %s was never enqueued; enqueuing it now", migration_id,
                        workflow_id)
            if rollback_id is not None:
                submit_rollback(ctx, rollback_id=rollback_id, workflow_id=workflow_id, agency=agency)
            else:
                submit(ctx, [(migration_id, workflow_id, agency)])
    return len(pending)
