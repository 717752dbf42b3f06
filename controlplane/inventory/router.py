"""HTTP routes of the system inventory (import, export, reads), the component catalogue, open-source adoption and
migration plans."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response, UploadFile
from starlette.concurrency import run_in_threadpool

from controlplane.auth.deps import Ctx, DbSession, require
from controlplane.auth.roles import Permission, Principal
from controlplane.cloud import flows as cloud_flows
from controlplane.http_api import errors
from controlplane.inventory import service as inventory
from controlplane.inventory.domain import SystemStatus
from controlplane.inventory.schemas import (
    AdoptionRead,
    CatalogueRead,
    ExportFormat,
    ImportMode,
    ImportReport,
    PlanRead,
    PlanRequest,
    SystemDetail,
    SystemRead,
)
from controlplane.uploads import read_upload

MigrationReader = Annotated[Principal, Depends(require(Permission.MIGRATION_READ))]
MigrationWriter = Annotated[Principal, Depends(require(Permission.MIGRATION_WRITE))]

router = APIRouter(prefix="/api/v1", tags=["migration inventory"])

EXPORT_TYPES = {ExportFormat.CSV: "text/csv; charset=utf-8", ExportFormat.YAML: "application/yaml"}


@router.get("/systems", response_model=list[SystemRead], summary="Agency systems of the inventory",
            responses=errors(404, s404="the agency is unknown"))
def list_systems(*, principal: MigrationReader, session: DbSession, agency: str | None = None,
                 status: SystemStatus | None = None) -> list[SystemRead]:
    return [inventory.system_read(row)
            for row in inventory.list_systems(session, viewer=principal, agency=agency, status=status)]


@router.post("/systems/import", response_model=ImportReport,
             summary="Import systems from CSV or YAML, all or nothing (422 lists every bad row)",
             responses=errors(409, s409="`replace` would delete a system that has a migration"),
             description="Columns or fields: code, agency, name_ko, name_en, criticality, maintenance_window, vcpus, "
                         "ram_mb, disk_gb, data_gb, components, depends_on, status, notes. `merge` creates and "
                         "updates by code; `replace` also deletes the systems the file leaves out; `dry_run` only "
                         "reports. Unknown components are stored and flagged in `findings`.")
async def import_systems(*, file: UploadFile, principal: MigrationWriter, session: DbSession, ctx: Ctx,
                         mode: ImportMode = ImportMode.MERGE, dry_run: bool = False) -> ImportReport:
    content = await read_upload(file, ctx.settings.max_upload_bytes)

    def _import() -> ImportReport:
        return inventory.import_systems(session, clock=ctx.clock, actor=principal, filename=file.filename or "",
                                        content=content, mode=mode, dry_run=dry_run)

    return await run_in_threadpool(_import)


@router.get("/systems/export", summary="The systems as CSV or YAML that imports back to the same systems",
            response_class=Response, responses={200: {"content": {t: {} for t in EXPORT_TYPES.values()}},
                                                **errors(404, s404="the agency is unknown")})
def export_systems(*, principal: MigrationReader, session: DbSession, format: ExportFormat = ExportFormat.CSV,
                   agency: str | None = None) -> Response:
    text = inventory.export_systems(session, viewer=principal, fmt=format, agency=agency)
    name = f"systems{f'-{agency}' if agency else ''}.{format.value}"
    return Response(text, media_type=EXPORT_TYPES[format],
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.get("/systems/{code}", response_model=SystemDetail,
            summary="A system with each component's catalogue entry, target and grade (or its flag)")
def get_system(*, code: str, principal: MigrationReader, session: DbSession) -> SystemDetail:
    return inventory.system_detail(inventory.get_system(session, viewer=principal, code=code))


@router.get("/catalogue", response_model=CatalogueRead, summary="The component catalogue: proprietary -> open source")
def catalogue(*, _: MigrationReader) -> CatalogueRead:
    return inventory.catalogue_read()


@router.get("/adoption", response_model=AdoptionRead,
            summary="Open-source share of the systems' components per agency, now and after migrating")
def adoption(*, principal: MigrationReader, session: DbSession) -> AdoptionRead:
    return inventory.adoption_report(session, viewer=principal)


@router.post("/plans", response_model=PlanRead,
             summary="A migration plan (like `terraform plan`): 200 with its findings, `ok` only without any")
def plan(*, data: PlanRequest, principal: MigrationReader, session: DbSession, ctx: Ctx) -> PlanRead:
    return inventory.plan_systems(session, viewer=principal, cloud=ctx.cloud.cloud_name,
                                  cached=cloud_flows.cached_figures(ctx), codes=data.systems, waves=data.waves,
                                  image=ctx.settings.migration_image)
