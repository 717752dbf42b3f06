"""What one app instance owns: settings, database, clock, metrics, the way to the cloud and the executor of
background operations. Built by create_app (or a CLI command), never at import."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from controlplane.clock import Clock
from controlplane.config import Settings

if TYPE_CHECKING:
    from controlplane.automation.domain import CheckResult, JobEvent
    from controlplane.automation.runner import PlaybookJob, RunResult
    from controlplane.automation.verify import CheckRun
    from controlplane.cloud.domain import (
        ApplyResult,
        HypervisorCapacity,
        ObservedState,
        OnboardingSpec,
        Plan,
        QuotaUsage,
        ServerInfo,
    )
    from controlplane.migration.engine import Engine as WorkflowEngine
    from controlplane.migration.engine import WorkflowClient
    from controlplane.monitoring.metrics import Metrics

log = logging.getLogger(__name__)

# Reads made inside a request give up quickly on an unreachable cloud (503 cloud_unavailable); background
# operations connect on their own with the gateway's default retry budget.
READ_RETRY_BUDGET_SECONDS = 5.0
STANDARD_CLOUDS_YAML = (Path("clouds.yaml"), Path.home() / ".config" / "openstack" / "clouds.yaml",
                        Path("/etc/openstack/clouds.yaml"))


class CloudPort(Protocol):
    """The part of controlplane.cloud.gateway.CloudGateway that the control plane's cloud layer uses."""

    def close(self) -> None: ...
    def observe(self, spec: OnboardingSpec) -> ObservedState: ...
    def plan(self, spec: OnboardingSpec) -> Plan: ...
    def apply(self, spec: OnboardingSpec) -> ApplyResult: ...
    def list_servers(self, *, project_id: str | None = None) -> list[ServerInfo]: ...
    def quota_usage(self, project_id: str) -> QuotaUsage: ...
    def hypervisors(self) -> list[HypervisorCapacity]: ...


def connect_cloud(settings: Settings, *, read_only: bool = False) -> CloudPort:
    """A gateway to the cloud named by the settings (CP_CLOUD in CP_CLOUDS_YAML or openstacksdk's search)."""
    from controlplane.cloud.errors import CloudUnavailable
    from controlplane.cloud.gateway import CloudGateway, RetryPolicy
    from controlplane.errors import AppError

    if not settings.cloud:
        raise CloudUnavailable("no cloud is configured (CP_CLOUD is empty)")
    config = settings.effective_clouds_yaml
    if config is not None and not config.is_file():
        raise CloudUnavailable(f"cloud '{settings.cloud}': the clouds.yaml file {config} does not exist "
                               "(CP_CLOUDS_YAML)")
    retry = RetryPolicy(budget_seconds=READ_RETRY_BUDGET_SECONDS) if read_only else None
    try:
        return CloudGateway.connect(settings.cloud, config_file=config, retry=retry)
    except AppError:
        raise
    except Exception as exc:  # a configuration the SDK refuses: name it, never echo its content
        where = f" in {config}" if config else ""
        raise CloudUnavailable(f"cannot connect to cloud '{settings.cloud}'{where}: {type(exc).__name__}") from None


class CloudAccess:
    """The app's way to the cloud: one shared gateway for reads, connected on first use and kept; a fresh one
    per background operation. A gateway given to `inject` (tests, tools) is used for both and never closed."""

    def __init__(self, settings: Settings, *, connect: Callable[..., CloudPort] | None = None) -> None:
        self._settings = settings
        self._connect = connect
        self._injected: CloudPort | None = None
        self._shared: CloudPort | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"CloudAccess(cloud={self.cloud_name!r}, injected={self._injected is not None})"

    @property
    def cloud_name(self) -> str:
        return self._settings.cloud

    @property
    def configured(self) -> bool:
        """Whether a cloud is there to ask (for periodic refreshes; a request always tries and says why not)."""
        if self._injected is not None:
            return True
        if not self._settings.cloud:
            return False
        if self._settings.effective_clouds_yaml is not None:
            return True
        if os.environ.get("OS_CLIENT_CONFIG_FILE") or os.environ.get("OS_AUTH_URL"):
            return True
        return any(path.is_file() for path in STANDARD_CLOUDS_YAML)

    def inject(self, gateway: CloudPort) -> None:
        with self._lock:
            self._injected = gateway

    def _new(self, *, read_only: bool) -> CloudPort:
        if self._connect is not None:
            return self._connect(self._settings, read_only=read_only)
        return connect_cloud(self._settings, read_only=read_only)

    def gateway(self) -> CloudPort:
        """The shared gateway (connected now if not yet; a failure is raised and retried next time)."""
        with self._lock:
            if self._injected is not None:
                return self._injected
            if self._shared is None:
                self._shared = self._new(read_only=True)
            return self._shared

    @contextmanager
    def dedicated(self) -> Iterator[CloudPort]:
        """A gateway of its own for one long operation, closed afterwards."""
        with self._lock:
            injected = self._injected
        if injected is not None:
            yield injected
            return
        gateway = self._new(read_only=False)
        try:
            yield gateway
        finally:
            gateway.close()

    def close(self) -> None:
        with self._lock:
            shared, self._shared = self._shared, None
        if shared is not None:
            try:
                shared.close()
            except Exception:  # closing is best effort at shutdown
                log.warning("closing the cloud gateway failed", exc_info=True)


class OperationExecutor:
    """A small bounded pool of threads for long work started by requests (until durable workflows arrive).

    At most `workers` jobs run at once and at most `max_pending` are accepted (running + waiting); beyond
    that `submit` refuses, so a burst of requests cannot pile up unbounded work.
    """

    def __init__(self, *, workers: int = 2, max_pending: int = 16, name: str = "operations") -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._max_pending = max_pending
        self._futures: dict[str, Future[None]] = {}
        self._lock = threading.Lock()
        self._closed = False

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._futures)

    @property
    def accepting(self) -> bool:
        with self._lock:
            return not self._closed and len(self._futures) < self._max_pending

    def submit(self, key: str, job: Callable[[], None]) -> bool:
        """Queue `job` under `key`; False when shut down or full (the caller records the refusal)."""
        with self._lock:
            if self._closed or len(self._futures) >= self._max_pending:
                return False
            future = self._pool.submit(job)
            self._futures[key] = future
        future.add_done_callback(self._done)
        return True

    def _done(self, future: Future[None]) -> None:
        with self._lock:
            for key, known in list(self._futures.items()):
                if known is future:
                    del self._futures[key]

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until nothing is queued or running (tests, shutdown); True if that happened in time."""
        with self._lock:
            futures = list(self._futures.values())
        _done, not_done = wait_futures(futures, timeout=timeout)
        return not not_done

    def shutdown(self, *, grace: float = 10.0) -> list[str]:
        """Stop accepting work, drop what has not started and give running jobs `grace` seconds.

        Returns the keys of the jobs that never started. Jobs still running after the grace period finish
        in their threads (the process waits for them at exit); one killed meanwhile is found at next start.
        """
        with self._lock:
            self._closed = True
            futures = dict(self._futures)
        cancelled = [key for key, future in futures.items() if future.cancel()]
        self._pool.shutdown(wait=False, cancel_futures=True)
        running = [f for k, f in futures.items() if k not in cancelled]
        if running:
            wait_futures(running, timeout=grace)
        return cancelled


class RunnerPort(Protocol):
    """controlplane.automation.runner.PlaybookRunner as the jobs use it."""

    def run(self, job: PlaybookJob, *, on_event: Callable[[JobEvent], None] | None = None,
            cancel: threading.Event | None = None) -> RunResult: ...


class CheckPort(Protocol):
    """controlplane.automation.verify.CheckRunner as the jobs use it."""

    def run(self, request: CheckRun, *, cancel: threading.Event | None = None,
            secrets: Iterable[str] = ()) -> list[CheckResult]: ...


class Automation:
    """The app's way to run playbooks and checks (built on first use; tests inject their own), the executor of
    jobs, and the cancel signals of the jobs running in this process."""

    def __init__(self) -> None:
        self._runner: RunnerPort | None = None
        self._checks: CheckPort | None = None
        self.executor = OperationExecutor(workers=2, max_pending=32, name="automation-jobs")
        self._cancels: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def inject(self, *, runner: RunnerPort | None = None, checks: CheckPort | None = None) -> None:
        self._runner = runner or self._runner
        self._checks = checks or self._checks

    @property
    def runner(self) -> RunnerPort:
        if self._runner is None:
            from controlplane.automation.runner import PlaybookRunner

            self._runner = PlaybookRunner()
        return self._runner

    @property
    def checks(self) -> CheckPort:
        if self._checks is None:
            from controlplane.automation.verify import CheckRunner

            self._checks = CheckRunner()
        return self._checks

    @contextmanager
    def cancel_signal(self, job_id: str) -> Iterator[threading.Event]:
        """The event that stops the job while it runs here (set by `cancel`)."""
        signal = threading.Event()
        with self._lock:
            self._cancels[job_id] = signal
        try:
            yield signal
        finally:
            with self._lock:
                self._cancels.pop(job_id, None)

    def cancel(self, job_id: str) -> bool:
        """Stop a job running in this process now; False when it does not run here."""
        with self._lock:
            signal = self._cancels.get(job_id)
        if signal is not None:
            signal.set()
        return signal is not None


@dataclass
class AppContext:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    clock: Clock
    metrics: Metrics = field(repr=False)
    cloud: CloudAccess = field(init=False, repr=False)
    operations: OperationExecutor = field(init=False, repr=False)
    automation: Automation = field(init=False, repr=False)
    # The migration engine once started (or, in the CLI, a client of the server's engine).
    workflows: WorkflowEngine | WorkflowClient | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        self.cloud = CloudAccess(self.settings)
        self.operations = OperationExecutor(name="cloud-operations")
        self.automation = Automation()
