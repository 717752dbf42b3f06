"""Pages of the compliance domain: the video-meeting dashboard with its share chart, the ministries and each
ministry's page (with the form that records a session), and the designated meetings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import Form, Query, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.background import BackgroundTask

from controlplane.auth import service as auth_service
from controlplane.auth.deps import Ctx, DbSession
from controlplane.auth.models import Agency
from controlplane.auth.roles import Permission, Principal
from controlplane.compliance import service
from controlplane.compliance.domain import Mode, Period, PeriodError, SessionStatus, parse_period, policy_segments
from controlplane.compliance.metrics import refresh_compliance
from controlplane.compliance.schemas import SessionCreate, ShareRow
from controlplane.context import AppContext
from controlplane.db import transaction
from controlplane.errors import AppError, Forbidden, InvalidInput
from controlplane.web import kit
from controlplane.web.i18n import Translator, format_percent

SESSIONS_SHOWN = 50

router = kit.page_router()


# --- the share chart: a horizontal bar per ministry and a vertical target line --------------------
# Pure geometry over the report rows; the template only draws what this computes, so the page needs no
# JavaScript and the chart reads the same numbers as the table below it.

LABEL_WIDTH = 230  # room for the ministry names left of the bars
PLOT_WIDTH = 520
RIGHT_PAD = 70  # room for a 100% bar's label
TOP = 34  # room for the target line's label
ROW_HEIGHT = 26
BAR_HEIGHT = 16
AXIS_HEIGHT = 28
MIN_BAR = 2.0
MAX_NAME = {"ko": 14, "en": 30}


@dataclass(frozen=True)
class Bar:
    code: str
    name: str
    label: str  # the (possibly shortened) name left of the bar
    share: float | None
    share_text: str
    status: str
    title: str
    y: float
    width: float
    text_y: float
    value_x: float
    href: str


@dataclass(frozen=True)
class Tick:
    x: float
    label: str


@dataclass(frozen=True)
class ShareChart:
    width: int
    height: int
    plot_x: int
    plot_width: int
    plot_top: int
    plot_bottom: int
    target: float | None
    target_x: float | None
    target_text: str
    bars: list[Bar]
    ticks: list[Tick]
    bar_height: int = BAR_HEIGHT


def _short(name: str, limit: int) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def share_chart(rows: Sequence[ShareRow], target: float | None, *, lang: str, t: Translator) -> ShareChart:
    plot_top = TOP
    plot_bottom = TOP + max(1, len(rows)) * ROW_HEIGHT
    bars = []
    for index, row in enumerate(rows):
        name = row.name_en if lang == "en" else row.name_ko
        # A 0% share still shows a sliver in its status colour; no data shows nothing.
        width = 0.0 if row.share is None else max(MIN_BAR, round(PLOT_WIDTH * max(0.0, min(1.0, row.share)), 2))
        y = plot_top + index * ROW_HEIGHT + (ROW_HEIGHT - BAR_HEIGHT) / 2
        share_text = format_percent(row.share) if row.share is not None else t("status.no_data")
        bars.append(Bar(
            code=row.key, name=name, label=_short(name, MAX_NAME.get(lang, 20)), share=row.share,
            share_text=share_text, status=row.status.value,
            title=t("dash.bar_title", name=name, code=row.key, share=format_percent(row.share),
                    target=format_percent(row.target), status=t(f"status.{row.status.value}")),
            y=y, width=width, text_y=y + BAR_HEIGHT / 2, value_x=LABEL_WIDTH + width + 6,
            href=f"/ministries/{row.key}",
        ))
    target_x = None if target is None else round(LABEL_WIDTH + PLOT_WIDTH * max(0.0, min(1.0, target)), 2)
    ticks = [Tick(x=LABEL_WIDTH + PLOT_WIDTH * p / 100, label=f"{p}%") for p in (0, 25, 50, 75, 100)]
    return ShareChart(
        width=LABEL_WIDTH + PLOT_WIDTH + RIGHT_PAD, height=plot_bottom + AXIS_HEIGHT, plot_x=LABEL_WIDTH,
        plot_width=PLOT_WIDTH, plot_top=plot_top, plot_bottom=plot_bottom, target=target, target_x=target_x,
        target_text=t("dash.target_line", target=format_percent(target)), bars=bars, ticks=ticks,
    )


# --- periods and reports -------------------------------------------------------------------------

def _period(text: str | None, ctx: AppContext) -> tuple[str, Period | None, str | None]:
    """(period text, parsed period or None, error message or None); an empty text means this year."""
    text = (text or "").strip() or str(ctx.clock.today().year)
    try:
        return text, parse_period(text), None
    except PeriodError as exc:
        return text, None, str(exc)


def _uncovered(session: Session, request: Request, text: str, period: Period | None) -> str | None:
    """A notice when no policy covers the period: there is no target to compare with, so no report."""
    if period is not None and not policy_segments(service.domain_policies(session), period):
        return kit.texts(request)("notice.no_policy", period=text)
    return None


def _report_context(
    session: Session, request: Request, ctx: AppContext, period_text: str | None, ministry: str | None = None
) -> tuple[dict[str, Any], Period | None]:
    """The period form's state and the share report; the period is returned only when a report was made."""
    text, parsed, error = _period(period_text, ctx)
    notice = _uncovered(session, request, text, parsed)
    context: dict[str, Any] = {"period_text": text, "period_error": error, "notice": notice, "report": None}
    if parsed is None or notice:
        return context, None
    context["report"] = service.share_report(session, period=parsed, ministry=ministry)
    return context, parsed


# --- pages ---------------------------------------------------------------------------------------

@router.get("/dashboard")
def dashboard(
    *,
    request: Request,
    period: str | None = Query(None, max_length=20),
    principal: kit.PagePrincipal,
    session: DbSession,
    ctx: Ctx,
) -> Response:
    kit.require(principal, Permission.COMPLIANCE_READ)
    context, _ = _report_context(session, request, ctx, period)
    report = context["report"]
    context["chart"] = (share_chart(report.rows, report.government.target, lang=kit.page_lang(request),
                                    t=kit.texts(request)) if report else None)
    return kit.render(request, "dashboard.html", context, status_code=422 if context["period_error"] else 200)


@router.get("/ministries")
def ministries(
    *,
    request: Request,
    period: str | None = Query(None, max_length=20),
    principal: kit.PagePrincipal,
    session: DbSession,
    ctx: Ctx,
) -> Response:
    kit.require(principal, Permission.COMPLIANCE_READ)
    context, _ = _report_context(session, request, ctx, period)
    return kit.render(request, "ministries.html", context, status_code=422 if context["period_error"] else 200)


def may_record_for(principal: Principal, agency: Agency) -> bool:
    return principal.has(Permission.SESSIONS_WRITE) and principal.can_reach(agency.id)


def _ministry_context(
    session: Session, request: Request, ctx: AppContext, principal: Principal, agency: Agency,
    period_text: str | None,
) -> tuple[dict[str, Any], bool]:
    """The ministry page's data; the flag is False when the period text is not valid."""
    context, period = _report_context(session, request, ctx, period_text, ministry=agency.code)
    may_record = may_record_for(principal, agency)
    context.update({
        "agency": agency, "sessions": [],
        "may_record": may_record, "sessions_shown": SESSIONS_SHOWN,
        "meetings": service.list_meetings(session, host=agency.code) if may_record else [],
        "modes": [m.value for m in Mode], "statuses": [s.value for s in SessionStatus],
        "form": {"meeting": "", "held_on": ctx.clock.today().isoformat(), "mode": Mode.VIDEO.value,
                 "status": SessionStatus.HELD.value, "note": ""},
        "form_error": None, "recorded": False,
    })
    if period is not None:
        context["sessions"] = [
            service.session_read(row)
            for row in service.list_sessions(
                session, viewer=principal, host=agency.code, start=period.start,
                end=period.end - timedelta(days=1), limit=SESSIONS_SHOWN,
            )
        ]
    return context, context["period_error"] is None


@router.get("/ministries/{code}")
def ministry(
    *,
    request: Request,
    code: str,
    period: str | None = Query(None, max_length=20),
    recorded: bool = False,
    principal: kit.PagePrincipal,
    session: DbSession,
    ctx: Ctx,
) -> Response:
    kit.require(principal, Permission.COMPLIANCE_READ)
    agency = auth_service.agency_by_code(session, code=code, field="code")
    context, ok = _ministry_context(session, request, ctx, principal, agency, period)
    context["recorded"] = recorded
    return kit.render(request, "ministry.html", context, status_code=200 if ok else 422)


def _session_from_form(meeting: str, held_on: str, mode: str, status: str, note: str) -> SessionCreate:
    try:
        day = date.fromisoformat(held_on.strip())
    except ValueError:
        raise InvalidInput(f"bad date '{held_on}': expected YYYY-MM-DD", field="held_on") from None
    try:
        return SessionCreate(meeting=meeting.strip(), held_on=day, mode=mode, status=status, note=note)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "form"
        raise InvalidInput(f"{field}: {err['msg']}", field=field) from None


@router.post("/ministries/{code}/sessions")
def record_session(
    *,
    request: Request,
    code: str,
    meeting: str = Form("", max_length=100),
    held_on: str = Form("", max_length=40),
    mode: str = Form("", max_length=40),
    status: str = Form(SessionStatus.HELD.value, max_length=40),
    note: str = Form("", max_length=2000),
    period: str = Form("", max_length=20),
    csrf: str = Form("", max_length=200),
    ctx: Ctx,
) -> Response:
    """Record a session from the ministry page's form, in one transaction; errors re-render the page."""
    kit.form_page(request, f"/ministries/{quote(code)}")
    try:
        with transaction(ctx.sessions) as session:
            principal = kit.authenticate_page(request, session, ctx)
            kit.check_csrf(request, csrf)
            agency = auth_service.agency_by_code(session, code=code, field="code")
            if not may_record_for(principal, agency):
                raise Forbidden(f"you may not record sessions for {agency.code}", field="ministry")
            try:
                data = _session_from_form(meeting, held_on, mode, status, note)
                target = service.get_meeting(session, code=data.meeting, field="meeting")
                if target.host_agency_id != agency.id:
                    raise InvalidInput(f"meeting '{target.code}' is hosted by {target.host.code}, not {agency.code}",
                                       field="meeting")
                service.create_session(session, clock=ctx.clock, actor=principal, data=data)
            except AppError as exc:
                raise kit.FormRejected(exc) from exc
    except kit.FormRejected as rejected:
        # The write was rolled back; show the page again, in a fresh read, with the reason and the input.
        with transaction(ctx.sessions) as session:
            agency = auth_service.agency_by_code(session, code=code, field="code")
            context, _ok = _ministry_context(session, request, ctx, request.state.viewer.principal, agency,
                                            period)
        context["form"] = {"meeting": meeting, "held_on": held_on, "mode": mode, "status": status, "note": note}
        context["form_error"] = rejected.error
        kit.form_page(request, f"/ministries/{quote(code)}?" + urlencode({"period": context["period_text"]}))
        return kit.render(request, "ministry.html", context, status_code=rejected.error.status_code)

    _text, parsed, _error = _period(period, ctx)
    query = urlencode({"period": parsed.label if parsed else str(ctx.clock.today().year), "recorded": 1})
    return RedirectResponse(f"/ministries/{quote(code)}?{query}", status_code=303,
                            background=BackgroundTask(refresh_compliance, ctx))


@router.get("/meetings")
def meetings(
    *,
    request: Request,
    ministry: str = Query("", max_length=16),
    q: str = Query("", max_length=100),
    principal: kit.PagePrincipal,
    session: DbSession,
) -> Response:
    kit.require(principal, Permission.COMPLIANCE_READ)
    rows = service.list_meetings(session, host=ministry.strip() or None, query=q.strip() or None)
    hosts = sorted({m.host_agency_id: m.host for m in service.list_meetings(session)}.values(),
                   key=lambda a: a.code)
    return kit.render(request, "meetings.html", {"meetings": rows, "hosts": hosts, "ministry": ministry.strip(),
                                                 "q": q.strip()})
