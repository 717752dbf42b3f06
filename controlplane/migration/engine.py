"""The migration engine on DBOS Transact (the only module that imports dbos): each migration attempt is a durable
workflow on the agency queue (partitioned by agency: at most CP_MIGRATION_AGENCY_CONCURRENCY of one agency run at
once), whose provision step runs as a child workflow on the cloud's queue (at most CP_MIGRATION_CLOUD_CONCURRENCY
systems create servers at once); a rollback is a workflow of its own on the agency queue.

Every step is a DBOS step: after a crash, `launch` recovers the workflows that were running, replays the steps
already recorded and goes on with the first that was not. The steps themselves (controlplane.migration.flows)
also look at the database before acting, so a step cut short is safe to run again.

DBOS is one per process: `Engine.start` configures and launches it for an AppContext, `Engine.stop` destroys it.
"""

from __future__ import annotations

import fcntl
import logging
import threading
from pathlib import Path
from typing import IO, Any

from dbos import DBOS, DBOSClient, EnqueueOptions, SetEnqueueOptions, SetWorkflowID

from controlplane.context import AppContext
from controlplane.migration import flows

log = logging.getLogger(__name__)
AGENCY_QUEUE = "cp-migrations"
QUEUE_POLL_SECONDS = 0.25  # how soon a queued attempt starts once there is room (a query per queue per poll)
APP_NAME = "controlplane"
_current: AppContext | None = None
_lock = threading.Lock()


def cloud_queue(cloud: str) -> str:
    return f"cp-provision-{cloud}"


def _ctx() -> AppContext:
    if _current is None:
        raise RuntimeError("the migration engine is not started in this process")
    return _current


class EngineBusy(RuntimeError):
    pass


class Engine:
    """DBOS for one app context: started by the app's lifespan (or a CLI command), stopped at its end."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.started = False
        self._lock_file: IO[str] | None = None

    def start(self) -> None:
        global _current
        settings = self.ctx.settings
        with _lock:
            if _current is not None:
                raise EngineBusy("another migration engine runs in this process (DBOS is one per process)")
            _current = self.ctx
        try:
            self._lock_file = _hold(settings.effective_workflows_database_url)
        except BaseException:
            with _lock:
                _current = None
            raise
        _log_through_ours()
        config: Any = {"name": APP_NAME, "system_database_url": settings.effective_workflows_database_url,
                       "executor_id": settings.workflows_executor_id, "run_admin_server": False,
                       "application_version": "1", "log_level": "WARNING"}
        try:
            DBOS(config=config)
            DBOS.launch()
            DBOS.register_queue(AGENCY_QUEUE, partition_concurrency=settings.migration_agency_concurrency,
                                polling_interval_sec=QUEUE_POLL_SECONDS, on_conflict="always_update")
            DBOS.register_queue(cloud_queue(settings.cloud), global_concurrency=settings.migration_cloud_concurrency,
                                polling_interval_sec=QUEUE_POLL_SECONDS, on_conflict="always_update")
        except BaseException:
            self._release()
            raise
        self.started = True
        log.info("migration engine started (system database %s)", _safe(settings.effective_workflows_database_url))

    def stop(self) -> None:
        global _current
        if not self.started:
            return
        try:
            DBOS.destroy(workflow_completion_timeout_sec=0)
        finally:
            self.started = False
            self._release()

    def _release(self) -> None:
        global _current
        if self._lock_file is not None:
            self._lock_file.close()  # closing drops the lock
            self._lock_file = None
        with _lock:
            _current = None

    def submit(self, *, workflow_id: str, agency: str, migration_id: str | None = None,
               rollback_id: str | None = None) -> None:
        """Enqueue a migration attempt (or a rollback) under its id; the same id twice is one workflow."""
        with SetWorkflowID(workflow_id), SetEnqueueOptions(queue_partition_key=agency):
            if rollback_id is not None:
                DBOS.enqueue_workflow(AGENCY_QUEUE, rollback_workflow, rollback_id)
            elif migration_id is not None:
                DBOS.enqueue_workflow(AGENCY_QUEUE, migration_workflow, migration_id)

    def status(self, workflow_id: str) -> str | None:
        status = DBOS.get_workflow_status(workflow_id)
        return status.status if status else None


class WorkflowClient:
    """Hands attempts to the engine of another process (the server) through the system database: what the CLI
    uses when `controlplane serve` holds the engine."""

    def __init__(self, url: str) -> None:
        self._client = DBOSClient(system_database_url=url, application_name=APP_NAME)

    def submit(self, *, workflow_id: str, agency: str, migration_id: str | None = None,
               rollback_id: str | None = None) -> None:
        options: EnqueueOptions = {"workflow_name": "cp.rollback" if rollback_id else "cp.migration",
                                   "queue_name": AGENCY_QUEUE, "workflow_id": workflow_id,
                                   "queue_partition_key": agency}
        self._client.enqueue(options, rollback_id or migration_id)

    def stop(self) -> None:
        self._client.destroy()


def _hold(url: str) -> IO[str] | None:
    """One engine per SQLite system database: an exclusive lock on a file beside it (PostgreSQL: executors are
    told apart by CP_WORKFLOWS_EXECUTOR_ID instead)."""
    if not url.startswith("sqlite:///"):
        return None
    path = Path(url.removeprefix("sqlite:///") + ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise EngineBusy(f"another process runs the migration engine on {path.with_suffix('')} (the server?)") \
            from None
    return handle


def _log_through_ours() -> None:
    """DBOS's records go to the app's logging (uvicorn's, the CLI's) instead of a console handler of its own,
    which would keep writing to whatever stderr was when it was made."""
    dbos_log = logging.getLogger("dbos")
    for handler in list(dbos_log.handlers):
        if handler.name == "__dbos_console_log_handler__":
            dbos_log.removeHandler(handler)
    if not dbos_log.handlers:
        dbos_log.addHandler(logging.NullHandler())
    dbos_log.propagate = True


def _safe(url: str) -> str:
    """A database URL without its password, for the log."""
    head, sep, tail = url.rpartition("@")
    return f"{head.split('://')[0]}://***@{tail}" if sep else url


# --------------------------------------------------------------------------- workflows and steps


@DBOS.workflow(name="cp.migration")
def migration_workflow(migration_id: str) -> str:
    """One attempt of a migration: its next steps until it ends, waits for approval, pauses or fails."""
    try:
        return _steps_of(migration_id)
    except Exception as exc:  # the engine's own error (a database refusing a write...): never leave it "running"
        log.exception("migration %s: its workflow failed", migration_id)
        return fail(migration_id, f"the migration engine failed: {type(exc).__name__}: {exc}")


def _steps_of(migration_id: str) -> str:
    while True:
        decision = decide(migration_id)
        if decision["action"] == "end":
            return str(decision["outcome"])
        if decision["action"] == "wait":
            DBOS.sleep(flows.WAIT_SECONDS)
            continue
        step = str(decision["step"])
        if step == "provision":
            handle = DBOS.enqueue_workflow(cloud_queue(decision["cloud"]), provision_workflow, migration_id)
            handle.get_result(polling_interval_sec=QUEUE_POLL_SECONDS)
        else:
            run_step(migration_id, step)


@DBOS.workflow(name="cp.provision")
def provision_workflow(migration_id: str) -> str:
    return run_step(migration_id, "provision")


@DBOS.workflow(name="cp.rollback")
def rollback_workflow(rollback_id: str) -> str:
    try:
        for step in rollback_steps(rollback_id):
            if undo_step(rollback_id, step) != "succeeded":
                return "failed"
        return finish_rollback(rollback_id)
    except Exception as exc:
        log.exception("rollback %s: its workflow failed", rollback_id)
        return fail_rollback(rollback_id, f"the migration engine failed: {type(exc).__name__}: {exc}")


@DBOS.step(name="cp.fail")
def fail(migration_id: str, error: str) -> str:
    flows.fail_unexpectedly(_ctx(), migration_id, error)
    return "failed"


@DBOS.step(name="cp.fail_rollback")
def fail_rollback(rollback_id: str, error: str) -> str:
    flows.fail_rollback_unexpectedly(_ctx(), rollback_id, error)
    return "failed"


@DBOS.step(name="cp.decide")
def decide(migration_id: str) -> dict[str, Any]:
    ctx = _ctx()
    decision = flows.decide(ctx, migration_id)
    if decision.action == "end":
        flows.count_states(ctx)
    return {"action": decision.action, "step": decision.step, "outcome": decision.outcome,
            "cloud": ctx.settings.cloud}


@DBOS.step(name="cp.step")
def run_step(migration_id: str, step: str) -> str:
    ctx = _ctx()
    agency = flows.agency_of(ctx, migration_id)
    queue = "cloud" if step == "provision" else "agency"
    gauge = ctx.metrics.migrations.in_flight.labels(queue, agency)
    gauge.inc()
    try:
        return flows.run_step(ctx, migration_id, step)
    finally:
        gauge.dec()
        flows.count_states(ctx)


@DBOS.step(name="cp.rollback_steps")
def rollback_steps(rollback_id: str) -> list[str]:
    return flows.rollback_plan(_ctx(), rollback_id)


@DBOS.step(name="cp.undo")
def undo_step(rollback_id: str, step: str) -> str:
    ctx = _ctx()
    try:
        return flows.undo_step(ctx, rollback_id, step)
    finally:
        flows.count_states(ctx)


@DBOS.step(name="cp.finish_rollback")
def finish_rollback(rollback_id: str) -> str:
    ctx = _ctx()
    try:
        return flows.finish_rollback(ctx, rollback_id)
    finally:
        flows.count_states(ctx)
