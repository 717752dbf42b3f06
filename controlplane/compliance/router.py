"""HTTP routes of the compliance register and its public open-data view."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, BackgroundTasks, Depends, Query, Response, UploadFile
from starlette.concurrency import run_in_threadpool

from controlplane.auth.deps import Ctx, DbSession, require
from controlplane.auth.roles import Permission, Principal
from controlplane.compliance import service, tabular
from controlplane.compliance.domain import Period, PeriodError, parse_period
from controlplane.compliance.metrics import refresh_compliance
from controlplane.compliance.schemas import (
    ImportResult,
    MeetingCreate,
    MeetingRead,
    MeetingUpdate,
    PolicyCreate,
    PolicyRead,
    SessionCreate,
    SessionRead,
    SessionUpdate,
    ShareReport,
)
from controlplane.errors import InvalidInput
from controlplane.http_api import Offset, RowId, errors
from controlplane.inputs import Input, IsoDate
from controlplane.uploads import read_upload

ComplianceReader = Annotated[Principal, Depends(require(Permission.COMPLIANCE_READ))]
MeetingsWriter = Annotated[Principal, Depends(require(Permission.MEETINGS_WRITE))]
PoliciesWriter = Annotated[Principal, Depends(require(Permission.POLICIES_WRITE))]
SessionsWriter = Annotated[Principal, Depends(require(Permission.SESSIONS_WRITE))]

router = APIRouter(prefix="/api/v1/compliance", tags=["compliance"])
open_data = APIRouter(prefix="/api/v1/open-data", tags=["open data"])

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
SESSION_WRITE = errors(403, 404, 409, s403="the meeting is not the caller's agency's",
                       s404="the meeting is unknown", s409="a session of this meeting on this day exists")


def period_param(period: str = Query(description="YYYY, YYYY-Qn or YYYY-MM", examples=["2014"])) -> Period:
    try:
        return parse_period(period)
    except PeriodError as exc:
        raise InvalidInput(str(exc), field="period") from exc


class PolicyEnd(Input):
    effective_until: IsoDate


@router.get("/policies", response_model=list[PolicyRead])
def list_policies(*, _: ComplianceReader, session: DbSession) -> list[PolicyRead]:
    return [service.policy_read(p) for p in service.list_policies(session)]


@router.post("/policies", response_model=PolicyRead, status_code=201,
             responses=errors(409, s409="it overlaps a policy in force"))
def create_policy(
    *,
    data: PolicyCreate,
    principal: PoliciesWriter,
    session: DbSession,
    ctx: Ctx,
) -> PolicyRead:
    return service.policy_read(service.create_policy(session, clock=ctx.clock, actor=principal, data=data))


@router.patch("/policies/{policy_id}", response_model=PolicyRead, summary="End a policy on a given day",
              responses=errors(409, s409="ended then, it would overlap the next policy"))
def end_policy(
    *,
    policy_id: RowId,
    data: PolicyEnd,
    principal: PoliciesWriter,
    session: DbSession,
    ctx: Ctx,
) -> PolicyRead:
    policy = service.end_policy(session, clock=ctx.clock, actor=principal, policy_id=policy_id,
                                until=data.effective_until)
    return service.policy_read(policy)


@router.get("/meetings", response_model=list[MeetingRead], responses=errors(404, s404="the ministry is unknown"))
def list_meetings(
    *,
    ministry: str | None = Query(default=None, description="host agency code"),
    active: bool | None = None,
    q: str | None = Query(default=None, max_length=100),
    limit: int = Query(default=500, ge=1, le=1000),
    offset: Offset = 0,
    _: ComplianceReader,
    session: DbSession,
) -> list[MeetingRead]:
    meetings = service.list_meetings(session, host=ministry, active=active, query=q, limit=limit, offset=offset)
    return [service.meeting_read(m) for m in meetings]


@router.get("/meetings/{code}", response_model=MeetingRead)
def get_meeting(*, code: str, _: ComplianceReader, session: DbSession) -> MeetingRead:
    return service.meeting_read(service.get_meeting(session, code=code))


@router.post("/meetings", response_model=MeetingRead, status_code=201,
             responses=errors(404, 409, s404="the host or a participant agency is unknown",
                              s409="a meeting with this code exists"))
def create_meeting(
    *,
    data: MeetingCreate,
    principal: MeetingsWriter,
    session: DbSession,
    ctx: Ctx,
) -> MeetingRead:
    return service.meeting_read(service.create_meeting(session, clock=ctx.clock, actor=principal, data=data))


@router.patch("/meetings/{code}", response_model=MeetingRead, responses=errors(409))
def update_meeting(
    *,
    code: str,
    data: MeetingUpdate,
    principal: MeetingsWriter,
    session: DbSession,
    ctx: Ctx,
) -> MeetingRead:
    return service.meeting_read(service.update_meeting(session, clock=ctx.clock, actor=principal, code=code, data=data))


@router.get("/sessions", response_model=list[SessionRead],
            responses=errors(404, s404="the meeting or the ministry is unknown"))
def list_sessions(
    *,
    meeting: str | None = None,
    ministry: str | None = None,
    start: IsoDate | None = Query(default=None, alias="from", description="YYYY-MM-DD"),
    end: IsoDate | None = Query(default=None, alias="to", description="YYYY-MM-DD"),
    limit: int = Query(default=100, ge=1, le=1000),
    offset: Offset = 0,
    principal: ComplianceReader,
    session: DbSession,
) -> list[SessionRead]:
    rows = service.list_sessions(session, viewer=principal, meeting=meeting, host=ministry, start=start, end=end,
                                 limit=limit, offset=offset)
    return [service.session_read(r) for r in rows]


@router.post("/sessions", response_model=SessionRead, status_code=201, responses=SESSION_WRITE)
def create_session(
    *,
    data: SessionCreate,
    background: BackgroundTasks,
    principal: SessionsWriter,
    session: DbSession,
    ctx: Ctx,
) -> SessionRead:
    row = service.create_session(session, clock=ctx.clock, actor=principal, data=data)
    background.add_task(refresh_compliance, ctx)
    return service.session_read(row)


@router.patch("/sessions/{session_id}", response_model=SessionRead, responses=SESSION_WRITE)
def update_session(
    *,
    session_id: RowId,
    data: SessionUpdate,
    background: BackgroundTasks,
    principal: SessionsWriter,
    session: DbSession,
    ctx: Ctx,
) -> SessionRead:
    row = service.update_session(session, clock=ctx.clock, actor=principal, session_id=session_id, data=data)
    background.add_task(refresh_compliance, ctx)
    return service.session_read(row)


@router.delete("/sessions/{session_id}", status_code=204)
def delete_session(
    *,
    session_id: RowId,
    background: BackgroundTasks,
    principal: SessionsWriter,
    session: DbSession,
    ctx: Ctx,
) -> Response:
    service.delete_session(session, clock=ctx.clock, actor=principal, session_id=session_id)
    background.add_task(refresh_compliance, ctx)
    return Response(status_code=204)


@router.post("/sessions/import", response_model=ImportResult,
             summary="Import sessions from CSV or XLSX, all or nothing",
             description="Columns: meeting_code, held_on (YYYY-MM-DD), mode (video|in_person|hybrid), "
                         "optional status (held|scheduled|cancelled) and note. Row numbers in errors count the "
                         "header as row 1.")
async def import_sessions(
    *,
    file: UploadFile,
    background: BackgroundTasks,
    principal: SessionsWriter,
    session: DbSession,
    ctx: Ctx,
) -> ImportResult:
    content = await read_upload(file, ctx.settings.max_upload_bytes)
    filename = file.filename or ""

    def _import() -> int:
        rows = tabular.read_rows(filename, content)
        return service.import_sessions(session, clock=ctx.clock, actor=principal, rows=rows, source=filename)

    imported = await run_in_threadpool(_import)
    background.add_task(refresh_compliance, ctx)
    return ImportResult(imported=imported)


@router.get("/shares", response_model=ShareReport, responses=errors(404, s404="the ministry is unknown"))
def shares(
    *,
    period: Period = Depends(period_param),
    scope: Literal["ministry", "meeting"] = "ministry",
    ministry: str | None = Query(default=None, description="host agency code: that ministry's meetings"),
    _: ComplianceReader,
    session: DbSession,
) -> ShareReport:
    return service.share_report(session, period=period, scope=scope, ministry=ministry)


def _download(report: ShareReport, fmt: str, stem: str) -> Response:
    if fmt == "csv":
        return Response(tabular.report_csv(report), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{stem}.csv"'})
    if fmt == "xlsx":
        return Response(tabular.report_xlsx(report), media_type=XLSX_TYPE,
                        headers={"Content-Disposition": f'attachment; filename="{stem}.xlsx"'})
    return Response(report.model_dump_json(), media_type="application/json")


@router.get("/report", summary="The share report as a file (CSV or XLSX) or JSON", response_class=Response,
            responses={200: {"content": {"text/csv": {}, XLSX_TYPE: {}, "application/json": {}}},
                       **errors(404, s404="the ministry is unknown")})
def report(
    *,
    period: Period = Depends(period_param),
    ministry: str | None = None,
    format: Literal["json", "csv", "xlsx"] = "csv",
    _: ComplianceReader,
    session: DbSession,
) -> Response:
    data = service.share_report(session, period=period, ministry=ministry)
    return _download(data, format, f"remote-meetings-{period.label}" + (f"-{ministry}" if ministry else ""))


@open_data.get("/remote-meetings", summary="Public: video share per ministry for a period (no personal data)",
               response_class=Response, responses={200: {"content": {"application/json": {}, "text/csv": {}}}})
def remote_meetings_open_data(
    *,
    period: Period = Depends(period_param),
    format: Literal["json", "csv"] = "json",
    session: DbSession,
) -> Response:
    # The report holds only aggregates per ministry: counts, shares, targets. No users, notes or sessions.
    data = service.share_report(session, period=period)
    return _download(data, format, f"remote-meetings-{period.label}")
