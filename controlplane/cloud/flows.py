"""Cloud work through the gateway port: live reads for requests, and applies run in the background.

Reads (status, plan, capacity, inventory) are short and run in the request. An apply is recorded as an
operation (queued), handed to the app's bounded executor after the request's transaction committed, and
runs there with a gateway of its own: running -> succeeded (with the changes made) or failed (with the
error). A process that starts finds the operations a dead process left behind and fails them as
"interrupted". Gateway errors keep their AppError status and code; nothing here logs a secret.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.orm import Session

from controlplane.auth import audit
from controlplane.auth.roles import Principal
from controlplane.cloud import domain, service
from controlplane.cloud.domain import AgencyCredential, ServerInfo, ServerSpec
from controlplane.cloud.metrics import CloudCollector, CloudSnapshot
from controlplane.cloud.models import CloudOperation, CloudTenancy
from controlplane.cloud.schemas import (
    AgencyCloudRead,
    CapacityRead,
    CapacityTotals,
    NetworkRead,
    OperationStatus,
    PlanRead,
    QuotaUseRead,
    ServerRead,
)
from controlplane.context import AppContext
from controlplane.db import transaction
from controlplane.errors import AppError, Conflict, Forbidden
from controlplane.processes import process_identity
from controlplane.secrets import secret_box

log = logging.getLogger(__name__)


class SpecConflict(Conflict):
    """The spec is valid but cannot be applied to what exists on the cloud."""

    code = "spec_conflict"


# --- applies -----------------------------------------------------------------------------------------

APPLY_QUEUE = "cp-cloud-applies"
APPLY_WORKFLOW = "cp.cloud_apply"


def request_apply(session: Session, *, ctx: AppContext, actor: audit.Actor, code: str,
                  foreground: bool = False) -> CloudOperation:
    """Record a queued apply (the caller submits it once its transaction has committed, or runs it itself when
    `foreground`: the CLI)."""
    operation = service.request_apply(session, clock=ctx.clock, actor=actor, cloud=ctx.cloud.cloud_name, code=code,
                                      runner=process_identity())
    if not foreground:
        ctx.durable("cloud operations")  # after the checks (404, 409 first); the caller's rollback drops the row
    return operation


def submit_apply(ctx: AppContext, *, operation_id: str) -> None:
    """Hand a committed, queued apply to the durable engine (one per agency at once; CP_CLOUD_APPLY_CONCURRENCY
    in all); a refusal fails the operation at once."""
    try:
        with transaction(ctx.sessions) as session:
            code = service.operation_agency(session, operation_id=operation_id)
        ctx.durable("cloud operations").enqueue(APPLY_QUEUE, APPLY_WORKFLOW, operation_id,
                                                workflow_id=f"cloud-apply-{operation_id}", partition=code)
        return
    except Exception as exc:
        log.warning("cloud apply %s could not be queued: %s", operation_id, exc)
    with transaction(ctx.sessions) as session:
        service.fail_operation(session, clock=ctx.clock, operation_id=operation_id, code="rejected",
                               message="the server could not queue this operation; apply again")
    ctx.metrics.of(CloudCollector).operation_finished(service.KIND_APPLY, OperationStatus.FAILED.value)


def resume_unqueued(ctx: AppContext) -> int:
    """At start, with the engine running: queue again the applies recorded but never handed to it (the process
    stopped between the commit and the enqueue); the same workflow id twice is one workflow."""
    engine = ctx.durable("cloud operations")
    with transaction(ctx.sessions) as session:
        queued = [op.id for op in service.queued_operations(session)]
    for operation_id in queued:
        if engine.status(f"cloud-apply-{operation_id}") is None:
            log.warning("cloud apply %s was never queued; queuing it now", operation_id)
            submit_apply(ctx, operation_id=operation_id)
    return len(queued)


def run_apply(ctx: AppContext, *, operation_id: str) -> CloudOperation | None:
    """Run one queued apply to its end (a step of the durable engine, or in the foreground for the CLI). One found
    running was cut short by a crash: it runs again from the start, which an apply is safe to do."""
    with transaction(ctx.sessions) as session:
        begun = service.begin_operation(session, clock=ctx.clock, operation_id=operation_id,
                                        runner=process_identity())
        if begun is None:
            return None
        op, spec = begun
        kind, code = op.kind, op.agency.code
    status = OperationStatus.FAILED.value
    try:
        with ctx.cloud.dedicated() as gateway:
            result = gateway.apply(spec)
        with transaction(ctx.sessions) as session:
            done = service.complete_apply(session, clock=ctx.clock, box=secret_box(ctx.settings),
                                          operation_id=operation_id,
                                          result=result)
        status = done.status
        log.info("cloud apply %s for %s succeeded: %s", operation_id, code, result.plan.summary())
        _refresh_agency_quota(ctx, code, result.project_id)
        return done
    except AppError as exc:
        log.warning("cloud apply %s for %s failed: %s (%s)", operation_id, code, exc.message, exc.code)
        return _fail(ctx, operation_id, exc.code, exc.message)
    except domain.SpecError as exc:
        log.warning("cloud apply %s for %s refused: %s", operation_id, code, exc)
        return _fail(ctx, operation_id, SpecConflict.code, f"{service.api_field(exc.field)}: {exc.reason}")
    except Exception as exc:
        log.exception("cloud apply %s for %s failed unexpectedly", operation_id, code)
        return _fail(ctx, operation_id, "internal", f"unexpected error ({type(exc).__name__}); see the server log")
    except KeyboardInterrupt:  # Ctrl-C in the CLI: say so, then stop
        _fail(ctx, operation_id, service.INTERRUPTED, "interrupted while it ran; apply again (an apply is safe to "
                                                      "repeat)")
        raise
    finally:
        ctx.metrics.of(CloudCollector).operation_finished(kind, status)


def _fail(ctx: AppContext, operation_id: str, code: str, message: str) -> CloudOperation | None:
    try:
        with transaction(ctx.sessions) as session:
            return service.fail_operation(session, clock=ctx.clock, operation_id=operation_id, code=code,
                                          message=message)
    except Exception:
        log.exception("recording the failure of cloud operation %s failed", operation_id)
        return None


# --- live reads --------------------------------------------------------------------------------------

def _refresh_agency_quota(ctx: AppContext, code: str, project_id: str) -> None:
    try:
        usage = ctx.cloud.gateway().quota_usage(project_id)
    except Exception as exc:  # the figures come back with the next refresh
        log.warning("reading the quota of %s after an apply failed: %s", code, type(exc).__name__)
        return
    ctx.metrics.of(CloudCollector).agency_quota(code, usage.resources, at=ctx.clock.now())


def plan(session: Session, *, ctx: AppContext, viewer: audit.Actor, code: str) -> PlanRead:
    """What an apply would change now (read from the cloud); kept as the tenancy's last plan."""
    tenancy = service.get_tenancy(session, viewer=viewer, cloud=ctx.cloud.cloud_name, code=code)
    try:
        result = ctx.cloud.gateway().plan(service.spec_of(tenancy))
    except domain.SpecError as exc:  # the spec cannot be reached from what exists (e.g. a renumbered subnet)
        raise SpecConflict(f"{service.api_field(exc.field)}: {exc.reason}", field=service.api_field(exc.field)) \
            from None
    return service.record_plan(session, clock=ctx.clock, tenancy=tenancy, plan=result)


@dataclass(frozen=True)
class LiveState:
    """What the cloud says about one agency now."""

    project_id: str | None
    servers: list[ServerRead]
    networks: list[NetworkRead]
    quota: list[QuotaUseRead]
    read_at: datetime


def live_state(ctx: AppContext, tenancy: CloudTenancy) -> LiveState:
    gateway = ctx.cloud.gateway()
    spec = service.spec_of(tenancy)
    observed = gateway.observe(spec)
    project_id = observed.project_id or tenancy.project_id
    servers = gateway.list_servers(project_id=project_id) if project_id else []
    figures: tuple[domain.ResourceUsage, ...] = ()
    now = ctx.clock.now()
    if project_id:
        figures = gateway.quota_usage(project_id).resources
        ctx.metrics.of(CloudCollector).agency_quota(tenancy.agency.code, figures, at=now)
    return LiveState(project_id=project_id, servers=[service.server_read(s) for s in servers],
                     networks=service.network_reads(spec, observed), quota=service.quota_reads(figures), read_at=now)


def agency_detail(session: Session, *, ctx: AppContext, viewer: audit.Actor, code: str) -> AgencyCloudRead:
    tenancy = service.get_tenancy(session, viewer=viewer, cloud=ctx.cloud.cloud_name, code=code)
    live = live_state(ctx, tenancy)
    base = service.tenancy_read(tenancy)
    return AgencyCloudRead(
        **base.model_dump(exclude={"quota", "quota_as_of", "project_id"}),
        project_id=live.project_id, quota=live.quota, quota_as_of=live.read_at,
        spec=service.spec_read(tenancy), servers=live.servers, networks=live.networks,
        plan=service.last_plan_read(tenancy),
        last_operation=service.operation_read(tenancy.last_operation) if tenancy.last_operation else None,
    )


def capacity(session: Session, *, ctx: AppContext, viewer: audit.Actor) -> CapacityRead:
    """Hypervisors and every onboarded agency's quota use, read now (and cached for the gauges)."""
    if isinstance(viewer, Principal) and viewer.scoped:
        raise Forbidden("the capacity of the whole cloud is for operators and auditors; see your agency's "
                        "quota at /api/v1/cloud/agencies/{code}", field="role")
    gateway = ctx.cloud.gateway()
    now = ctx.clock.now()
    hypervisors = tuple(gateway.hypervisors())
    quotas: dict[str, tuple[domain.ResourceUsage, ...]] = {}
    agencies = []
    for tenancy in service.list_tenancies(session, viewer=viewer, cloud=ctx.cloud.cloud_name):
        if tenancy.project_id:
            figures = gateway.quota_usage(tenancy.project_id).resources
            quotas[tenancy.agency.code] = figures
            agencies.append(service.agency_quota_read(tenancy.agency.code, tenancy.project_id, figures))
    ctx.metrics.of(CloudCollector).refreshed(at=now, quotas=quotas, hypervisors=hypervisors)
    return CapacityRead(cloud=ctx.cloud.cloud_name, read_at=now, hypervisors=service.hypervisor_reads(hypervisors),
                        totals=_totals(hypervisors), agencies=agencies)


def _totals(hypervisors: tuple[domain.HypervisorCapacity, ...]) -> CapacityTotals:
    return CapacityTotals(
        vcpus=sum(h.vcpus for h in hypervisors), vcpus_used=sum(h.vcpus_used for h in hypervisors),
        memory_mb=sum(h.memory_mb for h in hypervisors), memory_mb_used=sum(h.memory_mb_used for h in hypervisors),
        running_vms=sum(h.running_vms for h in hypervisors),
    )


def inventory(session: Session, *, ctx: AppContext, viewer: audit.Actor, code: str) -> dict[str, object]:
    """A static Ansible inventory of the agency's servers (an empty group before its project exists)."""
    tenancy = service.get_tenancy(session, viewer=viewer, cloud=ctx.cloud.cloud_name, code=code)
    spec = service.spec_of(tenancy)
    servers: list[domain.ServerInfo] = []
    if tenancy.project_id:
        servers = ctx.cloud.gateway().list_servers(project_id=tenancy.project_id)
    return service.inventory_document(sorted(servers, key=lambda s: s.name), spec=spec)


# --- periodic refresh --------------------------------------------------------------------------------

def refresh_cloud(ctx: AppContext, *, only_if_configured: bool = True) -> bool:
    """Re-read hypervisors and every onboarded agency's quota into the gauges' cache; False if the cloud was
    not configured (periodic refreshes skip it then) or not reached (logged without secrets)."""
    if only_if_configured and not ctx.cloud.configured:
        return False
    now = ctx.clock.now()
    try:
        with transaction(ctx.sessions) as session:
            projects = {t.agency.code: t.project_id
                        for t in service.list_tenancies(session, viewer="system", cloud=ctx.cloud.cloud_name)
                        if t.project_id}
        gateway = ctx.cloud.gateway()
        hypervisors = tuple(gateway.hypervisors())
        flavors = gateway.flavors()
        quotas = {code: gateway.quota_usage(project_id).resources
                  for code, project_id in sorted(projects.items())}
    except AppError as exc:
        log.warning("refreshing the cloud figures of '%s' failed: %s (%s)", ctx.cloud.cloud_name, exc.message,
                    exc.code)
        ctx.metrics.of(CloudCollector).unreachable(at=now, reason=exc.code)
        return False
    except Exception as exc:
        log.warning("refreshing the cloud figures of '%s' failed: %s", ctx.cloud.cloud_name, type(exc).__name__)
        ctx.metrics.of(CloudCollector).unreachable(at=now, reason=type(exc).__name__)
        return False
    ctx.metrics.of(CloudCollector).refreshed(at=now, quotas=quotas, hypervisors=hypervisors, flavors=flavors)
    return True


def cached_figures(ctx: AppContext) -> CloudSnapshot:
    """The cloud figures plans use (quotas, free capacity, flavors), read from the cloud first when its flavors
    have never been read (a cloud that does not answer leaves the cache as it is: plans say what they lack)."""
    if not ctx.metrics.of(CloudCollector).snapshot.flavors:
        refresh_cloud(ctx)
    return ctx.metrics.of(CloudCollector).snapshot


# --- an agency's own access to its project ----------------------------------------------------------------------


class AgencyCloud(Protocol):
    """The part of the cloud gateway a migration uses, as the agency's own user."""

    def close(self) -> None: ...
    def create_server(self, spec: ServerSpec, *, timeout: float = 300) -> ServerInfo: ...
    def find_server(self, owner: str) -> ServerInfo | None: ...
    def delete_server(self, server_id: str, *, timeout: float = 120) -> None: ...
    def list_servers(self, *, project_id: str | None = None) -> list[ServerInfo]: ...
    def list_ports(self, *, device_ids: list[str]) -> list[dict[str, str]]: ...


class NotOnboarded(Conflict):
    """The agency has no project on the cloud yet, or it was never applied."""


@contextmanager
def agency_cloud(ctx: AppContext, *, agency_id: int, cloud: str) -> Iterator[tuple[AgencyCloud, Any]]:
    """A gateway acting as the agency's own user in its project, and the agency's onboarding spec."""
    with transaction(ctx.sessions) as session:
        tenancy = service.find_tenancy(session, agency_id=agency_id, cloud=cloud)
        if tenancy is None:
            raise NotOnboarded(f"the agency is not onboarded on cloud {cloud}: apply its cloud spec first",
                               field="agency")
        credential: AgencyCredential | None = service.agency_credential(tenancy, box=secret_box(ctx.settings))
        spec = service.spec_of(tenancy)
    if credential is None:
        raise NotOnboarded(f"the agency's project on {cloud} is not applied yet (no service user): apply it first",
                           field="agency")
    with ctx.cloud.dedicated() as admin:
        gateway: AgencyCloud = admin.for_agency(credential)  # type: ignore[attr-defined]
    try:
        yield gateway, spec
    finally:
        gateway.close()
