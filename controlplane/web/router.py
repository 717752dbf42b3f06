"""Server-rendered pages (Jinja2): login, the compliance dashboard, ministries, meetings, agencies, audit, the
cloud, playbook jobs and their SSH credentials.

HTTP and templates only; data comes from the existing services. Pages authenticate with the `cp_token`
cookie (an access token from the same login service as the API); the JSON API keeps accepting only the
Authorization header. Every state-changing form POST except /login carries a `csrf` field, the
HMAC-SHA256 of the token's digest under the secret key. No page needs JavaScript: the job page's live log is
a small inline script (allowed by a per-response nonce) on top of a page that shows everything up to its load.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from fastapi import APIRouter, Depends, FastAPI, Form, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.background import BackgroundTask

from controlplane.auth import service as auth_service
from controlplane.auth.deps import Ctx, DbSession, client_address
from controlplane.auth.models import Agency, AuditEntry
from controlplane.auth.roles import Permission, Principal
from controlplane.auth.security import TOKEN_PREFIX, digest
from controlplane.automation import flows as job_flows
from controlplane.automation import service as job_service
from controlplane.automation.domain import JobStatus
from controlplane.automation.router import event_stream
from controlplane.automation.schemas import JobEventRead, JobRead
from controlplane.cloud import flows as cloud_flows
from controlplane.cloud import service as cloud_service
from controlplane.compliance import service as compliance_service
from controlplane.compliance.domain import Mode, Period, PeriodError, SessionStatus, parse_period, policy_segments
from controlplane.compliance.schemas import SessionCreate
from controlplane.context import AppContext
from controlplane.db import transaction
from controlplane.errors import AppError, Forbidden, InvalidInput, NotAuthenticated, TooManyAttempts
from controlplane.monitoring.refresh import refresh_compliance
from controlplane.web.chart import BAR_HEIGHT, share_chart
from controlplane.web.i18n import (
    DEFAULT_LANG,
    LANGUAGES,
    Translator,
    format_day,
    format_forecast,
    format_local,
    format_percent,
    normalise_lang,
    translator,
)

WEB_DIR = Path(__file__).parent
TOKEN_COOKIE = "cp_token"
LANG_COOKIE = "cp_lang"
LANG_COOKIE_MAX_AGE = 365 * 24 * 3600
DEFAULT_PAGE = "/dashboard"
SESSIONS_SHOWN = 50
AUDIT_SHOWN = 200
LANG_NAMES = {"ko": "한국어", "en": "English"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'none'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


# --- errors a page turns into a response ---------------------------------------------------------

class LoginRequired(Exception):
    """No valid session cookie: the page answers 303 to /login?next=<where the user was going>."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class PageError(AppError):
    """An error whose message is a UI string (translated when the page is rendered)."""

    def __init__(self, key: str, *, status_code: int, field: str | None = None, **values: Any) -> None:
        super().__init__(key, field=field)
        self.status_code = status_code
        self.key = key
        self.values = values


class _FormRejected(Exception):
    """The session form's data was refused: re-render the page with the reason (after the rollback)."""

    def __init__(self, error: AppError) -> None:
        super().__init__(error.message)
        self.error = error


class PageRoute(APIRoute):
    """Renders errors of page routes as HTML pages (the JSON handlers stay for the API), sets the
    language cookie when `?lang=` is given, and adds the pages' security headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            # Only reads go through the DB dependency on pages: a swallowed error here must never let a
            # partial write commit, so every write uses its own transaction() inside the route.
            try:
                response = await handler(request)
            except LoginRequired as exc:
                response = RedirectResponse("/login?" + urlencode({"next": exc.next_path}), status_code=303)
                if request.cookies.get(TOKEN_COOKIE):
                    _clear_token_cookie(response, _ctx(request))
            except AppError as exc:
                response = _error_page(request, exc)
            except RequestValidationError as exc:
                errors = exc.errors()
                loc = errors[0].get("loc", ()) if errors else ()
                field = str(loc[-1]) if loc else None
                response = _error_page(request, PageError("error.invalid_request", status_code=422, field=field))
            _finish(request, response)
            return response

        return page_handler


router = APIRouter(route_class=PageRoute, include_in_schema=False)


# --- mounting ------------------------------------------------------------------------------------

def mount_web(app: FastAPI) -> None:
    """Serve the pages and their static files on `app` (called by create_app; nothing built at import)."""
    templates = Jinja2Templates(directory=WEB_DIR / "templates", context_processors=[_common_context])
    templates.env.globals.update(BAR_HEIGHT=BAR_HEIGHT)
    app.state.web_templates = templates
    app.mount("/static", StaticFiles(directory=WEB_DIR / "static"), name="static")
    app.include_router(router)
    from controlplane.web.migration_pages import router as migration_pages  # it imports this module's helpers

    app.include_router(migration_pages)


# --- request helpers -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Viewer:
    principal: Principal
    csrf: str


@dataclass(frozen=True)
class NavItem:
    href: str
    label: str
    current: bool


@dataclass(frozen=True)
class NavGroup:
    id: str
    label: str
    links: list[NavItem]


def _ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


def page_lang(request: Request) -> str:
    """?lang= wins, then the cp_lang cookie, then Korean."""
    return (normalise_lang(request.query_params.get("lang")) or normalise_lang(request.cookies.get(LANG_COOKIE))
            or DEFAULT_LANG)


def _t(request: Request) -> Translator:
    return translator(page_lang(request))


def csrf_token(secret_key: str, raw_token: str) -> str:
    """The form token bound to a login session: HMAC-SHA256(secret key, SHA-256 of the access token)."""
    return hmac.new(secret_key.encode(), digest(raw_token).encode(), hashlib.sha256).hexdigest()


def _here(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def safe_next(value: str | None) -> str:
    """A same-site relative path to go to after login; anything else (another site, a scheme) -> /dashboard."""
    value = (value or "").strip()
    if (not value.startswith("/") or value.startswith("//") or "\\" in value
            or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value)):
        return DEFAULT_PAGE
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or parts.path in ("/login", "/logout"):
        return DEFAULT_PAGE
    return value


def authenticate_page(request: Request, session: Session, ctx: AppContext) -> Principal:
    """The caller behind the session cookie (access tokens only, never API keys), or LoginRequired."""
    raw = request.cookies.get(TOKEN_COOKIE, "")
    principal = None
    if raw.startswith(TOKEN_PREFIX):
        principal = auth_service.resolve_bearer(session, clock=ctx.clock, secret=raw)
    if principal is None:
        # After logging in, a GET page comes back as it was; a form's target is not a page, so its own page is.
        raise LoginRequired(_here(request) if request.method == "GET"
                            else getattr(request.state, "page_path", None) or DEFAULT_PAGE)
    request.state.viewer = Viewer(principal, csrf_token(ctx.settings.secret_key, raw))
    return principal


def page_principal(request: Request, session: DbSession, ctx: Ctx) -> Principal:
    return authenticate_page(request, session, ctx)


def _check_csrf(request: Request, submitted: str) -> None:
    viewer: Viewer = request.state.viewer
    if not submitted or not hmac.compare_digest(viewer.csrf.encode(), submitted.encode()):
        raise PageError("error.csrf", status_code=403, field="csrf")


def _require(principal: Principal, permission: Permission) -> None:
    if not principal.has(permission):
        raise PageError("error.permission", status_code=403, role=principal.role.value)


def _set_token_cookie(response: Response, ctx: AppContext, raw: str) -> None:
    response.set_cookie(TOKEN_COOKIE, raw, max_age=ctx.settings.token_ttl_minutes * 60, path="/",
                        secure=ctx.settings.cookie_secure, httponly=True, samesite="lax")


def _clear_token_cookie(response: Response, ctx: AppContext) -> None:
    response.delete_cookie(TOKEN_COOKIE, path="/", secure=ctx.settings.cookie_secure, httponly=True,
                           samesite="lax")


def _finish(request: Request, response: Response) -> None:
    lang = normalise_lang(request.query_params.get("lang"))
    if lang:
        response.set_cookie(LANG_COOKIE, lang, max_age=LANG_COOKIE_MAX_AGE, path="/", httponly=True,
                            secure=_ctx(request).settings.cookie_secure, samesite="lax")
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


def _nav(viewer: Viewer | None, path: str, t: Translator) -> list[NavGroup]:
    if viewer is None:
        return []
    principal = viewer.principal

    def item(href: str, key: str) -> NavItem:
        return NavItem(href, t(key), path == href or path.startswith(href + "/"))

    infra = []
    if principal.has(Permission.CLOUD_READ):
        infra.append(item("/cloud", "nav.cloud"))
    if principal.has(Permission.JOBS_READ):
        infra.append(item("/jobs", "nav.jobs"))
    if principal.has(Permission.CREDENTIALS_READ):
        infra.append(item("/credentials", "nav.credentials"))
    if principal.has(Permission.MIGRATION_READ):
        infra.append(item("/systems", "nav.systems"))
        infra.append(item("/adoption", "nav.adoption"))
        infra.append(item("/waves", "nav.waves"))
    if principal.has(Permission.AGENCIES_READ):
        infra.append(item("/agencies", "nav.agencies"))
    if principal.has(Permission.AUDIT_READ):
        infra.append(item("/audit", "nav.audit"))
    meetings, ministries = [], []
    if principal.has(Permission.COMPLIANCE_READ):
        meetings.append(item("/meetings", "nav.meeting_list"))
        ministries.append(item("/dashboard", "nav.dashboard"))
        if principal.scoped and principal.agency_code:
            ministries.append(item(f"/ministries/{principal.agency_code}", "nav.my_ministry"))
        ministries.append(item("/ministries", "nav.ministry_status"))
    groups = [NavGroup("infra", t("nav.infra"), infra), NavGroup("meetings", t("nav.meetings"), meetings),
              NavGroup("ministries", t("nav.ministries"), ministries)]
    return [g for g in groups if g.links]


def _lang_links(request: Request, lang: str) -> list[dict[str, Any]]:
    # A page re-rendered after a POST links back to its GET address, not to the form's target.
    base = getattr(request.state, "page_path", None) if request.method != "GET" else _here(request)
    parts = urlsplit(base or DEFAULT_PAGE)
    params = [(k, v) for k, v in _query_pairs(parts.query) if k not in ("lang", "recorded", "queued", "canceled")]
    return [
        {"code": code, "label": LANG_NAMES[code], "current": code == lang,
         "href": parts.path + "?" + urlencode([*params, ("lang", code)])}
        for code in LANGUAGES
    ]


def _query_pairs(query: str) -> list[tuple[str, str]]:
    return parse_qsl(query, keep_blank_values=True)


def _common_context(request: Request) -> dict[str, Any]:
    lang = page_lang(request)
    t = translator(lang)
    viewer: Viewer | None = getattr(request.state, "viewer", None)
    timezone = _ctx(request).settings.timezone
    return {
        "lang": lang,
        "t": t,
        "viewer": viewer,
        "principal": viewer.principal if viewer else None,
        "csrf": viewer.csrf if viewer else "",
        "nav": _nav(viewer, request.url.path, t),
        "lang_links": _lang_links(request, lang),
        "pct": format_percent,
        "forecast": lambda value: format_forecast(value, t),
        "local_time": lambda value: format_local(value, timezone),
        "day": format_day,
        "name_of": lambda obj: getattr(obj, "name_en" if lang == "en" else "name_ko"),
    }


def _render(request: Request, name: str, context: dict[str, Any], status_code: int = 200,
            background: BackgroundTask | None = None) -> Response:
    templates: Jinja2Templates = request.app.state.web_templates
    return templates.TemplateResponse(request, name, context, status_code=status_code, background=background)


def _error_page(request: Request, exc: AppError) -> Response:
    t = _t(request)
    message = t(exc.key, **exc.values) if isinstance(exc, PageError) else exc.message
    heading_key = f"error.{exc.status_code}"
    heading = t(heading_key) if heading_key != t(heading_key) else t("error.title")
    return _render(request, "error.html", {"status": exc.status_code, "heading": heading, "message": message,
                                           "field": exc.field}, status_code=exc.status_code)


def _period(text: str | None, ctx: AppContext) -> tuple[str, Period | None, str | None]:
    """(period text, parsed period or None, error message or None); an empty text means this year."""
    text = (text or "").strip() or str(ctx.clock.today().year)
    try:
        return text, parse_period(text), None
    except PeriodError as exc:
        return text, None, str(exc)


def _uncovered(session: Session, request: Request, text: str, period: Period | None) -> str | None:
    """A notice when no policy covers the period: there is no target to compare with, so no report."""
    if period is not None and not policy_segments(compliance_service.domain_policies(session), period):
        return _t(request)("notice.no_policy", period=text)
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
    context["report"] = compliance_service.share_report(session, period=parsed, ministry=ministry)
    return context, parsed


# --- login and logout ----------------------------------------------------------------------------

@router.get("/")
def home() -> Response:
    return RedirectResponse(DEFAULT_PAGE, status_code=303)


@router.get("/login")
def login_form(request: Request, next_path: str = Query("", alias="next", max_length=2000)) -> Response:
    return _render(request, "login.html", {"next": safe_next(next_path), "username": "", "failed": False})


@router.post("/login")
def login_submit(
    *,
    request: Request,
    username: str = Form("", max_length=200),
    password: str = Form("", max_length=1000),
    next_path: str = Form("", alias="next", max_length=2000),
    ctx: Ctx,
) -> Response:
    target = safe_next(next_path)
    try:
        raw, _token = auth_service.login(ctx.sessions, clock=ctx.clock, username=username.strip(), password=password,
                                         ttl=timedelta(minutes=ctx.settings.token_ttl_minutes),
                                         address=client_address(request, ctx.settings))
    except (NotAuthenticated, TooManyAttempts) as exc:
        request.state.page_path = "/login?" + urlencode({"next": target})
        failed = "login.locked" if isinstance(exc, TooManyAttempts) else "login.failed"
        page = _render(request, "login.html", {"next": target, "username": username, "failed": failed},
                       status_code=exc.status_code)
        page.headers.update(exc.headers)  # Retry-After of a throttled login
        return page
    response = RedirectResponse(target, status_code=303)
    _set_token_cookie(response, ctx, raw)
    return response


@router.post("/logout")
def logout(*, request: Request, csrf: str = Form(""), ctx: Ctx) -> Response:
    with transaction(ctx.sessions) as session:
        principal = authenticate_page(request, session, ctx)
        _check_csrf(request, csrf)
        auth_service.revoke_token(session, clock=ctx.clock, actor=principal)
    response = RedirectResponse("/login", status_code=303)
    _clear_token_cookie(response, ctx)
    return response


# --- compliance ----------------------------------------------------------------------------------

@router.get("/dashboard")
def dashboard(
    *,
    request: Request,
    period: str | None = Query(None, max_length=20),
    principal: Principal = Depends(page_principal),
    session: DbSession,
    ctx: Ctx,
) -> Response:
    _require(principal, Permission.COMPLIANCE_READ)
    context, _ = _report_context(session, request, ctx, period)
    report = context["report"]
    context["chart"] = (share_chart(report.rows, report.government.target, lang=page_lang(request), t=_t(request))
                        if report else None)
    return _render(request, "dashboard.html", context, status_code=422 if context["period_error"] else 200)


@router.get("/ministries")
def ministries(
    *,
    request: Request,
    period: str | None = Query(None, max_length=20),
    principal: Principal = Depends(page_principal),
    session: DbSession,
    ctx: Ctx,
) -> Response:
    _require(principal, Permission.COMPLIANCE_READ)
    context, _ = _report_context(session, request, ctx, period)
    return _render(request, "ministries.html", context, status_code=422 if context["period_error"] else 200)


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
        "meetings": compliance_service.list_meetings(session, host=agency.code) if may_record else [],
        "modes": [m.value for m in Mode], "statuses": [s.value for s in SessionStatus],
        "form": {"meeting": "", "held_on": ctx.clock.today().isoformat(), "mode": Mode.VIDEO.value,
                 "status": SessionStatus.HELD.value, "note": ""},
        "form_error": None, "recorded": False,
    })
    if period is not None:
        context["sessions"] = [
            compliance_service.session_read(row)
            for row in compliance_service.list_sessions(
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
    principal: Principal = Depends(page_principal),
    session: DbSession,
    ctx: Ctx,
) -> Response:
    _require(principal, Permission.COMPLIANCE_READ)
    agency = auth_service.agency_by_code(session, code=code, field="code")
    context, ok = _ministry_context(session, request, ctx, principal, agency, period)
    context["recorded"] = recorded
    return _render(request, "ministry.html", context, status_code=200 if ok else 422)


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
    request.state.page_path = f"/ministries/{quote(code)}"
    try:
        with transaction(ctx.sessions) as session:
            principal = authenticate_page(request, session, ctx)
            _check_csrf(request, csrf)
            agency = auth_service.agency_by_code(session, code=code, field="code")
            if not may_record_for(principal, agency):
                raise Forbidden(f"you may not record sessions for {agency.code}", field="ministry")
            try:
                data = _session_from_form(meeting, held_on, mode, status, note)
                target = compliance_service.get_meeting(session, code=data.meeting, field="meeting")
                if target.host_agency_id != agency.id:
                    raise InvalidInput(f"meeting '{target.code}' is hosted by {target.host.code}, not {agency.code}",
                                       field="meeting")
                compliance_service.create_session(session, clock=ctx.clock, actor=principal, data=data)
            except AppError as exc:
                raise _FormRejected(exc) from exc
    except _FormRejected as rejected:
        # The write was rolled back; show the page again, in a fresh read, with the reason and the input.
        with transaction(ctx.sessions) as session:
            agency = auth_service.agency_by_code(session, code=code, field="code")
            context, _ok = _ministry_context(session, request, ctx, request.state.viewer.principal, agency,
                                            period)
        context["form"] = {"meeting": meeting, "held_on": held_on, "mode": mode, "status": status, "note": note}
        context["form_error"] = rejected.error
        request.state.page_path = f"/ministries/{quote(code)}?" + urlencode({"period": context["period_text"]})
        return _render(request, "ministry.html", context, status_code=rejected.error.status_code)

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
    principal: Principal = Depends(page_principal),
    session: DbSession,
) -> Response:
    _require(principal, Permission.COMPLIANCE_READ)
    rows = compliance_service.list_meetings(session, host=ministry.strip() or None, query=q.strip() or None)
    hosts = sorted({m.host_agency_id: m.host for m in compliance_service.list_meetings(session)}.values(),
                   key=lambda a: a.code)
    return _render(request, "meetings.html", {"meetings": rows, "hosts": hosts, "ministry": ministry.strip(),
                                              "q": q.strip()})


# --- infrastructure ------------------------------------------------------------------------------

@router.get("/agencies")
def agencies(
    *,
    request: Request, principal: Principal = Depends(page_principal), session: DbSession
) -> Response:
    _require(principal, Permission.AGENCIES_READ)
    return _render(request, "agencies.html", {"agencies": auth_service.list_agencies(session)})


@dataclass(frozen=True)
class Change:
    field: str
    before: str
    after: str


def _changes(entry: AuditEntry) -> list[Change]:
    before, after = entry.before or {}, entry.after or {}

    def show(values: dict[str, Any], key: str) -> str:
        if key not in values:
            return ""
        value = values[key]
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)

    keys = list(dict.fromkeys([*before, *after]))
    return [Change(key, show(before, key), show(after, key)) for key in keys]


@router.get("/audit")
def audit(
    *,
    request: Request, principal: Principal = Depends(page_principal), session: DbSession
) -> Response:
    _require(principal, Permission.AUDIT_READ)
    entries = [(entry, _changes(entry)) for entry in auth_service.list_audit(session, limit=AUDIT_SHOWN)]
    return _render(request, "audit.html", {"entries": entries, "limit": AUDIT_SHOWN})


# --- cloud ---------------------------------------------------------------------------------------

@router.get("/cloud")
def cloud(
    *,
    request: Request, principal: Principal = Depends(page_principal), session: DbSession, ctx: Ctx
) -> Response:
    """Agencies on the cloud with status and quota use, from the cache the refresher keeps (no cloud call)."""
    _require(principal, Permission.CLOUD_READ)
    snapshot = ctx.metrics.cloud.snapshot
    rows = [cloud_service.tenancy_read(t, quota=snapshot.quotas.get(t.agency.code, ()),
                                       quota_at=snapshot.quotas_at.get(t.agency.code))
            for t in cloud_service.list_tenancies(session, viewer=principal, cloud=ctx.cloud.cloud_name)]
    return _render(request, "cloud.html", {"rows": rows, "snapshot": snapshot, "cloud": ctx.cloud.cloud_name,
                                           "show_capacity": not principal.scoped})


@router.get("/cloud/{code}")
def cloud_agency(
    *,
    request: Request,
    code: str,
    plan: bool = False,
    queued: str = Query("", max_length=36),
    principal: Principal = Depends(page_principal),
    session: DbSession,
    ctx: Ctx,
) -> Response:
    """One agency on the cloud, read now; `?plan=1` compares the spec with the cloud (a read)."""
    _require(principal, Permission.CLOUD_READ)
    tenancy = cloud_service.get_tenancy(session, viewer=principal, cloud=ctx.cloud.cloud_name, code=code)
    context: dict[str, Any] = {
        "cloud": ctx.cloud.cloud_name, "row": cloud_service.tenancy_read(tenancy),
        "spec": cloud_service.spec_read(tenancy), "key_fingerprint": cloud_service.key_fingerprint(tenancy.public_key),
        "live": None, "cloud_error": None, "plan": cloud_service.last_plan_read(tenancy), "fresh_plan": False,
        "may_apply": principal.has(Permission.CLOUD_WRITE), "queued": queued,
        "operations": [cloud_service.operation_read(op) for op in
                       cloud_service.list_operations(session, agency_id=tenancy.agency_id, cloud=tenancy.cloud)],
    }
    try:
        context["live"] = cloud_flows.live_state(ctx, tenancy)
        if plan:
            # The plan is kept as the last plan: a write, so in a transaction of its own.
            with transaction(ctx.sessions) as writer:
                context["plan"] = cloud_flows.plan(writer, ctx=ctx, viewer=principal, code=code)
            context["fresh_plan"] = True
    except AppError as exc:
        context["cloud_error"] = exc.message
    return _render(request, "cloud_agency.html", context)


@router.post("/cloud/{code}/apply")
def cloud_apply(*, request: Request, code: str, csrf: str = Form("", max_length=200), ctx: Ctx) -> Response:
    """Queue an apply of the agency's spec; it runs in the background once this transaction committed."""
    request.state.page_path = f"/cloud/{quote(code)}"
    with transaction(ctx.sessions) as session:
        principal = authenticate_page(request, session, ctx)
        _check_csrf(request, csrf)
        _require(principal, Permission.CLOUD_WRITE)
        operation_id = cloud_flows.request_apply(session, ctx=ctx, actor=principal, code=code).id
    cloud_flows.submit_apply(ctx, operation_id=operation_id)
    return RedirectResponse(f"/cloud/{quote(code)}?" + urlencode({"queued": operation_id}), status_code=303)


# --- playbook jobs -------------------------------------------------------------------------------

JOBS_SHOWN = 100
EVENTS_SHOWN = 2000
HOST_COUNTS = ("ok", "changed", "failed", "unreachable", "skipped")
EVENT_KINDS = ("play", "task", "ok", "failed", "unreachable", "skipped", "stats", "check", "verify")
CHECK_OUTCOMES = ("passed", "failed", "skipped")


@dataclass(frozen=True)
class HostRow:
    name: str
    address: str
    groups: list[str]
    counts: dict[str, int]


def _job_status(text: str) -> JobStatus | None:
    text = text.strip()
    if not text:
        return None
    try:
        return JobStatus(text)
    except ValueError:
        raise InvalidInput(f"unknown job status '{text}'; one of {', '.join(s.value for s in JobStatus)}",
                           field="status") from None


def _host_rows(job: JobRead, events: list[JobEventRead]) -> list[HostRow]:
    """Per-host totals: the job's own once it has ended, else counted from the events so far."""
    counted: dict[str, dict[str, int]] = {}
    for event in events:
        if event.host is not None and event.kind in HOST_COUNTS:
            counts = counted.setdefault(event.host, dict.fromkeys(HOST_COUNTS, 0))
            counts[event.kind] += 1
            counts["changed"] += int(event.changed)
    totals = {host: stats.model_dump() for host, stats in job.host_stats.items()} or counted
    return [HostRow(h.name, h.address, h.groups, totals.get(h.name, dict.fromkeys(HOST_COUNTS, 0)))
            for h in job.hosts]


def _job_labels(t: Translator) -> dict[str, Any]:
    """The labels the live log's script shows for what arrives (the page's language)."""
    return {"kind": {k: t(f"jkind.{k}") for k in EVENT_KINDS},
            "status": {s.value: t(f"jstatus.{s.value}") for s in JobStatus},
            "outcome": {o: t(f"outcome.{o}") for o in CHECK_OUTCOMES}, "yes": t("yes")}


@router.get("/jobs")
def jobs(
    *,
    request: Request,
    status: str = Query("", max_length=20),
    principal: Principal = Depends(page_principal),
    session: DbSession,
) -> Response:
    """Jobs newest first (a ministry sees its own agency's only), filtered by status."""
    _require(principal, Permission.JOBS_READ)
    chosen = _job_status(status)
    rows = [job_service.job_read(job)
            for job in job_service.list_jobs(session, viewer=principal, status=chosen, limit=JOBS_SHOWN)]
    return _render(request, "jobs.html", {"jobs": rows, "status": chosen.value if chosen else "",
                                          "statuses": [s.value for s in JobStatus], "limit": JOBS_SHOWN})


@router.get("/jobs/{job_id}")
def job_page(
    *,
    request: Request,
    job_id: str,
    canceled: bool = False,
    principal: Principal = Depends(page_principal),
    session: DbSession,
) -> Response:
    """One job with its events so far and its checks; while it runs, a script follows its events live."""
    _require(principal, Permission.JOBS_READ)
    job = job_service.job_read(job_service.get_job(session, viewer=principal, job_id=job_id))
    events = job_service.events(session, job_id=job_id, limit=EVENTS_SHOWN)
    active = not job.status.finished
    nonce = secrets.token_urlsafe(16)
    response = _render(request, "jobs_detail.html", {
        "job": job, "events": events, "checks": job_service.checks(session, job_id=job_id),
        "hosts": _host_rows(job, events), "counts": HOST_COUNTS, "events_shown": EVENTS_SHOWN,
        "last_seq": events[-1].seq if events else 0, "active": active, "canceled": canceled,
        "may_cancel": active and principal.has(Permission.JOBS_RUN), "nonce": nonce,
        "labels": _job_labels(_t(request)),
    })
    if active:
        response.headers["Content-Security-Policy"] = SECURITY_HEADERS["Content-Security-Policy"].replace(
            "script-src 'none'", f"script-src 'nonce-{nonce}'")
    return response


@router.get("/jobs/{job_id}/events/stream")
def job_events_stream(
    *,
    request: Request,
    job_id: str,
    after: int = Query(0, ge=0),
    last_event_id: Annotated[int | None, Header(ge=0)] = None,
    principal: Principal = Depends(page_principal),
    session: DbSession,
    ctx: Ctx,
) -> Response:
    """The job's events as Server-Sent Events for the job page (cookie login, the page's permission check)."""
    _require(principal, Permission.JOBS_READ)
    job_service.get_job(session, viewer=principal, job_id=job_id)  # 404 before the stream starts
    return event_stream(ctx, request, job_id, after=last_event_id if last_event_id is not None else after)


@router.post("/jobs/{job_id}/cancel")
def job_cancel(*, request: Request, job_id: str, csrf: str = Form("", max_length=200), ctx: Ctx) -> Response:
    """Cancel a job: a pending one at once, a running one by its runner within seconds."""
    request.state.page_path = f"/jobs/{quote(job_id)}"
    with transaction(ctx.sessions) as session:
        principal = authenticate_page(request, session, ctx)
        _check_csrf(request, csrf)
        _require(principal, Permission.JOBS_RUN)
        job_flows.cancel_job(session, ctx=ctx, actor=principal, job_id=job_id)
    job_flows.signal_cancel(ctx, job_id=job_id)
    return RedirectResponse(f"/jobs/{quote(job_id)}?canceled=1", status_code=303)


@router.get("/credentials")
def credentials(
    *, request: Request, principal: Principal = Depends(page_principal), session: DbSession
) -> Response:
    """The SSH credentials jobs log in with: never a private key, only what identifies it."""
    _require(principal, Permission.CREDENTIALS_READ)
    rows = [job_service.credential_read(c) for c in job_service.list_credentials(session)]
    return _render(request, "credentials.html", {"credentials": rows})
