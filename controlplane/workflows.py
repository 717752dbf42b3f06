"""The durable engine: DBOS Transact, the only module that imports dbos. All long work runs on it: cloud applies,
playbook jobs, migrations and their rollbacks. Each domain declares its workflows and steps with `workflow` and
`step` (in its `work.py`) and its queues as `Queue`s; work is handed over with `enqueue` under an id of its own
(the same id twice is one workflow), and queues hold their limits across every process on the system database.

After a crash, the next engine on the same system database recovers the workflows that were running: the steps
already recorded are replayed, the first that was not runs again (each domain's steps look at the database before
acting, so a step cut short is safe to repeat).

DBOS is one per process: `Engine.start` configures and launches it for an AppContext, `Engine.stop` destroys it.
A command-line process that finds the server holding the engine hands work over with a `WorkflowClient`.
"""

from __future__ import annotations

import fcntl
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

from dbos import DBOS, DBOSClient, EnqueueOptions, SetEnqueueOptions, SetWorkflowID

from controlplane.context import AppContext
from controlplane.periodic import PeriodicRefresher

log = logging.getLogger(__name__)
POLL_SECONDS = 0.25  # how soon queued work starts once there is room (a query per queue per poll)
APP_NAME = "controlplane"
STOP_GRACE_SECONDS = 10
F = TypeVar("F", bound=Callable[..., Any])
_current: AppContext | None = None
_workflows: dict[str, Callable[..., Any]] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class Queue:
    """A queue of the engine: `limit` workflows at once across all processes, and at most `per_partition` of
    one partition (an agency) when given. A stop gives the work running on a `drain` queue its grace period to
    end (work that may wait for hours, like a migration waiting for approval, is left to recovery instead)."""

    name: str
    limit: int | None = None
    per_partition: int | None = None
    drain: bool = False


class EngineBusy(RuntimeError):
    pass


def workflow(name: str) -> Callable[[F], F]:
    """A durable workflow: recorded, recovered after a crash, its steps replayed; enqueued by its name."""
    def register(function: F) -> F:
        durable = DBOS.workflow(name=name)(function)
        _workflows[name] = durable
        return durable  # type: ignore[return-value]
    return register


def step(name: str) -> Callable[[F], F]:
    """A step of a workflow: run once, its result recorded."""
    return DBOS.step(name=name)  # type: ignore[return-value]


def run_child(queue: str, function: Callable[..., Any], *args: Any) -> Any:
    """Inside a workflow: run `function` (a workflow) on `queue` and wait for its result."""
    return DBOS.enqueue_workflow(queue, function, *args).get_result(polling_interval_sec=POLL_SECONDS)


def current_workflow_id() -> str | None:
    """Inside a workflow or one of its steps: the workflow's id."""
    return DBOS.workflow_id


def context() -> AppContext:
    """The app context of the engine running in this process (for the steps)."""
    if _current is None:
        raise RuntimeError("the durable engine is not started in this process")
    return _current


class Engine:
    """DBOS for one app context: started by the app's lifespan (or a CLI command), stopped at its end."""

    def __init__(self, ctx: AppContext, queues: Iterable[Queue]) -> None:
        self.ctx = ctx
        self.queues = tuple(queues)
        self.started = False
        self._lock_file: IO[str] | None = None
        self._tickers: list[PeriodicRefresher[AppContext]] = []

    def start(self) -> None:
        global _current
        settings = self.ctx.settings
        with _lock:
            if _current is not None:
                raise EngineBusy("another engine runs in this process (DBOS is one per process)")
            _current = self.ctx
        try:
            self._lock_file = _hold(settings.effective_workflows_database_url)
        except BaseException:
            with _lock:
                _current = None
            raise
        _log_through_ours()
        # A SQLite system database is read for notifications every POLL_SECONDS (PostgreSQL tells at once); a stop
        # waits that long for the reader to notice (DBOS's default of 1 s made every stop take a second).
        config: Any = {"name": APP_NAME, "system_database_url": settings.effective_workflows_database_url,
                       "executor_id": settings.workflows_executor_id, "run_admin_server": False,
                       "application_version": "1", "log_level": "WARNING",
                       "notification_listener_polling_interval_sec": POLL_SECONDS}
        try:
            DBOS(config=config)
            DBOS.launch()
            for queue in self.queues:
                DBOS.register_queue(queue.name, global_concurrency=queue.limit,
                                    partition_concurrency=queue.per_partition, polling_interval_sec=POLL_SECONDS,
                                    on_conflict="always_update")
        except BaseException:
            self._release()
            raise
        self.started = True
        log.info("durable engine started (system database %s)", _safe(settings.effective_workflows_database_url))

    def stop(self, *, grace: float = STOP_GRACE_SECONDS) -> None:
        """Stop, giving the work running here on the drain queues `grace` seconds to end; whatever still runs then
        is recovered by the next engine on this system database."""
        if not self.started:
            return
        for ticker in self._tickers:
            ticker.stop()
        self._tickers.clear()
        try:
            drained = [queue.name for queue in self.queues if queue.drain]
            deadline = time.monotonic() + grace
            while drained and time.monotonic() < deadline and DBOS.list_workflows(
                    status="PENDING", queue_name=drained, executor_id=self.ctx.settings.workflows_executor_id,
                    limit=1, load_input=False, load_output=False):
                time.sleep(POLL_SECONDS)
            DBOS.destroy(workflow_completion_timeout_sec=0)
        finally:
            self.started = False
            self._release()

    def every(self, seconds: float, job: Callable[[AppContext], object], *, name: str) -> None:
        """Run `job` now and every `seconds` while the engine runs: work no workflow waits for (taking on the
        migrations held outside the queue). Each engine runs its own; the jobs lock what they change."""
        ticker = PeriodicRefresher(self.ctx, seconds, job=job, name=name)
        ticker.start()
        self._tickers.append(ticker)

    def _release(self) -> None:
        global _current
        if self._lock_file is not None:
            self._lock_file.close()  # closing drops the lock
            self._lock_file = None
        with _lock:
            _current = None

    def enqueue(self, queue: str, workflow: str, *args: Any, workflow_id: str, partition: str | None = None) -> None:
        with SetWorkflowID(workflow_id), SetEnqueueOptions(queue_partition_key=partition):
            DBOS.enqueue_workflow(queue, _registered(workflow), *args)

    def status(self, workflow_id: str) -> str | None:
        status = DBOS.get_workflow_status(workflow_id)
        return status.status if status else None

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no workflow is queued or running (tests, tools); True if that happened in time."""
        deadline = time.monotonic() + timeout
        while DBOS.list_workflows(status=["ENQUEUED", "PENDING"], limit=1, load_input=False, load_output=False):
            if time.monotonic() > deadline:
                return False
            time.sleep(POLL_SECONDS)
        return True


class WorkflowClient:
    """Hands work to the engine of another process (the server) through the system database."""

    def __init__(self, url: str) -> None:
        self._client = DBOSClient(system_database_url=url, application_name=APP_NAME)

    def enqueue(self, queue: str, workflow: str, *args: Any, workflow_id: str, partition: str | None = None) -> None:
        options: EnqueueOptions = {"workflow_name": workflow, "queue_name": queue, "workflow_id": workflow_id}
        if partition is not None:
            options["queue_partition_key"] = partition
        self._client.enqueue(options, *args)

    def status(self, workflow_id: str) -> str | None:
        status = self._client.retrieve_workflow(workflow_id).get_status() if workflow_id else None
        return status.status if status else None

    def stop(self) -> None:
        self._client.destroy()


def _registered(name: str) -> Callable[..., Any]:
    function = _workflows.get(name)
    if function is None:
        raise KeyError(f"no workflow named {name!r} is registered (is its domain's work module imported?)")
    return function


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
        raise EngineBusy(f"another process runs the durable engine on {path.with_suffix('')} (the server?)") \
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
