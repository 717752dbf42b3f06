"""The composition root: the one place that builds an AppContext with its real adapters (database, clock, metrics,
the cloud gateway, the playbook and check runners) and starts the durable engine with every domain's workflows.
`create_app` and every command of the CLI build theirs here; tests and tools pass their own adapters in place of
the real ones. openstacksdk and DBOS take about a second each to import: they load when first needed, so that a
command that asks neither the cloud nor the engine starts at once."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from controlplane.automation.runner import PlaybookRunner, remove_orphaned_run_dirs
from controlplane.automation.verify import CheckRunner
from controlplane.clock import Clock
from controlplane.config import Settings
from controlplane.context import AppContext, CheckPort, CloudPort, RunnerPort
from controlplane.db import make_engine, make_sessionmaker
from controlplane.monitoring.metrics import product_metrics
from controlplane.rooms.janus import JanusBridge

if TYPE_CHECKING:
    from controlplane import workflows

log = logging.getLogger(__name__)


def build_context(settings: Settings, *, clock: Clock | None = None, cloud_gateway: CloudPort | None = None,
                  playbook_runner: RunnerPort | None = None, check_runner: CheckPort | None = None) -> AppContext:
    """An app context on the settings' database and cloud; the given adapters replace the real ones."""
    engine = make_engine(settings.effective_database_url)
    ctx = AppContext(settings=settings, engine=engine, sessions=make_sessionmaker(engine), clock=clock or Clock(),
                     metrics=product_metrics(), connect_cloud=_connect_cloud,
                     runner=playbook_runner or PlaybookRunner(), checks=check_runner or CheckRunner(),
                     connect_bridge=lambda address: JanusBridge(address.url, address.admin_url, address.admin_secret,
                                                                timeout=settings.rooms_bridge_timeout))
    if cloud_gateway is not None:
        ctx.cloud.inject(cloud_gateway)
    return ctx


def _connect_cloud(settings: Settings, *, read_only: bool = False) -> CloudPort:
    from controlplane.cloud.gateway import connect_cloud

    return connect_cloud(settings, read_only=read_only)


def close_context(ctx: AppContext) -> None:
    """Close what the context opened: the shared cloud gateway, the database's connections."""
    try:
        ctx.cloud.close()
    finally:
        ctx.engine.dispose()


@contextmanager
def opened_context(settings: Settings, *, clock: Clock | None = None) -> Iterator[AppContext]:
    """A context for one command: built, used, closed."""
    ctx = build_context(settings, clock=clock)
    try:
        yield ctx
    finally:
        close_context(ctx)


def engine_queues(settings: Settings) -> list[workflows.Queue]:
    """The queues of every domain's long work (importing a domain's work module registers its workflows)."""
    from controlplane.automation import work as job_work
    from controlplane.cloud import work as cloud_work
    from controlplane.rooms import work as room_work
    from controlplane.waves import work as wave_work

    return [*cloud_work.queues(settings), *job_work.queues(settings), *wave_work.queues(settings),
            *room_work.queues()]


def start_engine(ctx: AppContext, *, schedules: bool = True) -> workflows.Engine:
    """Start the durable engine for `ctx` (raises EngineBusy when another holds it), recovering what a previous
    process left running, then queue what was recorded but never handed over. `schedules`: also hand over the
    periodic work of a serving process (the room probes, the scheduled reconciles); a command that runs the engine
    for its own work only goes without."""
    from controlplane import workflows
    from controlplane.automation import flows as job_flows
    from controlplane.cloud import flows as cloud_flows
    from controlplane.rooms import flows as room_flows
    from controlplane.rooms import reconcile as room_reconcile
    from controlplane.waves import flows as wave_flows

    engine = workflows.Engine(ctx, engine_queues(ctx.settings))
    engine.start()
    ctx.workflows = engine
    for path in remove_orphaned_run_dirs():
        log.warning("removed %s, left by a process that is gone", path)
    for resume in (cloud_flows.resume_unqueued, job_flows.resume_unqueued, wave_flows.resume_unqueued):
        try:
            resume(ctx)
        except Exception:  # e.g. a database not migrated yet: the engine still runs what it recovered
            log.exception("looking for work to queue again failed (%s)", resume.__module__)
    wave_flows.count_states(ctx)
    engine.every(ctx.settings.migration_wake_seconds, wave_flows.wake_held, name="migration-waker")
    if schedules:
        engine.every(ctx.settings.rooms_probe_seconds, room_flows.start_probe_cycle, name="room-prober")
        engine.every(ctx.settings.rooms_reconcile_seconds, room_reconcile.start_scheduled, name="bridge-reconciler")
    return engine


def stop_engine(ctx: AppContext, engine: workflows.Engine) -> None:
    """Stop the engine: what runs now is recovered by the next engine on this system database."""
    try:
        engine.stop()
    finally:
        ctx.workflows = None
