"""HTTP routes of the cloud layer: agencies' tenancies, onboarding plan/apply, operations, capacity, inventory."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, Query, Response

from controlplane.auth.deps import Ctx, DbSession, require
from controlplane.auth.roles import Permission, Principal
from controlplane.cloud import flows, service
from controlplane.cloud.metrics import CloudCollector
from controlplane.cloud.schemas import (
    AgencyCloudRead,
    CapacityRead,
    InventoryFormat,
    OnboardingSpecIn,
    OnboardingSpecRead,
    OperationAccepted,
    OperationRead,
    OperationStatus,
    PlanRead,
    TenancyRead,
)
from controlplane.http_api import errors

CloudReader = Annotated[Principal, Depends(require(Permission.CLOUD_READ))]
CloudWriter = Annotated[Principal, Depends(require(Permission.CLOUD_WRITE))]

# Every route needs a cloud (503 without one, or when it does not answer); those that read it now answer its errors.
router = APIRouter(prefix="/api/v1/cloud", tags=["cloud"], responses=errors(503))
READS_THE_CLOUD = errors(502, 504)

INVENTORY_TYPES = {InventoryFormat.JSON: "application/json", InventoryFormat.YAML: "application/yaml",
                   InventoryFormat.INI: "text/plain; charset=utf-8"}


@router.get("/agencies", response_model=list[TenancyRead],
            summary="Agencies on the cloud with their status and quota use (cached, refreshed periodically)")
def list_agencies(*, principal: CloudReader, session: DbSession, ctx: Ctx) -> list[TenancyRead]:
    snapshot = ctx.metrics.of(CloudCollector).snapshot
    return [
        service.tenancy_read(t, quota=snapshot.quotas.get(t.agency.code, ()),
                             quota_at=snapshot.quotas_at.get(t.agency.code))
        for t in service.list_tenancies(session, viewer=principal, cloud=ctx.cloud.cloud_name)
    ]


@router.get("/agencies/{code}", response_model=AgencyCloudRead,
            summary="One agency on the cloud, read now: quota use, servers, networks, last plan and operation",
            responses=READS_THE_CLOUD)
def get_agency(*, code: str, principal: CloudReader, session: DbSession, ctx: Ctx) -> AgencyCloudRead:
    return flows.agency_detail(session, ctx=ctx, viewer=principal, code=code)


@router.get("/agencies/{code}/onboarding", response_model=OnboardingSpecRead, summary="The desired onboarding spec")
def get_spec(*, code: str, principal: CloudReader, session: DbSession, ctx: Ctx) -> OnboardingSpecRead:
    return service.spec_read(service.get_tenancy(session, viewer=principal, cloud=ctx.cloud.cloud_name, code=code))


@router.put("/agencies/{code}/onboarding", response_model=OnboardingSpecRead,
            summary="Set the desired onboarding spec (201 when new); nothing changes on the cloud until an apply",
            responses={201: {"model": OnboardingSpecRead, "description": "created"},
                       **errors(409, s409="the network overlaps another agency's, or cannot be renumbered")})
def put_spec(
    *,
    code: str,
    data: OnboardingSpecIn,
    response: Response,
    principal: CloudWriter,
    session: DbSession,
    ctx: Ctx,
) -> OnboardingSpecRead:
    tenancy, created = service.put_spec(session, clock=ctx.clock, actor=principal, cloud=ctx.cloud.cloud_name,
                                        code=code, data=data)
    response.status_code = 201 if created else 200
    return service.spec_read(tenancy)


@router.get("/agencies/{code}/onboarding/plan", response_model=PlanRead,
            summary="What an apply would change on the cloud now (a read; kept as the last plan)",
            responses={**READS_THE_CLOUD, **errors(409, s409="the spec conflicts with what the cloud holds")})
def plan(*, code: str, principal: CloudReader, session: DbSession, ctx: Ctx) -> PlanRead:
    return flows.plan(session, ctx=ctx, viewer=principal, code=code)


@router.post("/agencies/{code}/onboarding/apply", response_model=OperationAccepted, status_code=202,
             summary="Apply the spec in the background: 202 with the operation to follow",
             responses=errors(409, s409="an apply of this agency is queued or running already"))
def apply(
    *,
    code: str,
    response: Response,
    background: BackgroundTasks,
    principal: CloudWriter,
    session: DbSession,
    ctx: Ctx,
) -> OperationAccepted:
    op = flows.request_apply(session, ctx=ctx, actor=principal, code=code)
    # Runs after the response, hence after this request's transaction committed the queued operation.
    background.add_task(flows.submit_apply, ctx, operation_id=op.id)
    url = f"{router.prefix}/operations/{op.id}"
    response.headers["Location"] = url
    return OperationAccepted(operation_id=op.id, status=OperationStatus(op.status), url=url)


@router.get("/operations/{operation_id}", response_model=OperationRead, summary="A cloud operation and its outcome")
def get_operation(*, operation_id: str, principal: CloudReader, session: DbSession) -> OperationRead:
    return service.operation_read(service.get_operation(session, viewer=principal, operation_id=operation_id))


@router.get("/capacity", response_model=CapacityRead,
            summary="Hypervisor capacity and every onboarded agency's quota use, read now (not for ministries)",
            responses=READS_THE_CLOUD)
def capacity(*, principal: CloudReader, session: DbSession, ctx: Ctx) -> CapacityRead:
    return flows.capacity(session, ctx=ctx, viewer=principal)


@router.get("/agencies/{code}/inventory", summary="A static Ansible inventory of the agency's servers",
            response_class=Response,
            responses={200: {"content": {"application/json": {}, "application/yaml": {}, "text/plain": {}}},
                       **READS_THE_CLOUD})
def inventory(
    *,
    code: str,
    format: InventoryFormat = Query(InventoryFormat.JSON, description="json, yaml or ini"),
    principal: CloudReader,
    session: DbSession,
    ctx: Ctx,
) -> Response:
    document = flows.inventory(session, ctx=ctx, viewer=principal, code=code)
    return Response(service.render_inventory(document, format), media_type=INVENTORY_TYPES[format])
