"""The ports the domains depend on, and the app context that carries them: the settings, the database, the clock,
the metrics, the way to the cloud, the playbook and check runners, the way to the video bridges, and the durable
engine. Protocols and plain types
only (it imports no domain module beyond pure types); the real adapters are built by controlplane.composition, at
start, never at import."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import InitVar, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from controlplane.automation.domain import CheckResult, CheckRun, JobEvent, PlaybookJob, RunResult
from controlplane.clock import Clock
from controlplane.cloud.domain import (
    ApplyResult,
    Flavor,
    HypervisorCapacity,
    ObservedState,
    OnboardingSpec,
    Plan,
    QuotaUsage,
    ServerInfo,
)
from controlplane.config import Settings
from controlplane.errors import Busy
from controlplane.metrics import Metrics
from controlplane.rooms.domain import BridgeAddress, BridgeInfo, BridgeLoad, BridgeRoom, Participant

log = logging.getLogger(__name__)
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
    def flavors(self) -> list[Flavor]: ...


class CloudAccess:
    """The app's way to the cloud: one shared gateway for reads, connected on first use and kept; a fresh one
    per background operation. A gateway given to `inject` (tests, tools) is used for both and never closed."""

    def __init__(self, settings: Settings, *, connect: Callable[..., CloudPort]) -> None:
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
        return self._connect(self._settings, read_only=read_only)

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


class RunnerPort(Protocol):
    """A playbook runner (controlplane.automation.runner.PlaybookRunner) as the jobs use it."""

    def run(self, job: PlaybookJob, *, on_event: Callable[[JobEvent], None] | None = None,
            cancel: threading.Event | None = None) -> RunResult: ...


class CheckPort(Protocol):
    """A check runner (controlplane.automation.verify.CheckRunner) as the jobs use it."""

    def run(self, request: CheckRun, *, cancel: threading.Event | None = None,
            secrets: Iterable[str] = ()) -> list[CheckResult]: ...


class BridgePort(Protocol):
    """One video bridge (controlplane.rooms.janus.JanusBridge): its rooms, their participants, its health."""

    def close(self) -> None: ...
    def info(self) -> BridgeInfo: ...
    def admin_check(self) -> None: ...
    def load(self) -> BridgeLoad: ...
    def list_rooms(self) -> list[BridgeRoom]: ...
    def create_room(self, room: int, *, description: str, secret: str, pin: str | None, publishers: int) -> None: ...
    def edit_room(self, room: int, *, secret: str, description: str | None = None, pin: str | None = None,
                  publishers: int | None = None) -> None: ...
    def destroy_room(self, room: int, *, secret: str) -> None: ...
    def participants(self, room: int) -> list[Participant]: ...


class WorkflowPort(Protocol):
    """The durable engine (controlplane.workflows): work handed to it runs to its end, across restarts, within the
    limits of its queue; the same workflow id twice is one workflow."""

    def enqueue(self, queue: str, workflow: str, *args: Any, workflow_id: str,
                partition: str | None = None) -> None: ...
    def status(self, workflow_id: str) -> str | None: ...


@dataclass
class AppContext:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    clock: Clock
    metrics: Metrics = field(repr=False)
    runner: RunnerPort = field(repr=False)
    checks: CheckPort = field(repr=False)
    connect_cloud: InitVar[Callable[..., CloudPort]]
    cloud: CloudAccess = field(init=False, repr=False)
    # The durable engine once started (or, in the CLI, a client of the server's engine); None: long work is refused.
    workflows: WorkflowPort | None = field(init=False, repr=False, default=None)
    # The way to a video bridge: a client for one bridge, closed by whoever asked for it.
    connect_bridge: Callable[[BridgeAddress], BridgePort] | None = field(default=None, repr=False)

    def __post_init__(self, connect_cloud: Callable[..., CloudPort]) -> None:
        self.cloud = CloudAccess(self.settings, connect=connect_cloud)

    def bridge(self, address: BridgeAddress) -> BridgePort:
        if self.connect_bridge is None:
            raise RuntimeError("this context has no way to the bridges")
        return self.connect_bridge(address)

    def durable(self, what: str) -> WorkflowPort:
        """The engine to hand long work to; 503 busy when this process runs none (CP_WORKFLOWS=false, or it did not
        start: its log says why)."""
        if self.workflows is None:
            raise Busy(f"the durable engine is not running in this server, so it cannot take {what} now; see its "
                       "log (CP_WORKFLOWS)")
        return self.workflows
